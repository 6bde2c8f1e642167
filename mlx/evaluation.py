"""Metrics per task and the figures of an experiment.

``resolve_metric`` turns an experiment's ``metric`` into a scorer that the search maximises;
``evaluate`` computes the single test evaluation (metrics, tables, figures); ``leaderboard``
compares the model types of a search over several; the remaining functions draw the search's
figures. Figures are built on ``matplotlib.figure.Figure`` (no pyplot
state, no display needed); Optuna's own plots go through pyplot and are closed after use.
"""

import csv
import io
import math
import warnings

import numpy as np

__all__ = [
    "decision_boundary_figure",
    "evaluate",
    "final_step",
    "leaderboard",
    "leaderboard_csv",
    "leaderboard_figure",
    "learning_curve_figure",
    "resolve_metric",
    "study_figures",
]

_DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2", "clustering": "silhouette"}
# scikit-learn scorers by the module of their score function: this tells which task they fit.
_SCORER_TASKS = {
    "sklearn.metrics._regression": ("regression",),
    "sklearn.metrics._classification": ("classification",),
    "sklearn.metrics._ranking": ("classification",),
    "sklearn.metrics.cluster._supervised": ("clustering", "classification"),
}
# Silhouette is quadratic in the number of rows: above this, it is estimated on a sample.
_SILHOUETTE_SAMPLE = 3000
_LEADERBOARD_STATES = ("COMPLETE", "PRUNED", "FAIL")
# Grid points per axis of a decision-boundary panel: smooth enough to see the boundary, cheap
# enough (14,400 predictions) for any model.
_MESH = 120
_PANELS_PER_ROW = 3


def final_step(estimator, X):
    """The last step of a Pipeline and ``X`` transformed by the steps before it.

    For an estimator that is not a Pipeline: the estimator itself and ``X`` unchanged.
    """
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        return estimator[-1], estimator[:-1].transform(X)
    return estimator, X


def _silhouette(estimator, X, y=None):
    from sklearn.metrics import silhouette_score

    # Scored in the space the clusterer sees, after the Pipeline's preprocessing.
    last, Xt = final_step(estimator, X)
    labels = last.predict(Xt)
    sample = _SILHOUETTE_SAMPLE if len(labels) > _SILHOUETTE_SAMPLE else None
    return float(silhouette_score(Xt, labels, sample_size=sample, random_state=0))


def resolve_metric(metric, task):
    """Name and scorer ``(estimator, X, y) -> float`` (greater is better) for ``metric``.

    Raises
    ------
    ValueError
        Unknown scorer name, or a metric that does not fit ``task``.
    """
    if metric is None:
        metric = _DEFAULT_METRIC[task]
    if callable(metric):
        func = getattr(metric, "_score_func", metric)
        return getattr(func, "__name__", type(metric).__name__), metric
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a scorer name or a callable, got {metric!r}.")
    if metric == "silhouette":
        if task != "clustering":
            raise ValueError(
                f"metric 'silhouette' is a clustering metric but the task is {task}; use "
                f"{_DEFAULT_METRIC[task]!r} or another {task} scorer."
            )
        return metric, _silhouette
    from sklearn.metrics import get_scorer

    try:
        scorer = get_scorer(metric)
    except ValueError:
        raise ValueError(
            f"unknown metric {metric!r}; use a name from sklearn.metrics.get_scorer_names(), "
            f"'silhouette' for clustering, or a callable (estimator, X, y) -> float."
        ) from None
    module = getattr(getattr(scorer, "_score_func", None), "__module__", "")
    tasks = _SCORER_TASKS.get(module)
    if tasks is not None and task not in tasks:
        raise ValueError(
            f"metric {metric!r} is a {tasks[0]} metric but the task is {task}; use "
            f"{_DEFAULT_METRIC[task]!r} or another {task} metric."
        )
    if task == "clustering" and tasks is None:
        raise ValueError(
            f"metric {metric!r} does not fit clustering; use 'silhouette' or a label-agreement "
            f"score such as 'adjusted_rand_score'."
        )
    return metric, scorer


