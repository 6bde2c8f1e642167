"""Bootstrap confidence intervals of metrics computed from predictions.

A test split is one sample of the data a model will meet, so its accuracy is an estimate. The
percentile bootstrap redraws the evaluated rows with replacement many times, recomputes the
metric on each redraw and reports the middle ``confidence`` share of those values. Redraws keep
each class's count (stratified) and, when the rows come in groups (clips of one recording,
visits of one patient), draw whole groups: rows of a group are not independent, and drawing them
one by one would make the interval too narrow (a cluster bootstrap).

Each redraw is stored as *counts*, how often each row was drawn. Metrics are computed from
count-weighted sums: confusion counts for classification, contingency counts (classes x
clusters) for clustering, sums of residual powers for regression, score-ordered sums for ROC AUC
and average precision. A chunk of resamples is then a few array operations, with no Python loop
over rows or resamples; a metric given as a function of ``(y_true, y_pred)`` is called once per
resample on the redrawn rows instead.
"""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "METRIC_NAMES",
    "bootstrap_counts",
    "bootstrap_interval",
    "bootstrap_intervals",
    "class_metric",
    "interval_metrics",
    "positive_scores",
    "scorer_interval",
    "scorer_metric",
]

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 1000
# Resamples x rows held at once (int32 counts, then float64 products): about 16-32 MB.
_CHUNK_CELLS = 2**21
# Per-class statistics of a confusion matrix, as in scikit-learn's precision_recall_fscore_support.
_CLASS_KINDS = ("precision", "recall", "f1")


# --- which rows each resample draws ---------------------------------------------------------------
@dataclass
class _Design:
    """Who is drawn: units (rows, or groups of rows) and the strata they are drawn within."""

    n_rows: int
    n_units: int
    unit_of_row: np.ndarray | None  # None: every row is its own unit
    strata: list  # one array of unit indices per stratum

    def chunks(self, n_resamples, rng):
        """Counts of shape (chunk, n_rows): how often each row is drawn in each resample."""
        size = max(1, _CHUNK_CELLS // max(self.n_rows, self.n_units))
        for start in range(0, n_resamples, size):
            b = min(size, n_resamples - start)
            units = np.empty((b, self.n_units), dtype=np.int32)
            for members in self.strata:
                m = len(members)
                # m draws among the m members of the stratum, then counts per member: one
                # bincount over all b resamples (offset b * m), no loop over resamples.
                draws = rng.integers(0, m, size=(b, m)) + (np.arange(b) * m)[:, None]
                units[:, members] = np.bincount(draws.ravel(), minlength=b * m).reshape(b, m)
            yield units if self.unit_of_row is None else units[:, self.unit_of_row]


def _design(n_rows, groups, stratify):
    if n_rows < 1:
        raise ValueError("cannot bootstrap zero rows: the evaluated split is empty.")
    for name, values in (("groups", groups), ("stratify", stratify)):
        if values is not None and len(values) != n_rows:
            raise ValueError(
                f"{name} has {len(values)} entries but there are {n_rows} rows; pass one "
                f"{name} value per evaluated row."
            )
    unit_of_row = None
    if groups is not None:
        unit_of_row = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    n_units = n_rows if unit_of_row is None else int(unit_of_row.max()) + 1
    if stratify is None:
        return _Design(n_rows, n_units, unit_of_row, [np.arange(n_units)])
    stratum = np.unique(np.asarray(stratify), return_inverse=True)[1].ravel()
    if unit_of_row is not None:
        # A group is drawn within its class when all its rows share one; groups that mix
        # classes cannot keep class counts fixed, so then groups are drawn without strata.
        low = np.full(n_units, stratum.max() + 1)
        high = np.full(n_units, -1)
        np.minimum.at(low, unit_of_row, stratum)
        np.maximum.at(high, unit_of_row, stratum)
        if np.any(low != high):
            return _Design(n_rows, n_units, unit_of_row, [np.arange(n_units)])
        stratum = low
    order = np.argsort(stratum, kind="stable")
    bounds = np.flatnonzero(np.diff(stratum[order])) + 1
    return _Design(n_rows, n_units, unit_of_row, np.split(order, bounds))


def _check_settings(n_resamples, confidence):
    if not isinstance(n_resamples, Integral) or isinstance(n_resamples, bool) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}.")
    if not isinstance(confidence, Real) or not 0 < confidence < 1:
        raise ValueError(
            f"confidence must lie strictly between 0 and 1 (0.95 for a 95% interval), got "
            f"{confidence!r}."
        )


