"""Child runs written in the background against a tracking server (issue 18, item 4).

Against an ``mlflow server`` a trial's child-run writes are made in order on a background
thread (``mlx.tracking._writes``). These tests run real searches against a real server and
check that nothing differs from the writes made inline, that a failed write stops the run
clearly with no run left RUNNING, and that Ctrl-C loses no finished trial's values.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
from _servers import MlflowServer
from _signals import default_sigint
from _sleepy import write_experiment
from _tracked import runs as _runs
from optuna.trial import TrialState
from sklearn.datasets import load_iris

import mlx
from mlx.estimators import MLPClassifier
from mlx.exceptions import TrackingError
from mlx.tracking import _writes, schema

# Tags that differ between two runs of the same search by nature (ids, hosts, processes).
_OWN_TAGS = {
    schema.MLFLOW_PARENT_RUN,
    schema.TAG_STUDY,
    schema.TAG_WORKER,
    "mlflow.user",
    "mlflow.source.name",
    "mlflow.source.type",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    with MlflowServer(f"sqlite:///{folder / 'backend.db'}", folder / "artifacts", folder) as s:
        yield s


def _experiment(name, n_trials=4):
    from optuna.distributions import FloatDistribution

    return mlx.Experiment(
        name=name,
        data=lambda: load_iris(return_X_y=True),
        estimator=MLPClassifier((8,), random_state=0),
        search_space={"alpha": FloatDistribution(1e-4, 1e-1, log=True)},
        metric="accuracy",
        max_epochs=3,
        seed=0,
        n_trials=n_trials,
    )


def _run(tmp_path, server, name, monkeypatch, background, **kwargs):
    monkeypatch.setenv(_writes.ENVIRONMENT, "1" if background else "0")
    monkeypatch.chdir(tmp_path)
    return mlx.run(
        _experiment(name, **kwargs),
        tracking_uri=server.url,
        storage=f"sqlite:///{tmp_path / f'{name}-optuna.db'}",
        show_progress=False,
        no_test=True,  # the same split in every test: the trials are what is compared
    )


def _logged(client, child):
    """What a child run holds, less what differs between two runs by nature."""
    metrics = {
        key: [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, key)]
        for key in child.data.metrics
        if key != schema.METRIC_FIT_TIME  # a measured time
    }
    tags = {k: v for k, v in child.data.tags.items() if k not in _OWN_TAGS}
    return child.info.status, child.info.run_name, child.data.params, metrics, tags


def test_a_tracking_server_gets_its_child_runs_in_the_background():
    assert _writes.background_wanted("http://127.0.0.1:5000")
    assert _writes.background_wanted("HTTPS://example.org/mlflow")
    assert not _writes.background_wanted("sqlite:///mlflow.db")
    assert not _writes.background_wanted("postgresql://u@h/db")


@pytest.mark.slow  # the default group is near its 6-minute budget
def test_background_writes_log_what_inline_writes_log(tmp_path, server, monkeypatch):
    _run(tmp_path, server, "inline", monkeypatch, background=False)
    _run(tmp_path, server, "background", monkeypatch, background=True)
    logged = {}
    for name in ("inline", "background"):
        client, (parent,), children = _runs(server.url, name)
        assert parent.info.status == "FINISHED"
        logged[name] = {int(c.data.tags[schema.TAG_TRIAL]): _logged(client, c) for c in children}
    assert sorted(logged["background"]) == [0, 1, 2, 3]
    assert logged["background"] == logged["inline"]
    # The curves arrive with their steps (one value per epoch).
    _, _, _, metrics, _ = logged["background"][0]
    assert [step for step, _ in metrics[schema.val("accuracy")]] == [0, 1, 2]


@pytest.mark.parametrize("failing", [1, 3], ids=["mid-search", "last-trial"])
def test_a_failed_background_write_fails_the_run_and_leaves_no_run_running(
    tmp_path, server, monkeypatch, failing
):
    from mlflow import MlflowClient as Client

    log_batch = Client.log_batch
    calls = []

    def fail_one(self, run_id, *args, **kwargs):
        # The fault: the server refuses the values of trial ``failing`` (its first write
        # made by the background thread after the run's creation).
        if threading.current_thread().name == "mlx-tracking-writes":
            calls.append(run_id)
            if len(calls) == failing + 1:
                raise ConnectionError("injected: the server refused the batch")
        return log_batch(self, run_id, *args, **kwargs)

    monkeypatch.setattr(Client, "log_batch", fail_one)
    name = f"failing-{failing}"
    with pytest.raises(TrackingError) as caught:
        _run(tmp_path, server, name, monkeypatch, background=True)
    message = str(caught.value)
    assert f"logging trial {failing}'s child run failed" in message
    assert "injected: the server refused the batch" in message and "\n" not in message
    monkeypatch.setattr(Client, "log_batch", log_batch)

    _, (parent,), children = _runs(server.url, name)
    assert parent.info.status == "FAILED"
    assert all(c.info.status != "RUNNING" for c in children)
    by_number = {int(c.data.tags[schema.TAG_TRIAL]): c for c in children}
    assert by_number[failing].info.status == "KILLED"
    assert by_number[failing].data.tags[schema.TAG_STATE] == "FAIL"
    for number in range(failing):  # the trials before it keep what they logged
        assert by_number[number].info.status == "FINISHED"
        assert schema.val("accuracy") in by_number[number].data.metrics


# The fault: a slow server, on the background thread's writes only, so that the finished
# trials' values are still queued when Ctrl-C comes.
SLOW_SERVER = """
import threading