def evaluate(model, X, y, *, task, metric_name, scorer):
    """Evaluate a fitted model on one split.

    Returns
    -------
    result : dict
        ``metrics`` (name -> float), ``tables`` (file name -> CSV text) and ``figures``
        (file name -> matplotlib Figure).
    """
    metrics = {}
    if y is not None or task == "clustering":
        metrics[metric_name] = float(scorer(model, X, y))
    tables, figures = {}, {}
    if task == "classification":
        _classification(model, X, y, metrics, tables, figures)
    elif task == "regression":
        _regression(model, X, y, metrics, figures)
    else:
        _clustering(model, X, y, metrics)
    return {"metrics": metrics, "tables": tables, "figures": figures}


def _classification(model, X, y, metrics, tables, figures):
    from sklearn import metrics as skm

    pred = model.predict(X)
    metrics["accuracy"] = float(skm.accuracy_score(y, pred))
    metrics["balanced_accuracy"] = float(skm.balanced_accuracy_score(y, pred))
    for name, func in [
        ("precision_macro", skm.precision_score),
        ("recall_macro", skm.recall_score),
        ("f1_macro", skm.f1_score),
    ]:
        metrics[name] = float(func(y, pred, average="macro", zero_division=0))
    labels = getattr(model, "classes_", None)
    labels = np.unique(np.concatenate([np.asarray(y), pred])) if labels is None else labels
    cm = skm.confusion_matrix(y, pred, labels=labels)
    if len(labels) == 2:
        # The second class (in sorted order) is the positive one, as in scikit-learn.
        tn, fp, fn, tp = (int(v) for v in cm.ravel())
        metrics.update(tp=tp, fp=fp, tn=tn, fn=fn)
    names = [str(label) for label in labels]
    buf = io.StringIO()
    buf.write("true\\pred," + ",".join(names) + "\n")
    for name, row in zip(names, cm, strict=True):
        buf.write(name + "," + ",".join(str(int(v)) for v in row) + "\n")
    tables["confusion_matrix.csv"] = buf.getvalue()
    figures["confusion_matrix.png"] = _confusion_figure(cm, names)


def _confusion_figure(cm, names):
    from matplotlib.figure import Figure

    size = min(2 + 0.5 * len(names), 12)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test)")
    if len(names) <= 30:
        threshold = cm.max() / 2
        for (i, j), value in np.ndenumerate(cm):
            color = "white" if value > threshold else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    return fig


def _regression(model, X, y, metrics, figures):
    from matplotlib.figure import Figure
    from sklearn import metrics as skm

    pred = np.asarray(model.predict(X), dtype=float)
    y = np.asarray(y, dtype=float)
    metrics["rmse"] = float(skm.root_mean_squared_error(y, pred))
    metrics["mae"] = float(skm.mean_absolute_error(y, pred))
    metrics["r2"] = float(skm.r2_score(y, pred))
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    residuals = (y - pred).reshape(len(y), -1)
    for k in range(residuals.shape[1]):
        ax.scatter(pred.reshape(len(y), -1)[:, k], residuals[:, k], s=10, alpha=0.6)
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (true - predicted)")
    ax.set_title("Residuals (test)")
    fig.tight_layout()
    figures["residuals.png"] = fig


def _clustering(model, X, y, metrics):
    from sklearn import metrics as skm

    last, Xt = final_step(model, X)
    labels = last.predict(Xt)
    if 2 <= len(np.unique(labels)) < len(labels):
        metrics["silhouette"] = _silhouette(model, X)
    centers = getattr(last, "cluster_centers_", None)
    if centers is not None:
        Xt = np.asarray(Xt, dtype=float)
        sq = (Xt**2).sum(1)[:, None] - 2 * Xt @ centers.T + (centers**2).sum(1)[None, :]
        metrics["inertia"] = float(np.maximum(sq.min(axis=1), 0).sum())
    if y is not None:
        metrics["adjusted_rand"] = float(skm.adjusted_rand_score(y, labels))
        metrics["normalized_mutual_info"] = float(skm.normalized_mutual_info_score(y, labels))


