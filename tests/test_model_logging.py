"""Logging the model fast without changing it: skops's trusted types cached, requirements pinned.

``mlx.tracking.store`` imports skops with its lists of trusted type names read from a cache (the
lists are slow to compute) and skips MLflow's check of the model's requirements against the
installed packages (mlx pins them to the installed versions). Both must leave what is logged as
it was: the same trusted names as skops computes itself, requirements the environment satisfies.
"""

import json
import os
import pickle
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlx.estimators import CNNClassifier, KNeighborsClassifier, RNNClassifier
from mlx.tracking import Tracker, requirements
from mlx.tracking.store import _serialization, _skops_io

# Prints skops's lists of trusted type names after importing it with MLflow loaded, as a run
# does; argv[1] is "plain" (skops as it is) or "mlx" (through the cache).
_NAMES = """
import json, sys
import mlflow, mlflow.sklearn, optuna, sklearn.base
if sys.argv[1] == "plain":
    import skops.io
else:
    from mlx.tracking.store import _skops_io
    skops_io = _skops_io()
module = sys.modules["skops.io._trusted_types"]
names = {k: v for k, v in vars(module).items() if k.endswith("_NAMES")}
print(json.dumps({"names": names, "cached": getattr(module, "__file__", None) is None}))
"""


def _names(how, cache):
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", _NAMES, how], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_skops_gets_the_trusted_names_it_computes_itself(tmp_path):
    plain = _names("plain", tmp_path)
    first = _names("mlx", tmp_path)  # computes the lists and caches them
    second = _names("mlx", tmp_path)  # reads the cache
    assert not first["cached"] and second["cached"]
    assert len(plain["names"]["SKLEARN_ESTIMATOR_TYPE_NAMES"]) > 100
    assert plain["names"]["NUMPY_UFUNC_TYPE_NAMES"]
    assert first["names"] == plain["names"]
    assert second["names"] == plain["names"]
    (cache,) = (tmp_path / "mlx").glob("trusted-types-*.json")
    assert "skops-" in cache.name and "scikit-learn-" in cache.name


@pytest.mark.slow
def test_a_stale_cache_falls_back_to_skops_own_lists(tmp_path):
    """A cache that lacks a name skops imports (another skops version) is not used."""
    _names("mlx", tmp_path)
    (cache,) = (tmp_path / "mlx").glob("trusted-types-*.json")
    names = json.loads(cache.read_text())
    del names["SKLEARN_ESTIMATOR_TYPE_NAMES"]
    cache.write_text(json.dumps(names))
    fallback = _names("mlx", tmp_path)
    assert not fallback["cached"]
    assert fallback["names"] == _names("plain", tmp_path)["names"]
    assert "SKLEARN_ESTIMATOR_TYPE_NAMES" in json.loads(cache.read_text())  # written again


def test_the_logged_requirements_are_what_is_installed(tmp_path, monkeypatch):
    """Why MLflow's requirement check may be skipped: mlx's pins can only agree with it."""
    from mlflow.utils.requirements_utils import _check_requirement_satisfied

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(X, y)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracker.start_run(tracker.experiment_id("e"), "r")
    example = X[:5]
    uri = tracker.log_model(
        run_id,
        model,
        example,
        infer_signature(example, model.predict(example)),
        requirements(model, X),
    )
    client = MlflowClient(tracker.uri)
    logged = client.get_logged_model(uri.split("/")[-1])
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{logged.artifact_location}/requirements.txt",
        dst_path=str(tmp_path),
        tracking_uri=tracker.uri,
    )
    with open(local) as file:
        lines = [line for line in file.read().splitlines() if line and line[0] != "-"]
    assert {line.split("==")[0] for line in lines} >= {"mlflow", "scikit-learn", "skops"}
    assert all("==" in line for line in lines)
    assert [line for line in lines if _check_requirement_satisfied(line) is not None] == []
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlflow.set_tracking_uri(tracker.uri)
    try:
        loaded = mlflow.sklearn.load_model(uri)
    finally:
        mlflow.set_tracking_uri(None)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize(
    "model",
    [
        CNNClassifier(input_shape=(40, 32), filters=(8, 16), max_iter=2, random_state=0),
        RNNClassifier(input_shape=(40, 32), hidden_size=16, max_iter=2, random_state=0),
    ],
    ids=["cnn", "rnn"],
)
def test_a_deep_net_is_logged_as_its_parameters_in_skops_format(model):
    """Not its last batch's scratch (buffers, caches: many times the parameters' size), which
    made an RNN's skops file 28 times its pickle and kept a CNN out of skops (MLflow then warns
    about pickle)."""
    X = np.random.default_rng(0).normal(size=(200, 40 * 32))
    y = np.arange(200) % 4
    with pytest.warns(Warning):  # two epochs: not converged
        model.fit(X, y)
    assert _serialization(model)["serialization_format"] == "skops"
    skops_io = _skops_io()
    data = skops_io.dumps(model)
    again = skops_io.loads(data, trusted=skops_io.get_untrusted_types(data=data))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    # The network as its parameters and configuration, in a pickle and in skops's file alike
    # (which adds a header and a zip entry per array: about 35 KB for these small nets, so
    # twice the pickle plus 20 KB; the scratch buffers had made it 28 times the pickle).
    assert len(pickle.dumps(model._network)) < model._network.params.nbytes + 2000
    assert len(data) < 2 * len(pickle.dumps(model)) + 20_000
