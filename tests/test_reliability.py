"""Interrupts, kill -9 and resume, local workers, and a real `mlflow server` (issue 6).

Every scenario runs the real ``mlx`` command in a subprocess and checks the stores it left:
the Optuna study (its trials and their states) and the MLflow runs (through ``MlflowClient``).
The experiment's trials sleep a known time (see ``_sleepy``), so a signal reliably lands in the
middle of one.
"""

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import optuna
import pytest
from _servers import MlflowServer
from _signals import default_sigint
from _sleepy import write_experiment as _write
from _tracked import runs as _runs
from mlflow import MlflowClient
from optuna.trial import TrialState

from mlx.search import REPLACES
from mlx.search.slots import CANCELLED, INTERRUPTED
from mlx.tracking import schema


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true",
        # A dead server fails the run in seconds, not after MLflow's minutes of retries.
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="10",
    )
    env.update(extra)
    return env


def _mlx(*args):
    return [sys.executable, "-m", "mlx", *map(str, args)]


def _start(folder, *args, **env):
    return subprocess.Popen(
        _mlx(*args),
        cwd=folder,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal for the test's process group must not reach it
        # Ctrl-C as in a terminal, even when the tests run as a background job (whose
        # children inherit an ignored SIGINT, and Python then installs no handler).
        preexec_fn=default_sigint,
    )


def _run(folder, *args, timeout=240):
    return subprocess.run(
        _mlx(*args), cwd=folder, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _study(folder, number=1):
    """The study of run ``number`` (every run is its own search)."""
    storage = f"sqlite:///{folder / 'mlx-optuna.db'}"
    (name,) = [n for n in optuna.get_all_study_names(storage) if n.endswith(f"-{number}")]
    return optuna.load_study(study_name=name, storage=storage)


def _interrupt_mid_trial(folder, path, n_finished=2, stop=signal.SIGINT):
    """Start a run whose trial ``n_finished`` stalls, stop it inside that trial."""
    process = _start(folder, "run", path, MLX_TEST_STALL_FROM=str(n_finished))
    _wait_for(_mid_search(folder, n_finished), what=f"{n_finished} finished trials, one running")
    os.kill(process.pid, stop)
    out, err = process.communicate(timeout=60)
    return process.returncode, err


def _wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # the store may not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _states(study):
    out = {}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state] = out.get(trial.state, 0) + 1
    return out


def _mid_search(folder, n_complete):
    """A predicate: ``n_complete`` finished trials, and one RUNNING with its child run open."""
    return _mid_search_in(folder / "mlx-optuna.db", folder / "mlflow.db", n_complete)


def _mid_search_in(optuna_file, mlflow_file, n_complete):
    """:func:`_mid_search` on these store files."""

    def ready():
        storage = f"sqlite:///{optuna_file}"
        (name,) = optuna.get_all_study_names(storage)
        states = _states(optuna.load_study(study_name=name, storage=storage))
        client = MlflowClient(f"sqlite:///{mlflow_file}")
        ids = [e.experiment_id for e in client.search_experiments()]
        running = client.search_runs(
            ids,
            f"attributes.status = 'RUNNING' AND tags.`{schema.TAG_ROLE}` = '{schema.ROLE_TRIAL}'",
        )
        return (
            states.get(TrialState.COMPLETE, 0) >= n_complete
            and states.get(TrialState.RUNNING, 0) == 1
            and len(running) == 1
        )

    return ready


