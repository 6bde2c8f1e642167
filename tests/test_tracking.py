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


def test_a_child_run_whose_creation_ctrl_c_cut_short_is_ended_killed(stores, monkeypatch):
    """Ctrl-C right after MLflow created a trial's run, before its id came back.

    The process never learnt the run's id, so stopping it left the run RUNNING.
    """
    import pytest

    from mlx.tracking import ChildRuns, Tracker, schema

    uri, _ = stores
    tracker = Tracker(uri)
    experiment_id = tracker.experiment_id("cut-short")
    parent_id = tracker.start_run(experiment_id, "parent")
    children = ChildRuns(tracker, experiment_id, parent_id, "study", "host-1", "accuracy")
    start_run = Tracker.start_run

    def created_then_interrupted(self, *args, **kwargs):
        start_run(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, "start_run", created_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        children.start(3)
    monkeypatch.undo()
    other = ChildRuns(tracker, experiment_id, parent_id, "study", "host-2", "accuracy")
    other.start(3)  # another process's run of the same number is not this one's to end

    children.abandon("interrupted (Ctrl-C)")
    states = {r.data.tags[schema.TAG_WORKER]: r.info.status for r in tracker.children(parent_id)}
    assert states == {"host-1": "KILLED", "host-2": "RUNNING"}