def learning_curve_figure(curves, metric_name, title):
    """Train and validation score per epoch; None without epochs."""
    if not curves or not curves.get("val"):
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    for split in ("train", "val"):
        values = curves.get(split) or []
        ax.plot(range(1, len(values) + 1), values, marker=".", label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_name)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def study_figures(study):
    """Optuna's optimisation-history and parameter-importance plots, as far as they apply.

    Returns a dict from file name to Figure. Importances need at least two complete trials and
    more than one searched parameter; otherwise that figure is left out.
    """
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    figures = {}
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return figures
    params = {name for trial in complete for name in trial.params}
    plots = [("optimization_history.png", ovm.plot_optimization_history)]
    if len(complete) >= 2 and len(params) > 1:
        plots.append(("param_importances.png", ovm.plot_param_importances))
    with warnings.catch_warnings():
        # Experimental-API notices and importance caveats on tiny studies: not the user's concern.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        for name, plot in plots:
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                # Importances fail on degenerate studies (e.g. all values equal): skip the plot.
                plt.close("all")
                continue
            fig = ax.figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            figures[name] = fig
    return figures


def close(figures):
    """Release pyplot-managed figures (Optuna's); plain Figures need nothing."""
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def leaderboard(trials, models=()):
    """The best trial of each model type of a search over several.

    Parameters
    ----------
    trials : iterable of dict
        One per trial, with keys ``number``, ``model``, ``state`` (``"COMPLETE"``, ``"PRUNED"``,
        ``"FAIL"``, ...), ``value`` (validation score), ``fit_time`` (seconds) and ``size``
        (bytes of the pickled fitted model); the last three may be None.
    models : sequence of str, default=()
        Model names to list even without trials, in this order.

    Returns
    -------
    rows : list of dict
        One per model, best validation score first (ties: the earlier trial first; models
        without a complete trial last):
        ``model``, ``best_trial``, ``best_value``, ``fit_time`` and ``size`` of that trial
        (None without a complete trial), and the number of trials per state (``complete``,
        ``pruned``, ``fail``).
    """
    rows = {}

    def row(model):
        empty = {"model": model, "best_trial": None, "best_value": None}
        empty.update(fit_time=None, size=None)
        empty.update({state.lower(): 0 for state in _LEADERBOARD_STATES})
        return rows.setdefault(model, empty)

    for model in models:
        row(model)
    for trial in sorted(trials, key=lambda t: t["number"]):
        entry = row(trial["model"])
        if trial["state"] in _LEADERBOARD_STATES:
            entry[trial["state"].lower()] += 1
        value = trial.get("value")
        if trial["state"] != "COMPLETE" or value is None or not math.isfinite(value):
            continue
        if entry["best_value"] is None or value > entry["best_value"]:
            entry.update(best_trial=trial["number"], best_value=float(value))
            entry.update(fit_time=trial.get("fit_time"), size=trial.get("size"))
    order = list(rows)
    # Ties go to the earlier trial, as Optuna's best trial does: the first row is the winner.
    return sorted(
        rows.values(),
        key=lambda r: (
            r["best_value"] is None,
            -(r["best_value"] or 0.0),
            r["best_trial"] if r["best_trial"] is not None else 0,
            order.index(r["model"]),
        ),
    )