def _assert_finished_once(uri, name, parent_id, n_trials, folder):
    client, parents, children = _runs(uri, name)
    assert [p.info.run_id for p in parents] == [parent_id]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    # A resumed run no longer carries its interruption as its error (seen in the MLflow UI).
    assert schema.TAG_ERROR not in parent.data.tags
    assert schema.test("accuracy") in parent.data.metrics
    assert parent.data.tags[schema.TAG_EVALUATED] == "true"
    assert all(c.info.status != "RUNNING" for c in children)
    study = _study(folder)
    counted = [
        t
        for t in study.trials
        if t.number not in _replaced(study) and not t.user_attrs.get(CANCELLED)
    ]
    assert len(counted) == n_trials
    assert all(t.state.is_finished() for t in study.trials)
    # One child run per trial of the study that ran (lost ones included, ended KILLED);
    # cancelled slots never ran.
    numbers = sorted(int(c.data.tags[schema.TAG_TRIAL]) for c in children)
    ran = [t for t in study.trials if t.datetime_start and not t.user_attrs.get(CANCELLED)]
    assert numbers == sorted(t.number for t in ran)
    return parent, children, study


def _replaced(study):
    return {t.user_attrs[REPLACES] for t in study.trials if REPLACES in t.user_attrs}


@pytest.mark.parametrize(
    "stop, code",
    [
        pytest.param(signal.SIGINT, 130, id="ctrl-c"),
        # The same path as Ctrl-C once the signal is turned into an interrupt: slow group.
        pytest.param(signal.SIGTERM, 143, id="sigterm", marks=pytest.mark.slow),
    ],
)
def test_ctrl_c_kills_the_runs_keeps_the_trials_and_resume_finishes(tmp_path, stop, code):
    """Ctrl-C, or SIGTERM as a scheduler, ``timeout`` or ``docker stop`` sends it."""
    path = _write(tmp_path, n_trials=8, sleep=0.1)
    # The third trial stalls, so the signal lands inside a trial.
    process = _start(tmp_path, "run", path, MLX_TEST_STALL_FROM="2")
    _wait_for(_mid_search(tmp_path, 2), what="two finished trials and one running")
    os.kill(process.pid, stop)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err
    # One line says what happened and how to continue.
    (line,) = [line for line in err.splitlines() if "--resume" in line]
    cause = "interrupted (Ctrl-C)" if stop == signal.SIGINT else "terminated (SIGTERM)"
    assert line.startswith(f"mlx: {cause}: the finished trials are kept"), line

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, (parent,), children = _runs(uri, "reliable")
    assert parent.info.status == "KILLED"
    study = _study(tmp_path)
    states = _states(study)
    assert states.get(TrialState.RUNNING, 0) == 0
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 1 and interrupted[0].user_attrs[INTERRUPTED] is True
    assert interrupted[0].user_attrs["error"] == (
        "terminated (SIGTERM)" if stop == signal.SIGTERM else "interrupted (Ctrl-C)"
    )
    by_state = {c.info.status for c in children}
    assert "RUNNING" not in by_state and "KILLED" in by_state
    kept = states[TrialState.COMPLETE]
    # The progress bar counts the finished trials, not the interrupted one a slot replaces.
    assert re.findall(r"(\d+)/8 \[", err)[-1] == str(kept)
    # mlx list and mlx show give the best of the finished trials, not as refit or tested.
    best = max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
    (row,) = json.loads(_run(tmp_path, "list", "--json").stdout)
    assert row["status"] == "KILLED" and row["best_val"]["value"] == pytest.approx(best)
    shown = _run(tmp_path, "show", "reliable").stdout
    assert "* best so far" in shown and "refit" not in shown

    result = _run(tmp_path, "run", path, "--resume")
    assert result.returncode == 0, result.stderr
    parent, children, study = _assert_finished_once(
        uri, "reliable", parent.info.run_id, 8, tmp_path
    )
    # The interrupted trial has no result of its own: a fresh slot replaced it, so the run
    # ends with the 8 results it was asked for.
    assert _states(study)[TrialState.COMPLETE] == 8 > kept
    assert _replaced(study) == {interrupted[0].number}


