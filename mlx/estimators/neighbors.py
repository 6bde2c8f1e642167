"""Brute-force k-nearest neighbours, chunked: euclidean, manhattan and cosine.

The queries are processed in chunks of rows, so the extra memory is O(chunk_size x n_train)
whatever the number of queries. Each chunk is scored against every training point (one BLAS
product for euclidean and cosine, scipy's ``cdist`` for manhattan) and the k smallest are found
without sorting whole rows (:func:`_search_euclidean`, :func:`_k_smallest`).
"""

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.distance import cdist
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MultiOutputMixin,
    RegressorMixin,
    _fit_context,
)
from sklearn.exceptions import DataConversionWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mlx.estimators._threads import single_threaded_blas

# Scores held per chunk when chunk_size=None: 4 Mi entries, 32 MiB in float64.
_AUTO_CHUNK_ENTRIES = 2**22

# --- metrics ---------------------------------------------------------------------------------
# Each metric has a `prepare` step, run once on the training points at fit time, and a `search`
# step: (queries chunk, prepared, k, exclude) -> (distances, indices) of the k nearest, where
# `exclude` is None or, for each query row, the training index it must not return (itself).

# Unit roundoff of float32, the precision of the euclidean first pass.
_FLOAT32_ROUNDOFF = 2.0**-24
# Score of the padding columns of the euclidean first pass: never among the nearest.
_FAR = 1e30
# Candidate blocks per query and neighbour beyond which the first pass gives up (see below).
_MAX_CANDIDATE_BLOCKS = 4
# Distances beyond this would overflow float64 once squared (sqrt of the largest float64 is
# ~1.3e154): the search would rank NaN and inf.
_MAX_EUCLIDEAN_REACH = 1e150


def _check_reach(reach, what):
    if not reach < _MAX_EUCLIDEAN_REACH:
        raise ValueError(
            f"{what} are too far apart for euclidean distances in float64 (spread {reach:.3g}, "
            f"the limit is {_MAX_EUCLIDEAN_REACH:.0e}); scale the features (StandardScaler in a "
            f"Pipeline) or use metric='manhattan' or 'cosine'."
        )


