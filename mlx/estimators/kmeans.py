"""k-means clustering: Lloyd iterations on BLAS distances, k-means++ seeding, and choosing k."""

import math
import warnings
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from mlx.estimators._threads import single_threaded_blas

__all__ = ["KMeans", "KSelection", "select_k"]

# Elements of one (n_clusters, rows) block of squared distances: 64 Ki float64 values (512 KiB)
# stay in cache while the block is reduced, and bound the extra memory of an assignment pass.
_BLOCK_ELEMENTS = 1 << 16


def _check_distances(largest, dtype, what):
    """Refuse points whose squared distances overflow ``dtype`` (inf, or NaN from inf - inf).

    The labels would be an arbitrary choice among such distances. ``largest`` bounds the
    squared distances (or is one); it is checked once per call, not per element.
    """
    if not largest < np.finfo(dtype).max:
        raise ValueError(
            f"{what} are too far apart for squared distances in {np.dtype(dtype)} (largest "
            f"{largest:.3g}); scale the features (StandardScaler in a Pipeline)."
        )


def _squared_norms(X):
    return np.einsum("ij,ij->i", X, X)


def _working_data(X):
    """The data to cluster, its squared row norms, the shift taken off, and the total variance.

    Rounding in ||x||^2 - 2 x.c + ||c||^2 grows with ||x||^2, so data whose mean lies far from
    the origin compared with their spread are centred (a copy). Data whose mean is within
    their spread are used as they are: centring would at most halve the rounding error, and
    costs a copy and a pass.
    """
    n = X.shape[0]
    # A matrix-vector product is faster than the mean reduction, and any shift would do.
    mean = (np.ones(n, dtype=X.dtype) @ X) / n
    x_sq = _squared_norms(X)
    mean_sq = float(mean @ mean)
    spread = float(x_sq.mean(dtype=np.float64)) - mean_sq
    if mean_sq <= spread:
        return X, x_sq, np.zeros_like(mean), spread
    X, x_sq = _centred(X, mean)
    return X, x_sq, mean, float(x_sq.mean(dtype=np.float64))


