"""mlx: honest, tracked machine-learning experiments.

An experiment file declares data, an estimator and a search space; :func:`run` splits the data
once, searches on the validation split with Optuna, evaluates the test split once and logs
everything to MLflow. The numpy estimators live in :mod:`mlx.estimators`.
"""

import logging
from importlib import metadata as _metadata

__version__ = "0.1.0"


def _foreign_mlx():
    """The version of another distribution that also installs the import package ``mlx``.

    Apple's MLX array framework (distribution ``mlx``) is common on this audience's laptops,
    and MLX-based audio tools depend on it: in one environment, one ``mlx`` hides the other.
    """
    try:
        return _metadata.distribution("mlx").version
    except _metadata.PackageNotFoundError:
        return None


_FOREIGN = _foreign_mlx()
if _FOREIGN is not None:
    # One line on stderr (logging's last-resort handler when none is configured).
    logging.getLogger(__name__).warning(
        "mlx: another package named mlx is installed here (distribution 'mlx' %s, Apple's MLX "
        "array framework); it and mlx-experiments both import as `mlx`, so one hides the other. "
        "Install mlx-experiments in a virtual environment of its own.",
        _FOREIGN,
    )

__all__ = ["Experiment", "RunResult", "load_experiment", "run", "run_test", "__version__"]

# MLflow and Optuna are heavy to import: the public names load on first use so that
# `import mlx` and `mlx --help` stay fast.
_LAZY = {
    "Experiment": "mlx.experiment",
    "load_experiment": "mlx.experiment",
    "run": "mlx.runner",
    "run_test": "mlx.runner",
    "RunResult": "mlx.results",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlx' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
