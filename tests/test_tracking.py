"""mlx.tracking: the MLflow store, written and read through a real SQLite store."""

import numpy as np
import pytest
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


def _children(tracker, name, worker, show_running_after):
    from mlx.tracking import ChildRuns

    experiment_id = tracker.experiment_id(name)
    parent_id = tracker.start_run(experiment_id, "parent")
    children = ChildRuns(
        tracker, experiment_id, parent_id, "study", worker, "accuracy", show_running_after
    )
    return children, parent_id


def _record(number, state="COMPLETE", **fields):
    import time

    from mlx.search import TrialRecord

    fields = {"value": 0.9, "fit_time": 0.01, **fields}
    return TrialRecord(number, {"k": 3}, state, end_time=time.time(), **fields)


@pytest.mark.parametrize("when", ["start", "end"])
def test_a_child_run_whose_creation_ctrl_c_cut_short_is_ended_killed(stores, monkeypatch, when):
    """Ctrl-C right after MLflow created a trial's run, before its id came back.

    The process never learnt the run's id, so stopping it left the run RUNNING. The run is
    made when the trial starts (shown RUNNING at once) or when it ends (a short trial).
    """
    from mlx.tracking import ChildRuns, Tracker, schema

    tracker = Tracker(stores[0])
    children, parent_id = _children(tracker, "cut-short", "host-1", 0 if when == "start" else 60)
    start_run = Tracker.start_run

    def created_then_interrupted(self, *args, **kwargs):
        start_run(self, *args, **kwargs)
        raise KeyboardInterrupt

    if when == "end":
        children.start(3)
    monkeypatch.setattr(Tracker, "start_run", created_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        children.start(3) if when == "start" else children.finish(_record(3))
    monkeypatch.undo()
    ids = children.experiment_id, children.parent_id
    other = ChildRuns(tracker, *ids, "study", "host-2", "accuracy", show_running_after=0)
    other.start(3)  # another process's run of the same number is not this one's to end

    children.abandon("interrupted (Ctrl-C)")
    states = {r.data.tags[schema.TAG_WORKER]: r.info.status for r in tracker.children(parent_id)}
    assert states == {"host-1": "KILLED", "host-2": "RUNNING"}


def test_a_short_trial_gets_its_run_when_it_ends_already_final(stores, monkeypatch):
    """Three store writes, none rewriting a tag or the name: the run is made as it finished."""
    import inspect

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from mlx.tracking import Tracker, schema

    tracker = Tracker(stores[0])
    children, parent_id = _children(tracker, "short", "host-1", 60)
    calls = []
    for name in ("create_run", "log_batch", "update_run_info", "set_tag"):
        original = getattr(SqlAlchemyStore, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            bound = inspect.signature(_original).bind(self, *args, **kwargs).arguments
            calls.append((_name, bound))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(SqlAlchemyStore, name, counted)
    children.start(4)
    assert not tracker.children(parent_id)  # not made while the trial runs
    children.finish(_record(4, "PRUNED", warnings=["UserWarning: w"]))
    monkeypatch.undo()
    assert [c[0] for c in calls] == ["create_run", "log_batch", "update_run_info"]
    assert not calls[1][1]["tags"]  # no tag rewritten
    assert calls[2][1]["run_name"] is None  # not renamed as it ends
    (run,) = tracker.children(parent_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == schema.trial_name(4, None, "PRUNED")
    assert run.data.tags[schema.TAG_STATE] == "PRUNED"
    assert run.data.tags[schema.TAG_WARNINGS] == "UserWarning: w"
    assert run.data.tags[schema.TAG_WORKER] == "host-1"
    assert run.data.params == {"k": "3"}
    assert run.data.metrics[schema.val("accuracy")] == 0.9
    assert run.info.start_time <= run.info.end_time


def test_a_long_trial_is_shown_running_while_it_runs(stores):
    import time

    from mlx.tracking import Tracker, schema

    tracker = Tracker(stores[0])
    children, parent_id = _children(tracker, "long", "host-1", 0.2)
    children.start(5)
    deadline = time.monotonic() + 10
    while not tracker.children(parent_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    (running,) = tracker.children(parent_id)
    assert running.info.status == "RUNNING"
    assert running.data.tags[schema.TAG_STATE] == "RUNNING"
    children.finish(_record(5))
    (run,) = tracker.children(parent_id)
    assert run.info.run_id == running.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.tags[schema.TAG_STATE] == "COMPLETE"
    assert run.info.run_name == schema.trial_name(5, None, "COMPLETE")


def test_a_trial_stopped_before_its_run_was_made_gets_one_killed(stores):
    from mlx.tracking import Tracker, schema

    tracker = Tracker(stores[0])
    children, parent_id = _children(tracker, "stopped", "host-1", 60)
    children.start(6)
    children.abandon("interrupted (Ctrl-C)")
    (run,) = tracker.children(parent_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[schema.TAG_ERROR] == "interrupted (Ctrl-C)"
    assert run.data.tags[schema.TAG_TRIAL] == "6"


@pytest.mark.parametrize("lost_only", [False, True])
def test_finished_trials_without_a_child_run_get_one_killed(stores, lost_only):
    """A trial whose process died before its run was made (a short trial's is made at its end).

    With ``lost_only`` (another process's writes may still be queued) only the lost trial is
    recorded; otherwise also one whose run was never written.
    """
    from mlx import coordinator, search
    from mlx.search import slots
    from mlx.tracking import ParentRun, Tracker, schema

    uri, storage_url = stores
    storage = search.open_storage(storage_url)
    study = search.create_study("unwritten", storage=storage, seed=0)
    search.add_budget(study, storage, 3)
    claims = slots.Slots(study, storage)
    lost, _ = claims.claim()
    search.fail_lost(study, storage, running_are_lost=True)  # its process died
    unwritten, _ = claims.claim()
    study.tell(unwritten, 0.5)
    tracker = Tracker(uri)
    experiment_id = tracker.experiment_id("unwritten")
    parent = ParentRun(tracker, tracker.start_run(experiment_id, "parent"), experiment_id, "p")

    coordinator.add_unwritten(study, parent, lost_only=lost_only)
    runs = {r.data.tags[schema.TAG_TRIAL]: r for r in tracker.children(parent.run_id)}
    expected = {str(lost.number)} | (set() if lost_only else {str(unwritten.number)})
    assert set(runs) == expected
    assert runs[str(lost.number)].info.status == "KILLED"
    assert runs[str(lost.number)].data.tags[schema.TAG_ERROR] == search.LOST
    assert runs[str(lost.number)].data.tags[schema.TAG_STATE] == "FAIL"
    coordinator.add_unwritten(study, parent)  # once each
    assert len(tracker.children(parent.run_id)) == 2


def test_held_background_writes_wait_for_the_release_or_their_time():
    """Writes held between two trials wait for the next trial (at most the hold's seconds)."""
    import threading
    import time

    from mlx.tracking import _writes

    done = threading.Event()
    writes = _writes.Background()
    writes.hold(30)
    writes.submit("trial-1", done.set, "a write")
    assert not done.wait(0.3)  # held
    writes.release()
    assert done.wait(5)
    done.clear()
    start = time.monotonic()
    writes.hold(0.3)
    writes.submit("trial-2", done.set, "a write")
    assert done.wait(5) and time.monotonic() - start >= 0.3  # the hold runs out by itself
    done.clear()
    writes.hold(30)
    writes.submit("trial-3", done.set, "a write")
    writes.flush()  # a flush does not wait for the hold
    assert done.is_set()