def leaderboard_csv(rows, metric_name):
    """The rows of :func:`leaderboard` as CSV text (empty cells where a model has no result)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    states = [state.lower() for state in _LEADERBOARD_STATES]
    writer.writerow(
        ["model", "best_trial", f"best_val_{metric_name}", "fit_time_s", "size_bytes", *states]
    )
    for r in rows:
        cells = [r["model"], r["best_trial"], r["best_value"], r["fit_time"], r["size"]]
        writer.writerow(["" if c is None else c for c in cells] + [r[s] for s in states])
    return buf.getvalue()


def leaderboard_figure(rows, metric_name):
    """Bar charts of the leaderboard: best validation score, its fit time and model size."""
    from matplotlib.figure import Figure

    names = [r["model"] for r in rows][::-1]
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(rows)))
    axes = fig.subplots(1, 3, sharey=True)
    panels = [
        ("best_value", f"best validation {metric_name}", 1.0),
        ("fit_time", "fit time of that trial (s)", 1.0),
        ("size", "size of that model (KiB, pickled)", 1 / 1024),
    ]
    for ax, (key, label, scale) in zip(axes, panels, strict=True):
        values = [r[key] for r in rows][::-1]
        heights = [0.0 if v is None else v * scale for v in values]
        # The winner (first row) stands out; models without a complete trial get no bar.
        colors = ["tab:orange" if i == len(names) - 1 else "tab:blue" for i in range(len(names))]
        ax.barh(names, heights, color=colors)
        for i, v in enumerate(values):
            text = "no complete trial" if v is None else f"{v * scale:.4g}"
            ax.text(heights[i], i, " " + text, va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.margins(x=0.25)
    axes[0].set_title("Model types on the validation split", loc="left")
    fig.tight_layout()
    return fig


def decision_boundary_figure(models, train, test=None, titles=None):
    """One panel per fitted classifier: its decision regions over two features.

    Parameters
    ----------
    models : dict
        Model name -> fitted classifier (trained on ``train``).
    train : tuple
        ``(X, y)`` of the training split; drawn as circles.
    test : tuple, default=None
        ``(X, y)`` of the test split; drawn as triangles when given.
    titles : dict, default=None
        Model name -> a second title line (for example its validation score).

    Returns
    -------
    figure : matplotlib Figure or None
        None unless ``X`` has exactly two features. With two classes the regions show the
        probability of the second class (``predict_proba``), else the signed decision function
        (SVMs); otherwise, and with more classes, the predicted class.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    X_train, y_train = train
    if np.ndim(X_train) != 2 or np.shape(X_train)[1] != 2 or not models:
        return None
    parts = [train] if test is None else [train, test]
    classes = np.unique(np.concatenate([np.asarray(y) for _, y in parts]))
    points = np.concatenate([np.asarray(X, dtype=float) for X, _ in parts])
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.08 * np.maximum(high - low, 1e-9)
    axes_values = [np.linspace(lo, hi, _MESH) for lo, hi in zip(low - pad, high + pad, strict=True)]
    xx, yy = np.meshgrid(*axes_values)
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    if hasattr(X_train, "columns"):
        # Fitted on a DataFrame: predict on one with the same column names.
        import pandas as pd

        grid = pd.DataFrame(grid, columns=X_train.columns)
    binary = len(classes) == 2
    # One colour per class, the same for regions and points; two classes match RdBu's ends.
    palette = ["#d62728", "#1f77b4"] if binary else [f"C{i % 10}" for i in range(len(classes))]
    class_cmap = ListedColormap(palette)
    class_levels = np.arange(len(classes) + 1) - 0.5

    n = len(models)
    ncols = min(n, _PANELS_PER_ROW)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(4 * ncols, 3.8 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (name, model) in zip(axes, models.items(), strict=False):
        if binary and hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(grid))
            positive = list(getattr(model, "classes_", classes)).index(classes[1])
            z, levels, cmap = proba[:, positive], np.linspace(0, 1, 11), "RdBu"
        elif binary and hasattr(model, "decision_function"):
            z = np.asarray(model.decision_function(grid), dtype=float).ravel()
            # Symmetric around the boundary (0); the far tails would wash out the colours.
            reach = max(float(np.quantile(np.abs(z), 0.95)), 1e-12)
            z, levels, cmap = np.clip(z, -reach, reach), np.linspace(-reach, reach, 11), "RdBu"
        else:
            z = np.searchsorted(classes, np.asarray(model.predict(grid)))
            levels, cmap = class_levels, class_cmap
        ax.contourf(xx, yy, z.reshape(xx.shape), levels=levels, cmap=cmap, alpha=0.6)
        for (X, y), marker, size, label in zip(
            parts, ["o", "^"], [14, 26], ["train", "test"], strict=False
        ):
            X = np.asarray(X, dtype=float)
            colour = np.searchsorted(classes, np.asarray(y))
            ax.scatter(
                X[:, 0],
                X[:, 1],
                c=colour,
                cmap=class_cmap,
                vmin=class_levels[0],
                vmax=class_levels[-1],
                marker=marker,
                s=size,
                edgecolors="k",
                linewidths=0.4,
                label=label,
            )
        subtitle = (titles or {}).get(name)
        ax.set_title(name if subtitle is None else f"{name}\n{subtitle}", fontsize=10)
        ax.set_xticks(())
        ax.set_yticks(())
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig
