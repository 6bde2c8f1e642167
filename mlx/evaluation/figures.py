"""Figures of an experiment: the test evaluation's, the search's and the model comparison's.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, no display needed); Optuna's
own plots go through pyplot and are released by :func:`close` after use.
"""

import warnings

import numpy as np

__all__ = [
    "close",
    "confusion_figure",
    "decision_boundary_figure",
    "learning_curve_figure",
    "residuals_figure",
    "study_figures",
]

# Grid points per axis of a decision-boundary panel: smooth enough to see the boundary, cheap
# enough (14,400 predictions) for any model.
_MESH = 120
_PANELS_PER_ROW = 3


def confusion_figure(cm, names):
    """The confusion matrix ``cm`` (rows: true class) with counts in the cells."""
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


def residuals_figure(y, pred):
    """Residuals against predictions (one colour per target)."""
    from matplotlib.figure import Figure

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
    return fig


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
