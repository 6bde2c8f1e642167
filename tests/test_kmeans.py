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

from mlx.estimators import KMeans, KSelection, select_k


@pytest.fixture(scope="module")
def blobs4():
    X, _ = make_blobs(n_samples=400, centers=4, cluster_std=0.6, random_state=3)
    return X


@pytest.mark.parametrize(
    "n_samples, n_features, centers, seed",
    [(500, 2, 3, 0), (1000, 10, 5, 1), (2000, 5, 8, 2), (1500, 20, 6, 3)],
)
def test_inertia_matches_sklearn(n_samples, n_features, centers, seed):
    X, _ = make_blobs(
        n_samples=n_samples, n_features=n_features, centers=centers, random_state=seed
    )
    ours = KMeans(n_clusters=centers, n_init=3, random_state=seed).fit(X)
    theirs = SklearnKMeans(n_clusters=centers, n_init=3, random_state=seed).fit(X)
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
    theirs = SklearnKMeans(n_clusters=6, init=start, n_init=1, tol=tol).fit(X)
    assert ours.n_iter_ == theirs.n_iter_ > 3
    assert_array_equal(ours.labels_, theirs.labels_)
    assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-10)
    assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-9)


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


def test_n_init_auto_and_explicit_init_runs_once(blobs4):
    start = blobs4[:4]
    with pytest.warns(RuntimeWarning, match="n_init=3"):
        km = KMeans(n_clusters=4, init=start, n_init=3).fit(blobs4)
    assert km.n_iter_ >= 1
    # 10 random starts find the best of the 10 single runs they contain.
    best = KMeans(n_clusters=4, init="random", random_state=0).fit(blobs4).inertia_
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
