import os
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

from mlx.estimators import KMeans, KSelection, select_k
from mlx.estimators import kmeans as kmeans_module


@pytest.fixture(scope="module")
def blobs4():
    X, _ = make_blobs(n_samples=400, centers=4, cluster_std=0.6, random_state=3)
    return X


def _fit_sklearn(estimator, X):
    # One OpenMP thread: beside the other pytest worker, more threads only spin and wait.
    with threadpool_limits(limits=1):
        return estimator.fit(X)


@pytest.fixture(scope="module")
def uniform():
    # No cluster structure: Lloyd's algorithm needs dozens of iterations (43-110 here).
    return np.random.RandomState(0).uniform(size=(3000, 8))


@pytest.mark.parametrize(
    "n_samples, n_features, centers, seed",
    [(500, 2, 3, 0), (1000, 10, 5, 1), (2000, 5, 8, 2), (1500, 20, 6, 3)],
)
def test_inertia_matches_sklearn(n_samples, n_features, centers, seed):
    X, _ = make_blobs(
        n_samples=n_samples, n_features=n_features, centers=centers, random_state=seed
    )
    ours = KMeans(n_clusters=centers, n_init=3, random_state=seed).fit(X)
    theirs = _fit_sklearn(SklearnKMeans(n_clusters=centers, n_init=3, random_state=seed), X)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=0.01)
    # inertia_ is the inertia of the returned centres and labels
    assert_allclose(ours.inertia_, -ours.score(X), rtol=1e-9)
    assert_array_equal(ours.predict(X), ours.labels_)


@pytest.mark.parametrize("tol", [1e-4, 0.0])
def test_same_lloyd_trajectory_as_sklearn_from_the_same_start(tol):
    # Overlapping blobs need several iterations; from the same start both follow Lloyd's
    # algorithm step by step, so they agree on the labels, centres and iteration count.
    X, _ = make_blobs(n_samples=3000, n_features=4, centers=6, cluster_std=3.0, random_state=7)
    start = X[np.random.RandomState(0).choice(len(X), 6, replace=False)]
    ours = KMeans(n_clusters=6, init=start, tol=tol).fit(X)
    theirs = _fit_sklearn(SklearnKMeans(n_clusters=6, init=start, n_init=1, tol=tol), X)
    assert ours.n_iter_ == theirs.n_iter_ > 3
    assert_array_equal(ours.labels_, theirs.labels_)
    assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-10)
    assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-9)


@pytest.mark.parametrize("init", ["k-means++", "random"])
@pytest.mark.parametrize("seed", [0, 1])
def test_hard_case_follows_sklearn_from_the_same_seed(uniform, init, seed):
    """The same seed gives scikit-learn's start, then the same iterations and result.

    Fails if the starts draw differently, if the stopping rule or the scale of its tolerance
    differs (n_iter_ is compared exactly), or if an assignment step picks another centre.
    """
    ours = KMeans(n_clusters=8, init=init, n_init=1, random_state=seed).fit(uniform)
    theirs = _fit_sklearn(
        SklearnKMeans(n_clusters=8, init=init, n_init=1, random_state=seed), uniform
    )
    assert ours.n_iter_ == theirs.n_iter_ > 40
    assert_array_equal(ours.labels_, theirs.labels_)
    assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0, atol=1e-12)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-12)


def test_several_starts_draw_like_sklearn(uniform):
    ours = KMeans(n_clusters=8, init="random", n_init=3, random_state=0).fit(uniform)
    theirs = _fit_sklearn(
        SklearnKMeans(n_clusters=8, init="random", n_init=3, random_state=0), uniform
    )
    assert ours.n_iter_ == theirs.n_iter_
    assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-12)


def _plain_lloyd(X, centers, n_steps):
    """Textbook Lloyd in float64 differences: the reference for the assignment's exactness."""
    for _ in range(n_steps):
        labels = cdist(X, centers, "sqeuclidean").argmin(axis=1)
        centers = np.array([X[labels == j].mean(axis=0) for j in range(len(centers))])
    return centers, cdist(X, centers, "sqeuclidean").argmin(axis=1)


