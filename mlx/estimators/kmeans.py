"""k-means clustering: Lloyd iterations with an exact float32-first assignment, k-means++
seeding, and choosing k."""

import contextlib
import math
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from typing import Any, Literal, NamedTuple, Self, cast

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
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

from mlx.estimators._threads import _controller, single_threaded_blas

__all__ = ["KMeans", "KSelection", "select_k"]

# Elements of one block of a pass over the data: 64 Ki float64 values (512 KiB) stay in cache
# while the block is reduced, and bound the extra memory of the pass.
_BLOCK_ELEMENTS = 1 << 16
# Scores of one block of rows of the assignment's first pass, (n_clusters, rows). Large
# blocks: a block costs a dozen numpy calls, whose Python side holds the GIL, and two threads
# with 64 Ki-element blocks were no faster than one (3.5 times as many calls as with these).
_ASSIGN_ELEMENTS = 1 << 18
# More centres than this need more than 8 index bits: the first pass runs in float64.
_MAX_FLOAT32_CLUSTERS = 256


def _thread_pool(n_threads):
    """A pool of ``n_threads`` threads, or nothing to enter for one thread."""
    return ThreadPoolExecutor(n_threads) if n_threads > 1 else contextlib.nullcontext()


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


def _working_data(X) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], float]:
    """The data to cluster, its squared row norms, the shift taken off, and the total variance.

    Rounding in ||x||^2 - 2 x.c + ||c||^2 grows with ||x||^2, so data whose mean lies far from
    the origin compared with their spread are centred (a copy, in X's dtype as scikit-learn
    does). Data whose mean is within their spread are used as they are: centring would at
    most halve the rounding error, and costs a copy and a pass.
    """
    x_sq = _squared_norms(X)
    mean, far, spread = _mean_and_spread(X, x_sq)
    if not far:
        return X, x_sq, np.zeros_like(mean), spread
    X, x_sq = _centred(X, mean)
    return X, x_sq, mean, float(x_sq.mean(dtype=np.float64))


def _mean_and_spread(X, x_sq):
    """Mean row, whether it lies farther from the origin than the rows' spread, and the total
    variance (the spread: mean squared distance of the rows to their mean)."""
    n = X.shape[0]
    # A matrix-vector product is faster than the mean reduction.
    mean = (np.ones(n, dtype=X.dtype) @ X) / n
    mean_sq = float(mean @ mean)
    spread = float(x_sq.mean(dtype=np.float64)) - mean_sq
    return mean, mean_sq > spread, spread


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


