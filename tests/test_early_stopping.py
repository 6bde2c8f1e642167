"""Early stopping under the runner: the estimator's patience on the runner's validation split.

Through the real command, with scikit-learn's MLP and mlx's (both refuse ``early_stopping=True``
in ``partial_fit``, which the runner trains them with).
"""

import os
import subprocess
import sys
import textwrap

import mlflow
import pytest
from mlflow import MlflowClient

from mlx.search.early_stopping import EarlyStopping
from mlx.tracking import schema

EXPERIMENT = """
from optuna.distributions import FloatDistribution
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from {module} import MLPClassifier

import mlx

experiment = mlx.Experiment(
    name="early",
    data=lambda: load_digits(return_X_y=True),
    estimator=make_pipeline(
        StandardScaler(),
        MLPClassifier(
            (32,), early_stopping=True, n_iter_no_change=3, tol=1e-3, max_iter=80,
            random_state=0,
        ),
    ),
    search_space={{"mlpclassifier__learning_rate_init": FloatDistribution(1e-3, 3e-2, log=True)}},
    n_trials=3,
)
"""


@pytest.mark.parametrize(
    "module",
    [pytest.param("sklearn.neural_network", marks=pytest.mark.slow), "mlx.estimators"],
)
def test_early_stopping_stops_on_the_validation_curve_and_the_refit_uses_the_best_epoch(
    tmp_path, module, monkeypatch
):
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    path = tmp_path / "early.py"
    path.write_text(textwrap.dedent(EXPERIMENT.format(module=module)))
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "mlx", "run", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("early")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags[schema.TAG_ROLE] == schema.ROLE_PARENT]
    children = [r for r in runs if r.data.tags[schema.TAG_ROLE] == schema.ROLE_TRIAL]
    assert [c.data.tags[schema.TAG_STATE] for c in children] == ["COMPLETE"] * 3
    metric = schema.val("accuracy")
    for child in children:
        curve = [m.value for m in client.get_metric_history(child.info.run_id, metric)]
        best, stopped = (
            int(child.data.metrics[k])
            for k in (schema.METRIC_BEST_EPOCH, schema.METRIC_STOPPED_EPOCH)
        )
        assert stopped == len(curve) < 80  # stopped before max_iter
        # The rule: stop after n_iter_no_change + 1 epochs without an improvement of tol.
        stopper = EarlyStopping(patience=3, tol=1e-3)
        stops = [stopper.update(epoch, score, None) for epoch, score in enumerate(curve)]
        assert stops.index(True) == stopped - 1 and stopper.best_epoch + 1 == best
    (winner,) = [
        c
        for c in children
        if c.data.tags[schema.TAG_TRIAL] == parent.data.tags[schema.TAG_BEST_TRIAL]
    ]
    # The trial's score is its best epoch's, not its last.
    best_curve = [m.value for m in client.get_metric_history(winner.info.run_id, metric)]
    assert parent.data.metrics[schema.best_val("accuracy")] == pytest.approx(max(best_curve))
    # The refit trained as many epochs as the best trial's best model.
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.sklearn.load_model(parent.data.tags[schema.TAG_MODEL_URI])
    finally:
        mlflow.set_tracking_uri(None)
    # (scikit-learn's partial_fit keeps n_iter_ at 1: count the epochs of its loss curve.)
    assert len(model[-1].loss_curve_) == int(winner.data.metrics[schema.METRIC_BEST_EPOCH])
    assert model[-1].early_stopping is True  # the estimator as the file declared it