@pytest.mark.parametrize("n_steps", [1, 2, 5, 30])
def test_every_step_assigns_like_plain_float64_lloyd(uniform, n_steps):
    # The float32 first pass and the sums updated by moved rows change no label and no
    # centre beyond rounding, step after step.
    start = uniform[np.random.RandomState(0).choice(len(uniform), 8, replace=False)]
    ours = KMeans(n_clusters=8, init=start, max_iter=n_steps, tol=0).fit(uniform)
    centers, labels = _plain_lloyd(uniform, start, n_steps)
    assert ours.n_iter_ == n_steps
    assert_array_equal(ours.labels_, labels)
    assert_allclose(ours.cluster_centers_, centers, rtol=0, atol=1e-13)


def test_converged_centres_are_the_means_of_their_labels(uniform):
    # Rows move between clusters for 100-odd steps; the sums they update must not drift.
    km = KMeans(n_clusters=8, init="random", tol=0, max_iter=1000, random_state=1).fit(uniform)
    assert 100 < km.n_iter_ < 1000
    means = np.array([uniform[km.labels_ == j].mean(axis=0) for j in range(8)])
    assert_allclose(km.cluster_centers_, means, rtol=0, atol=1e-13)
    assert_allclose(km.inertia_, ((uniform - means[km.labels_]) ** 2).sum(), rtol=1e-12)


# Variance of X: 7.76. Squared centre shifts from the start [[0], [1]]: 14.0625 after step 1,
# 1.8125 after step 2, and step 3 changes no label. Twice X's scale in a second feature makes
# the shifts 5 times larger and the mean feature variance 2.5 times larger.
@pytest.mark.parametrize(
    "tol, n_iter_1d, n_iter_2d",
    [(2.0, 1, 2), (1.0, 2, 2), (0.24, 2, 3), (0.23, 3, 3), (0.0, 3, 3)],
)
def test_tol_is_relative_to_the_mean_feature_variance_by_hand(tol, n_iter_1d, n_iter_2d):
    X = np.array([[0.0], [1.0], [5.0], [6.0], [7.0]])
    for data, start, n_iter in [
        (X, [[0.0], [1.0]], n_iter_1d),
        (np.hstack([X, 2 * X]), [[0.0, 0.0], [1.0, 2.0]], n_iter_2d),
    ]:
        ours = KMeans(n_clusters=2, init=start, tol=tol).fit(data)
        theirs = _fit_sklearn(
            SklearnKMeans(n_clusters=2, init=np.array(start), n_init=1, tol=tol), data
        )
        assert ours.n_iter_ == theirs.n_iter_ == n_iter
        assert_array_equal(ours.labels_, theirs.labels_)


