"""kNN estimators: scikit-learn's checks, parity with its brute force, ties, errors, pipelines."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import neighbors as sk_neighbors
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlx.estimators import KNeighborsClassifier, KNeighborsRegressor
from mlx.estimators.neighbors import _k_smallest

METRICS = ["euclidean", "manhattan", "cosine"]
WEIGHTS = ["uniform", "distance"]


@pytest.fixture(scope="module")
def data():
    # 1,500 training points: large enough that the euclidean search uses several blocks and
    # the other metrics use block-min pruning (their full sort is for a few hundred points).
    X, y = make_classification(
        n_samples=1_800, n_features=12, n_informative=6, n_classes=3, random_state=0
    )
    return X[:1_500], y[:1_500], X[1_500:]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("weights", WEIGHTS)
def test_classifier_matches_sklearn_brute(data, metric, weights):
    X, y, Q = data
    params = dict(n_neighbors=7, weights=weights, metric=metric)
    ours = KNeighborsClassifier(**params, chunk_size=64).fit(X, y)
    ref = sk_neighbors.KNeighborsClassifier(**params, algorithm="brute").fit(X, y)
    assert_array_equal(ours.predict(Q), ref.predict(Q))
    assert_allclose(ours.predict_proba(Q), ref.predict_proba(Q), atol=1e-12)
    dist, ind = ours.kneighbors(Q)
    ref_dist, ref_ind = ref.kneighbors(Q)
    assert_array_equal(ind, ref_ind)
    assert_allclose(dist, ref_dist, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("weights", WEIGHTS)
def test_regressor_matches_sklearn_brute(data, metric, weights):
    X, _, Q = data
    Y = np.column_stack([np.sin(X[:, 0]) + X[:, 1], X[:, 2] ** 2])
    params = dict(n_neighbors=4, weights=weights, metric=metric)
    for y in (Y[:, 0], Y):
        ours = KNeighborsRegressor(**params).fit(X, y)
        ref = sk_neighbors.KNeighborsRegressor(**params, algorithm="brute").fit(X, y)
        pred = ours.predict(Q)
        assert pred.shape == ref.predict(Q).shape
        assert_allclose(pred, ref.predict(Q), rtol=0, atol=1e-9)


@pytest.mark.parametrize("metric", METRICS)
def test_kneighbors_of_training_points_excludes_themselves(data, metric):
    X, y, _ = data
    ours = KNeighborsClassifier(n_neighbors=3, metric=metric).fit(X, y)
    ref = sk_neighbors.NearestNeighbors(n_neighbors=3, metric=metric, algorithm="brute").fit(X)
    dist, ind = ours.kneighbors()
    ref_dist, ref_ind = ref.kneighbors()
    assert not (ind == np.arange(len(X))[:, None]).any()
    assert_array_equal(ind, ref_ind)
    assert_allclose(dist, ref_dist, rtol=1e-9, atol=1e-12)
    # predict(None) is the leave-one-out prediction, from the same neighbours.
    assert_array_equal(ours.predict(None), ref_predict_from(y, ref_ind))


def ref_predict_from(y, ind):
    return np.array([np.bincount(y[row], minlength=3).argmax() for row in ind])


@pytest.mark.parametrize("metric", METRICS)
def test_ties_are_broken_by_training_index(metric):
    # Eight copies of two points: every query ties with four copies at each distance.
    base = np.array([[1.0, 0.0], [0.0, 2.0]])
    X = np.repeat(base, 4, axis=0)[[0, 4, 1, 5, 2, 6, 3, 7]]
    y = np.arange(8)
    model = KNeighborsRegressor(n_neighbors=3, metric=metric).fit(X, y)
    _, ind = model.kneighbors([[1.0, 0.0], [0.0, 2.0]])
    assert_array_equal(ind, [[0, 2, 4], [1, 3, 5]])


@pytest.mark.parametrize("metric", ["euclidean", "manhattan"])
def test_ties_with_pruning_match_a_full_stable_sort(metric):
    # Small integer points: distances are exact, with many ties, and enough points that the
    # pruned search runs. (Cosine ties between distinct vectors are not exact in floating point;
    # its tie-breaking is covered by the duplicate points above.)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(2_000, 3)).astype(float)
    Q = rng.integers(0, 3, size=(50, 3)).astype(float)
    model = KNeighborsClassifier(n_neighbors=6, metric=metric).fit(X, np.zeros(len(X)))
    dist, ind = model.kneighbors(Q)
    for q, d_row, i_row in zip(Q, dist, ind, strict=True):
        diff = np.abs(X - q)
        exact = np.sqrt((diff**2).sum(axis=1)) if metric == "euclidean" else diff.sum(axis=1)
        assert_array_equal(i_row, np.argsort(exact, kind="stable")[:6])
        assert_array_equal(d_row, exact[i_row])


def test_euclidean_when_the_float32_bound_cannot_separate_points():
    rng = np.random.default_rng(2)
    # An outlier shrinks the others to specks of the unit ball; a heap of duplicates ties.
    X = np.vstack([rng.normal(size=(1_000, 5)), np.full((1, 5), 1e9), np.ones((600, 5))])
    Q = np.vstack([rng.normal(size=(20, 5)), np.ones((3, 5))])
    model = KNeighborsRegressor(n_neighbors=4).fit(X, np.zeros(len(X)))
    dist, ind = model.kneighbors(Q)
    exact = np.sqrt(((Q[:, None, :] - X[None]) ** 2).sum(axis=2))
    assert_array_equal(ind, np.argsort(exact, axis=1, kind="stable")[:, :4])
    assert_allclose(dist, np.take_along_axis(exact, ind, axis=1), rtol=1e-12, atol=1e-12)
    assert_array_equal(ind[-1], [1_001, 1_002, 1_003, 1_004])


def test_more_neighbours_than_blocks():
    X = np.random.default_rng(3).normal(size=(100, 3))
    model = KNeighborsRegressor(n_neighbors=1).fit(X, np.zeros(len(X)))
    dist, ind = model.kneighbors(X[:5], n_neighbors=60)
    exact = np.sqrt(((X[:5, None, :] - X[None]) ** 2).sum(axis=2))
    assert_array_equal(ind, np.argsort(exact, axis=1, kind="stable")[:, :60])
    assert_allclose(dist, np.take_along_axis(exact, ind, axis=1), atol=1e-12)


def test_k_smallest_matches_stable_argsort_on_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 20, size=(40, 3_000)).astype(float)
    assert_array_equal(_k_smallest(scores, 5), np.argsort(scores, axis=1, kind="stable")[:, :5])


def test_cosine_zero_vector_is_at_distance_one():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    model = KNeighborsRegressor(n_neighbors=3, metric="cosine").fit(X, [1.0, 2.0, 3.0])
    dist, ind = model.kneighbors([[0.0, 0.0], [2.0, 0.0]])
    assert_allclose(dist, [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]], atol=1e-15)
    assert_array_equal(ind, [[0, 1, 2], [1, 0, 2]])


def test_distance_weights_give_exact_matches_all_the_weight():
    X = np.array([[0.0], [1.0], [1.0], [5.0]])
    reg = KNeighborsRegressor(n_neighbors=3, weights="distance").fit(X, [10.0, 2.0, 4.0, 7.0])
    assert_allclose(reg.predict([[1.0]]), [3.0])
    clf = KNeighborsClassifier(n_neighbors=3, weights="distance").fit(X, ["a", "b", "b", "a"])
    assert_allclose(clf.predict_proba([[1.0]]), [[0.0, 1.0]])
    # Away from the training points the weights are 1 / distance.
    assert_allclose(reg.predict([[2.0]]), [(2 + 4 + 10 / 2) / (1 + 1 + 1 / 2)])


def test_string_labels_multi_output_and_column_vector():
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    y = np.array(
        [["cat", "s"], ["cat", "s"], ["cat", "m"], ["dog", "m"], ["dog", "m"], ["dog", "s"]]
    )
    clf = KNeighborsClassifier(n_neighbors=3).fit(X, y)
    assert clf.outputs_2d_
    assert_array_equal(clf.classes_[0], ["cat", "dog"])
    pred = clf.predict([[0.5], [11.5]])
    assert_array_equal(pred, [["cat", "s"], ["dog", "m"]])
    proba = clf.predict_proba([[0.5]])
    assert len(proba) == 2
    assert_allclose(proba[1], [[1 / 3, 2 / 3]])  # classes_[1] is ["m", "s"]
    with pytest.warns(UserWarning, match="column-vector y"):
        single = KNeighborsClassifier(n_neighbors=3).fit(X, y[:, :1])
    assert_array_equal(single.predict([[11.5]]), ["dog"])


def test_float32_stays_float32(data):
    X, y, Q = data
    model = KNeighborsClassifier(n_neighbors=5).fit(X.astype(np.float32), y)
    dist, _ = model.kneighbors(Q.astype(np.float32))
    assert dist.dtype == np.float32
    ref = KNeighborsClassifier(n_neighbors=5).fit(X, y)
    assert (model.predict(Q.astype(np.float32)) == ref.predict(Q)).mean() > 0.99


def test_results_do_not_depend_on_chunks_or_threads(data):
    X, y, Q = data
    one = KNeighborsClassifier(chunk_size=1, n_jobs=1).fit(X, y).kneighbors(Q)
    many = KNeighborsClassifier(chunk_size=37, n_jobs=2).fit(X, y).kneighbors(Q)
    assert_array_equal(one[1], many[1])
    assert_array_equal(one[0], many[0])


def test_kneighbors_arguments():
    X = np.arange(10.0).reshape(-1, 1)
    model = KNeighborsRegressor(n_neighbors=2).fit(X, X[:, 0])
    assert model.kneighbors([[3.2]], n_neighbors=4, return_distance=False).tolist() == [
        [3, 4, 2, 5]
    ]
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit.*n_neighbors = 11"):
        model.kneighbors([[0.0]], n_neighbors=11)
    with pytest.raises(ValueError, match="n_neighbors < n_samples_fit.*n_neighbors = 10"):
        model.kneighbors(n_neighbors=10)
    with pytest.raises(ValueError, match="positive integer, got n_neighbors=0"):
        model.kneighbors([[0.0]], n_neighbors=0)


@pytest.mark.parametrize("Estimator", [KNeighborsClassifier, KNeighborsRegressor])
def test_clear_errors(Estimator):
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    with pytest.raises(NotFittedError):
        Estimator().predict(X)
    with pytest.raises(ValueError, match="NaN"):
        Estimator(n_neighbors=1).fit([[np.nan, 1.0], [0.0, 0.0]], [0, 1])
    model = Estimator(n_neighbors=1).fit(X, [0, 1, 1])
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 2 features"):
        model.predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="infinity"):
        model.predict([[np.inf, 0.0]])
    with pytest.raises(ValueError, match="'metric' parameter .* Got 'minkowski'"):
        Estimator(metric="minkowski").fit(X, [0, 1, 1])
    with pytest.raises(ValueError, match="n_jobs=0"):
        Estimator(n_jobs=0).fit(X, [0, 1, 1])


def test_feature_names_from_dataframe():
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = KNeighborsClassifier(n_neighbors=1).fit(X, [0, 0, 1, 1])
    assert model.n_features_in_ == 2
    assert_array_equal(model.feature_names_in_, ["a", "b"])


@pytest.mark.parametrize(
    "model",
    [KNeighborsClassifier(n_neighbors=3), KNeighborsRegressor(n_neighbors=3, weights="distance")],
)
def test_pipeline_grid_search_clone_and_pickle(data, model):
    X, y, Q = data
    X, y = X[:300], y[:300]
    pipe = make_pipeline(StandardScaler(), model)
    grid = {f"{type(model).__name__.lower()}__metric": ["euclidean", "cosine"]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    # scikit-learn's own estimator scores every candidate alike, so it picks the same one.
    same = {k: model.get_params()[k] for k in ("n_neighbors", "weights", "metric")}
    reference = getattr(sk_neighbors, type(model).__name__)(algorithm="brute", **same)
    expected = GridSearchCV(make_pipeline(StandardScaler(), reference), grid, cv=3).fit(X, y)
    assert_allclose(
        search.cv_results_["mean_test_score"], expected.cv_results_["mean_test_score"], rtol=1e-9
    )
    assert search.best_params_ == expected.best_params_
    fitted = clone(pipe).fit(X, y)
    restored = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(restored.predict(Q), fitted.predict(Q))
    assert fitted.score(X, y) > 0.7