def bootstrap_counts(
    n_samples, *, groups=None, stratify=None, n_resamples=DEFAULT_RESAMPLES, random_state=0
):
    """How often each row is drawn in each bootstrap resample.

    Parameters
    ----------
    n_samples : int
        Rows to resample.
    groups : array-like of shape (n_samples,), default=None
        Group of each row. When given, whole groups are drawn with replacement (a cluster
        bootstrap): all rows of a group have the same count in a resample.
    stratify : array-like of shape (n_samples,), default=None
        Stratum (class) of each row. Units are drawn within their stratum, so each stratum
        keeps its number of units. With ``groups``, groups are drawn within their stratum when
        every group lies in one stratum, else without strata.
    n_resamples : int, default=1000
        Number of resamples.
    random_state : int, numpy Generator or None, default=0
        Seed of the draws.

    Returns
    -------
    counts : ndarray of shape (n_resamples, n_samples), dtype int32
        ``counts[b, i]`` is how many times row ``i`` is drawn in resample ``b``.

    Examples
    --------
    >>> counts = bootstrap_counts(6, stratify=[0, 0, 0, 1, 1, 1], n_resamples=4)
    >>> counts.shape, counts[:, :3].sum(axis=1).tolist()
    ((4, 6), [3, 3, 3, 3])
    """
    _check_settings(n_resamples, DEFAULT_CONFIDENCE)
    design = _design(int(n_samples), groups, stratify)
    rng = np.random.default_rng(random_state)
    return np.concatenate(list(design.chunks(n_resamples, rng)))


# --- metrics as functions of count-weighted sums --------------------------------------------------
def _ratio(num, den):
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _class_rates(C):
    """Per-class true positives, true and predicted counts of confusion counts (b, k, k)."""
    tp = np.einsum("bii->bi", C).astype(float)
    return tp, C.sum(axis=2).astype(float), C.sum(axis=1).astype(float)


def _per_class(kind, C):
    tp, true, pred = _class_rates(C)
    if kind == "precision":
        return _ratio(tp, pred)
    if kind == "recall":
        return _ratio(tp, true)
    return _ratio(2 * tp, true + pred)


def _macro(kind):
    def average(C):
        # Over the classes present in the resample (true or predicted), as scikit-learn does on
        # the resampled rows.
        _, true, pred = _class_rates(C)
        present = (true + pred) > 0
        return _ratio((_per_class(kind, C) * present).sum(axis=1), present.sum(axis=1))

    return average


def _weighted(kind):
    def average(C):
        _, true, _ = _class_rates(C)
        return _ratio((_per_class(kind, C) * true).sum(axis=1), true.sum(axis=1))

    return average


def _accuracy(C):
    tp, true, _ = _class_rates(C)
    return tp.sum(axis=1) / true.sum(axis=1)


def _balanced_accuracy(C):
    # Mean recall over the classes that occur in y_true (scikit-learn drops the others).
    tp, true, _ = _class_rates(C)
    return _ratio(_ratio(tp, true).sum(axis=1), (true > 0).sum(axis=1))


def _matthews(C):
    tp, true, pred = _class_rates(C)
    total = true.sum(axis=1)
    cov_true_pred = tp.sum(axis=1) * total - (true * pred).sum(axis=1)
    cov_pred = total**2 - (pred**2).sum(axis=1)
    cov_true = total**2 - (true**2).sum(axis=1)
    # scikit-learn returns 0 when either labelling is constant.
    return _ratio(cov_true_pred, np.sqrt(cov_pred * cov_true))


