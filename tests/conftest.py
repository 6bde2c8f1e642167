"""Shared fixtures of the runner's tests: real MLflow and Optuna stores in a temp folder.

Creating an MLflow SQLite store runs all of MLflow's migrations (5-10 s here); the session
builds one empty store per kind and each test copies the file, which is the same real store.
"""

import functools
import shutil
import textwrap

import pytest

# MLflow refuses to deserialise models (pickle or skops) unless this is set; the tests load the
# models they logged themselves.
_LOAD_MODELS = {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}


@pytest.fixture(scope="session")
def _empty_stores(tmp_path_factory):
    import optuna
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("template-stores")
    mlflow_db, optuna_db = folder / "mlflow.db", folder / "optuna.db"
    MlflowClient(f"sqlite:///{mlflow_db}").search_experiments()
    optuna.storages.RDBStorage(f"sqlite:///{optuna_db}").engine.dispose()
    return mlflow_db, optuna_db


@pytest.fixture(scope="session")
def store_maker(_empty_stores):
    """``make(folder, monkeypatch) -> (tracking_uri, storage_url)``, for any fixture scope."""
    return functools.partial(make_stores, empty_stores=_empty_stores)


@pytest.fixture
def stores(tmp_path, monkeypatch, _empty_stores):
    """Fresh MLflow and Optuna SQLite stores in ``tmp_path`` (also the working directory).

    Returns ``(tracking_uri, storage_url)``. The working directory is ``tmp_path`` so that
    default stores would land there too, and ``MLFLOW_TRACKING_URI`` is unset.
    """
    return make_stores(tmp_path, monkeypatch, _empty_stores)


def make_stores(folder, monkeypatch, empty_stores):
    mlflow_db, optuna_db = empty_stores
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_db, folder / "mlflow.db")
    shutil.copy(optuna_db, folder / "mlx-optuna.db")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value in _LOAD_MODELS.items():
        monkeypatch.setenv(key, value)
    return f"sqlite:///{folder / 'mlflow.db'}", f"sqlite:///{folder / 'mlx-optuna.db'}"


@pytest.fixture
def write_experiment(tmp_path):
    """Write an experiment file from a snippet; returns its path.

    The snippet is dedented and prefixed with common imports.
    """

    def write(body, name="exp.py"):
        header = (
            "import numpy as np\n"
            "import mlx\n"
            "from optuna.distributions import (\n"
            "    CategoricalDistribution, FloatDistribution, IntDistribution)\n"
        )
        path = tmp_path / name
        path.write_text(header + textwrap.dedent(body))
        return path

    return write