def test_kill_9_then_resume_ends_the_orphans_and_replaces_the_lost_trial(tmp_path):
    path = _write(tmp_path, n_trials=6, sleep=0.05)
    process = _start(tmp_path, "run", path, MLX_TEST_STALL_FROM="2")
    _wait_for(_mid_search(tmp_path, 2), what="two finished trials and one running")
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, (parent,), children = _runs(uri, "reliable")
    assert parent.info.status == "RUNNING"
    orphans = [c for c in children if c.info.status == "RUNNING"]
    assert len(orphans) == 1

    result = _run(tmp_path, "run", path, "--resume")
    assert result.returncode == 0, result.stderr
    _, children, study = _assert_finished_once(uri, "reliable", parent.info.run_id, 6, tmp_path)
    ended = {c.info.run_id: c for c in children}[orphans[0].info.run_id]
    assert ended.info.status == "KILLED"
    lost = int(orphans[0].data.tags[schema.TAG_TRIAL])
    assert _replaced(study) == {lost}
    assert study.trials[lost].state == TrialState.FAIL


def test_local_workers_share_one_budget_exactly(tmp_path):
    # Long enough for the worker process to start (imports, data) and take its share.
    path = _write(tmp_path, n_trials=14, sleep=0.6)
    result = _run(tmp_path, "run", path, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, (parent,), children = _runs(uri, "reliable")
    _assert_finished_once(uri, "reliable", parent.info.run_id, 14, tmp_path)
    assert len(children) == 14
    workers = {c.data.tags[schema.TAG_WORKER] for c in children}
    assert len(workers) == 2, workers


@pytest.mark.parametrize("total", [2, pytest.param(3, marks=pytest.mark.slow), 10])
def test_resume_with_n_trials_sets_the_total(tmp_path, total):
    """A new --n-trials on resume is the new total: fewer cancels waiting slots, more adds.

    The interruption leaves two trials finished and one interrupted, which a waiting slot
    replaces on resume: a total of 2 cancels that slot.
    """
    path = _write(tmp_path, n_trials=6, sleep=0.05)
    code, err = _interrupt_mid_trial(tmp_path, path)
    assert code == 130, err
    result = _run(tmp_path, "run", path, "--resume", "--n-trials", str(total))
    assert result.returncode == 0, result.stderr
    assert f"2 of {total} trials finished, {total - 2} to go" in result.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, (parent,), _ = _runs(uri, "reliable")
    _, children, study = _assert_finished_once(uri, "reliable", parent.info.run_id, total, tmp_path)
    states = _states(study)
    assert states[TrialState.COMPLETE] == total  # every result asked for, none more
    cancelled = [t for t in study.trials if t.user_attrs.get(CANCELLED)]
    assert len(cancelled) == max(0, 3 - total)
    ran = {c.data.tags[schema.TAG_TRIAL] for c in children}
    assert not ran & {str(t.number) for t in cancelled}  # cancelled slots never ran


@pytest.mark.parametrize(
    "choice", [pytest.param("--allow-test-reuse", marks=pytest.mark.slow), "--no-test"]
)
def test_the_printed_resume_command_keeps_the_runs_test_choice(tmp_path, choice):
    """Word for word, the command that Ctrl-C prints continues the run as it was started."""
    path = _write(tmp_path, n_trials=4, sleep=0.05)
    first = _run(tmp_path, "run", path)  # evaluates the test split once
    assert first.returncode == 0, first.stderr
    process = _start(tmp_path, "run", path, choice, MLX_TEST_STALL_FROM="2")

    def mid_search():
        states = _states(_study(tmp_path, 2))
        return states.get(TrialState.COMPLETE, 0) >= 2 and states.get(TrialState.RUNNING, 0) == 1

    _wait_for(mid_search, what="the second run mid-search")
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    (line,) = [line for line in err.splitlines() if "--resume" in line]
    command = shlex.split(line.split("`")[1])
    assert command[:2] == ["mlx", "run"] and choice in command
    resumed = _run(tmp_path, *command[1:])
    assert resumed.returncode == 0, resumed.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, parents, _ = _runs(uri, "reliable")
    second = [p for p in parents if p.data.tags[schema.TAG_RUN_NUMBER] == "2"][0]
    assert client.get_run(second.info.run_id).info.status == "FINISHED"


def test_a_second_coordinator_of_the_same_run_is_refused(tmp_path):
    path = _write(tmp_path, n_trials=4, sleep=0.05)
    first = _start(tmp_path, "run", path, MLX_TEST_STALL_FROM="1")
    try:
        _wait_for(_mid_search(tmp_path, 1), what="the first run mid-search")
        second = _run(tmp_path, "run", path)
        assert second.returncode == 1, second.stderr
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        _, (parent,), _ = _runs(uri, "reliable")
        (line,) = [line for line in second.stderr.splitlines() if line.startswith("mlx: error")]
        assert parent.info.run_id in line and "reliable #1" in line and "mlx worker" in line
        # The refused run wrote nothing: one parent, one study.
        assert len(optuna.get_all_study_names(f"sqlite:///{tmp_path / 'mlx-optuna.db'}")) == 1
    finally:
        os.kill(first.pid, signal.SIGINT)
        first.communicate(timeout=60)


def test_a_plain_rerun_is_a_new_search_and_leaves_a_killed_runs_study_alone(tmp_path):
    path = _write(tmp_path, n_trials=5, sleep=0.05)
    process = _start(tmp_path, "run", path, MLX_TEST_STALL_FROM="2")
    _wait_for(_mid_search(tmp_path, 2), what="two finished trials and one running")
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)

    # The dead coordinator's run is ended KILLED; the rerun is a search of its own.
    rerun = _run(tmp_path, "run", path)
    assert rerun.returncode == 0, rerun.stderr
    assert "ended KILLED" in rerun.stderr and "reliable-" in rerun.stdout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, parents, children = _runs(uri, "reliable")
    by_number = {p.data.tags[schema.TAG_RUN_NUMBER]: p for p in parents}
    assert by_number["1"].info.status == "KILLED" and by_number["2"].info.status == "FINISHED"
    assert by_number["2"].info.run_name == "reliable #2"
    second = client.get_run(by_number["2"].info.run_id)
    assert second.data.tags[schema.trials_tag("COMPLETE")] == "5"
    mine = [c for c in children if c.data.tags[schema.MLFLOW_PARENT_RUN] == second.info.run_id]
    assert sorted(int(c.data.tags[schema.TAG_TRIAL]) for c in mine) == [0, 1, 2, 3, 4]
    # The killed run's study is as it was left: two trials finished, one lost, none added.
    assert _states(_study(tmp_path, 1)) == {TrialState.COMPLETE: 2, TrialState.RUNNING: 1}
    assert len(_study(tmp_path, 2).trials) == 5
    # --resume picks the killed run, not the finished one.
    resumed = _run(tmp_path, "run", path, "--resume", "--allow-test-reuse")
    assert resumed.returncode == 0, resumed.stderr
    assert client.get_run(by_number["1"].info.run_id).info.status == "FINISHED"