from mlx.tracking.store import Tracker

_log = Tracker.log


def _slow_log(self, *args, **kwargs):
    if threading.current_thread().name == "mlx-tracking-writes":
        time.sleep(2)
    return _log(self, *args, **kwargs)


Tracker.log = _slow_log
"""


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(signal.SIGINT, id="ctrl-c"),
        pytest.param(signal.SIGTERM, id="sigterm", marks=pytest.mark.slow),
    ],
)
def test_an_interrupt_loses_no_finished_trial_queued_in_the_background(tmp_path, server, stop):
    stall_from, name = 3, f"slow-server-{stop.name}"
    path = write_experiment(tmp_path, name, sleep=0, n_trials=6, prelude=SLOW_SERVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    env["MLX_TEST_STALL_FROM"] = str(stall_from)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlx", "run", str(path), "--tracking-uri", server.url],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    storage = f"sqlite:///{tmp_path / 'mlx-optuna.db'}"

    def stalled():
        (study_name,) = optuna.get_all_study_names(storage)
        study = optuna.load_study(study_name=study_name, storage=storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        return states.count(TrialState.COMPLETE) == stall_from and TrialState.RUNNING in states

    deadline = time.monotonic() + 120
    while True:
        try:
            if stalled():
                break
        except Exception:  # the study does not exist yet
            pass
        assert time.monotonic() < deadline, "the search never reached its stalled trial"
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.1)
    # The study says three trials finished; their values are still queued (2 s a write).
    os.kill(process.pid, stop)
    _, err = process.communicate(timeout=120)
    assert process.returncode == (130 if stop == signal.SIGINT else 143), err

    _, (parent,), children = _runs(server.url, name)
    assert parent.info.status == "KILLED"
    by_number = {int(c.data.tags[schema.TAG_TRIAL]): c for c in children}
    assert sorted(by_number) == list(range(stall_from + 1))
    for number in range(stall_from):
        child = by_number[number]
        assert child.info.status == "FINISHED"
        assert child.data.tags[schema.TAG_STATE] == "COMPLETE"
        assert schema.val("accuracy") in child.data.metrics and "C" in child.data.params
    assert by_number[stall_from].info.status == "KILLED"
