"""Metrics per task: the metric a search maximises, and the single test evaluation.

:func:`resolve_metric` turns an experiment's ``metric`` into a scorer that the search
maximises; :func:`needs_labels` says which metrics compare with labels (all but silhouette);
:func:`evaluate` computes the test evaluation's metrics, tables and figures.
"""

import io

import numpy as np

from mlx.evaluation.figures import confusion_figure, residuals_figure
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
    figures["confusion_matrix.png"] = confusion_figure(cm, names)


def _regression(model, X, y, metrics, figures):
    from sklearn import metrics as skm

    pred = np.asarray(model.predict(X), dtype=float)
    y = np.asarray(y, dtype=float)
    metrics["rmse"] = float(skm.root_mean_squared_error(y, pred))
    metrics["mae"] = float(skm.mean_absolute_error(y, pred))
    metrics["r2"] = float(skm.r2_score(y, pred))
    figures["residuals.png"] = residuals_figure(y, pred)


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