_CONFUSION = {
    "accuracy": _accuracy,
    "matthews_corrcoef": _matthews,
    "balanced_accuracy": _balanced_accuracy,
    "f1_micro": _accuracy,  # single-label: micro precision = recall = F1 = accuracy
    "precision_micro": _accuracy,
    "recall_micro": _accuracy,
    **{f"{kind}_macro": _macro(kind) for kind in _CLASS_KINDS},
    **{f"{kind}_weighted": _weighted(kind) for kind in _CLASS_KINDS},
}


def _regression_parts(S, m):
    """Weight, mean squared error, mean absolute error and SST per output from sums S."""
    w = S[:, :1]
    sy, syy, sr2, sabs = (S[:, 1 + j * m : 1 + (j + 1) * m] for j in range(4))
    sst = syy - sy**2 / w
    return w, sr2 / w, sabs / w, sr2, sst, syy


def _r2(S, m):
    _, _, _, sse, sst, syy = _regression_parts(S, m)
    # Constant targets in the resample: scikit-learn's force_finite gives 1 (perfect) or 0.
    constant = sst <= 1e-12 * np.maximum(syy, np.finfo(float).tiny)
    r2 = np.where(constant, np.where(sse == 0, 1.0, 0.0), 1 - sse / np.where(constant, 1, sst))
    return r2.mean(axis=1)


def _mse(S, m):
    return _regression_parts(S, m)[1].mean(axis=1)


def _rmse(S, m):
    return np.sqrt(_regression_parts(S, m)[1]).mean(axis=1)


def _mae(S, m):
    return _regression_parts(S, m)[2].mean(axis=1)


_REGRESSION = {
    "r2": _r2,
    "mse": _mse,
    "rmse": _rmse,
    "mae": _mae,
    "neg_mean_squared_error": lambda S, m: -_mse(S, m),
    "neg_root_mean_squared_error": lambda S, m: -_rmse(S, m),
    "neg_mean_absolute_error": lambda S, m: -_mae(S, m),
}


def _roc_auc(P, N):
    """ROC AUC from positive and negative weights per distinct score, highest score first.

    The probability that a positive outscores a negative, ties counting one half.
    """
    p_total, n_total = P.sum(axis=1), N.sum(axis=1)
    below = n_total[:, None] - np.cumsum(N, axis=1)  # negative weight at lower scores
    auc = (P * (below + 0.5 * N)).sum(axis=1) / (p_total * n_total)
    return np.where((p_total > 0) & (n_total > 0), auc, np.nan)


def _average_precision(P, N):
    """Average precision: precision at each threshold weighted by the recall it adds."""
    tps, fps = np.cumsum(P, axis=1), np.cumsum(N, axis=1)
    precision = _ratio(tps, tps + fps)
    p_total = P.sum(axis=1)
    ap = (P * precision).sum(axis=1) / np.where(p_total > 0, p_total, 1)
    return np.where(p_total > 0, ap, np.nan)


_RANKING = {"roc_auc": _roc_auc, "average_precision": _average_precision}


def _pair_counts(C):
    """Pairs of rows (tn, fp, fn, tp) of contingency counts C (b, k, l), as floats.

    ``tp`` counts ordered pairs of distinct rows that share a class and a cluster, ``fp`` pairs
    in one cluster but two classes, ``fn`` the converse (scikit-learn's pair_confusion_matrix).
    """
    C = C.astype(float)
    n = C.sum(axis=(1, 2))
    same_both = (C**2).sum(axis=(1, 2))
    same_class = (C.sum(axis=2) ** 2).sum(axis=1)
    same_cluster = (C.sum(axis=1) ** 2).sum(axis=1)
    fp, fn = same_cluster - same_both, same_class - same_both
    return n**2 - fp - fn - same_both, fp, fn, same_both - n


