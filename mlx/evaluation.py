"""Metrics per task and the figures of an experiment.

``resolve_metric`` turns an experiment's ``metric`` into a scorer that the search maximises;
``evaluate`` computes the single test evaluation (metrics, tables, figures); the remaining
functions draw the search's figures. Figures are built on ``matplotlib.figure.Figure`` (no pyplot
state, no display needed); Optuna's own plots go through pyplot and are closed after use.
"""

import io
import warnings

import numpy as np

__all__ = [
    "evaluate",
    "final_step",
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
