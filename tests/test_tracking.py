"""mlx.tracking: the MLflow store, written and read through a real SQLite store."""

import numpy as np
from mlflow import MlflowClient


def test_log_splits_batches_at_mlflow_limits(stores):
    from mlx.tracking import Tracker

    uri, _ = stores
    tracker = Tracker(uri)
    run_id = tracker.start_run(tracker.experiment_id("limits"), "many")
    params = {f"p{i}": i for i in range(150)}
    steps = {"curve": list(np.linspace(0, 1, 1200))}
    tracker.log(run_id, params=params, metrics={"one": 1.0}, steps=steps)
    tracker.end_run(run_id, "FINISHED")
    client = MlflowClient(uri)
    logged = client.get_run(run_id)
    assert len(logged.data.params) == 150
    assert len(client.get_metric_history(run_id, "curve")) == 1200
    assert logged.data.metrics["one"] == 1.0
