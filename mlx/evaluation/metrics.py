"""Metrics per task: the metric a search maximises, and the single test evaluation.

:func:`resolve_metric` turns an experiment's ``metric`` into a scorer that the search
maximises; :func:`needs_labels` says which metrics compare with labels (all but silhouette);
:func:`evaluate` computes the test evaluation's metrics, tables and figures.
"""

import csv
import io
import posixpath
import re

import numpy as np

from mlx.evaluation.evidence import audio_sample_rate, misclassified_clips
from mlx.evaluation.figures import (
    confusion_figure,
    precision_recall_figure,
    prediction_error_figure,
    roc_figure,
)
from mlx.evaluation.intervals import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    bootstrap_intervals,
    class_metric,
    positive_scores,
    scorer_metric,
)
from mlx.painter import Sketch
from mlx.pipelines import final_step

__all__ = ["DEFAULT_METRIC", "evaluate", "needs_labels", "resolve_metric"]

DEFAULT_METRIC = {"classification": "accuracy", "regression": "r2", "clustering": "silhouette"}
# scikit-learn scorers by the module of their score function: this tells which task they fit.
_SCORER_TASKS = {
    "sklearn.metrics._regression": ("regression",),
    "sklearn.metrics._classification": ("classification",),
    "sklearn.metrics._ranking": ("classification",),
    "sklearn.metrics.cluster._supervised": ("clustering", "classification"),
}
# Silhouette is quadratic in the number of rows: above this, it is estimated on a sample.
_SILHOUETTE_SAMPLE = 3000
# Metrics that need no labels: they judge the clusters by the data alone.
_LABEL_FREE = ("silhouette",)
# Above this many classes, per-class results are in classification_report.csv only: one metric
# per class and kind would crowd the run's metrics.
_MAX_CLASS_METRICS = 50
# Metrics evaluate() computes itself (overwriting an experiment metric of the same name).
_OWN_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "roc_auc",
    "average_precision",
    "rmse",
    "mae",
    "r2",
    "adjusted_rand",
    "normalized_mutual_info",
)


def needs_labels(metric_name):
    """Whether the metric ``metric_name`` compares predictions with labels."""
    return metric_name not in _LABEL_FREE


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
        metric = DEFAULT_METRIC[task]
    if callable(metric):
        func = getattr(metric, "_score_func", metric)
        return getattr(func, "__name__", type(metric).__name__), metric
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a scorer name or a callable, got {metric!r}.")
    if metric == "silhouette":
        if task != "clustering":
            raise ValueError(
                f"metric 'silhouette' is a clustering metric but the task is {task}; use "
                f"{DEFAULT_METRIC[task]!r} or another {task} scorer."
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
            f"{DEFAULT_METRIC[task]!r} or another {task} metric."
        )
    if task == "clustering" and tasks is None:
        raise ValueError(
            f"metric {metric!r} does not fit clustering; use 'silhouette' or a label-agreement "
            f"score such as 'adjusted_rand_score'."
        )
    return metric, scorer