def test_resume_with_nothing_to_resume_is_a_clear_error(tmp_path):
    path = _write(tmp_path, n_trials=2, sleep=0)
    result = _run(tmp_path, "run", path, "--resume")
    assert result.returncode == 1
    assert "nothing to resume" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(f"sqlite:///{folder / 'backend.db'}", folder / "artifacts", folder)
    with server:
        yield server


def test_a_run_against_a_real_mlflow_server(tmp_path, mlflow_server, monkeypatch):
    path = _write(tmp_path, name="served", n_trials=3, sleep=0)
    result = _run(tmp_path, "run", path, "--tracking-uri", mlflow_server.url)
    assert result.returncode == 0, result.stderr
    assert mlflow_server.url in result.stdout  # the summary says where to look

    client, (parent,), children = _runs(mlflow_server.url, "served")
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert all(schema.val("accuracy") in c.data.metrics and "C" in c.data.params for c in children)
    assert schema.test("accuracy") in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"audit.json", "split.json", "test", "search", "experiment"} <= artifacts
    test_files = {a.path for a in client.list_artifacts(parent.info.run_id, "test")}
    assert "test/confusion_matrix.png" in test_files

    import mlflow.sklearn
    from sklearn.datasets import load_iris

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        model = mlflow.sklearn.load_model(parent.data.tags[schema.TAG_MODEL_URI])
    finally:
        mlflow.set_tracking_uri(None)
    X, y = load_iris(return_X_y=True)
    assert (model.predict(X) == y).mean() > 0.8