def test_tol_means_the_same_at_every_scale(uniform):
    start = uniform[:8]
    runs = {}
    for tol in (1e-2, 1e-4, 0.0):
        small = KMeans(n_clusters=8, init=start, tol=tol).fit(uniform)
        large = KMeans(n_clusters=8, init=start * 1000.0, tol=tol).fit(uniform * 1000.0)
        assert small.n_iter_ == large.n_iter_
        assert_array_equal(small.labels_, large.labels_)
        runs[tol] = small.n_iter_
    # The tolerance binds: a looser one stops earlier.
    assert runs[1e-2] < runs[1e-4] < runs[0.0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_assignment_is_exact_where_float32_cannot_tell(monkeypatch, blobs4, dtype):
    # Samples a hair's breadth off the bisector of two centres: the float32 first pass cannot
    # order the two, the float64 second pass must, as exact differences do.
    km = KMeans(n_clusters=4, random_state=0).fit(blobs4.astype(dtype))
    centers = km.cluster_centers_.astype(np.float64)
    gaps = cdist(centers, centers) + np.diag(np.full(4, np.inf))
    i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
    unit = (centers[j] - centers[i]) / gaps[i, j]
    rng = np.random.RandomState(0)
    offsets = rng.choice([-1.0, 1.0], 500) * 10.0 ** rng.uniform(-11, -5, 500)
    across = rng.normal(size=(500, 2)) * 0.01 * gaps[i, j]
    across -= np.outer(across @ unit, unit)
    X = ((centers[i] + centers[j]) / 2 + np.outer(offsets, unit) + across).astype(dtype)
    exact = cdist(X.astype(np.float64), km.cluster_centers_.astype(np.float64), "sqeuclidean")

    second_pass = []
    nearest_exactly = kmeans_module._nearest_exactly

    def spy(X, centers, rows):
        second_pass.append(rows.size)
        return nearest_exactly(X, centers, rows)

    monkeypatch.setattr(kmeans_module, "_nearest_exactly", spy)
    labels = km.predict(X)
    assert_array_equal(labels, exact.argmin(axis=1))
    assert set(labels) == {i, j}
    assert sum(second_pass) > 250


def test_one_cluster():
    X = np.random.RandomState(0).normal(size=(50, 3))
    km = KMeans(n_clusters=1).fit(X)
    assert_array_equal(km.labels_, np.zeros(50))
    assert_allclose(km.cluster_centers_, [X.mean(axis=0)])
    assert_allclose(km.inertia_, ((X - X.mean(axis=0)) ** 2).sum())
    assert km.n_iter_ == 2


def test_threads_give_the_same_result(monkeypatch, uniform):
    # 64 centres leave 1024 rows per block: 3000 rows make 3 blocks, split between 2 threads.
    fits = []
    for n_threads in (1, 2):
        monkeypatch.setattr(kmeans_module, "_n_threads", lambda n=n_threads: n)
        km = KMeans(n_clusters=64, n_init=1, random_state=0).fit(uniform)
        fits.append((km.labels_, km.cluster_centers_, km.n_iter_, km.predict(uniform[::-1])))
    for one, two in zip(*fits, strict=True):
        assert_array_equal(one, two)


def test_threads_follow_the_blas_limit():
    # A process whose BLAS is pinned to one thread (a runner's local worker) stays on one.
    with threadpool_limits(limits=1, user_api="blas"):
        assert kmeans_module._n_threads() == 1
    assert 1 <= kmeans_module._n_threads() <= len(os.sched_getaffinity(0))


def test_hand_computed_lloyd_iterations():
    X = np.array([[0.0], [1.0], [5.0], [6.0], [7.0]])
    km = KMeans(n_clusters=2, init=[[0.0], [1.0]]).fit(X)
    # step 1: {0} and {1, 5, 6, 7} -> centres 0 and 4.75; step 2: {0, 1} and {5, 6, 7}
    # -> centres 0.5 and 6; step 3: same labels, converged.
    assert_allclose(km.cluster_centers_, [[0.5], [6.0]])
    assert_array_equal(km.labels_, [0, 0, 1, 1, 1])
    assert km.n_iter_ == 3
    assert_allclose(km.inertia_, 0.25 + 0.25 + 1.0 + 0.0 + 1.0)


def test_hand_computed_predict_transform_score():
    X = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 2.0]])
    km = KMeans(n_clusters=2, init=[[0.0, 1.0], [10.0, 1.0]]).fit(X)
    assert_allclose(km.cluster_centers_, [[0.0, 1.0], [10.0, 1.0]])
    assert km.inertia_ == pytest.approx(4.0)
    assert_array_equal(km.predict([[1.0, 1.0], [9.0, 5.0]]), [0, 1])
    assert_allclose(km.transform([[0.0, 0.0], [10.0, 1.0]]), [[1.0, np.sqrt(101.0)], [10.0, 0.0]])
    assert km.score([[0.0, 4.0], [13.0, 1.0]]) == pytest.approx(-(9.0 + 9.0))
    assert_array_equal(km.fit_predict(X), [0, 0, 1, 1])
    assert_array_equal(km.get_feature_names_out(), ["kmeans0", "kmeans1"])


def test_empty_clusters_are_reseeded_with_the_farthest_points():
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # Every point is nearest to the first centre: the other two start empty and take the
    # farthest points, farthest first.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        km = KMeans(n_clusters=3, init=[[1.0], [100.0], [200.0]]).fit(X)
    assert_allclose(km.cluster_centers_, [[1.0], [11.0], [10.0]])
    assert_array_equal(km.labels_, [0, 0, 0, 2, 1])
    assert km.inertia_ == pytest.approx(2.0)


