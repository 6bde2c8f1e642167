"""Estimators written in numpy with a scikit-learn face.

They know neither MLflow nor Optuna: each one drops into ``Pipeline``, ``GridSearchCV``,
``clone`` and pickle like a scikit-learn estimator.
"""

__all__ = []
