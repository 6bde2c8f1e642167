"""When a worker opens the stores: before its release on local SQLite files, after it on servers.

A local worker (``mlx run --workers N``) waits in ``ready()`` until its coordinator has created
the study and the parent run. Local SQLite stores are copies of an empty template, which two
processes may make at once, so the worker opens them before that wait and is ready when the
first slot is; a database server's or tracking server's empty store gets its schema from the
first process that opens it, so the worker touches those only after its release.
"""

import pytest

from mlx.workers import work

EXPERIMENT = """
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from optuna.distributions import IntDistribution

import mlx

experiment = mlx.Experiment(
    name="early-stores",
    data=lambda: load_iris(return_X_y=True),
    estimator=KNeighborsClassifier(),
    search_space={"n_neighbors": IntDistribution(1, 10)},
    n_trials=2,
)
"""


class _Released(Exception):
    """Raised by the test's ready(): the worker got as far as its release."""


def _path(tmp_path):
    path = tmp_path / "experiment.py"
    path.write_text(EXPERIMENT)
    return path


def test_a_worker_opens_local_sqlite_stores_before_its_release(tmp_path):
    mlflow_db, optuna_db = tmp_path / "stores" / "mlflow.db", tmp_path / "stores" / "optuna.db"
    seen = {}

    def ready():
        seen["stores"] = mlflow_db.exists(), optuna_db.exists()
        raise _Released

    with pytest.raises(_Released):
        work(
            _path(tmp_path),
            tracking_uri=f"sqlite:///{mlflow_db}",
            storage=f"sqlite:///{optuna_db}",
            ready=ready,
            wait=0,
        )
    assert seen["stores"] == (True, True)


def test_a_worker_touches_server_stores_only_after_its_release(tmp_path):
    """Unreachable servers: the worker reaches its release without trying them."""
    released = []

    def ready():
        released.append(True)
        raise _Released

    with pytest.raises(_Released):
        work(
            _path(tmp_path),
            tracking_uri="http://127.0.0.1:9",  # the discard port: nothing answers
            storage="postgresql://nobody@127.0.0.1:9/none",
            ready=ready,
            wait=0,
        )
    assert released == [True]
