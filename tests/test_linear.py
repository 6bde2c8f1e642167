"""LinearRegression: scikit-learn's checks, parity with LinearRegression / Ridge, the solvers."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import linear_model as sk_linear
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlx.estimators import LinearRegression

SOLVERS = ["normal", "gd", "sgd"]
GRADIENT_SOLVERS = ["gd", "sgd"]
# Settings under which the gradient solvers reach the closed form within 1e-3 relative.
FAST = {
    "gd": dict(learning_rate=0.3),
    "sgd": dict(learning_rate=0.05, batch_size=100, learning_rate_schedule="adaptive"),
}


def make_data(n=400, d=6, targets=None, shift=0.0, seed=0, scales=(0.01, 100)):
    rng = np.random.default_rng(seed)
    # Features on very different scales, off centre: the solvers must not care.
    scale = np.geomspace(*scales, d)
    X = rng.normal(size=(n, d)) * scale + shift
    W = rng.normal(size=(d, targets or 1)) / scale[:, None]
    Y = X @ W + 2.0 + 0.05 * rng.normal(size=(n, targets or 1))
    return X, Y[:, 0] if targets is None else Y


def relative_error(a, b):
    return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


@pytest.mark.parametrize("targets", [None, 1, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_normal_matches_sklearn_linear_regression(targets, fit_intercept):
    X, y = make_data(targets=targets, shift=1e4)
    ours = LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    ref = sk_linear.LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    assert ours.coef_.shape == ref.coef_.shape
    assert np.shape(ours.intercept_) == np.shape(ref.intercept_)
    assert_allclose(ours.coef_, ref.coef_, rtol=1e-6, atol=1e-12)
    assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-6, atol=1e-9)
    assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-9)


@pytest.mark.parametrize("alpha", [1e-3, 0.5])
def test_alpha_is_ridge_with_alpha_times_n_samples(alpha):
    X, y = make_data(targets=2, n=300)
    ours = LinearRegression(alpha=alpha).fit(X, y)
    ref = sk_linear.Ridge(alpha=alpha * len(X), solver="svd").fit(X, y)
    assert_allclose(ours.coef_, ref.coef_, rtol=1e-6, atol=1e-12)
    assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-6)


def test_rank_deficient_x_gives_the_minimum_norm_solution():
    X, y = make_data(n=100, d=4)
    X = np.column_stack([X, X[:, 1], np.full(len(X), 3.0)])  # a copy and a constant
    ours = LinearRegression().fit(X, y)
    ref = sk_linear.LinearRegression().fit(X, y)
    assert_allclose(ours.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-6)
    # More features than samples.
    X_wide = np.random.default_rng(3).normal(size=(8, 20))
    assert_allclose(
        LinearRegression().fit(X_wide, y[:8]).coef_,
        sk_linear.LinearRegression().fit(X_wide, y[:8]).coef_,
        atol=1e-9,
    )


@pytest.mark.parametrize("solver", GRADIENT_SOLVERS)
@pytest.mark.parametrize(
    "alpha, scales",
    [
        # Least squares with feature scales 1e4 apart: the standardisation copes.
        (0.0, (0.01, 100)),
        # A penalty that moves the coefficients by ~20%. (With the scales above any alpha
        # dominates the tiny-scale features and leaves residuals whose mini-batch noise keeps
        # constant-step SGD ~1e-2 away; "gd" gets there either way.)
        (0.1, (0.5, 2)),
    ],
)
@pytest.mark.parametrize("targets", [None, 2])
def test_gradient_solvers_reach_the_closed_form(solver, alpha, scales, targets):
    X, y = make_data(targets=targets, shift=50.0, scales=scales)
    closed = LinearRegression(alpha=alpha).fit(X, y)
    model = LinearRegression(solver=solver, alpha=alpha, random_state=0, **FAST[solver])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X, y)
    assert relative_error(model.coef_, closed.coef_) < 1e-3
    assert relative_error(model.predict(X), closed.predict(X)) < 1e-3
    assert model.n_iter_ == len(model.loss_curve_) < model.max_iter


def test_adaptive_schedule_gets_closer_than_constant_steps():
    # Noisy targets and large steps on small batches: constant steps stop at the noise floor.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    y = X @ rng.normal(size=6) + rng.normal(size=400)
    closed = LinearRegression().fit(X, y)

    def error(schedule):
        model = LinearRegression(
            solver="sgd",
            learning_rate=0.1,
            batch_size=16,
            learning_rate_schedule=schedule,
            random_state=0,
        )
        return relative_error(model.fit(X, y).coef_, closed.coef_)

    assert error("adaptive") < error("constant") / 2


# With learning_rate=0.01, "gd" is within 1e-3 after its 1000 steps but its gradient is not yet
# below tol=1e-6: the warning is right.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_default_learning_rate_reaches_the_closed_form_on_standardised_data():
    X, y = make_data()
    X = StandardScaler().fit_transform(X)
    closed = LinearRegression().fit(X, y)
    for solver in GRADIENT_SOLVERS:
        model = LinearRegression(solver=solver, random_state=0).fit(X, y)
        assert relative_error(model.coef_, closed.coef_) < 1e-3


@pytest.mark.parametrize("solver", GRADIENT_SOLVERS)
def test_loss_curve_decreases_to_the_optimum(solver):
    X, y = make_data()
    model = LinearRegression(solver=solver, random_state=0, **FAST[solver]).fit(X, y)
    curve = np.array(model.loss_curve_)
    closed = LinearRegression().fit(X, y)
    optimum = 0.5 * np.mean((y - closed.predict(X)) ** 2)
    assert curve[0] > 100 * optimum
    assert curve[-1] == pytest.approx(optimum, rel=1e-2)
    if solver == "gd":
        assert (np.diff(curve) <= 1e-12 * curve[:-1]).all()
    else:
        assert curve[10] < curve[0] and curve[-1] < curve[10]


@pytest.mark.parametrize("solver", GRADIENT_SOLVERS)
def test_partial_fit_continues_training(solver):
    X, y = make_data(targets=2)
    model = LinearRegression(solver=solver, random_state=0, **FAST[solver])
    for _ in range(3):
        model.partial_fit(X, y)
    assert model.n_iter_ == 3
    losses = list(model.loss_curve_)
    for _ in range(300):
        model.partial_fit(X, y)
    assert model.n_iter_ == 303
    assert model.loss_curve_[:3] == losses
    closed = LinearRegression().fit(X, y)
    assert relative_error(model.coef_, closed.coef_) < 1e-3
    # After fit, partial_fit goes on from the fitted coefficients.
    fitted = clone(model).fit(X, y)
    before = fitted.n_iter_
    assert fitted.partial_fit(X, y).n_iter_ == before + 1
    with pytest.raises(ValueError, match="y has 1 targets, but partial_fit started with 2"):
        fitted.partial_fit(X, y[:, 0])


def test_partial_fit_is_refused_by_the_closed_form():
    model = LinearRegression(solver="normal")
    assert not hasattr(model, "partial_fit")
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
        model.partial_fit([[0.0]], [0.0])
    # The reason is chained, so the traceback says it too (scikit-learn's available_if).
    assert "only available for the gradient solvers" in str(info.value.__cause__)


@pytest.mark.parametrize("solver", GRADIENT_SOLVERS)
def test_divergence_is_a_clear_error(solver):
    X, y = make_data()
    with pytest.raises(ValueError, match="diverged .* learning_rate=50.* lower learning_rate"):
        LinearRegression(solver=solver, learning_rate=50.0).fit(X, y)


def test_max_iter_warns():
    X, y = make_data()
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        model = LinearRegression(solver="gd", max_iter=3).fit(X, y)
    assert model.n_iter_ == 3


def test_same_random_state_same_result_and_shuffling_depends_on_it():
    X, y = make_data()

    def coef(seed):
        return LinearRegression(solver="sgd", max_iter=5, random_state=seed).fit(X, y).coef_

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert_array_equal(coef(0), coef(0))
        assert not np.array_equal(coef(0), coef(1))


@pytest.mark.parametrize("solver", SOLVERS)
def test_float32_stays_float32(solver):
    X, y = make_data()
    model = LinearRegression(solver=solver, random_state=0, **FAST.get(solver, {}))
    model.fit(X.astype(np.float32), y)
    assert model.coef_.dtype == np.float32
    assert model.predict(X.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_clear_errors(solver):
    X, y = make_data(n=20, d=2)
    with pytest.raises(NotFittedError):
        LinearRegression(solver=solver).predict(X)
    with pytest.raises(ValueError, match="NaN"):
        LinearRegression(solver=solver).fit(np.where(X > 0, np.nan, X), y)
    model = LinearRegression(solver=solver, max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 2 features"):
        model.predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="'learning_rate' parameter .* Got -1"):
        LinearRegression(solver=solver, learning_rate=-1).fit(X, y)
    with pytest.raises(ValueError, match="'solver' parameter .* Got 'adam'"):
        LinearRegression(solver="adam").fit(X, y)


def test_feature_names_from_dataframe():
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 3.0]})
    model = LinearRegression().fit(X, [1.0, 2.0, 3.0, 4.0])
    assert model.n_features_in_ == 2
    assert_array_equal(model.feature_names_in_, ["a", "b"])


@pytest.mark.parametrize("solver", SOLVERS)
def test_pipeline_grid_search_clone_and_pickle(solver):
    X, y = make_data(n=200)
    pipe = make_pipeline(
        StandardScaler(), LinearRegression(solver=solver, random_state=0, **FAST.get(solver, {}))
    )
    search = GridSearchCV(pipe, {"linearregression__alpha": [0.0, 1.0]}, cv=3).fit(X, y)
    assert search.best_params_ == {"linearregression__alpha": 0.0}
    fitted = clone(pipe).fit(X, y)
    restored = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(restored.predict(X), fitted.predict(X))
    assert fitted.score(X, y) > 0.99
