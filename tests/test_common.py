"""scikit-learn's own estimator checks, over every estimator of mlx (no expected failures)."""

import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlx.estimators import (
    CNNClassifier,
    CNNRegressor,
    KMeans,
    KNeighborsClassifier,
    KNeighborsRegressor,
    LinearRegression,
    MLPAutoencoder,
    MLPClassifier,
    MLPRegressor,
    RNNClassifier,
    RNNRegressor,
)

ESTIMATORS = [
    KMeans(n_clusters=3, n_init=2, random_state=0),
    KMeans(n_clusters=3, init="random", n_init=2, random_state=0),
    KNeighborsClassifier(),
    KNeighborsRegressor(),
    KNeighborsClassifier(weights="distance", metric="manhattan"),
    KNeighborsRegressor(weights="distance", metric="cosine"),
    *[LinearRegression(solver=solver, random_state=0) for solver in ("normal", "gd", "sgd")],
    MLPClassifier((16,), learning_rate_init=0.01, max_iter=50),
    MLPRegressor((16,), learning_rate_init=0.01, max_iter=50),
    MLPAutoencoder((8, 3), max_iter=5),
    CNNClassifier((8,), kernel_size=3, learning_rate_init=0.01, max_iter=50),
    CNNClassifier((4,), conv="2d", kernel_size=3, learning_rate_init=0.01, max_iter=50),
    # Tabular checks need to know which column is which: flatten instead of global pooling.
    CNNRegressor((8,), kernel_size=3, global_pool=None, learning_rate_init=0.01, max_iter=50),
    # A row of n_features columns is a sequence of n_features frames of one feature.
    RNNClassifier("lstm", hidden_size=16, num_layers=2, learning_rate_init=0.02, max_iter=50),
    RNNRegressor(hidden_size=16, learning_rate_init=0.02, max_iter=50),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # Some checks fit a handful of noisy samples, for which max_iter is not enough.
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