def _centred(X, mean):
    """``X - mean`` as a new array and its squared row norms, in one pass over cached chunks."""
    centred = np.empty_like(X)
    x_sq = np.empty(X.shape[0], dtype=X.dtype)
    rows = max(1, _BLOCK_ELEMENTS // X.shape[1])
    for start in range(0, X.shape[0], rows):
        chunk = np.subtract(X[start : start + rows], mean, out=centred[start : start + rows])
        np.einsum("ij,ij->i", chunk, chunk, out=x_sq[start : start + rows])
    return centred, x_sq


def _squared_distances(A, a_sq, B, b_sq):
    """Squared distances of shape (len(A), len(B)) as ||a||^2 - 2 a.b + ||b||^2 (one GEMM)."""
    D = A @ B.T
    D *= -2.0
    D += a_sq[:, None]
    D += b_sq[None, :]
    # Rounding can push the distance of (nearly) equal points slightly below zero.
    return np.maximum(D, 0.0, out=D)


def _nearest(X, centers, x_sq=None):
    """Index of the nearest centre of each row of X (int32) and its squared distance (float64).

    Distances are computed block by block in a (n_clusters, rows) layout, so that the
    reduction over centres runs along the short axis of contiguous rows. The minimum and its
    index come out of one integer ``min``: a non-negative float64 orders like its bit pattern
    read as an int64, so the lowest bits of each distance are overwritten with the centre's
    index before the reduction (a relative change below 2**-40 for up to 4096 centres; the
    few rounding-negative distances stand for zero and still sort below every positive one).
    Squared row norms ``x_sq`` are computed per block when not given.
    """
    n, k = X.shape[0], centers.shape[0]
    low = (1 << (k - 1).bit_length()) - 1
    index = np.arange(k, dtype=np.int64)[:, None]
    minus_2c = -2.0 * centers
    c_sq = _squared_norms(centers)[:, None]
    rows = min(n, max(1, _BLOCK_ELEMENTS // k))
    block = np.empty(k * rows, dtype=np.float64)
    # float32 data: the GEMM runs in float32, its result is widened before the bit trick.
    narrow = None if X.dtype == np.float64 else np.empty(k * rows, dtype=X.dtype)
    best = np.empty(n, dtype=np.int64)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        size = k * (stop - start)
        dist = block[:size].reshape(k, stop - start)
        if narrow is None:
            np.matmul(minus_2c, X[start:stop].T, out=dist)
        else:
            gemm = narrow[:size].reshape(k, stop - start)
            np.matmul(minus_2c, X[start:stop].T, out=gemm)
            dist[...] = gemm
        dist += c_sq
        dist += _squared_norms(X[start:stop]) if x_sq is None else x_sq[start:stop]
        tagged = dist.view(np.int64)
        tagged &= ~low
        tagged |= index
        np.min(tagged, axis=0, out=best[start:stop])
    labels = (best & low).astype(np.int32)
    best &= ~low
    min_sq = np.maximum(best.view(np.float64), 0.0)
    return labels, min_sq


def _inertia(X, centers, labels):
    """Sum of squared distances of the rows of X to their assigned centre, exactly, in chunks."""
    rows = max(1, _BLOCK_ELEMENTS // X.shape[1])
    total = 0.0
    for start in range(0, X.shape[0], rows):
        diff = X[start : start + rows] - centers[labels[start : start + rows]]
        total += float(np.vdot(diff, diff))
    return total


def _cluster_sums(X, labels, n_clusters):
    """Per-cluster sums of the rows of X through a one-hot (n_clusters, n_samples) CSC matrix.

    One non-zero per column means the column pointers are simply 0..n and the row indices are
    the labels: no sorting, and scipy's sparse-dense product does the accumulation.
    """
    n = X.shape[0]
    one_hot = sp.csc_array(
        (np.ones(n, dtype=X.dtype), labels, np.arange(n + 1, dtype=labels.dtype)),
        shape=(n_clusters, n),
    )
    return one_hot @ X


def _reseed_empty(X, labels, min_sq, sums, counts):
    """Give each empty cluster one of the points farthest from their centre (in place).

    Returns whether any cluster was empty.
    """
    empty = np.flatnonzero(counts == 0)
    if empty.size == 0:
        return False
    farthest = np.argpartition(min_sq, -empty.size)[-empty.size :]
    # Farthest first, ties by index, so that the outcome does not depend on argpartition.
    farthest = farthest[np.lexsort((farthest, -min_sq[farthest]))]
    donors = labels[farthest]
    np.subtract.at(sums, donors, X[farthest])
    np.subtract.at(counts, donors, 1)
    sums[empty] = X[farthest]
    counts[empty] = 1
    labels[farthest] = empty
    min_sq[farthest] = 0.0
    return True


def _lloyd(X, x_sq, centers, max_iter, tol):
    """One run of Lloyd's algorithm from ``centers``.

    Stops when the nearest-centre labels no longer change (and no cluster was empty), or when
    the squared centre shift summed over clusters is at most ``tol`` (then the labels are
    recomputed for the final centres, so that they always agree with ``predict``).
    Returns ``(centers, labels, inertia, n_iter)``; the inertia sums the squared distances of
    the last assignment (``fit`` centres X where the expansion would lose much to rounding).
    """
    n_clusters = centers.shape[0]
    previous = None
    for n_iter in range(1, max_iter + 1):
        labels, min_sq = _nearest(X, centers, x_sq)
        sums = _cluster_sums(X, labels, n_clusters)
        counts = np.bincount(labels, minlength=n_clusters)
        reseeded = _reseed_empty(X, labels, min_sq, sums, counts)
        new_centers = centers.copy()
        # A cluster emptied by lending its point to an empty one keeps its centre.
        np.divide(sums, counts[:, None], out=new_centers, where=counts[:, None] > 0)
        shift = float(np.sum((new_centers - centers) ** 2))
        centers = new_centers
        if not reseeded and previous is not None and np.array_equal(labels, previous):
            # Same labels, so the new centres equal the ones these labels were computed for.
            return centers, labels, float(min_sq.sum()), n_iter
        if shift <= tol:
            break
        previous = labels
    labels, min_sq = _nearest(X, centers, x_sq)
    return centers, labels, float(min_sq.sum()), n_iter


def _closest_with_candidates(X, x_sq, candidates, closest):
    """For each candidate row index, the squared distance of every row of X to its nearest
    centre if the candidate joined the centres (``closest`` holds the current ones), and the
    sum of these distances (the potential). Blocks of rows are reduced while in cache."""
    n, n_cand = X.shape[0], candidates.size
    minus_2p = -2.0 * X[candidates]
    p_sq = x_sq[candidates][:, None]
    out = np.empty((n_cand, n), dtype=X.dtype)
    potentials = np.zeros(n_cand)
    rows = min(n, max(1, _BLOCK_ELEMENTS // n_cand))
    block = np.empty(n_cand * rows, dtype=X.dtype)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        dist = block[: n_cand * (stop - start)].reshape(n_cand, stop - start)
        np.matmul(minus_2p, X[start:stop].T, out=dist)
        dist += p_sq
        dist += x_sq[start:stop]
        np.minimum(dist, closest[start:stop], out=out[:, start:stop])
        potentials += out[:, start:stop].sum(axis=1, dtype=np.float64)
    return out, potentials


def _kmeans_plusplus(X, x_sq, n_clusters, rng):
    """Greedy k-means++ seeding: each new centre is the best of ``2 + log(k)`` D^2 draws."""
    n = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    chosen = np.empty(n_clusters, dtype=np.intp)
    candidates = np.array([rng.randint(n)])
    closest = np.full(n, np.inf, dtype=X.dtype)
    for c in range(n_clusters):
        if c > 0:
            cumulative = np.cumsum(closest, dtype=np.float64)
            # Draws in [0, total) land on a row with probability proportional to its distance.
            draws = rng.uniform(size=n_trials) * cumulative[-1]
            candidates = np.searchsorted(cumulative, draws)
        dist, potentials = _closest_with_candidates(X, x_sq, candidates, closest)
        best = int(np.argmin(potentials))
        # Rounding can leave tiny negative distances; the draws need a non-decreasing cumsum.
        closest = np.maximum(dist[best], 0.0)
        chosen[c] = candidates[best]
    return X[chosen]


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """K-means clustering by Lloyd's algorithm, written in numpy.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (centres) to form.

    init : {"k-means++", "random"} or array-like of shape (n_clusters, n_features), \
            default="k-means++"
        How the centres start: ``"k-means++"`` draws them greedily with probability
        proportional to the squared distance to the centres chosen so far (the best of
        ``2 + log(n_clusters)`` draws each time); ``"random"`` takes ``n_clusters`` distinct
        rows of ``X``; an array gives the starting centres.

    n_init : "auto" or int, default="auto"
        Number of runs from different starts; the run with the lowest inertia is kept.
        ``"auto"`` means 10 runs for ``init="random"`` and 1 otherwise. An explicit array
        ``init`` always gives one run.

    max_iter : int, default=300
        Maximum number of Lloyd iterations of one run.

    tol : float, default=1e-4
        A run stops when the squared shift of the centres, summed over clusters, is at most
        ``tol`` times the mean variance of the features (or when no label changes).

    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation; an int gives the same result on every call.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres of the clusters.

    labels_ : ndarray of shape (n_samples,)
        Cluster index of each training sample.

    inertia_ : float
        Sum of squared distances of the training samples to their centre.

    n_iter_ : int
        Number of Lloyd iterations of the kept run.

    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during :meth:`fit`, when ``X`` has string column names.

    See Also
    --------
    select_k : Choose ``n_clusters`` by silhouette or by the elbow of the inertia curve.
    sklearn.cluster.KMeans : scikit-learn's compiled implementation.

    Notes
    -----
    Each iteration assigns every sample to its nearest centre and moves every centre to the
    mean of its samples, which never increases the inertia

    .. math:: \\sum_i \\min_j \\lVert x_i - c_j \\rVert^2 .

    Squared distances come from one matrix product,
    :math:`\\lVert x \\rVert^2 - 2\\, x \\cdot c + \\lVert c \\rVert^2`, in blocks of
    samples so that extra memory stays bounded; ``fit`` works on a centred copy when the mean
    of the data lies farther from the origin than their spread (for accuracy). A cluster that
    ends up empty is re-seeded with the sample farthest from its own centre. ``inertia_`` sums
    the squared distances of the last assignment; :meth:`score` sums the exact squared
    differences to the nearest centres.

    Examples
    --------
    >>> import numpy as np
    >>> from mlx.estimators import KMeans
    >>> X = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 0.0],
    ...               [10.0, 2.0], [10.0, 4.0], [10.0, 0.0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> km.inertia_
    16.0
    >>> bool(km.predict([[0.0, 0.0]])[0] == km.predict([[1.0, 1.0]])[0])
    True
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Compute the k-means clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples.

        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : KMeans
            The fitted estimator.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C")
        n_samples, n_features = X.shape
        if n_samples < self.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}.")
        init = self._check_init(X)
        n_init = self._n_runs()
        rng = check_random_state(self.random_state)

        with single_threaded_blas():
            X, x_sq, shift, total_variance = _working_data(X)
            # Points within a radius r of the origin are within 2 r of each other.
            _check_distances(4 * float(x_sq.max()), X.dtype, "the training points")
            # scikit-learn's convention: tol is relative to the mean variance of the features.
            tol = self.tol * total_variance / n_features

            best = None
            for _ in range(n_init):
                centers = self._initial_centers(X, x_sq, rng) if init is None else init - shift
                run = _lloyd(X, x_sq, centers, self.max_iter, tol)
                if best is None or run[2] < best[2]:
                    best = run
        centers, labels, inertia, n_iter = best

        n_distinct = np.count_nonzero(np.bincount(labels, minlength=self.n_clusters))
        if n_distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({n_distinct}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cluster_centers_ = centers + shift
        self.labels_ = labels
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        return self

    def _check_init(self, X):
        """The starting centres as an array of X's dtype, or None for a drawn initialisation."""
        if isinstance(self.init, str):
            return None
        init = check_array(self.init, dtype=X.dtype, copy=True, order="C")
        if init.shape != (self.n_clusters, X.shape[1]):
            raise ValueError(
                f"The initial centres have shape {init.shape}, but n_clusters={self.n_clusters} "
                f"and n_features={X.shape[1]} require shape {(self.n_clusters, X.shape[1])}."
            )
        return init

    def _n_runs(self):
        if self.n_init == "auto":
            return 10 if isinstance(self.init, str) and self.init == "random" else 1
        if not isinstance(self.init, str) and self.n_init != 1:
            warnings.warn(
                f"Explicit initial centres given: performing one run instead of "
                f"n_init={self.n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            return 1
        return self.n_init

    def _initial_centers(self, X, x_sq, rng):
        if self.init == "k-means++":
            return _kmeans_plusplus(X, x_sq, self.n_clusters, rng)
        return X[rng.choice(X.shape[0], size=self.n_clusters, replace=False)]

    def _check_test_data(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=False)
        return X, self.cluster_centers_.astype(X.dtype, copy=False)

    def fit_predict(self, X, y=None):
        """Compute the clustering and return the cluster index of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples.

        y : None
            Ignored; present for API consistency.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Cluster index of each sample (``labels_``).
        """
        return self.fit(X).labels_

    def predict(self, X):
        """Return the index of the nearest centre of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to assign.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Index of the nearest centre.
        """
        X, centers = self._check_test_data(X)
        with single_threaded_blas():
            labels, min_sq = _nearest(X, centers)
        _check_distances(float(min_sq.max()), X.dtype, "the samples and the cluster centres")
        return labels

    def transform(self, X):
        """Return the Euclidean distances of the samples to every centre.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to transform.

        Returns
        -------
        distances : ndarray of shape (n_samples, n_clusters)
            Distance of each sample to each centre, in X's floating dtype.
        """
        X, centers = self._check_test_data(X)
        with single_threaded_blas():
            D = _squared_distances(X, _squared_norms(X), centers, _squared_norms(centers))
        _check_distances(float(D.max()), X.dtype, "the samples and the cluster centres")
        return np.sqrt(D, out=D)

    def score(self, X, y=None):
        """Return the opposite of the inertia of X on the fitted centres.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to score.

        y : None
            Ignored; present for API consistency.

        Returns
        -------
        score : float
            Minus the sum of squared distances of the samples to their nearest centre.
        """
        X, centers = self._check_test_data(X)
        with single_threaded_blas():
            labels, min_sq = _nearest(X, centers)
        _check_distances(float(min_sq.max()), X.dtype, "the samples and the cluster centres")
        return -_inertia(X, centers, labels)

    @property
    def _n_features_out(self):
        # Read by ClassNamePrefixFeaturesOutMixin.get_feature_names_out.
        return self.cluster_centers_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class KSelection(NamedTuple):
    """Outcome of :func:`select_k`.

    Attributes
    ----------
    best_k : int
        The chosen number of clusters.
    k_values : ndarray of shape (n_k,)
        The candidate numbers of clusters, in increasing order.
    scores : ndarray of shape (n_k,)
        The criterion for each candidate, higher is better: the silhouette coefficient, or for
        the elbow method the gap between the chord and the normalised inertia curve.
    inertias : ndarray of shape (n_k,)
        The inertia of the k-means fit for each candidate.
    """

    best_k: int
    k_values: np.ndarray
    scores: np.ndarray
    inertias: np.ndarray


def _elbow_scores(k_values, inertias):
    """Kneedle gap: chord minus curve, both axes scaled to [0, 1], for a decreasing curve."""
    x = (k_values - k_values[0]) / (k_values[-1] - k_values[0])
    span = inertias.max() - inertias.min()
    y = (inertias - inertias.min()) / span if span > 0 else np.zeros_like(inertias)
    chord = y[0] + (y[-1] - y[0]) * x
    return chord - y


def select_k(X, k_values, *, method="silhouette", random_state=None, **kmeans_params):
    """Choose the number of clusters among candidates by fitting :class:`KMeans` for each.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The samples to cluster.

    k_values : iterable of int
        The distinct candidate numbers of clusters.

    method : {"silhouette", "elbow"}, default="silhouette"
        ``"silhouette"`` picks the k with the highest mean silhouette coefficient
        (:func:`sklearn.metrics.silhouette_score`; every k must lie in [2, n_samples - 1]).
        ``"elbow"`` picks the knee of the inertia curve by the kneedle rule: with k and inertia
        both scaled to [0, 1], the k where the curve lies farthest below the chord joining its
        first and last points (at least three candidates are needed).

    random_state : int, RandomState instance or None, default=None
        Passed to every :class:`KMeans` fit.

    **kmeans_params
        Further :class:`KMeans` parameters (``init``, ``n_init``, ``max_iter``, ``tol``).

    Returns
    -------
    selection : KSelection
        ``best_k``, the sorted ``k_values``, their ``scores`` and ``inertias``. Ties go to the
        smallest k.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from mlx.estimators import select_k
    >>> X, _ = make_blobs(n_samples=300, centers=4, cluster_std=0.5, random_state=0)
    >>> select_k(X, range(2, 8), method="silhouette", random_state=0).best_k
    4
    >>> select_k(X, range(2, 8), method="elbow", random_state=0).best_k
    4
    """
    if method not in ("silhouette", "elbow"):
        raise ValueError(f"method must be 'silhouette' or 'elbow', got {method!r}.")
    X = check_array(X, dtype=[np.float64, np.float32])
    n_samples = X.shape[0]
    ks = list(k_values)
    if not ks or not all(isinstance(k, Integral) and not isinstance(k, bool) for k in ks):
        raise ValueError(f"k_values must be a non-empty sequence of integers, got {ks}.")
    if len(set(ks)) != len(ks):
        raise ValueError(f"k_values must be distinct, got {ks}.")
    ks = np.array(sorted(int(k) for k in ks))
    low, high = (2, n_samples - 1) if method == "silhouette" else (1, n_samples)
    bad = [int(k) for k in ks if not low <= k <= high]
    if bad:
        raise ValueError(
            f"k_values must lie in [{low}, {high}] for method={method!r} with "
            f"n_samples={n_samples}, got {bad}."
        )
    if method == "elbow" and ks.size < 3:
        raise ValueError(f"The elbow method needs at least 3 k_values, got {ks.tolist()}.")

    inertias = np.empty(ks.size)
    scores = np.empty(ks.size)
    for i, k in enumerate(ks):
        km = KMeans(n_clusters=int(k), random_state=random_state, **kmeans_params).fit(X)
        inertias[i] = km.inertia_
        if method == "silhouette":
            scores[i] = silhouette_score(X, km.labels_)
    if method == "elbow":
        scores = _elbow_scores(ks.astype(np.float64), inertias)
    best_k = int(ks[np.argmax(scores)])
    return KSelection(best_k=best_k, k_values=ks, scores=scores, inertias=inertias)