@pytest.mark.slow
def test_the_server_dying_mid_search_fails_clearly_and_resume_finishes(tmp_path):
    folder = tmp_path / "server"
    folder.mkdir()
    server = MlflowServer(f"sqlite:///{folder / 'backend.db'}", folder / "artifacts", folder)
    server.start()
    try:
        path = _write(tmp_path, name="dying", n_trials=8, sleep=0.4)
        process = _start(tmp_path, "run", path, "--tracking-uri", server.url)
        mid = _mid_search_in(tmp_path / "mlx-optuna.db", folder / "backend.db", 2)
        _wait_for(mid, what="two finished trials and one running")
        server.stop()
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1, err
        assert "cannot use the MLflow store" in err and "--resume" in err
        assert "Traceback" not in err
        study = _study(tmp_path)
        assert _states(study).get(TrialState.COMPLETE, 0) >= 2  # kept for --resume

        server = MlflowServer(server.backend_store_uri, server.artifacts_dir, folder, server.port)
        server.start()
        result = _run(tmp_path, "run", path, "--resume", "--tracking-uri", server.url)
        assert result.returncode == 0, result.stderr
        _, (parent,), _ = _runs(server.url, "dying")
        _assert_finished_once(server.url, "dying", parent.info.run_id, 8, tmp_path)
    finally:
        server.stop()


STORM = """
import json
import os
import time

import optuna
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import mlx


class Logistic(LogisticRegression):
    # Pickled only when the model is logged (trials measure their size before): a stall here
    # holds the run inside the model's logging.
    def __getstate__(self):
        if os.environ.get("MLX_TEST_STALL_LOG"):
            time.sleep(600)
        return super().__getstate__()


def space(trial):
    if isinstance(trial, optuna.trial.FixedTrial):  # the best configuration, replayed to refit
        if os.environ.get("MLX_TEST_STALL_REFIT"):
            time.sleep(600)
    elif trial.number >= int(os.environ.get("MLX_TEST_STALL_FROM", 10**9)):
        time.sleep(600)
    time.sleep(0.05)
    return {"C": trial.suggest_float("C", 1e-2, 1e2, log=True)}


experiment = mlx.Experiment(
    name="storm",
    data=lambda: load_iris(return_X_y=True),
    estimator=Logistic(max_iter=200),
    search_space=space,
    n_trials=6,
)
"""


@pytest.mark.slow
def test_a_kill_storm_then_resume_ends_with_one_finished_run(tmp_path):
    """kill -9 during a trial, during the refit and while logging the model; resume each time."""
    path = tmp_path / "storm.py"
    path.write_text(STORM)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def parent():
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("storm")
        query = f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'"
        (run,) = client.search_runs([experiment.experiment_id], query)
        return run

    def in_refit():
        return schema.trials_tag("COMPLETE") in parent().data.tags

    def logging_the_model():
        # The model is logged while the test's figures are drawn: after the test's tables,
        # before its metrics (the mark of a complete evaluation).
        run = parent()
        tags = run.data.tags
        if tags.get(schema.TAG_EVALUATED) != "true" or schema.TAG_MODEL_URI in tags:
            return False
        return bool(MlflowClient(uri).list_artifacts(run.info.run_id, schema.ARTIFACT_TEST))

    moments = [
        (("run", path), {"MLX_TEST_STALL_FROM": "2"}, _mid_search(tmp_path, 2)),
        (("run", path, "--resume"), {"MLX_TEST_STALL_REFIT": "1"}, in_refit),
        (("run", path, "--resume"), {"MLX_TEST_STALL_LOG": "1"}, logging_the_model),
    ]
    for args, env, moment in moments:
        process = _start(tmp_path, *args, **env)
        _wait_for(moment, what=f"the moment to kill {args} with {env}")
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        assert parent().info.status == "RUNNING"

    result = _run(tmp_path, "run", path, "--resume")
    assert result.returncode == 0, result.stderr
    run = parent()
    _, children, study = _assert_finished_once(uri, "storm", run.info.run_id, 6, tmp_path)
    assert _states(study)[TrialState.COMPLETE] == 6
    assert run.data.tags[schema.TAG_USE_COUNT] == "1"
    # One use of the test split, its metrics logged once: the process killed while logging the
    # model had not completed the evaluation, which the last resume made again, the same use.
    client = MlflowClient(uri)
    assert len(client.get_metric_history(run.info.run_id, schema.test("accuracy"))) == 1
    experiment = client.get_experiment_by_name("storm")
    running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    assert running == []