def evaluate(
    model,
    X,
    y,
    *,
    task,
    metric_name,
    scorer,
    groups=None,
    sample_rate="auto",
    n_resamples=DEFAULT_RESAMPLES,
    confidence=DEFAULT_CONFIDENCE,
    random_state=0,
):
    """Evaluate a fitted model on one split: metrics with intervals, tables, figures, sounds.

    Parameters
    ----------
    model : fitted estimator
    X : array-like of shape (n_samples, n_features)
        The split's rows (clips of samples for audio).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), or None
        Labels or targets (None for clustering without labels).
    task : {"classification", "regression", "clustering"}
    metric_name : str
        Name of the experiment's metric; its value is ``scorer(model, X, y)``.
    scorer : callable
        ``(estimator, X, y) -> float``.
    groups : array-like of shape (n_samples,), default=None
        Group of each row: the bootstrap then resamples whole groups.
    sample_rate : "auto", int or None, default="auto"
        Sample rate of the clips in ``X`` for the misclassified-clip evidence; "auto" reads it
        from the model (:func:`~mlx.evaluation.audio_sample_rate`), None gives no sounds.
    n_resamples : int, default=1000
        Bootstrap resamples of the intervals; 0 computes none.
    confidence : float, default=0.95
        Coverage of the intervals.
    random_state : int, default=0
        Seed of the bootstrap and of the choice of clips.

    Returns
    -------
    result : dict
        ``metrics`` (name -> float); ``intervals`` (metric name -> ``(low, high)``, see
        :func:`~mlx.evaluation.bootstrap_intervals`); ``no_interval`` (metric name -> why it
        has none); ``tables`` (file name -> CSV text); ``figures`` (file name ->
        :class:`~mlx.painter.Sketch`: ``sketch.draw()`` is the matplotlib Figure, and
        :func:`~mlx.painter.paint` draws them as PNG in a helper process); ``files`` (file
        name -> bytes: WAV clips and their log-mel PNGs, for classification of audio clips).

    Notes
    -----
    Classification adds per-class ``precision_<class>``, ``recall_<class>``, ``f1_<class>`` and
    ``support_<class>`` (class names made safe for MLflow keys, up to 50 classes) and
    ``classification_report.csv``; binary tasks add ``tp``, ``fp``, ``tn``, ``fn`` and, for
    models with ``decision_function`` or ``predict_proba``, ``roc_auc``, ``average_precision``
    and their curves. Regression draws predicted-vs-true and residual plots. The intervals are
    stratified by class for classification, computed on the predictions made once here.
    """
    metrics = {}
    if y is not None or task == "clustering":
        metrics[metric_name] = float(scorer(model, X, y))
    out = {"metrics": metrics, "intervals": {}, "no_interval": {}, "tables": {}, "figures": {}}
    out["files"] = {}
    if task == "classification":
        predictions = _classification(model, X, y, out)
    elif task == "regression":
        predictions = _regression(model, X, y, out)
    else:
        predictions = _clustering(model, X, y, metrics)
    if n_resamples and y is not None:
        resampling = {
            "groups": groups,
            "stratify": y if task == "classification" else None,
            "n_resamples": n_resamples,
            "confidence": confidence,
            "random_state": random_state,
        }
        _intervals(out, y, predictions, metric_name, scorer, resampling)
    if task == "classification":
        rate = audio_sample_rate(model) if sample_rate == "auto" else sample_rate
        if rate is not None:
            out["files"] = misclassified_clips(
                X, y, predictions["y_pred"], rate, random_state=random_state
            )
    return out


def _intervals(out, y, predictions, metric_name, scorer, resampling):
    """Bootstrap intervals of every metric that is a function of the predictions."""
    names = {name: name for name in out["metrics"]}
    names.update(predictions.pop("class_metrics", {}))
    if metric_name in _LABEL_FREE:
        names.pop(metric_name, None)
        out["no_interval"][metric_name] = "judges the clusters by X alone, not by labels"
    elif metric_name not in _OWN_METRICS:
        # The experiment's own scorer, resampled from the predictions when it allows.
        metric, reason = scorer_metric(scorer, metric_name)
        if metric is None:
            names.pop(metric_name, None)
            out["no_interval"][metric_name] = reason
        else:
            names[metric_name] = metric
    intervals, skipped = bootstrap_intervals(
        y,
        predictions.get("y_pred"),
        names,
        y_score=predictions.get("y_score"),
        pos_label=predictions.get("pos_label"),
        **resampling,
    )
    out["intervals"].update(intervals)
    out["no_interval"].update(skipped)


