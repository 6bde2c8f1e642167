"""Figures of an experiment: the test evaluation's, the search's and the model comparison's.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, no display needed); Optuna's
own plots go through pyplot and are released once drawn (:func:`mlx.painter.render`).
Each function takes plain, picklable data, so that a figure can be drawn in the helper process
of :mod:`mlx.painter`.
"""

import contextlib
import warnings

import numpy as np

__all__ = [
    "confusion_figure",
    "decision_boundary_figure",
    "learning_curve_figure",
    "log_mel_figure",
    "optimization_history_figure",
    "param_importances_figure",
    "precision_recall_figure",
    "prediction_error_figure",
    "roc_figure",
]

# Grid points per axis of a decision-boundary panel: smooth enough to see the boundary, cheap
# enough (14,400 predictions) for any model.
_MESH = 120
_PANELS_PER_ROW = 3


def confusion_figure(cm, names, *, normalize=False):
    """The confusion matrix ``cm`` (rows: true class), drawn by ``ConfusionMatrixDisplay``.

    Parameters
    ----------
    cm : ndarray of shape (n_classes, n_classes)
        Counts; row ``i`` holds the rows of true class ``i``.
    names : list of str
        Class names in the order of ``cm``.
    normalize : bool, default=False
        Divide each row by its total: the diagonal then holds each class's recall (a class
        without rows gets a row of zeros).
    """
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(cm)
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    size = min(2 + 0.5 * len(names), 12)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    ConfusionMatrixDisplay(cm, display_labels=names).plot(
        ax=ax,
        cmap="Blues",
        include_values=len(names) <= 30,
        values_format=".2f" if normalize else "d",
        xticks_rotation=45,
        text_kw={"fontsize": 8},
        # Shares on one fixed scale, so that figures of different runs compare by colour.
        im_kw={"vmin": 0.0, "vmax": 1.0} if normalize else None,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    what = "rows normalised: recall on the diagonal" if normalize else "counts"
    # Two lines: one line ran past the right edge of a three-class figure, clipped.
    ax.set_title(f"Confusion matrix (test)\n{what}", fontsize=10)
    fig.tight_layout()
    return fig


def roc_figure(y, score, pos_label):
    """ROC curve of a binary classifier's scores, with its area (``RocCurveDisplay``)."""
    from matplotlib.figure import Figure
    from sklearn.metrics import RocCurveDisplay

    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    RocCurveDisplay.from_predictions(
        y, score, pos_label=pos_label, ax=ax, name="test", plot_chance_level=True
    )
    ax.set_title(f"ROC curve, positive class {pos_label} (test)", fontsize=10)
    fig.tight_layout()
    return fig


def precision_recall_figure(y, score, pos_label):
    """Precision-recall curve with its average precision (``PrecisionRecallDisplay``)."""
    from matplotlib.figure import Figure
    from sklearn.metrics import PrecisionRecallDisplay

    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    PrecisionRecallDisplay.from_predictions(
        y, score, pos_label=pos_label, ax=ax, name="test", plot_chance_level=True
    )
    ax.set_title(f"Precision-recall, positive class {pos_label} (test)", fontsize=10)
    fig.tight_layout()
    return fig


# Targets of a multi-output regression drawn as panels; the rest are left out of the figure.
_MAX_TARGET_PANELS = 6
_ERROR_TITLES = {
    "actual_vs_predicted": "Predicted vs true (test)",
    "residual_vs_predicted": "Residuals vs predicted (test)",
}


def prediction_error_figure(y, pred, *, kind):
    """Regression errors (``PredictionErrorDisplay``), one panel per target.

    Parameters
    ----------
    y, pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        True and predicted values.
    kind : {"actual_vs_predicted", "residual_vs_predicted"}
        True against predicted values (points on the diagonal are exact), or residuals
        (true - predicted) against predicted values (a trend or funnel shows bias).
        At most 1,000 points (a seeded subsample) are drawn per panel.
    """
    from matplotlib.figure import Figure
    from sklearn.metrics import PredictionErrorDisplay

    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    pred = np.asarray(pred, dtype=float).reshape(y.shape)
    n = min(y.shape[1], _MAX_TARGET_PANELS)
    fig = Figure(figsize=(4.5 * n, 4.2))
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)).ravel()
    for k, ax in enumerate(axes):
        PredictionErrorDisplay.from_predictions(
            y[:, k],
            pred[:, k],
            kind=kind,
            subsample=1000,
            random_state=0,
            ax=ax,
            scatter_kwargs={"alpha": 0.6, "s": 12},
        )
        if n > 1:
            ax.set_title(f"target {k}", fontsize=10)
    fig.suptitle(_ERROR_TITLES[kind], fontsize=11)
    fig.tight_layout()
    return fig


def log_mel_figure(frames, *, sample_rate, hop_length, title):
    """A log-mel spectrogram, bands upwards and time across, with its dB scale.

    Parameters
    ----------
    frames : ndarray of shape (n_mels, n_frames)
        Log-mel energies in dB.
    sample_rate : int
        Sample rate of the clip in Hz.
    hop_length : int
        Samples between frame starts (frame ``t`` is centred on ``t * hop_length``).
    title : str
    """
    from matplotlib.figure import Figure

    n_mels, n_frames = frames.shape
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    image = ax.imshow(
        frames,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, n_frames * hop_length / sample_rate, 0, n_mels),
    )
    fig.colorbar(image, ax=ax, label="dB")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    ax.set_title(title, fontsize=10)
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
        values = curves.get(split) or []  # no train curve with train_score=False
        if values:
            ax.plot(range(1, len(values) + 1), values, marker=".", label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_name)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def optimization_history_figure(trials, directions):
    """Optuna's optimisation-history plot of a study's complete ``trials``; None without any.

    ``trials`` are FrozenTrials (picklable, unlike a study on its storage), ``directions`` the
    study's; the plot numbers them as the study did.
    """
    if not trials:
        return None
    from optuna.visualization import matplotlib as ovm

    with _quiet_optuna_plots():
        return _sized(ovm.plot_optimization_history(_in_memory(trials, directions)))


def param_importances_figure(trials, directions):
    """Optuna's parameter-importance plot; None with fewer than two complete ``trials`` or one
    searched parameter, or when the importances cannot be computed (all values equal, ...)."""
    params = {name for trial in trials for name in trial.params}
    if len(trials) < 2 or len(params) < 2:
        return None
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    with _quiet_optuna_plots():
        try:
            return _sized(ovm.plot_param_importances(_in_memory(trials, directions)))
        except (ValueError, RuntimeError, ZeroDivisionError):
            plt.close("all")
            return None


def _in_memory(trials, directions):
    """A study in memory holding ``trials`` under their own numbers (the gaps as failed)."""
    import optuna

    by_number = {trial.number: trial for trial in trials}
    failed = optuna.trial.TrialState.FAIL
    study = optuna.create_study(directions=list(directions))
    study.add_trials(
        [
            by_number.get(number) or optuna.trial.create_trial(state=failed)
            for number in range(max(by_number) + 1)
        ]
    )
    return study


@contextlib.contextmanager
def _quiet_optuna_plots():
    """Experimental-API notices and importance caveats on tiny studies: not the user's concern."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _sized(ax):
    fig = ax.figure
    fig.set_size_inches(7, 4.5)
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