@contextlib.contextmanager
def _read_only(folder):
    """``folder`` and its files unwritable, even for root (``chattr +i``), until the block ends."""
    paths = [folder, *folder.iterdir()]
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
        undo = ["chattr", "-i", *map(str, paths)]
    else:
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        undo = None
    try:
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
def test_a_read_only_tracking_store_mid_search_fails_clearly_and_resume_completes(tmp_path):
    """The disk goes read-only: one line, the finished trials kept, --resume completes."""
    path = _write(tmp_path, n_trials=6, sleep=0.05)
    tracking_folder = tmp_path / "tracking"
    tracking_folder.mkdir()
    uri = f"sqlite:///{tracking_folder / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    stores = ["--tracking-uri", uri, "--storage", storage]
    process = _start(tmp_path, "run", path, *stores, MLX_TEST_STALL_FROM="2")
    mid = _mid_search_in(tmp_path / "optuna.db", tracking_folder / "mlflow.db", 2)
    _wait_for(mid, what="two finished trials and one running")
    with _read_only(tracking_folder):
        # The stalled trial is stopped; its end cannot be logged to the read-only store.
        os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=120)
        assert process.returncode != 0
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.startswith("mlx: error")]
        # SQLite says "readonly database" or, for its write-ahead log, "disk I/O error".
        assert len(lines) == 1 and "cannot use the MLflow store" in lines[0], err
        assert "the finished trials are kept" in err and "--resume" in err
        study = optuna.load_study(
            study_name=optuna.get_all_study_names(storage)[0], storage=storage
        )
        assert _states(study)[TrialState.COMPLETE] == 2  # kept

    result = _run(tmp_path, "run", path, *stores, "--resume")
    assert result.returncode == 0, result.stderr
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("reliable").experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
    )
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[schema.trials_tag("COMPLETE")] == "6"


@pytest.mark.slow
def test_a_worker_started_before_the_tracking_server_waits_for_it(tmp_path):
    """As a batch job may: the worker waits for the server as it waits for the coordinator."""
    path = _write(tmp_path, name="early-worker", n_trials=10, sleep=0.4)
    server = MlflowServer(f"sqlite:///{tmp_path / 'backend.db'}", tmp_path / "artifacts", tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    stores = ["--tracking-uri", server.url, "--storage", storage]
    worker = subprocess.Popen(
        _mlx("worker", path, *stores, "--worker-id", "early", "--wait", "300"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(8)  # long enough to have given up at once
        assert worker.poll() is None, worker.communicate()[1]
        with server:
            result = _run(tmp_path, "run", path, *stores, "--heartbeat", "2")
            assert result.returncode == 0, result.stderr
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            assert "waiting for the MLflow store" in err
            client, (parent,), children = _runs(server.url, "early-worker")
            assert len(children) == 10
            assert "early" in {c.data.tags[schema.TAG_WORKER] for c in children}
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