def _prepare_euclidean(X, n_neighbors):
    n, d = X.shape
    centre = X.mean(axis=0, dtype=np.float64)
    Xc = X - centre
    squared = np.einsum("ij,ij->i", Xc, Xc)
    # Centred and scaled into the unit ball: float32 then neither overflows nor underflows,
    # and the error bound of the first pass takes a simple form.
    radius = float(np.sqrt(squared.max())) or 1.0
    _check_reach(radius, "the training points")
    block = max(1, math.isqrt(n // max(n_neighbors, 1)))
    n_blocks = -(-n // block)
    # Augmented matrix [x, |x|^2]: one GEMM with [-2q, 1] gives |x|^2 - 2 q.x, which ranks the
    # training points like |q - x|^2 does. Padded to n_blocks * block rows that score _FAR.
    augmented = np.zeros((n_blocks * block, d + 1), dtype=np.float32)
    augmented[:n, :d] = Xc / radius
    augmented[:n, d] = squared / radius**2
    augmented[n:, d] = _FAR
    return {"X": X, "centre": centre, "radius": radius, "augmented": augmented, "blocks": n_blocks}


def _search_euclidean(Q, prep, k, exclude):
    """Two passes: float32 scores with a rigorous error bound, then exact float64 distances.

    The float32 GEMM (twice as fast as float64) keeps every training point whose score could be,
    within its error bound, among the k smallest; those few candidates are then ranked by their
    distances computed from differences in float64. The result is the exact float64 answer,
    ties ordered by training index, and exact duplicates are at distance 0.
    """
    X, augmented, n_blocks = prep["X"], prep["augmented"], prep["blocks"]
    n, d = X.shape
    m = Q.shape[0]
    block = augmented.shape[0] // n_blocks
    Q64 = np.asarray(Q, dtype=np.float64)
    offset = np.abs(Q64 - prep["centre"]).max(initial=0)
    _check_reach(offset * math.sqrt(d) + prep["radius"], "the queries and the training points")
    Qs = (Q64 - prep["centre"]) / prep["radius"]
    q_norm = np.sqrt(np.einsum("ij,ij->i", Qs, Qs))
    # Far-away queries would overflow float32: their chunk is scored in float64 (rare).
    dtype = np.float32 if q_norm.max(initial=0) < 1e15 else np.float64
    Qa = np.empty((m, d + 1), dtype=dtype)
    np.multiply(Qs, -2, out=Qa[:, :d], casting="unsafe")
    Qa[:, d] = 1
    scores = Qa @ augmented.T.astype(dtype, copy=False)
    if exclude is not None:
        scores[np.arange(m), exclude] = np.inf
    # Rounding of both factors and of the K-term accumulation, with the norms <= 1 and |q|.
    bound = 2 * (d + 5) * _FLOAT32_ROUNDOFF * (1 + 2 * q_norm)
    # Column b + n_blocks * i is in block b: the block minima are then an elementwise minimum
    # over contiguous rows, which numpy vectorises (a reduction along short rows it does not).
    block_min = scores.reshape(m, block, n_blocks).min(axis=1)
    if n_blocks >= k:
        # k distinct blocks have minima <= this, so the k-th smallest score is <= it too.
        kth_upper = np.partition(block_min, k - 1, axis=1)[:, k - 1]
    else:
        kth_upper = np.partition(scores[:, :n], k - 1, axis=1)[:, k - 1]
    threshold = kth_upper.astype(np.float64) + 2 * bound
    rows, blocks = np.nonzero(block_min <= threshold[:, None])
    if rows.size > _MAX_CANDIDATE_BLOCKS * k * m:
        # The bound cannot separate the points (heaps of duplicates, or an outlier that makes
        # the other points tiny in the unit ball): rank by float64 scores instead.
        return _search_euclidean_float64(Q64, prep, k, exclude)
    columns = blocks[:, None] + n_blocks * np.arange(block)
    keep = (scores[rows[:, None], columns] <= threshold[rows, None]) & (columns < n)
    if exclude is not None:
        keep &= columns != exclude[rows, None]
    cand_row = np.broadcast_to(rows[:, None], columns.shape)[keep]
    cand_col = columns[keep]
    squared = _squared_distances(Q64, X, cand_row, cand_col)
    order = np.lexsort((cand_col, squared, cand_row))
    counts = np.bincount(cand_row, minlength=m)
    first = np.cumsum(counts) - counts
    chosen = order[first[:, None] + np.arange(k)]
    return np.sqrt(squared[chosen]), cand_col[chosen]


def _squared_distances(Q64, X, rows, columns):
    """``|Q64[rows] - X[columns]|^2`` from differences, in float64, a bounded batch at a time."""
    squared = np.empty(rows.shape[0])
    step = max(1, _AUTO_CHUNK_ENTRIES // X.shape[1])
    for lo in range(0, rows.shape[0], step):
        diff = Q64[rows[lo : lo + step]] - X[columns[lo : lo + step]]
        squared[lo : lo + step] = np.einsum("ij,ij->i", diff, diff)
    return squared


def _search_euclidean_float64(Q64, prep, k, exclude):
    """The fallback of :func:`_search_euclidean`: float64 expansion scores, ranked as they are."""
    Xc = prep["X"] - prep["centre"]
    scores = (-2 * (Q64 - prep["centre"])) @ Xc.T + np.einsum("ij,ij->i", Xc, Xc)
    m = Q64.shape[0]
    if exclude is not None:
        scores[np.arange(m), exclude] = np.inf
    ind = _k_smallest(scores, k)
    rows = np.repeat(np.arange(m), k)
    squared = _squared_distances(Q64, prep["X"], rows, ind.ravel()).reshape(m, k)
    return np.sqrt(squared), ind


def _search_by_scores(scores_of, distances_of):
    """A search that ranks full rows of scores (smaller is nearer) for metrics without a bound."""

    def search(Q, prep, k, exclude):
        scores = scores_of(Q, prep)
        if exclude is not None:
            scores[np.arange(Q.shape[0]), exclude] = np.inf
        ind = _k_smallest(scores, k)
        return distances_of(np.take_along_axis(scores, ind, axis=1)), ind

    return search


def _prepare_cosine(X, _n_neighbors=None):
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    # A zero vector stays zero: its cosine similarity to anything is 0, its distance 1
    # (scikit-learn's convention).
    norms[norms == 0] = 1
    return {"unit": X / norms[:, None]}


def _prepare_manhattan(X, _n_neighbors=None):
    # cdist works in float64 on C-contiguous arrays: convert the training points once.
    return {"X": np.ascontiguousarray(X, dtype=np.float64)}


_METRICS = {
    "euclidean": (_prepare_euclidean, _search_euclidean),
    "manhattan": (
        _prepare_manhattan,
        _search_by_scores(
            lambda Q, prep: cdist(np.asarray(Q, dtype=np.float64), prep["X"], metric="cityblock"),
            lambda scores: scores,
        ),
    ),
    "cosine": (
        _prepare_cosine,
        _search_by_scores(
            lambda Q, prep: -(_prepare_cosine(Q)["unit"] @ prep["unit"].T),
            lambda scores: np.clip(1 + scores, 0, 2),
        ),
    ),
}


# --- selection -------------------------------------------------------------------------------


def _k_smallest(scores, k):
    """Columns of the ``k`` smallest entries of each row, ordered by (score, column index).

    Block-min pruning: cut each row into blocks; the k smallest entries lie in the k blocks with
    the smallest minimum (any other block's minimum is at least the k-th smallest value), so
    only those k blocks are sorted. A row where a block left out ties the k-th value exactly is
    redone by a full stable sort, which keeps ties broken by column index.
    """
    m, n = scores.shape
    block = max(16, int(np.sqrt(n / k)))
    if n <= 4 * k * block:
        return np.argsort(scores, axis=1, kind="stable")[:, :k]
    starts = np.arange(0, n, block)
    block_min = np.minimum.reduceat(scores, starts, axis=1)
    chosen = np.argpartition(block_min, k - 1, axis=1)[:, :k]
    chosen.sort(axis=1)
    candidates = (starts[chosen][:, :, None] + np.arange(block)).reshape(m, k * block)
    beyond = candidates >= n
    np.minimum(candidates, n - 1, out=candidates)
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    candidate_scores[beyond] = np.inf
    order = np.argsort(candidate_scores, axis=1, kind="stable")[:, :k]
    result = np.take_along_axis(candidates, order, axis=1)
    kth = np.take_along_axis(candidate_scores, order[:, -1:], axis=1)
    tied_outside = (block_min <= kth).sum(axis=1) > (
        np.take_along_axis(block_min, chosen, axis=1) <= kth
    ).sum(axis=1)
    rows = np.flatnonzero(tied_outside)
    if rows.size:
        result[rows] = np.argsort(scores[rows], axis=1, kind="stable")[:, :k]
    return result


def _n_threads(n_jobs):
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n_jobs is None or n_jobs == -1:
        return max(1, available or 1)
    if n_jobs < 0:
        return max(1, (available or 1) + 1 + n_jobs)
    return n_jobs


def _distance_weights(dist):
    """Inverse distances; a query with exact matches gives them all the weight (as scikit-learn)."""
    with np.errstate(divide="ignore"):
        weights = 1.0 / dist
    exact = np.isinf(weights)
    has_exact = exact.any(axis=1)
    weights[has_exact] = exact[has_exact]
    return weights


# --- estimators ------------------------------------------------------------------------------


class _KNeighborsBase(MultiOutputMixin, BaseEstimator):
    """Storage of the training points and the chunked neighbour search shared by both tasks."""

    _parameter_constraints = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "weights": [StrOptions({"uniform", "distance"})],
        "metric": [StrOptions(set(_METRICS))],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self, n_neighbors=5, *, weights="uniform", metric="euclidean", chunk_size=None, n_jobs=None
    ):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.metric = metric
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs

    def _fit_X_y(self, X, y, y_numeric) -> NDArray[Any]:
        X, y = validate_data(
            self,
            X,
            y,
            dtype=[np.float64, np.float32],
            order="C",
            multi_output=True,
            y_numeric=y_numeric,
        )
        if self.n_jobs == 0:
            raise ValueError("n_jobs=0 is not allowed: use None, -1 or a positive number.")
        self._fit_X = X
        self._fit_prep = _METRICS[self.metric][0](X, self.n_neighbors)
        self.n_samples_fit_ = X.shape[0]
        return y

    def kneighbors(
        self,
        X: ArrayLike | None = None,
        n_neighbors: int | None = None,
        return_distance: bool = True,
    ) -> tuple[NDArray[np.floating[Any]], NDArray[np.intp]] | NDArray[np.intp]:
        """Find the k nearest training points of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            The queries. If None, the neighbours of every training point are returned, each
            point excluded from its own neighbours.
        n_neighbors : int, default=None
            Number of neighbours; defaults to the ``n_neighbors`` given at construction.
        return_distance : bool, default=True
            Whether to return the distances as well.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors)
            Distances to the neighbours, nearest first; only if ``return_distance=True``.
        neigh_ind : ndarray of shape (n_queries, n_neighbors)
            Indices of the neighbours in the training set. Equal distances are ordered by
            training index.
        """
        check_is_fitted(self)
        if X is not None:
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], order="C")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if not isinstance(k, Integral) or isinstance(k, bool) or k <= 0:
            raise ValueError(f"n_neighbors must be a positive integer, got n_neighbors={k!r}.")
        result = self._kneighbors(X, int(k), return_distance)
        if not return_distance:
            return result
        dist, ind = result
        return dist.astype(self._fit_X.dtype, copy=False), ind

    def _kneighbors(self, X, k, return_distance):
        exclude_self = X is None
        queries = self._fit_X if exclude_self else X
        n_fit = self.n_samples_fit_
        n_available = n_fit - 1 if exclude_self else n_fit
        if k > n_available:
            relation = "<" if exclude_self else "<="
            raise ValueError(
                f"Expected n_neighbors {relation} n_samples_fit, but n_neighbors = {k}, "
                f"n_samples_fit = {n_fit}, n_samples = {queries.shape[0]}."
            )
        m = queries.shape[0]
        n_threads = min(_n_threads(self.n_jobs), max(1, m))
        rows = self.chunk_size or max(1, _AUTO_CHUNK_ENTRIES // n_fit)
        rows = min(rows, -(-m // n_threads))
        starts = range(0, m, rows)

        def search(start):
            return self._kneighbors_chunk(queries[start : start + rows], start, k, exclude_self)

        if n_threads == 1 or len(starts) == 1:
            parts = [search(start) for start in starts]
        else:
            # Two Python threads each running a one-thread BLAS beat one BLAS running two: the
            # selection between products is numpy code that a threaded BLAS leaves single-core.
            with (
                single_threaded_blas(),
                ThreadPoolExecutor(n_threads) as pool,
            ):
                parts = list(pool.map(search, starts))
        dist = np.concatenate([p[0] for p in parts])
        ind = np.concatenate([p[1] for p in parts])
        return (dist, ind) if return_distance else ind

    def _kneighbors_chunk(self, Q, start, k, exclude_self):
        search = _METRICS[self.metric][1]
        exclude = start + np.arange(Q.shape[0]) if exclude_self else None
        dist, ind = search(Q, self._fit_prep, k, exclude)
        # Exact distances decide the final order; equal ones are ordered by training index.
        order = np.lexsort((ind, dist), axis=-1)
        return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ind, order, axis=1)

    def _neighbour_weights(self, X):
        """Neighbour indices and their weights (None for uniform) for predict."""
        check_is_fitted(self)
        if X is not None:
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], order="C")
        if self.weights == "uniform":
            return self._kneighbors(X, self.n_neighbors, return_distance=False), None
        dist, ind = self._kneighbors(X, self.n_neighbors, return_distance=True)
        return ind, _distance_weights(np.asarray(dist, dtype=np.float64))


_COMMON_PARAMETERS_DOC = """
    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbours consulted for each query.
    weights : {"uniform", "distance"}, default="uniform"
        "uniform": every neighbour counts the same. "distance": a neighbour counts by the inverse
        of its distance; when a query coincides with training points (distance 0), those points
        get all the weight (scikit-learn's rule).
    metric : {"euclidean", "manhattan", "cosine"}, default="euclidean"
        Distance between points. Cosine distance is ``1 - cos(q, x)``; a zero vector has cosine
        similarity 0 to everything, so distance 1 (scikit-learn's convention).
    chunk_size : int, default=None
        Queries scored at once; the extra memory is about ``chunk_size * n_train`` floats.
        None chooses it so that a chunk holds about 4 million scores (32 MiB in float64).
    n_jobs : int, default=None
        Threads that search chunks in parallel (each with a one-thread BLAS). None and -1 use
        every available core (unlike scikit-learn, where None means 1); -2 all but one.
"""

_COMMON_NOTES_DOC = """
    Notes
    -----
    Brute force, one chunk of queries at a time against every training point.

    Euclidean runs in two passes. The first ranks the training points by
    :math:`\\lVert x\\rVert^2 - 2 q \\cdot x`, one float32 matrix product of :math:`[-2q, 1]`
    with :math:`[x, \\lVert x\\rVert^2]` (data centred and scaled into the unit ball at fit time),
    and keeps every point that could be among the k nearest given a rigorous bound on the
    float32 rounding error. The second computes the distances of those few candidates from
    differences in float64 and ranks them. The answer is therefore the exact float64 one, for
    float32 and float64 input alike, and an exact duplicate is at distance 0. Cosine is one
    matrix product of unit vectors; manhattan is scipy's ``cdist``. Their k smallest scores per
    row come from block-min pruning (only the k blocks with the smallest minimum can hold
    them), so rows are never sorted whole.

    Equal distances are ordered by training index. Distances are returned in the dtype of the
    training data.
"""


class KNeighborsClassifier(ClassifierMixin, _KNeighborsBase):
    __doc__ = (
        """Classifier voting among the k nearest training points.
"""
        + _COMMON_PARAMETERS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,) or list of such arrays
        Class labels (any sortable labels: strings, integers, ...); one array per output when
        ``y`` has several columns.
    n_samples_fit_ : int
        Number of training points.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.
    outputs_2d_ : bool
        Whether ``y`` had several columns at fit time.

    See Also
    --------
    KNeighborsRegressor : The same search, averaging the neighbours' targets.
"""
        + _COMMON_NOTES_DOC
        + """
    Examples
    --------
    >>> from mlx.estimators import KNeighborsClassifier
    >>> X = [[0.0], [1.0], [2.0], [3.0]]
    >>> y = ["a", "a", "b", "b"]
    >>> clf = KNeighborsClassifier(n_neighbors=3).fit(X, y)
    >>> clf.predict([[1.1]])
    array(['a'], dtype='<U1')
    >>> clf.predict_proba([[0.9]]).round(3)
    array([[0.667, 0.333]])
"""
    )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Store the training points and encode the labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels.

        Returns
        -------
        self : KNeighborsClassifier
            The fitted classifier.
        """
        y = self._fit_X_y(X, y, y_numeric=False)
        columns = y.reshape(y.shape[0], -1).T
        # Column by column: the outputs may hold labels of different types (a DataFrame).
        for column in columns:
            check_classification_targets(column)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the "
                "shape of y to (n_samples,), for example using ravel().",
                DataConversionWarning,
                stacklevel=3,  # past the _fit_context wrapper, to the caller
            )
        self.outputs_2d_ = y.ndim == 2 and y.shape[1] > 1
        encoded = [np.unique(column, return_inverse=True) for column in columns]
        classes = [c for c, _ in encoded]
        self._y = np.stack([codes for _, codes in encoded], axis=1)
        self.classes_ = classes if self.outputs_2d_ else classes[0]
        return self

    def predict_proba(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Share of the (weighted) neighbour votes that each class gets.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or None
            Queries; None means the training points, each excluded from its own neighbours.

        Returns
        -------
        proba : ndarray of shape (n_queries, n_classes) or list of such arrays
            Columns ordered as ``classes_``; one array per output for multi-output ``y``.
        """
        proba = self._votes(X)
        return proba if self.outputs_2d_ else proba[0]

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Class with the largest (weighted) vote; ties go to the first class in ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or None
            Queries; None means the training points, each excluded from its own neighbours.

        Returns
        -------
        y : ndarray of shape (n_queries,) or (n_queries, n_outputs)
            Predicted labels.
        """
        votes = self._votes(X)
        classes = self.classes_ if self.outputs_2d_ else [self.classes_]
        columns = [c[v.argmax(axis=1)] for c, v in zip(classes, votes, strict=True)]
        return np.stack(columns, axis=1) if self.outputs_2d_ else columns[0]

    def _votes(self, X):
        ind, weights = self._neighbour_weights(X)
        m, k = ind.shape
        classes = self.classes_ if self.outputs_2d_ else [self.classes_]
        flat_weights = None if weights is None else weights.ravel()
        proba = []
        for output, output_classes in enumerate(classes):
            n_classes = len(output_classes)
            # Votes of every query at once: bincount over (query, class) pairs.
            cells = (np.arange(m)[:, None] * n_classes + self._y[ind, output]).ravel()
            votes = np.bincount(cells, weights=flat_weights, minlength=m * n_classes)
            votes = votes.reshape(m, n_classes).astype(np.float64)
            total = votes.sum(axis=1, keepdims=True)
            total[total == 0] = 1
            proba.append(votes / total)
        return proba

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class KNeighborsRegressor(RegressorMixin, _KNeighborsBase):
    __doc__ = (
        """Regression by averaging the targets of the k nearest training points.
"""
        + _COMMON_PARAMETERS_DOC
        + """
    Attributes
    ----------
    n_samples_fit_ : int
        Number of training points.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    KNeighborsClassifier : The same search, voting among the neighbours' labels.
"""
        + _COMMON_NOTES_DOC
        + """
    Examples
    --------
    >>> from mlx.estimators import KNeighborsRegressor
    >>> X = [[0.0], [1.0], [2.0], [3.0]]
    >>> y = [0.0, 1.0, 4.0, 9.0]
    >>> reg = KNeighborsRegressor(n_neighbors=2).fit(X, y)
    >>> reg.predict([[1.4]])
    array([2.5])
    >>> KNeighborsRegressor(n_neighbors=2, weights="distance").fit(X, y).predict([[2.0]])
    array([4.])
"""
    )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Store the training points and targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.

        Returns
        -------
        self : KNeighborsRegressor
            The fitted regressor.
        """
        y = self._fit_X_y(X, y, y_numeric=True)
        self._y_1d = y.ndim == 1
        dtype = np.float32 if y.dtype == np.float32 else np.float64
        self._y = np.asarray(y, dtype=dtype).reshape(y.shape[0], -1)
        return self

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Mean of the neighbours' targets (weighted by inverse distance if asked).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or None
            Queries; None means the training points, each excluded from its own neighbours.

        Returns
        -------
        y : ndarray of shape (n_queries,) or (n_queries, n_targets)
            Predictions, shaped like the ``y`` given to fit.
        """
        ind, weights = self._neighbour_weights(X)
        neighbour_y = self._y[ind]
        if weights is None:
            pred = neighbour_y.mean(axis=1)
        else:
            pred = np.einsum("ij,ijk->ik", weights, neighbour_y) / weights.sum(axis=1)[:, None]
        return pred[:, 0] if self._y_1d else pred
