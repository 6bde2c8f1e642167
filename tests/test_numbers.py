"""Numbers that stay honest: every estimator of mlx.estimators on awkward but valid data.

Extreme scales, a large offset, constant features and duplicated rows must give finite
predictions; data beyond what float64 arithmetic can hold must be refused with a one-line
error that says what to do, never answered with NaN.
"""

import warnings

import numpy as np
import pytest

from mlx.estimators import (
    KMeans,
    KNeighborsClassifier,
    KNeighborsRegressor,
    LinearRegression,
    MLPAutoencoder,
    MLPClassifier,
    MLPRegressor,
)

# (estimator factory, kind): kind says which target the estimator learns.
ESTIMATORS = {
    "kmeans": (lambda: KMeans(3, n_init=1, random_state=0), "none"),
    "knn-classifier": (lambda: KNeighborsClassifier(3), "class"),
    "knn-classifier-distance": (lambda: KNeighborsClassifier(3, weights="distance"), "class"),
    "knn-classifier-cosine": (lambda: KNeighborsClassifier(3, metric="cosine"), "class"),
    "knn-regressor": (lambda: KNeighborsRegressor(3, weights="distance"), "value"),
    "knn-regressor-manhattan": (lambda: KNeighborsRegressor(3, metric="manhattan"), "value"),
    "linear-normal": (lambda: LinearRegression(), "value"),
    "linear-gd": (lambda: LinearRegression(solver="gd", max_iter=50), "value"),
    "linear-sgd": (lambda: LinearRegression(solver="sgd", max_iter=10, random_state=0), "value"),
    "mlp-classifier": (lambda: MLPClassifier((8,), max_iter=10, random_state=0), "class"),
    "mlp-regressor": (lambda: MLPRegressor((8,), max_iter=10, random_state=0), "value"),
    "mlp-autoencoder": (
        lambda: MLPAutoencoder(hidden_layer_sizes=(2,), max_iter=10, random_state=0),
        "none",
    ),
}


def _base(n=60, d=4):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    # Labels and targets from the base features, so every variant keeps two classes.
    return X, (X[:, 0] > 0).astype(int), 2.0 * X[:, 0] - X[:, 2]


def _constant(X):
    X = X.copy()
    X[:, 1], X[:, 3] = 3.0, 0.0
    return X


# name -> (X to fit, X to predict) built from the base X.
DATA = {
    "scale-1e6": lambda X: (X * 1e6, X * 1e6),
    "float32-scale-1e6": lambda X: (np.float32(1e6) * X.astype(np.float32),) * 2,
    "offset-1e6": lambda X: (X + 1e6, X + 1e6),
    "tiny-1e-6": lambda X: (X * 1e-6, X * 1e-6),
    "queries-1e6-away": lambda X: (X, X * 1e6),
    "constant-features": lambda X: (_constant(X), _constant(X)),
    "all-features-constant": lambda X: (np.full_like(X, 7.0), np.full_like(X, 7.0)),
    "duplicated-rows": lambda X: (np.repeat(X[:6], 10, axis=0), X),
}


def _targets(kind, y_class, y_value, X_fit):
    if kind == "none":
        return None
    if kind == "class":
        return y_class
    return y_value if X_fit.shape[0] == len(y_value) else y_value[np.repeat(np.arange(6), 10)]


def _outputs(estimator, X):
    """Everything the estimator hands back for ``X``: predictions, probabilities, codes."""
    outputs = {
        method: getattr(estimator, method)(X)
        for method in ("predict", "predict_proba", "transform")
        if hasattr(estimator, method)
    }
    if hasattr(estimator, "inverse_transform"):
        outputs["inverse_transform"] = estimator.inverse_transform(outputs["transform"])
    return outputs


def _fit(estimator, X, y):
    with warnings.catch_warnings():
        # Few epochs on purpose: convergence is not what is tested here.
        warnings.simplefilter("ignore", category=UserWarning)
        return estimator.fit(X, y)


@pytest.mark.parametrize("data", list(DATA))
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_awkward_data_gives_finite_outputs(name, data):
    make, kind = ESTIMATORS[name]
    X, y_class, y_value = _base()
    X_fit, X_query = DATA[data](X)
    y = _targets(kind, y_class, y_value, X_fit)
    estimator = _fit(make(), X_fit, y)
    outputs = _outputs(estimator, X_query)
    assert outputs
    for method, values in outputs.items():
        values = np.asarray(values, dtype=float)
        assert values.shape[0] == X_query.shape[0], method
        assert np.isfinite(values).all(), f"{name}.{method} on {data} returned NaN or inf"


