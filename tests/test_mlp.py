"""MLPClassifier, MLPRegressor and MLPAutoencoder: scikit-learn compatibility, equality with
scikit-learn's MLP where the algorithms coincide, quality on small datasets, training control."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import neural_network
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits, make_classification
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from mlx.estimators import MLPAutoencoder, MLPClassifier, MLPRegressor

quiet_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.fixture(scope="module")
def blobs():
    return make_classification(
        n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0
    )


# --- scikit-learn's estimator checks ------------------------------------------------------


# A higher learning rate lets 50 epochs of a small network pass the checks' accuracy floors.
@quiet_convergence
# --- the same algorithm as scikit-learn's MLP where they coincide --------------------------


@quiet_convergence
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(
    "ours, theirs, target",
    [
        (MLPClassifier, neural_network.MLPClassifier, "multiclass"),
        (MLPClassifier, neural_network.MLPClassifier, "binary"),
        (MLPRegressor, neural_network.MLPRegressor, "continuous"),
    ],
)
def test_float64_training_equals_scikit_learns(ours, theirs, target, shuffle, blobs):
    # Same Glorot draws from the same RandomState, same batches, same Adam steps: equal to
    # rounding. (Shuffled epochs agree on the first epoch only: scikit-learn reshuffles its
    # previous order, we draw a fresh permutation so that fit equals repeated partial_fit.)
    X, y = blobs
    y = {"multiclass": y, "binary": y % 2, "continuous": X @ np.arange(6.0)}[target]
    epochs = 1 if shuffle else 4
    kwargs = dict(hidden_layer_sizes=(7, 5), activation="tanh", alpha=0.01, batch_size=64)
    kwargs.update(max_iter=epochs, shuffle=shuffle, random_state=3)
    a = ours(dtype=np.float64, **kwargs).fit(X, y)
    b = theirs(**kwargs).fit(X, y)
    assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)
    for mine, reference in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert_allclose(mine, reference, rtol=1e-10, atol=1e-13)


# --- quality ------------------------------------------------------------------------------


@quiet_convergence
def test_digits_accuracy_matches_scikit_learn(digits):
    X_train, X_test, y_train, y_test = digits
    ours = MLPClassifier((64,), max_iter=50, random_state=0).fit(X_train, y_train)
    theirs = neural_network.MLPClassifier((64,), max_iter=50, random_state=0)
    theirs.fit(X_train, y_train)
    assert ours.score(X_test, y_test) >= theirs.score(X_test, y_test) - 0.01
    assert ours.score(X_test, y_test) > 0.95


@pytest.mark.parametrize("random_state", [0, 1, 2])
def test_xor_is_learnt_by_a_small_tanh_network(random_state):
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0])
    clf = MLPClassifier((4,), activation="tanh", learning_rate_init=0.1, max_iter=500)
    clf.set_params(random_state=random_state).fit(X, y)
    assert_array_equal(clf.predict(X), y)
    assert clf.n_iter_ < 500  # converged (loss stopped improving), not cut off


@quiet_convergence
def test_diabetes_r2_matches_scikit_learn():
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    kwargs = dict(hidden_layer_sizes=(64,), learning_rate_init=0.01, max_iter=200, random_state=0)
    ours = MLPRegressor(**kwargs).fit(X_train, y_train)
    theirs = neural_network.MLPRegressor(**kwargs).fit(X_train, y_train)
    assert abs(ours.score(X_test, y_test) - theirs.score(X_test, y_test)) <= 0.05
    assert ours.score(X_test, y_test) > 0.2


@pytest.fixture(scope="module")
def digits_and_pca_mse():
    X = StandardScaler().fit_transform(load_digits().data)
    pca = PCA(8).fit(X)
    return X, np.mean((pca.inverse_transform(pca.transform(X)) - X) ** 2)


def test_linear_autoencoder_reconstructs_like_pca(digits_and_pca_mse):
    X, pca_mse = digits_and_pca_mse
    ae = MLPAutoencoder((32, 8), activation="identity", random_state=0).fit(X)
    assert -ae.score(X) <= 1.10 * pca_mse
    assert ae.n_iter_ < ae.max_iter  # converged


@quiet_convergence
def test_tanh_autoencoder_beats_pca(digits_and_pca_mse):
    # PCA is the best linear code of 8 numbers; a non-linear encoder can do better.
    X, pca_mse = digits_and_pca_mse
    ae = MLPAutoencoder((32, 8), activation="tanh", random_state=0).fit(X)
    assert -ae.score(X) < 0.9 * pca_mse


@pytest.mark.slow
@quiet_convergence
def test_digits_accuracy_matches_scikit_learn_over_seeds(digits):
    X_train, X_test, y_train, y_test = digits
    ours, theirs = [], []
    for seed in range(8):
        clf = MLPClassifier((64,), max_iter=50, random_state=seed).fit(X_train, y_train)
        ours.append(clf.score(X_test, y_test))
        reference = neural_network.MLPClassifier((64,), max_iter=50, random_state=seed)
        theirs.append(reference.fit(X_train, y_train).score(X_test, y_test))
    assert np.mean(ours) >= np.mean(theirs) - 0.005


# --- training control ---------------------------------------------------------------------


@quiet_convergence
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor, MLPAutoencoder])
def test_same_random_state_same_weights_and_predictions(Estimator, blobs):
    X, y = blobs
    make = lambda seed: Estimator((8, 4), max_iter=3, random_state=seed).fit(X, y)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    assert_array_equal(a._network.params, b._network.params)
    out = "transform" if Estimator is MLPAutoencoder else "predict"
    assert_array_equal(getattr(a, out)(X), getattr(b, out)(X))
    assert not np.array_equal(a._network.params, c._network.params)


@quiet_convergence
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor, MLPAutoencoder])
def test_partial_fit_epochs_continue_fit_exactly(Estimator, blobs):
    # partial_fit = one epoch from the current weights and optimiser state, so k calls
    # reproduce fit(max_iter=k) exactly.
    X, y = blobs
    fitted = Estimator((8,), max_iter=4, random_state=0).fit(X, y)
    stepped = Estimator((8,), random_state=0)
    for _ in range(4):
        if Estimator is MLPClassifier:
            stepped.partial_fit(X, y, classes=np.unique(y))
        else:
            stepped.partial_fit(X, y)
    assert stepped.n_iter_ == 4
    assert_allclose(stepped.loss_curve_, fitted.loss_curve_)
    assert_array_equal(stepped._network.params, fitted._network.params)
    stepped.partial_fit(X, y)  # more epochs keep lowering the loss
    assert stepped.n_iter_ == 5 and stepped.loss_curve_[-1] < stepped.loss_curve_[0]
    assert stepped.best_loss_ == min(stepped.loss_curve_)


def test_partial_fit_needs_classes_on_the_first_call(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    clf = MLPClassifier((4,), random_state=0).partial_fit(X[:50], y[:50], classes=[0, 1, 2, 3])
    assert_array_equal(clf.classes_, [0, 1, 2, 3])
    assert clf.predict_proba(X).shape == (300, 4)
    with pytest.raises(ValueError, match=r"labels not in classes_=\[0, 1, 2, 3\]: \[7\]"):
        clf.partial_fit(X[:2], [7, 1])


def test_partial_fit_refuses_early_stopping(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="early_stopping=False"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)


@quiet_convergence
@pytest.mark.parametrize("solver, momenta", [("adam", 2), ("sgd", 1)])
def test_pickle_keeps_the_model_and_its_training_state(blobs, solver, momenta):
    X, y = blobs
    clf = MLPClassifier((256,), solver=solver, max_iter=2, random_state=0).fit(X, y)
    # The optimiser is saved as its momenta (Adam two buffers, SGD one), not its scratch buffer.
    assert len(pickle.dumps(clf._optimizer)) < (momenta + 0.5) * clf._network.params.nbytes
    copy = pickle.loads(pickle.dumps(clf))
    assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert_array_equal(copy.coefs_[0], clf.coefs_[0])
    copy.coefs_[0][:] = 0  # the per-layer arrays are views of the parameters
    assert not np.array_equal(copy.predict_proba(X), clf.predict_proba(X))


def test_convergence_warning_only_when_cut_off(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match=r"max_iter=2"):
        MLPClassifier((8,), max_iter=2, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier((8,), max_iter=200, tol=1.0, n_iter_no_change=2, random_state=0)
        clf.fit(X, y)
    # epoch 1 improves on the initial inf; then n_iter_no_change + 1 epochs without improvement
    assert clf.n_iter_ == 4


def test_early_stopping_keeps_the_best_validation_weights(blobs):
    X, y = blobs
    clf = MLPClassifier((16,), learning_rate_init=0.05, early_stopping=True, random_state=0)
    clf.set_params(n_iter_no_change=5, max_iter=300).fit(X, y)
    assert clf.n_iter_ < 300
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    # the weights are those of the best epoch, not the last
    best_epoch = int(np.argmax(clf.validation_scores_)) + 1
    replay = MLPClassifier((16,), learning_rate_init=0.05, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        replay.set_params(max_iter=best_epoch, n_iter_no_change=10**6).fit(X, y)
    assert_array_equal(replay._network.params, clf._network.params)


def test_divergence_stops_with_the_fix_in_the_message():
    rng = np.random.default_rng(0)
    X = rng.normal(scale=1e3, size=(200, 5))
    y = X @ rng.normal(size=5)
    reg = MLPRegressor((16,), solver="sgd", learning_rate_init=10.0, max_iter=20, random_state=0)
    with pytest.raises(ValueError, match=r"Lower learning_rate_init \(now 10.0\) or scale"):
        reg.fit(X, y)


@quiet_convergence
def test_huge_inputs_give_finite_probabilities_without_warnings(blobs):
    X, y = blobs
    for target in (y, y % 2):
        clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, target)
        # Every floating-point warning numpy would show becomes an error. Underflow stays
        # silent, as by numpy's default: e^-10000 rounding to 0 is the right answer.
        with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
            warnings.simplefilter("error")
            P = clf.predict_proba(1e4 * X)
            log_P = clf.predict_log_proba(1e4 * X)
        assert_allclose(P.sum(axis=1), 1, rtol=1e-5)
        assert np.isfinite(log_P).all() and (log_P <= 0).all()
        assert_allclose(np.exp(log_P), P, atol=1e-6)


# --- outputs and targets ------------------------------------------------------------------


@quiet_convergence
def test_output_layer_follows_the_targets(blobs):
    X, y = blobs
    names = np.array(["cat", "dog"])[y % 2]
    binary = MLPClassifier((8,), max_iter=20, random_state=0).fit(X, names)
    assert binary.out_activation_ == "sigmoid" and binary.n_outputs_ == 1
    assert binary.coefs_[-1].shape == (8, 1)
    assert set(binary.predict(X)) <= {"cat", "dog"}
    assert binary.predict_proba(X).shape == (300, 2)

    multiclass = MLPClassifier((8,), max_iter=20, random_state=0).fit(X, y)
    assert multiclass.out_activation_ == "softmax" and multiclass.n_outputs_ == 3

    Y = np.column_stack([y == 0, y == 1, X[:, 0] > 0]).astype(int)
    multilabel = MLPClassifier((16,), learning_rate_init=0.01, max_iter=100, random_state=0)
    multilabel.fit(X, Y)
    assert multilabel.out_activation_ == "sigmoid" and multilabel.n_outputs_ == 3
    assert_array_equal(multilabel.classes_, [0, 1, 2])
    assert multilabel.predict(X).shape == (300, 3)
    assert np.mean(multilabel.predict(X) == Y) > 0.9

    reg = MLPRegressor((8,), max_iter=5, random_state=0).fit(X, np.column_stack([y, -y]))
    assert reg.out_activation_ == "identity" and reg.predict(X).shape == (300, 2)
    assert reg.predict(X).dtype == np.float64


@quiet_convergence
@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float64"])
def test_dtype_sets_the_working_precision(dtype, blobs):
    X, y = blobs
    clf = MLPClassifier((8,), max_iter=2, dtype=dtype, random_state=0).fit(X, y)
    expected = np.dtype(dtype)
    assert all(c.dtype == expected for c in clf.coefs_ + clf.intercepts_)
    assert clf.predict_proba(X).dtype == expected


@pytest.mark.parametrize("sizes", [(), (4, 0), (3.5,), "abc"])
def test_bad_hidden_layer_sizes_are_named(sizes, blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(sizes).fit(X, y)


def test_sgd_solver_learns(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier((32,), solver="sgd", learning_rate_init=0.05, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.93


# --- the autoencoder ----------------------------------------------------------------------


@quiet_convergence
def test_autoencoder_encodes_decodes_and_scores(blobs):
    X, _ = blobs
    ae = MLPAutoencoder((5, 2), activation="tanh", max_iter=10, random_state=0).fit(X)
    assert [c.shape for c in ae.coefs_] == [(6, 5), (5, 2), (2, 5), (5, 6)]
    assert ae.n_layers_ == 5 and ae.n_outputs_ == 6
    E = ae.transform(X)
    assert E.shape == (300, 2) and np.abs(E).max() <= 1  # tanh bottleneck
    reconstruction = ae.inverse_transform(E)
    assert reconstruction.shape == X.shape
    assert ae.score(X) == pytest.approx(-np.mean((reconstruction - X) ** 2), rel=1e-5)
    assert_array_equal(ae.get_feature_names_out(), ["mlpautoencoder0", "mlpautoencoder1"])
    with pytest.raises(ValueError, match="X has 3 columns, but the embedding .* has 2"):
        ae.inverse_transform(np.zeros((1, 3)))
    assert clone(ae).get_params() == ae.get_params()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid", "identity"])
def test_training_on_huge_inputs_raises_no_floating_point_warning(activation, blobs):
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        for target in (y, y % 2):
            clf = MLPClassifier((8,), activation=activation, max_iter=3, random_state=0)
            clf.fit(1e4 * X, target)
            assert np.isfinite(clf.loss_curve_).all()
            assert np.isfinite(clf.predict_proba(1e4 * X)).all()