def test_duplicate_points_warn_about_fewer_distinct_clusters():
    X = np.array([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    with pytest.warns(ConvergenceWarning, match=r"distinct clusters \(2\).*n_clusters \(3\)"):
        km = KMeans(n_clusters=3, random_state=0).fit(X)
    # Coinciding centres: the labels are the nearest centres, as predict gives them.
    assert_array_equal(km.labels_, km.predict(X))
    assert km.inertia_ == 0.0


def test_many_clusters_span_several_blocks():
    # 300 centres leave room for about 200 rows per distance block: 1000 rows take 5 blocks.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(1000, 3))
    km = KMeans(n_clusters=300, max_iter=2, random_state=0).fit(X)
    exact = cdist(X, km.cluster_centers_, "sqeuclidean")
    assert_array_equal(km.predict(X), exact.argmin(axis=1))
    assert_allclose(km.transform(X) ** 2, exact, atol=1e-12)
    assert_allclose(km.score(X), -exact.min(axis=1).sum())


def test_float32_is_kept(blobs4):
    X32 = blobs4.astype(np.float32)
    km32 = KMeans(n_clusters=4, random_state=0).fit(X32)
    km64 = KMeans(n_clusters=4, random_state=0).fit(blobs4)
    assert km32.cluster_centers_.dtype == np.float32
    assert km32.transform(X32).dtype == np.float32
    assert_array_equal(km32.labels_, km64.labels_)
    assert_allclose(km32.cluster_centers_, km64.cluster_centers_, rtol=1e-5)
    assert_allclose(km32.inertia_, km64.inertia_, rtol=1e-4)


@pytest.mark.parametrize("dtype, offset", [(np.float64, 1e8), (np.float32, 1e3)])
def test_data_far_from_the_origin_cluster_like_centred_data(blobs4, dtype, offset):
    # Without centring, ||x||^2 - 2 x.c + ||c||^2 would lose the clusters to rounding here.
    near = KMeans(n_clusters=4, random_state=0).fit(blobs4.astype(dtype))
    far = KMeans(n_clusters=4, random_state=0).fit((blobs4 + offset).astype(dtype))
    assert_array_equal(far.labels_, near.labels_)
    assert_allclose(far.cluster_centers_ - offset, near.cluster_centers_, atol=1e-6 * offset)
    assert_allclose(far.inertia_, near.inertia_, rtol=1e-3)


def test_same_random_state_same_result(blobs4):
    X = blobs4 + np.random.RandomState(1).normal(scale=2.0, size=blobs4.shape)
    for init in ("k-means++", "random"):
        a = KMeans(n_clusters=6, init=init, random_state=5).fit(X)
        b = KMeans(n_clusters=6, init=init, random_state=5).fit(X)
        assert_array_equal(a.labels_, b.labels_)
        assert_array_equal(a.cluster_centers_, b.cluster_centers_)
        assert a.inertia_ == b.inertia_


def test_n_init_auto_and_explicit_init_runs_once(blobs4, monkeypatch):
    runs = []  # one entry per Lloyd run
    lloyd = kmeans_module._lloyd
    monkeypatch.setattr(kmeans_module, "_lloyd", lambda *args: runs.append(1) or lloyd(*args))
    start = blobs4[:4]
    with pytest.warns(RuntimeWarning, match="n_init=3"):
        km = KMeans(n_clusters=4, init=start, n_init=3).fit(blobs4)
    assert len(runs) == 1
    KMeans(n_clusters=4, random_state=0).fit(blobs4)  # n_init="auto" with k-means++: one run
    assert len(runs) == 2
    # One run from the given centres: as n_init=1 does, and as scikit-learn does (it warns too).
    once = KMeans(n_clusters=4, init=start, n_init=1).fit(blobs4)
    with pytest.warns(RuntimeWarning, match="n_init=3"):
        reference = _fit_sklearn(SklearnKMeans(n_clusters=4, init=start, n_init=3), blobs4)
    assert km.n_iter_ == once.n_iter_ == reference.n_iter_
    assert_array_equal(km.labels_, reference.labels_)
    assert_allclose(km.cluster_centers_, reference.cluster_centers_, rtol=1e-9, atol=1e-12)
    assert km.inertia_ == pytest.approx(reference.inertia_, rel=1e-9)
    # 10 random starts find the best of the 10 single runs they contain.
    runs.clear()
    best = KMeans(n_clusters=4, init="random", random_state=0).fit(blobs4).inertia_
    assert len(runs) == 10
    single = KMeans(n_clusters=4, init="random", n_init=1, random_state=0).fit(blobs4).inertia_
    assert best <= single


def test_pipeline_grid_search_clone_pickle(blobs4):
    pipe = make_pipeline(StandardScaler(), KMeans(n_clusters=4, random_state=0))
    labels = pipe.fit_predict(blobs4)
    assert set(labels) == {0, 1, 2, 3}
    search = GridSearchCV(pipe, {"kmeans__n_clusters": [2, 4]}, cv=3).fit(blobs4)
    assert search.best_params_ == {"kmeans__n_clusters": 4}

    km = KMeans(n_clusters=4, tol=1e-3, random_state=0)
    twin = clone(km)
    assert twin.get_params() == km.get_params() and not hasattr(twin, "labels_")
    km.fit(blobs4)
    restored = pickle.loads(pickle.dumps(km))
    assert_array_equal(restored.predict(blobs4), km.predict(blobs4))
    assert_array_equal(restored.cluster_centers_, km.cluster_centers_)


@pytest.mark.parametrize("method", ["silhouette", "elbow"])
def test_select_k_finds_four_blobs(blobs4, method):
    selection = select_k(blobs4, range(2, 9), method=method, random_state=0)
    assert isinstance(selection, KSelection)
    assert selection.best_k == 4
    assert_array_equal(selection.k_values, np.arange(2, 9))
    assert selection.scores.shape == selection.inertias.shape == (7,)
    assert np.argmax(selection.scores) == 2
    # more clusters never fit these blobs worse
    assert np.all(np.diff(selection.inertias) < 0)


def test_select_k_elbow_rule_by_hand():
    # normalised inertia 1, 0.2, 0.1, 0: chord 1, 2/3, 1/3, 0 -> gaps 0, 0.467, 0.233, 0
    from mlx.estimators.kmeans import _elbow_scores

    gaps = _elbow_scores(np.array([1.0, 2.0, 3.0, 4.0]), np.array([100.0, 20.0, 10.0, 0.0]))
    assert_allclose(gaps, [0.0, 2 / 3 - 0.2, 1 / 3 - 0.1, 0.0])


def test_select_k_passes_kmeans_params(blobs4):
    a = select_k(blobs4, [2, 3, 4], method="elbow", random_state=0, init="random", n_init=2)
    b = [
        KMeans(n_clusters=k, init="random", n_init=2, random_state=0).fit(blobs4).inertia_
        for k in (2, 3, 4)
    ]
    assert_allclose(a.inertias, b)


@pytest.mark.parametrize(
    "k_values, method, message",
    [
        ([1, 2, 3], "silhouette", r"\[2, 9\] for method='silhouette' with n_samples=10, got \[1\]"),
        ([2, 10], "silhouette", r"got \[10\]"),
        ([2, 3, 11], "elbow", r"\[1, 10\] for method='elbow' with n_samples=10, got \[11\]"),
        ([2, 3], "elbow", r"at least 3 k_values, got \[2, 3\]"),
        ([2, 2, 3], "silhouette", r"distinct, got \[2, 2, 3\]"),
        ([2.5, 3], "silhouette", "sequence of integers"),
        ([], "silhouette", "non-empty"),
        ([2, 3], "gap", "method must be 'silhouette' or 'elbow', got 'gap'"),
    ],
)
def test_select_k_errors(k_values, method, message):
    X = np.random.RandomState(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=message):
        select_k(X, k_values, method=method)


def test_error_messages():
    X = np.random.RandomState(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match=r"n_samples=5 should be >= n_clusters=6\."):
        KMeans(n_clusters=6).fit(X)
    with pytest.raises(ValueError, match=r"shape \(2, 2\), but n_clusters=3 and n_features=2"):
        KMeans(n_clusters=3, init=X[:2]).fit(X)
    with pytest.raises(InvalidParameterError, match="'n_clusters' parameter"):
        KMeans(n_clusters=0).fit(X)
    with pytest.raises(InvalidParameterError, match="'init' parameter"):
        KMeans(init="kmeans++").fit(X)
    km = KMeans(n_clusters=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 2"):
        km.predict(np.zeros((1, 3)))