def _adjusted_rand(C):
    tn, fp, fn, tp = _pair_counts(C)
    agree = (fn == 0) & (fp == 0)  # full agreement: 1, as in scikit-learn
    den = np.where(agree, 1.0, (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    return np.where(agree, 1.0, 2.0 * (tp * tn - fn * fp) / den)


def _xlogx(p):
    """p log p, 0 where p is 0."""
    return p * np.log(np.where(p > 0, p, 1.0))


def _normalized_mutual_info(C):
    # Arithmetic mean of the two entropies as the normaliser, scikit-learn's default.
    C = C.astype(float)
    n = C.sum(axis=(1, 2))[:, None]
    a, b = C.sum(axis=2) / n, C.sum(axis=1) / n
    P = C / n[:, :, None]
    outer = a[:, :, None] * b[:, None, :]
    terms = P * (np.log(np.where(P > 0, P, 1.0)) - np.log(np.where(P > 0, outer, 1.0)))
    terms[np.abs(terms) < np.finfo(float).eps] = 0.0  # as scikit-learn rounds them
    mi = np.clip(terms.sum(axis=(1, 2)), 0.0, None)
    h_true, h_pred = -_xlogx(a).sum(axis=1), -_xlogx(b).sum(axis=1)
    normalizer = (h_true + h_pred) / 2
    nmi = _ratio(mi, normalizer)
    # One class and one cluster in the resample: a perfect match, as in scikit-learn.
    single = ((a > 0).sum(axis=1) == 1) & ((b > 0).sum(axis=1) == 1)
    return np.where(single, 1.0, np.where(mi == 0, 0.0, nmi))


# Clustering metrics of a contingency table (classes x clusters).
_CLUSTERING = {"adjusted_rand": _adjusted_rand, "normalized_mutual_info": _normalized_mutual_info}
# The scikit-learn scorer names of metrics whose name here differs.
_SCORER_NAMES = {
    "adjusted_rand": "adjusted_rand_score",
    "normalized_mutual_info": "normalized_mutual_info_score",
}
# Counts rather than rates: their spread says how many rows were drawn, not how good the model is.
_COUNTS = ("tp", "fp", "tn", "fn", "support")

METRIC_NAMES = tuple(_CONFUSION) + tuple(_REGRESSION) + tuple(_RANKING) + tuple(_CLUSTERING)


@dataclass(frozen=True)
class _ClassMetric:
    kind: str
    label: object


def class_metric(kind, label):
    """The per-class ``kind`` (``"precision"``, ``"recall"`` or ``"f1"``) of class ``label``.

    For :func:`bootstrap_intervals` and :func:`bootstrap_interval`, beside metric names.

    Examples
    --------
    >>> y, pred = [0, 0, 1, 1], [0, 1, 1, 1]
    >>> bootstrap_interval(y, pred, class_metric("recall", 1), stratify=y)
    (1.0, 1.0)
    """
    if kind not in _CLASS_KINDS:
        raise ValueError(f"kind must be one of {_CLASS_KINDS}, got {kind!r}.")
    return _ClassMetric(kind, label)


# --- the statistics of every resample -------------------------------------------------------------
def _column_sums(W, order, starts):
    """Sums of the columns of W (b, n) within runs of ``order`` starting at ``starts``."""
    return np.add.reduceat(W[:, order], starts, axis=1)


class _Pairs:
    """Counts (b, k, l) of each resample's rows by (row code, column code) pair."""

    def __init__(self, rows, columns, shape):
        pair = rows * shape[1] + columns
        self.order = np.argsort(pair, kind="stable")
        pair = pair[self.order]
        self.starts = np.flatnonzero(np.r_[True, np.diff(pair) > 0])
        self.cells, self.shape = pair[self.starts], shape

    def __call__(self, W):
        C = np.zeros((len(W), self.shape[0] * self.shape[1]), dtype=np.int64)
        C[:, self.cells] = _column_sums(W, self.order, self.starts)
        return C.reshape(len(W), *self.shape)


class _Contingency(_Pairs):
    """Contingency counts (b, classes, clusters) of each resample: the labels need not match."""

    def __init__(self, y_true, y_pred):
        classes, rows = np.unique(y_true, return_inverse=True)
        clusters, columns = np.unique(y_pred, return_inverse=True)
        super().__init__(rows.ravel(), columns.ravel(), (len(classes), len(clusters)))


class _Confusion(_Pairs):
    """Confusion counts (b, k, k) of each resample: rows true class, columns predicted."""

    def __init__(self, y_true, y_pred):
        self.labels = np.unique(np.concatenate([y_true, y_pred]))
        k = len(self.labels)
        rows, columns = np.searchsorted(self.labels, y_true), np.searchsorted(self.labels, y_pred)
        super().__init__(rows, columns, (k, k))

    def statistic(self, metric):
        if isinstance(metric, _ClassMetric):
            matches = np.flatnonzero(self.labels == metric.label)
            if matches.size == 0:
                return None
            j = int(matches[0])
            return lambda C: _per_class(metric.kind, C)[:, j]
        return _CONFUSION.get(metric)


class _Sums:
    """Count-weighted sums of targets and residuals (b, 1 + 4 m) for m outputs."""

    def __init__(self, y_true, y_pred):
        y = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
        residual = y - np.asarray(y_pred, dtype=float).reshape(y.shape)
        # Centred targets: SST = sum w y^2 - (sum w y)^2 / sum w loses nothing to a large mean.
        y = y - y.mean(axis=0)
        self.m = y.shape[1]
        self.table = np.column_stack([np.ones(len(y)), y, y**2, residual**2, np.abs(residual)])

    def __call__(self, W):
        return W @ self.table


class _Ranks:
    """Positive and negative weights per distinct score, highest first: (P, N), each (b, u)."""

    def __init__(self, y_true, y_score, pos_label):
        score = np.asarray(y_score, dtype=float).ravel()
        self.positive = (np.asarray(y_true) == pos_label).astype(float)
        self.order = np.argsort(-score, kind="stable")
        self.starts = np.flatnonzero(np.r_[True, np.diff(score[self.order]) != 0])

    def __call__(self, W):
        P = _column_sums(W * self.positive, self.order, self.starts)
        N = _column_sums(W * (1 - self.positive), self.order, self.starts)
        return P, N


def _rows_statistic(func, y_true, y_pred):
    def per_resample(W):
        rows = np.arange(W.shape[1])
        values = np.empty(len(W))
        for b, counts in enumerate(W):
            drawn = np.repeat(rows, counts)
            values[b] = func(y_true[drawn], y_pred[drawn])
        return values

    return per_resample


def _plan(metrics, y_true, y_pred, y_score, pos_label):
    """Per metric name: (source of sums, function of those sums) or the reason to skip it."""
    plans, skipped = {}, {}
    sources = {}

    def source(kind, make):
        if kind not in sources:
            sources[kind] = make()
        return sources[kind]

    for name, metric in metrics.items():
        if callable(metric) and not isinstance(metric, _ClassMetric):
            plans[name] = (None, _rows_statistic(metric, y_true, y_pred))
        elif isinstance(metric, _ClassMetric) or metric in _CONFUSION:
            if y_pred is None:
                skipped[name] = "needs predicted labels"
                continue
            confusion = source("confusion", lambda: _Confusion(y_true, y_pred))
            statistic = confusion.statistic(metric)
            if statistic is None:
                skipped[name] = f"class {metric.label!r} does not occur in y_true or y_pred"
            else:
                plans[name] = (confusion, statistic)
        elif metric in _REGRESSION:
            sums = source("sums", lambda: _Sums(y_true, y_pred))
            plans[name] = (sums, lambda S, f=_REGRESSION[metric], m=sums.m: f(S, m))
        elif metric in _RANKING:
            labels = np.unique(y_true)
            if y_score is None:
                skipped[name] = "needs scores (predict_proba or decision_function)"
            elif np.ndim(y_score) != 1 and np.shape(y_score)[1] != 1:
                skipped[name] = "computed for binary tasks (one score per row) only"
            elif pos_label is None and len(labels) != 2:
                skipped[name] = f"needs two classes in y_true, found {len(labels)}"
            else:
                positive = labels[-1] if pos_label is None else pos_label
                key = ("ranks", positive)
                ranks = source(key, lambda p=positive: _Ranks(y_true, y_score, p))
                plans[name] = (ranks, lambda PN, f=_RANKING[metric]: f(*PN))
        elif metric in _CLUSTERING:
            if y_pred is None:
                skipped[name] = "needs predicted labels"
                continue
            contingency = source("contingency", lambda: _Contingency(y_true, y_pred))
            plans[name] = (contingency, _CLUSTERING[metric])
        elif metric in _COUNTS or str(metric).startswith("support_"):
            skipped[name] = "a count, not a rate: its spread reflects the resample size"
        else:
            skipped[name] = (
                "not a function of (y_true, y_pred) that mlx knows how to resample; pass a "
                "callable (y_true, y_pred) -> float to resample it"
            )
    return plans, skipped


def _percentiles(values, confidence):
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    y_true,
    y_pred,
    metrics,
    *,
    y_score=None,
    pos_label=None,
    groups=None,
    stratify=None,
    n_resamples=DEFAULT_RESAMPLES,
    confidence=DEFAULT_CONFIDENCE,
    random_state=0,
):
    """Percentile bootstrap intervals of several metrics, on the same resamples.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_outputs)
        True labels or targets.
    y_pred : array-like of the same shape, or None
        Predicted labels or values (None when only score-based metrics are asked for).
    metrics : iterable or dict
        Metric names, or a dict from output name to metric. A metric is a name (classification:
        ``accuracy``, ``balanced_accuracy``, ``{precision,recall,f1}_{macro,weighted,micro}``;
        binary scores: ``roc_auc``, ``average_precision``; regression: ``r2``, ``rmse``,
        ``mae``, ``mse`` and their ``neg_*`` scorer names; clustering: ``adjusted_rand``,
        ``normalized_mutual_info``), a :func:`class_metric`, or a callable
        ``(y_true, y_pred) -> float`` (called once per resample).
    y_score : array-like of shape (n_samples,), default=None
        Scores of the positive class (``predict_proba[:, 1]`` or ``decision_function``), for
        ``roc_auc`` and ``average_precision``.
    pos_label : object, default=None
        Positive class of ``y_score``; None takes the greater of the two labels in ``y_true``.
    groups : array-like of shape (n_samples,), default=None
        Group of each row: whole groups are resampled (see :func:`bootstrap_counts`).
    stratify : array-like of shape (n_samples,), default=None
        Stratum of each row (``y_true`` for classification): class counts stay fixed.
    n_resamples : int, default=1000
        Number of resamples.
    confidence : float, default=0.95
        Share of the resampled values between the bounds.
    random_state : int, numpy Generator or None, default=0
        Seed of the resampling.

    Returns
    -------
    intervals : dict
        Metric name -> ``(low, high)``.
    skipped : dict
        Metric name -> why it has no interval (a count such as ``tp``, scores missing, ...).

    Notes
    -----
    With metric values :math:`\\theta^*_1, \\dots, \\theta^*_B` on the resamples and
    :math:`\\alpha = 1 - \\text{confidence}`, the interval is

    .. math:: [\\,q_{\\alpha/2}(\\theta^*),\\; q_{1-\\alpha/2}(\\theta^*)\\,]

    (empirical quantiles, linear interpolation). Resamples on which a metric is undefined
    (ROC AUC without a negative row, say) are left out of its quantiles.

    Examples
    --------
    >>> y = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> pred = [0, 0, 0, 1, 1, 1, 1, 1]
    >>> intervals, skipped = bootstrap_intervals(y, pred, ["accuracy", "tp"], stratify=y)
    >>> [round(v, 3) for v in intervals["accuracy"]], list(skipped)
    ([0.625, 1.0], ['tp'])
    """
    _check_settings(n_resamples, confidence)
    y_true = np.asarray(y_true)
    if y_pred is not None:
        y_pred = np.asarray(y_pred)
        if len(y_pred) != len(y_true):
            raise ValueError(
                f"y_true has {len(y_true)} rows but y_pred has {len(y_pred)}; pass the "
                "predictions of the evaluated rows."
            )
    if y_score is not None and len(y_score) != len(y_true):
        raise ValueError(f"y_true has {len(y_true)} rows but y_score has {len(y_score)}.")
    if not isinstance(metrics, dict):
        metrics = {m if isinstance(m, str) else getattr(m, "__name__", repr(m)): m for m in metrics}
    design = _design(len(y_true), groups, stratify)
    plans, skipped = _plan(metrics, y_true, y_pred, y_score, pos_label)
    values = {name: [] for name in plans}
    rng = np.random.default_rng(random_state)
    for W in design.chunks(n_resamples, rng):
        cache = {}
        for name, (source, statistic) in plans.items():
            if source is None:
                values[name].append(statistic(W))
                continue
            if id(source) not in cache:
                cache[id(source)] = source(W)
            values[name].append(statistic(cache[id(source)]))
    intervals = {}
    for name, parts in values.items():
        interval = _percentiles(np.concatenate(parts), confidence)
        if interval is None:
            skipped[name] = "undefined on every resample"
        else:
            intervals[name] = interval
    return intervals, skipped


def bootstrap_interval(
    y_true,
    y_pred,
    metric,
    *,
    y_score=None,
    pos_label=None,
    groups=None,
    stratify=None,
    n_resamples=DEFAULT_RESAMPLES,
    confidence=DEFAULT_CONFIDENCE,
    random_state=0,
):
    """Percentile bootstrap interval ``(low, high)`` of one metric.

    The parameters are those of :func:`bootstrap_intervals`, with one ``metric``.

    Raises
    ------
    ValueError
        When the metric cannot be resampled from these inputs (the reason is in the message).

    Examples
    --------
    >>> bootstrap_interval([1, 0, 1, 0], [1, 0, 1, 0], "accuracy")
    (1.0, 1.0)
    """
    intervals, skipped = bootstrap_intervals(
        y_true,
        y_pred,
        {"metric": metric},
        y_score=y_score,
        pos_label=pos_label,
        groups=groups,
        stratify=stratify,
        n_resamples=n_resamples,
        confidence=confidence,
        random_state=random_state,
    )
    if skipped:
        raise ValueError(f"no bootstrap interval for metric {metric!r}: {skipped['metric']}.")
    return intervals["metric"]


def interval_metrics(intervals):
    """``{name: (low, high)}`` as flat metrics ``{name_ci_low: low, name_ci_high: high}``."""
    flat = {}
    for name, (low, high) in intervals.items():
        flat[f"{name}_ci_low"] = low
        flat[f"{name}_ci_high"] = high
    return flat


# --- the experiment's own scorer ------------------------------------------------------------------
def scorer_metric(scorer, metric_name=None):
    """How a scorer is resampled: ``(metric, response)`` or ``(None, reason)``.

    ``metric`` is a name of :func:`bootstrap_intervals` when the scorer is scikit-learn's scorer
    of that name, else a callable on ``(y_true, y_pred)`` built from the scorer's score
    function; ``response`` is ``"predict"`` or ``"score"`` (scores of the positive class).
    """
    from sklearn.metrics import get_scorer

    func = getattr(scorer, "_score_func", None)
    method = getattr(scorer, "_response_method", None)
    if func is None or method is None:
        return None, (
            "the scorer is a callable (estimator, X, y): it needs the model and X for each "
            "resample; use a scikit-learn scorer name to get an interval"
        )
    kwargs, sign = dict(getattr(scorer, "_kwargs", {})), getattr(scorer, "_sign", 1)
    by_class = _class_score(func, kwargs, sign)
    if by_class is not None:
        return by_class, "predict"
    candidates = [metric_name] if metric_name in METRIC_NAMES else []
    candidates += [name for name in METRIC_NAMES if name != metric_name]
    for name in candidates:
        try:
            known = get_scorer(_SCORER_NAMES.get(name, name))
        except ValueError:
            continue
        same = known._score_func is func and known._kwargs == kwargs and known._sign == sign
        if same:
            return name, "predict" if name not in _RANKING else "score"
    if method == "predict":

        def metric(y_true, y_pred):
            return sign * func(y_true, y_pred, **kwargs)

        metric.__name__ = func.__name__
        return metric, "predict"
    return None, (
        f"the scorer reads {method} and is resampled only when it is roc_auc or "
        "average_precision on a binary task"
    )


def _class_score(func, kwargs, sign):
    """Precision, recall or F1 with a binary, macro, weighted or micro average, as a metric."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    kind = {precision_score: "precision", recall_score: "recall", f1_score: "f1"}.get(func)
    plain = set(kwargs) <= {"average", "pos_label", "zero_division"}
    zero = kwargs.get("zero_division", "warn") in ("warn", 0)
    if kind is None or sign != 1 or not plain or not zero:
        return None
    average = kwargs.get("average", "binary")
    if average == "binary":
        return class_metric(kind, kwargs.get("pos_label", 1))
    return f"{kind}_{average}" if average in ("macro", "weighted", "micro") else None


def scorer_interval(
    scorer,
    model,
    X,
    y,
    *,
    metric_name=None,
    groups=None,
    stratify=None,
    n_resamples=DEFAULT_RESAMPLES,
    confidence=DEFAULT_CONFIDENCE,
    random_state=0,
):
    """Bootstrap interval of ``scorer(model, X, y)`` from one prediction of ``model``.

    For an experiment's own metric, on the test split or on the validation split of the best
    trial. The model predicts once; the resamples reuse its predictions.

    Parameters
    ----------
    scorer : callable
        A scikit-learn scorer (``get_scorer(name)`` or ``make_scorer(func)`` on predictions);
        scorers on scores are supported for ``roc_auc`` and ``average_precision``.
    model : fitted estimator
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    metric_name : str, default=None
        The metric's name, to prefer the vectorised form of a scikit-learn scorer name.
    groups, stratify, n_resamples, confidence, random_state
        As in :func:`bootstrap_intervals`.

    Returns
    -------
    interval : tuple of float
        ``(low, high)``.

    Raises
    ------
    ValueError
        When the scorer cannot be resampled from predictions (a callable on the model, or one
        on probabilities such as ``neg_log_loss``): the reason is in the message.
    """
    metric, response = scorer_metric(scorer, metric_name)
    if metric is None:
        raise ValueError(f"no bootstrap interval for metric {metric_name!r}: {response}.")
    y_pred = y_score = pos_label = None
    if response == "predict":
        y_pred = model.predict(X)
    else:
        y_score, pos_label = positive_scores(model, X)
        if y_score is None:
            raise ValueError(
                f"no bootstrap interval for metric {metric_name!r}: the model has neither "
                "predict_proba nor decision_function, or more than two classes."
            )
    return bootstrap_interval(
        y,
        y_pred,
        metric,
        y_score=y_score,
        pos_label=pos_label,
        groups=groups,
        stratify=stratify,
        n_resamples=n_resamples,
        confidence=confidence,
        random_state=random_state,
    )


def positive_scores(model, X):
    """Scores of the positive class of a binary classifier and that class, else (None, None).

    The positive class is ``model.classes_[1]``, as in scikit-learn; the score is
    ``decision_function`` when the model has it, else ``predict_proba[:, 1]``.
    """
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) != 2:
        return None, None
    # scikit-learn's roc_auc and average_precision scorers prefer decision_function too.
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X), dtype=float).ravel(), classes[1]
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))[:, 1], classes[1]
    return None, None