INCREMENTAL = [name for name, (make, _) in ESTIMATORS.items() if hasattr(make(), "partial_fit")]


@pytest.mark.parametrize("data", ["scale-1e6", "offset-1e6", "duplicated-rows"])
@pytest.mark.parametrize("name", INCREMENTAL)
def test_epoch_by_epoch_training_stays_finite(name, data):
    # The runner trains these with partial_fit, one epoch at a time.
    make, kind = ESTIMATORS[name]
    X, y_class, y_value = _base()
    X_fit, X_query = DATA[data](X)
    y = _targets(kind, y_class, y_value, X_fit)
    estimator = make()
    first = {"classes": np.unique(y)} if kind == "class" else {}
    for epoch in range(3):
        estimator.partial_fit(X_fit, y, **(first if epoch == 0 else {}))
        for method, values in _outputs(estimator, X_query).items():
            assert np.isfinite(np.asarray(values, dtype=float)).all(), (method, epoch)


# Enough for 1e-4 of the target's range (standardised steps: the scale of X does not matter).
LINEAR_SETTINGS = {
    "normal": {},
    "gd": {"learning_rate": 0.5, "max_iter": 1000, "tol": 1e-9},
    "sgd": {"learning_rate": 0.1, "max_iter": 300, "learning_rate_schedule": "adaptive"},
}


@pytest.mark.parametrize("solver", list(LINEAR_SETTINGS))
@pytest.mark.parametrize("data", ["scale-1e6", "offset-1e6", "constant-features"])
def test_linear_regression_stays_accurate_at_extreme_scales(solver, data):
    # An exactly linear target: every solver must find it, whatever the features' scale.
    X, _, _ = _base()
    X_fit, _ = DATA[data](X)
    y = X_fit @ np.array([2.0, 0.0, -1.0, 0.5]) + 3.0
    model = LinearRegression(solver=solver, random_state=0, **LINEAR_SETTINGS[solver])
    _fit(model, X_fit, y)
    np.testing.assert_allclose(model.predict(X_fit), y, rtol=0, atol=1e-4 * np.ptp(y))


def _overflowing(X):
    return X * 1e200


# Estimators that cannot work at this scale and must say so; the others must stay finite.
REFUSED = {
    "kmeans": "too far apart for squared distances.*scale the features",
    "knn-classifier": "too far apart for euclidean distances.*scale the features",
    "knn-classifier-distance": "too far apart for euclidean distances.*scale the features",
    "knn-regressor": "too far apart for euclidean distances.*scale the features",
    "linear-gd": "overflows float64.*Rescale X",
    "linear-sgd": "overflows float64.*Rescale X",
    "mlp-classifier": "too large for dtype",
    "mlp-regressor": "too large for dtype",
    "mlp-autoencoder": "too large for dtype",
}


# Overflow on the way to the refusal is expected; the refusal is what is tested.
_OVERFLOW = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@_OVERFLOW
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_values_beyond_float64_are_refused_or_handled(name):
    make, kind = ESTIMATORS[name]
    X, y_class, y_value = _base()
    X_fit = _overflowing(X)
    y = _targets(kind, y_class, y_value * 1e200, X_fit)
    if name in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[name]) as info:
            _outputs(_fit(make(), X_fit, y), X_fit)
        assert "\n" not in str(info.value)
        return
    for values in _outputs(_fit(make(), X_fit, y), X_fit).values():
        assert np.isfinite(np.asarray(values, dtype=float)).all()


@_OVERFLOW
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: KNeighborsClassifier(3), "queries and the training points are too far apart"),
        (lambda: KMeans(3, n_init=1, random_state=0), "samples and the cluster centres are too"),
    ],
    ids=["knn", "kmeans"],
)
def test_queries_too_far_from_the_training_points_are_refused(make, message):
    X, y, _ = _base()
    model = make().fit(X, y)
    for method in ("predict", "transform", "score"):
        if hasattr(model, method) and (method != "score" or isinstance(model, KMeans)):
            with pytest.raises(ValueError, match=message):
                getattr(model, method)(X * 1e200)


@_OVERFLOW
def test_gradient_descent_refuses_a_target_whose_variance_overflows():
    X, _, y = _base()
    with pytest.raises(ValueError, match="largest \\|y\\| = .*e\\+300"):
        LinearRegression(solver="gd").fit(X, y * 1e300)
    # The closed form has no squares of y to overflow.
    assert np.isfinite(LinearRegression().fit(X, y * 1e300).predict(X)).all()