class _Assignment:
    """Nearest centre of every row of one data set, for one set of centres after another.

    Built once per data set (a scaled float32 copy and reused buffers), called once per Lloyd
    step. Two passes give exactly the labels that float64 arithmetic on differences gives:

    1. Rows and centres, shifted by ``origin`` if given and scaled by a power of two into the
       unit ball (exactly), are scored by one float32 matrix product per block of rows. The
       score :math:`\\lVert c \\rVert^2 + r^2 - 2 x \\cdot c`, with :math:`r` the largest
       row norm, orders the centres like the squared distance and is never negative. The
       index of each centre is written into the lowest bits of its score, so that one integer
       ``min`` over the (n_clusters, rows) block gives the best score and its index (a
       non-negative float orders like its bits), and a second one the runner-up.
    2. A row whose runner-up lies within twice the rigorous error bound of the first pass
       (float32 rounding of the data, the centres and the product, and the index bits) could
       be misassigned: its distances are computed again from float64 differences. On the
       benchmark's uniform data these are about five rows in ten thousand (none on its blobs).

    ``x_sq`` holds the squared row norms of ``X``. Data whose mean lies far from the origin
    should be centred (a centred ``X``, or an ``origin`` subtracted in float64 when the scaled
    copy is made), otherwise the first pass separates little and most rows take the second.
    More than ``_MAX_FLOAT32_CLUSTERS`` centres need too many index bits for float32: the
    first pass then runs in float64. Blocks are split between ``n_threads`` Python threads,
    each with a one-thread BLAS and its own buffers (numpy releases the GIL in both).
    """

    def __init__(self, X, x_sq, n_clusters, n_threads, origin=None):
        n, d = X.shape
        self.X, self.n_clusters, self.origin = X, n_clusters, origin
        self.dtype = np.float32 if n_clusters <= _MAX_FLOAT32_CLUSTERS else np.float64
        self.bits = (n_clusters - 1).bit_length()
        radius = math.sqrt(float(x_sq.max()))
        if origin is not None:
            # |x - origin| <= |x| + |origin|: a scale from this bound keeps the rows in the
            # unit ball, and the precision is that of the rows' true spread all the same.
            radius += math.sqrt(float(origin @ origin))
        # A power of two at least the largest norm: the scaling itself is then exact.
        self.scale = 2.0 ** -math.frexp(radius)[1] if radius > 0 else 1.0
        if origin is not None:
            # Shifted in float64, then rounded once: exact with respect to X.
            self.scaled = np.empty((n, d), dtype=self.dtype)
            largest, rows = 0.0, max(1, _BLOCK_ELEMENTS // d)
            for start in range(0, n, rows):
                chunk = np.subtract(X[start : start + rows], origin, dtype=np.float64)
                chunk *= self.scale
                largest = max(largest, float(_squared_norms(chunk).max()))
                self.scaled[start : start + rows] = chunk
            self.reach = math.sqrt(largest)
        elif 2.0**-100 < radius < 2.0**100:
            # Rounded, then scaled: the float32 range holds X, so this is one rounding too.
            self.scaled = X.astype(self.dtype)
            self.scaled *= self.dtype(self.scale)
            self.reach = radius * self.scale
        else:
            self.scaled = np.multiply(X, self.scale, dtype=np.float64).astype(self.dtype)
            self.reach = radius * self.scale
        self.rows = min(n, max(1, _ASSIGN_ELEMENTS // n_clusters))
        # An equal share of the rows for each thread; fewer threads than blocks are of no use.
        n_threads = max(1, min(n_threads, -(-n // self.rows)))
        per_thread = -(-n // n_threads)
        self.parts = [(start, min(start + per_thread, n)) for start in range(0, n, per_thread)]
        self.buffers = [self._buffers() for _ in self.parts]

    def _buffers(self):
        k, rows, dtype = self.n_clusters, self.rows, self.dtype
        return (
            np.empty((rows, k), dtype=dtype),  # product of a block of rows with the centres
            np.empty(k * rows, dtype=dtype),  # its scores, (k, rows) layout
            np.empty((2, rows), dtype=dtype),  # best and runner-up scores
            np.empty(rows, dtype=dtype),  # their gaps
            np.empty(rows, dtype=bool),  # where the gap is within the error margin
        )

    def __call__(self, centers, pool=None):
        """Index of the nearest of ``centers`` of each row, as int32."""
        n, d = self.X.shape
        if self.n_clusters == 1:
            return np.zeros(n, dtype=np.int32)
        c = centers.astype(np.float64)
        if self.origin is not None:
            c -= self.origin
        c *= self.scale
        c_sq = _squared_norms(c)
        r_x, r_c = self.reach, math.sqrt(float(c_sq.max()))
        # Scores |c|^2 + r_x^2 - 2 x.c are at most (r_x + r_c)^2 in size. The bound covers the
        # rounding of the scaled rows and centres, of a d-term product, of the offset and the
        # sum, and the index bits, twice over.
        size = (r_x + r_c) * (r_x + r_c) + r_x * r_x
        bound = np.finfo(self.dtype).eps * (d + 5 + 2 ** (self.bits + 1)) * size
        weights = (-2.0 * c).T.astype(self.dtype)
        # |c|^2 + r_x^2 - 2 x.c = |x - c|^2 + r_x^2 - |x|^2 >= 0; 2 bound more keeps every
        # computed score positive, so that scores order like their bits.
        offset = (c_sq + (r_x * r_x + 2 * bound)).astype(self.dtype)[:, None]
        labels = np.empty(n, dtype=np.int32)

        def assign(part, buffers):
            start, stop = part
            return self._assign_part(start, stop, buffers, weights, offset, 2 * bound, labels)

        if pool is None or len(self.parts) == 1:
            per_part = [assign(p, b) for p, b in zip(self.parts, self.buffers, strict=True)]
        else:
            per_part = list(pool.map(assign, self.parts, self.buffers))
        unsure = np.concatenate(per_part)
        if unsure.size:
            labels[unsure] = _nearest_exactly(self.X, centers, unsure)
        return labels

    def _assign_part(self, start, stop, buffers, weights, offset, margin, labels):
        product, scores, best, gaps, close = buffers
        k = self.n_clusters
        bits_type = np.uint32 if self.dtype == np.float32 else np.uint64
        low = bits_type((1 << self.bits) - 1)
        index = np.arange(k, dtype=bits_type)[:, None]
        unsure = []
        for first in range(start, stop, self.rows):
            last = min(first + self.rows, stop)
            m = last - first
            block = scores[: k * m].reshape(k, m)
            np.matmul(self.scaled[first:last], weights, out=product[:m])
            np.add(product[:m].T, offset, out=block)
            tagged = block.view(bits_type)
            np.bitwise_and(tagged, ~low, out=tagged)
            np.bitwise_or(tagged, index, out=tagged)
            top, runner_up = best[0, :m].view(bits_type), best[1, :m].view(bits_type)
            np.minimum.reduce(tagged, axis=0, out=top)
            np.bitwise_and(top, low, out=labels[first:last], casting="unsafe")
            # Tags are distinct, so subtracting best + 1 (unsigned, wrapping around) leaves the
            # best as the largest value and the runner-up as the smallest.
            above = top + bits_type(1)
            np.subtract(tagged, above, out=tagged)
            np.minimum.reduce(tagged, axis=0, out=runner_up)
            runner_up += above
            np.subtract(best[1, :m], best[0, :m], out=gaps[:m])
            if np.less(gaps[:m], margin, out=close[:m]).any():
                unsure.append(np.flatnonzero(close[:m]) + first)
        return np.concatenate(unsure) if unsure else np.empty(0, dtype=np.intp)


def _nearest_exactly(X, centers, rows):
    """Nearest centre of ``X[rows]`` from float64 differences (ties to the lower index)."""
    d = X.shape[1]
    labels = np.empty(rows.size, dtype=np.int32)
    step = max(1, _BLOCK_ELEMENTS // d)
    for start in range(0, rows.size, step):
        block = X[rows[start : start + step]].astype(np.float64)
        best = np.full(block.shape[0], np.inf)
        chosen = labels[start : start + step]
        chosen[:] = 0
        for j, c in enumerate(centers):
            diff = block - c
            dist = np.einsum("ij,ij->i", diff, diff)
            closer = dist < best
            best[closer] = dist[closer]
            chosen[closer] = j
    return labels


def _own_centre_sq(X, centers, labels):
    """Squared distance of each row of X to its assigned centre, from float64 differences."""
    n, d = X.shape
    rows = min(n, max(1, _BLOCK_ELEMENTS // d))
    centers = centers.astype(np.float64, copy=False)
    diff = np.empty((rows, d))
    out = np.empty(n)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = diff[: stop - start]
        np.take(centers, labels[start:stop], axis=0, out=block)
        np.subtract(X[start:stop], block, out=block)
        np.einsum("ij,ij->i", block, block, out=out[start:stop])
    return out


def _cluster_sums(X, labels, n_clusters):
    """Per-cluster sums of the rows of X (float64) through a one-hot (n_clusters, n) CSC matrix.

    One non-zero per column means the column pointers are simply 0..n and the row indices are
    the labels: no sorting, and scipy's sparse-dense product does the accumulation.
    """
    n = X.shape[0]
    one_hot = sp.csc_array(
        (np.ones(n), labels, np.arange(n + 1, dtype=labels.dtype)), shape=(n_clusters, n)
    )
    return one_hot @ X


def _move_rows(X, rows, old, new, sums, counts):
    """Move ``X[rows]`` from clusters ``old`` to ``new`` in the per-cluster sums and counts.

    One sparse column per moved row, +1 at its new cluster and -1 at its old one: late Lloyd
    steps move few rows, and updating the sums costs a fraction of summing all of X again.
    """
    m = rows.size
    clusters = np.empty(2 * m, dtype=old.dtype)
    clusters[0::2], clusters[1::2] = new, old
    moves = sp.csc_array(
        (np.tile([1.0, -1.0], m), clusters, np.arange(0, 2 * m + 1, 2)),
        shape=(sums.shape[0], m),
    )
    sums += moves @ X[rows]
    counts += np.bincount(new, minlength=counts.size) - np.bincount(old, minlength=counts.size)


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
    return True


def _lloyd(X, centers, max_iter, tol, assign):
    """One run of Lloyd's algorithm from ``centers``, scikit-learn's stopping rule.

    Step i assigns every row to its nearest centre and moves every centre to the mean of its
    rows. The run stops when the labels equal those of the step before (strict convergence),
    or when the squared centre shift summed over clusters is at most ``tol``; then the labels
    are recomputed for the final centres, so that they always agree with ``predict``. The
    per-cluster sums are kept from step to step; when few rows moved, only those update them.
    Centres are rounded to X's dtype at every step, as ``cluster_centers_`` will be.
    Returns ``(centers, labels, n_iter)``.
    """
    n_clusters = centers.shape[0]
    centers = centers.astype(X.dtype)
    labels = assign(centers)
    sums = _cluster_sums(X, labels, n_clusters)
    counts = np.bincount(labels, minlength=n_clusters)
    previous = None
    for n_iter in range(1, max_iter + 1):
        if previous is not None:
            labels = assign(centers)
            moved = np.flatnonzero(labels != previous)
            if moved.size > X.shape[0] // 8:
                # Moving many rows one by one costs more than summing them all again.
                sums = _cluster_sums(X, labels, n_clusters)
                counts = np.bincount(labels, minlength=n_clusters)
            elif moved.size:
                _move_rows(X, moved, previous[moved], labels[moved], sums, counts)
        reseeded = not counts.all() and _reseed_empty(
            X, labels, _own_centre_sq(X, centers, labels), sums, counts
        )
        new_centers = centers.copy()
        # A cluster emptied by lending its point to an empty one keeps its centre.
        np.divide(sums, counts[:, None], out=new_centers, where=counts[:, None] > 0)
        shift = float(np.sum((new_centers - centers) ** 2, dtype=np.float64))
        centers = new_centers
        if previous is not None and not reseeded and moved.size == 0:
            # Same labels, so the new centres equal the ones these labels were computed for.
            return centers, labels, n_iter
        if shift <= tol:
            break
        previous = labels
    return centers, assign(centers), n_iter


def _closest_with_candidates(X, x_sq, candidates, closest):
    """For each candidate row index, the squared distance of every row of X to its nearest
    centre if the candidate joined the centres (``closest`` holds the current ones), and the
    sum of these distances (the potential). Blocks of rows are reduced while in cache; the
    product is taken as (rows, candidates), the layout BLAS runs fastest, then transposed."""
    n, n_cand = X.shape[0], candidates.size
    minus_2p = (-2.0 * X[candidates]).T.copy()
    p_sq = x_sq[candidates][:, None]
    out = np.empty((n_cand, n), dtype=X.dtype)
    potentials = np.zeros(n_cand)
    rows = min(n, max(1, _BLOCK_ELEMENTS // n_cand))
    product = np.empty((rows, n_cand), dtype=X.dtype)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        np.matmul(X[start:stop], minus_2p, out=product[: stop - start])
        dist = out[:, start:stop]
        np.add(product[: stop - start].T, p_sq, out=dist)
        dist += x_sq[start:stop]
        np.minimum(dist, closest[start:stop], out=dist)
        potentials += dist.sum(axis=1, dtype=np.float64)
    return out, potentials


def _kmeans_plusplus(X, x_sq, n_clusters, rng):
    """Greedy k-means++ seeding: each new centre is the best of ``2 + log(k)`` D^2 draws.

    The random draws are scikit-learn's, one for one, so that a ``random_state`` starts from
    the rows that scikit-learn's k-means++ picks with it.
    """
    n = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    chosen = np.empty(n_clusters, dtype=np.intp)
    closest = np.full(n, np.inf, dtype=X.dtype)
    candidates = np.array([rng.choice(n, p=_uniform(n))])
    potential = np.inf
    for c in range(n_clusters):
        if c > 0:
            # Draws land on a row with probability proportional to its squared distance.
            cumulative = np.cumsum(closest, dtype=np.float64)
            draws = rng.uniform(size=n_trials) * potential
            candidates = np.minimum(np.searchsorted(cumulative, draws), n - 1)
        dist, potentials = _closest_with_candidates(X, x_sq, candidates, closest)
        best = int(np.argmin(potentials))
        chosen[c], potential = candidates[best], potentials[best]
        # Rounding can leave tiny negative distances; the draws need a non-decreasing cumsum.
        closest = np.maximum(dist[best], 0.0)
    return X[chosen]


def _uniform(n):
    """Equal sampling weights: with them ``RandomState.choice`` draws as scikit-learn's does."""
    return np.full(n, 1.0 / n)


def _n_threads():
    """Threads of an assignment pass: as many as BLAS may use (a process whose BLAS is pinned
    to one thread, like a local worker of the runner, stays on one), at most the usable cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas = [lib.num_threads for lib in _controller().select(user_api="blas").lib_controllers]
    return max(1, min(cores or 1, max(blas, default=1)))


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
        ``tol`` times the mean variance of the features (scikit-learn's rule, so that ``tol``
        means the same at every scale of the data), or as soon as no label changes.

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

    A run stops after iteration :math:`t` when no label changed, or when

    .. math:: \\sum_j \\lVert c_j^{(t)} - c_j^{(t-1)} \\rVert^2 \\le
              \\mathrm{tol} \\cdot \\frac{1}{d} \\sum_{f=1}^{d} \\operatorname{Var}(x_f) ,

    and in that second case reassigns the samples to the final centres. This is
    scikit-learn's rule, and the
    k-means++ and random starts consume ``random_state`` as scikit-learn's do: from the same
    seed (or the same ``init`` array) both follow the same iterations, up to rounding.

    The assignment is exact (the one float64 arithmetic on differences gives) and cheap: a
    float32 matrix product per block of samples scores every centre, on a copy of the data
    scaled into the unit ball (half the memory of float64 data) so that the rounding error has
    a rigorous bound; the few samples whose two best centres are closer than that bound are
    assigned again from float64 differences (a few in ten thousand even on unclustered data).
    When few samples changed cluster, only they update the per-cluster sums. ``fit`` works on
    a centred copy (in the data's dtype, as scikit-learn's) when the mean of
    the data lies farther from the origin than their spread. A cluster that ends up empty is
    re-seeded with the sample farthest from its own centre. ``inertia_`` and :meth:`score`
    sum exact squared differences. Assignment passes run on as many threads as BLAS may use
    (at most the usable cores), each with a one-thread BLAS.

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
    def fit(self, X: ArrayLike, y: object = None) -> Self:
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
        # validate_data is untyped: the cast tells mypy that X is an array from here on.
        X = cast(NDArray[Any], validate_data(self, X, dtype=[np.float64, np.float32], order="C"))
        n_samples, n_features = X.shape
        if n_samples < self.n_clusters:
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}.")
        init = self._check_init(X)
        n_init = self._n_runs()
        rng = check_random_state(self.random_state)
        n_threads = _n_threads()

        with single_threaded_blas(), _thread_pool(n_threads) as pool:
            X, x_sq, shift, total_variance = _working_data(X)
            # Points within a radius r of the origin are within 2 r of each other.
            _check_distances(4 * float(x_sq.max()), X.dtype, "the training points")
            # scikit-learn's convention: tol is relative to the mean variance of the features.
            tol = self.tol * total_variance / n_features
            assignment = _Assignment(X, x_sq, self.n_clusters, n_threads)

            def assign(centers):
                return assignment(centers, pool)

            best = None
            for _ in range(n_init):
                centers = self._initial_centers(X, x_sq, rng) if init is None else init - shift
                centers, labels, n_iter = _lloyd(X, centers, self.max_iter, tol, assign)
                inertia = float(_own_centre_sq(X, centers, labels).sum())
                if best is None or inertia < best[2]:
                    best = centers, labels, inertia, n_iter
        centers, labels, inertia, n_iter = best  # type: ignore[misc]  # n_init >= 1: never None

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
        n = X.shape[0]
        return X[rng.choice(n, size=self.n_clusters, replace=False, p=_uniform(n))]

    def _check_test_data(self, X) -> tuple[NDArray[Any], NDArray[Any]]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", reset=False)
        return X, self.cluster_centers_.astype(X.dtype, copy=False)

    def _nearest_centres(self, X, centers, exact_distances=False):
        """Index of the nearest centre of each row of X, and its squared distance (float64)
        if ``exact_distances`` (otherwise None, after checking that no distance overflows)."""
        what = "the samples and the cluster centres"
        n_threads = _n_threads()
        with single_threaded_blas(), _thread_pool(n_threads) as pool:
            x_sq = _squared_norms(X)
            _check_distances(float(x_sq.max()), X.dtype, what)
            mean, far, _ = _mean_and_spread(X, x_sq)
            origin = mean.astype(np.float64) if far else None
            labels = _Assignment(X, x_sq, len(centers), n_threads, origin)(centers, pool)
            # No squared distance exceeds (|x| + |c|)^2: the exact ones are needed only when
            # that bound overflows (a product, as a float power would raise OverflowError).
            reach = math.sqrt(float(x_sq.max())) + math.sqrt(float(_squared_norms(centers).max()))
            if not exact_distances and reach * reach < np.finfo(X.dtype).max:
                return labels, None
            min_sq = _own_centre_sq(X, centers, labels)
        _check_distances(float(min_sq.max()), X.dtype, what)
        return labels, min_sq

    def fit_predict(self, X: ArrayLike, y: object = None) -> NDArray[np.integer[Any]]:
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

    def predict(self, X: ArrayLike) -> NDArray[np.integer[Any]]:
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
        return self._nearest_centres(X, centers)[0]

    def transform(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
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

    def score(self, X: ArrayLike, y: object = None) -> float:
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
        return -float(self._nearest_centres(X, centers, exact_distances=True)[1].sum())

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


def select_k(
    X: ArrayLike,
    k_values: Iterable[int],
    *,
    method: Literal["silhouette", "elbow"] = "silhouette",
    random_state: int | np.random.RandomState | None = None,
    **kmeans_params: Any,
) -> KSelection:
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
    X = cast(NDArray[Any], check_array(X, dtype=[np.float64, np.float32]))
    n_samples = X.shape[0]
    given = list(k_values)
    if not given or not all(isinstance(k, Integral) and not isinstance(k, bool) for k in given):
        raise ValueError(f"k_values must be a non-empty sequence of integers, got {given}.")
    if len(set(given)) != len(given):
        raise ValueError(f"k_values must be distinct, got {given}.")
    ks = np.array(sorted(int(k) for k in given))
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
