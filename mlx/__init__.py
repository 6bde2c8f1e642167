"""mlx: honest, tracked machine-learning experiments.

An experiment file declares data, an estimator and a search space; :func:`run` splits the data
once, searches on the validation split with Optuna, evaluates the test split once and logs
everything to MLflow. The numpy estimators live in :mod:`mlx.estimators`.
"""

__version__ = "0.1.0"

__all__ = ["Experiment", "RunResult", "load_experiment", "run", "__version__"]

# MLflow and Optuna are heavy to import: the public names load on first use so that
# `import mlx` and `mlx --help` stay fast.
_LAZY = {
    "Experiment": "mlx.experiment",
    "load_experiment": "mlx.experiment",
    "run": "mlx.runner",
    "RunResult": "mlx.results",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlx' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