def _classification(model, X, y, out):
    from sklearn import metrics as skm

    metrics, tables, figures = out["metrics"], out["tables"], out["figures"]
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
    names = [str(label) for label in labels]
    class_metrics = _per_class(y, pred, labels, metrics, tables)
    cm = skm.confusion_matrix(y, pred, labels=labels)
    predictions = {"y_pred": pred, "class_metrics": class_metrics}
    if len(labels) == 2:
        # The second class (in sorted order) is the positive one, as in scikit-learn.
        tn, fp, fn, tp = (int(v) for v in cm.ravel())
        metrics.update(tp=tp, fp=fp, tn=tn, fn=fn)
        score, positive = positive_scores(model, X)
        if score is not None and len(np.unique(y)) == 2:
            metrics["roc_auc"] = float(skm.roc_auc_score(np.asarray(y) == positive, score))
            metrics["average_precision"] = float(
                skm.average_precision_score(y, score, pos_label=positive)
            )
            figures["roc_curve.png"] = Sketch(roc_figure, (y, score, positive))
            figures["precision_recall_curve.png"] = Sketch(
                precision_recall_figure, (y, score, positive)
            )
            predictions.update(y_score=score, pos_label=positive)
    buf = io.StringIO()
    buf.write("true\\pred," + ",".join(names) + "\n")
    for name, row in zip(names, cm, strict=True):
        buf.write(name + "," + ",".join(str(int(v)) for v in row) + "\n")
    tables["confusion_matrix.csv"] = buf.getvalue()
    figures["confusion_matrix.png"] = Sketch(confusion_figure, (cm, names))
    figures["confusion_matrix_normalized.png"] = Sketch(
        confusion_figure, (cm, names), {"normalize": True}
    )
    return predictions


def _per_class(y, pred, labels, metrics, tables):
    """``classification_report.csv`` and per-class metrics; returns their interval metrics."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    rows = [
        ["class", "precision", "recall", "f1-score", "support"],
        *[
            [str(label), *(f"{v:.6g}" for v in values), str(int(n))]
            for label, *values, n in zip(labels, precision, recall, f1, support, strict=True)
        ],
    ]
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y, pred, labels=labels, average=average, zero_division=0
        )
        rows.append([f"{average} avg", f"{p:.6g}", f"{r:.6g}", f"{f:.6g}", str(int(support.sum()))])
    rows.append(["accuracy", "", "", f"{metrics['accuracy']:.6g}", str(int(support.sum()))])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    tables["classification_report.csv"] = buf.getvalue()
    if len(labels) > _MAX_CLASS_METRICS:
        return {}
    class_metrics = {}
    taken = set(metrics)
    for j, label in enumerate(labels):
        key = _class_key(label, taken)
        for kind, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            metrics[f"{kind}_{key}"] = float(values[j])
            class_metrics[f"{kind}_{key}"] = class_metric(kind, label)
        metrics[f"support_{key}"] = int(support[j])  # a count, like tp
        taken.update(f"{kind}_{key}" for kind in ("precision", "recall", "f1", "support"))
    return class_metrics


def _class_key(label, taken):
    """``label`` as part of an MLflow metric key, distinct from the keys already ``taken``.

    MLflow keys allow word characters, ``_ - . /``, spaces (and colons, not on Windows); a key
    must also be a normalised path (no ``//``, ``./`` or trailing ``/``).
    """
    key = re.sub(r"[^\w\-. /]", "_", str(label)) or "_"
    if posixpath.normpath(f"f1_{key}") != f"f1_{key}":
        key = key.replace("/", "_")
    while any(f"{kind}_{key}" in taken for kind in ("precision", "recall", "f1", "support")):
        key += "_"
    return key


def _regression(model, X, y, out):
    from sklearn import metrics as skm

    metrics, figures = out["metrics"], out["figures"]
    pred = np.asarray(model.predict(X), dtype=float)
    y = np.asarray(y, dtype=float)
    metrics["rmse"] = float(skm.root_mean_squared_error(y, pred))
    metrics["mae"] = float(skm.mean_absolute_error(y, pred))
    metrics["r2"] = float(skm.r2_score(y, pred))
    figures["residuals.png"] = Sketch(
        prediction_error_figure, (y, pred), {"kind": "residual_vs_predicted"}
    )
    figures["predicted_vs_true.png"] = Sketch(
        prediction_error_figure, (y, pred), {"kind": "actual_vs_predicted"}
    )
    return {"y_pred": pred}


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
    return {"y_pred": labels}
