"""Estimators written in numpy with a scikit-learn face.

They know neither MLflow nor Optuna: each one drops into ``Pipeline``, ``GridSearchCV``,
``clone`` and pickle like a scikit-learn estimator.
"""

from mlx.estimators.cnn import CNNClassifier, CNNRegressor
from mlx.estimators.kmeans import KMeans, KSelection, select_k
from mlx.estimators.linear import LinearRegression
from mlx.estimators.mlp import MLPAutoencoder, MLPClassifier, MLPRegressor
from mlx.estimators.neighbors import KNeighborsClassifier, KNeighborsRegressor
from mlx.estimators.rnn import RNNClassifier, RNNRegressor

__all__ = [
    "CNNClassifier",
    "CNNRegressor",
    "KMeans",
    "KSelection",
    "KNeighborsClassifier",
    "KNeighborsRegressor",
    "LinearRegression",
    "MLPAutoencoder",
    "MLPClassifier",
    "MLPRegressor",
    "RNNClassifier",
    "RNNRegressor",
    "select_k",
]
