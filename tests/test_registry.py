"""The model registry: ``--register NAME`` and ``Experiment(register=...)`` (issue 16).

Against real stores: a SQLite MLflow store, and an ``mlflow server`` (the tracking server the
scale-out tests start). The registered version is loaded as users load it,
``models:/NAME@candidate`` through ``mlflow.sklearn`` and ``mlflow.pyfunc``, and predicts.
"""

import json
import re

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pytest
from _servers import MlflowServer
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS
from sklearn.datasets import load_iris

from mlx.cli import cli
from mlx.tracking import ParentRun, Tracker, register_model, schema

IRIS = """
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

experiment = mlx.Experiment(
    name="registry-iris",
    data=lambda: load_iris(return_X_y=True),
    estimator=KNeighborsClassifier(),
    search_space={{"n_neighbors": IntDistribution(1, 10)}},
    n_trials=2,
    {extra}
)
"""


def _file(write_experiment, extra=""):
    return write_experiment(IRIS.format(extra=extra))


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _parents(client):
    experiment = client.get_experiment_by_name("registry-iris")
    return client.search_runs(
        [experiment.experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
        order_by=["attributes.start_time ASC"],
    )


@pytest.fixture
def tracking_uri(monkeypatch):
    """Point MLflow's fluent API (load_model) at ``uri`` for the test."""

    def point(uri):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)

    yield point
    mlflow.set_tracking_uri(None)


def _check_version(client, name, version, parent):
    """Version ``version`` of ``name`` holds the run's test metrics and intervals."""
    registered = client.get_model_version(name, version)
    assert registered.run_id == parent.info.run_id
    metrics = parent.data.metrics
    for metric in ("accuracy", "f1_macro"):
        for key in (
            schema.test(metric),
            schema.ci_low(schema.test(metric)),
            schema.ci_high(schema.test(metric)),
        ):
            assert float(registered.tags[key]) == pytest.approx(metrics[key], abs=0)
    accuracy = metrics[schema.test("accuracy")]
    low = metrics[schema.ci_low(schema.test("accuracy"))]
    high = metrics[schema.ci_high(schema.test("accuracy"))]
    row = f"| accuracy | {accuracy:.4f} | [{low:.4f}, {high:.4f}] |"
    assert row in registered.description, registered.description
    assert parent.info.run_id in registered.description
    assert registered.tags[schema.TAG_EXPERIMENT] == "registry-iris"
    # The logged model lists the version, as mlflow.register_model would (the UI shows it).
    model_id = parent.data.tags[schema.TAG_MODEL_URI].removeprefix("models:/")
    listed = json.loads(client.get_logged_model(model_id).tags[MLFLOW_MODEL_VERSIONS])
    assert {"name": name, "version": int(version)} in listed
    return registered


def _predicts_like_the_run(uri, parent):
    """``models:/...@candidate`` loads through mlflow.sklearn and pyfunc and predicts."""
    X, _ = load_iris(return_X_y=True)
    logged = mlflow.sklearn.load_model(parent.data.tags[schema.TAG_MODEL_URI])
    for loader in (mlflow.sklearn.load_model, mlflow.pyfunc.load_model):
        model = loader(uri)
        np.testing.assert_array_equal(np.asarray(model.predict(X)), logged.predict(X))


def test_register_makes_versions_with_test_metrics_and_moves_the_alias(
    stores, write_experiment, tracking_uri
):
    uri, _ = stores
    tracking_uri(uri)
    path = _file(write_experiment)
    first = _invoke("run", path, "--register", "iris-knn")
    assert first.exit_code == 0, first.output
    assert "registered  models:/iris-knn/1   (models:/iris-knn@candidate)" in first.stdout
    client = MlflowClient(uri)
    (parent,) = _parents(client)
    assert parent.data.tags[schema.TAG_REGISTERED] == "models:/iris-knn/1"
    _check_version(client, "iris-knn", "1", parent)
    assert str(client.get_model_version_by_alias("iris-knn", schema.REGISTRY_ALIAS).version) == "1"
    _predicts_like_the_run(f"models:/iris-knn@{schema.REGISTRY_ALIAS}", parent)

    # The same run registering again (a resume that stopped after registering): its version.
    again = register_model(
        ParentRun(Tracker(uri), parent.info.run_id, parent.info.experiment_id, "x"),
        "iris-knn",
        parent.data.tags[schema.TAG_MODEL_URI],
        metric="accuracy",
        scores={"accuracy": 1.0},
        intervals={},
        validation=1.0,
        experiment_name="registry-iris",
    )
    assert again == "models:/iris-knn/1"
    assert len(client.search_model_versions("name = 'iris-knn'")) == 1

    # A second run (another seed: another test split) is version 2, and the alias moves.
    second = _invoke("run", path, "--register", "iris-knn", "--set", "seed=1")
    assert second.exit_code == 0, second.output
    newer = _parents(client)[1]
    _check_version(client, "iris-knn", "2", newer)
    assert str(client.get_model_version_by_alias("iris-knn", schema.REGISTRY_ALIAS).version) == "2"
    versions = client.search_model_versions("name = 'iris-knn'")
    assert {str(v.version) for v in versions} == {"1", "2"}
    _predicts_like_the_run(f"models:/iris-knn@{schema.REGISTRY_ALIAS}", newer)


def test_register_in_the_experiment_waits_for_the_test(stores, write_experiment, tracking_uri):
    uri, _ = stores
    tracking_uri(uri)
    path = _file(write_experiment, extra='register="iris-file",')
    searched = _invoke("run", path, "--no-test")
    assert searched.exit_code == 0, searched.output
    assert "registered" not in searched.stdout
    client = MlflowClient(uri)
    assert client.search_registered_models() == []
    (parent,) = _parents(client)
    assert schema.TAG_REGISTERED not in parent.data.tags

    tested = _invoke("test", path)  # evaluates the test split, then registers
    assert tested.exit_code == 0, tested.output
    assert "models:/iris-file/1" in tested.stdout
    (parent,) = _parents(client)
    _check_version(client, "iris-file", "1", parent)
    _predicts_like_the_run(f"models:/iris-file@{schema.REGISTRY_ALIAS}", parent)


def test_register_without_test_is_refused_before_any_store(write_experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _invoke("run", _file(write_experiment), "--no-test", "--register", "iris-knn")
    assert result.exit_code == 2
    assert re.fullmatch(r"mlx: error: --register iris-knn .*--no-test.*\n", result.stderr)
    assert not (tmp_path / "mlflow.db").exists()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("registry-server")
    server = MlflowServer(f"sqlite:///{folder / 'backend.db'}", folder / "artifacts", folder)
    with server:
        yield server


@pytest.mark.slow
def test_register_on_a_real_mlflow_server(
    tmp_path, monkeypatch, write_experiment, mlflow_server, tracking_uri
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracking_uri(mlflow_server.url)
    path = _file(write_experiment)
    for version in ("1", "2"):
        args = ["--tracking-uri", mlflow_server.url, "--register", "served-iris"]
        result = _invoke("run", path, *args, "--set", f"seed={version}")
        assert result.exit_code == 0, result.output
        client = MlflowClient(mlflow_server.url)
        parent = _parents(client)[-1]
        _check_version(client, "served-iris", version, parent)
        alias = client.get_model_version_by_alias("served-iris", schema.REGISTRY_ALIAS)
        assert str(alias.version) == version
        _predicts_like_the_run(f"models:/served-iris@{schema.REGISTRY_ALIAS}", parent)
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server
