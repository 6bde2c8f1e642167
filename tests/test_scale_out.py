"""Scale-out on real engines: a coordinator and workers sharing a PostgreSQL study and an MLflow server.

Every process here is the real ``mlx`` command started in a working folder of its own (as on
separate machines), against a real PostgreSQL server (127.0.0.1:5432) and a real ``mlflow
server`` whose backend store is PostgreSQL. Faults are real too: ``kill -9`` of a worker or of
the coordinator, a restart of the PostgreSQL server. The experiment is tests/scale_experiment.py
(about a second per trial), so that several processes really share the trials.

Run with ``pytest -m slow -n 2 --dist loadgroup``: the tests share one MLflow server and run in
one xdist group, in file order (the PostgreSQL restart is last).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from _servers import (
    PG_ADMIN,
    PG_HOST,
    PG_PORT,
    MlflowServer,
    pg_url,
    postgres_database,
    postgres_role,
    require_postgres,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postgres")]

EXPERIMENT = Path(__file__).with_name("scale_experiment.py")
EXPERIMENT_NAME = "scale-out-digits"
N_TRIALS = 8
# Seconds any one process of a test may take; a hang fails the test instead of stalling CI.
PROCESS_TIMEOUT = 180
REPLACES = "mlx.replaces"


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `mlflow server` on its own PostgreSQL database, artifacts in a temp folder."""
    require_postgres()
    folder = tmp_path_factory.mktemp("mlflow-server")
    with (
        postgres_database("mlx_scale_mlflow") as db,
        MlflowServer(pg_url(db), folder / "artifacts", folder) as mlflow_server,
    ):
        yield mlflow_server


@pytest.fixture
def storage():
    """The URL of a fresh PostgreSQL database for this test's Optuna study."""
    with postgres_database("mlx_scale_optuna") as db:
        yield pg_url(db)


@pytest.fixture
def launch(tmp_path):
    """``launch(name, *args, file=EXPERIMENT)``: start ``mlx *args`` in folder ``tmp_path/name``.

    The experiment file is copied into the folder first, as each machine has its own copy.
    Processes still alive at the end of the test are killed.
    """
    started = []

    def start(name, *args, file=EXPERIMENT):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(file, folder / EXPERIMENT.name)
        process = _MlxProcess(folder, args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


class _MlxProcess:
    """A real ``python -m mlx ...`` process; its stdout and stderr go to ``folder/output.log``."""

    def __init__(self, folder, args):
        self.folder = folder
        self.log_path = folder / "output.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in wait/kill)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlx", *args],
            cwd=folder,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_environment(),
        )

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def output(self):
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout=PROCESS_TIMEOUT):
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"`mlx` in {self.folder.name} still running after {timeout} s:\n"
                f"{self.output()[-3000:]}"
            )
        self._log.close()
        return code

    def finish(self, timeout=PROCESS_TIMEOUT):
        """Wait for a clean exit; fail with the process's output otherwise."""
        code = self.wait(timeout)
        assert code == 0, f"`mlx` in {self.folder.name} exited {code}:\n{self.output()[-3000:]}"
        return self.output()

    def kill(self):
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


def _environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    # Three processes share two cores: one BLAS thread each.
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _coordinator_args(storage, server, seed, *extra):
    return ("run", EXPERIMENT.name, "--storage", storage, "--tracking-uri", server.url,
            "--seed", str(seed), "--heartbeat", "1", *extra)  # fmt: skip


def _worker_args(storage, server, seed, worker_id, *extra):
    return ("worker", EXPERIMENT.name, "--storage", storage, "--tracking-uri", server.url,
            "--seed", str(seed), "--heartbeat", "1", "--worker-id", worker_id,
            "--wait", "120", *extra)  # fmt: skip


# --- reading the stores -----------------------------------------------------------------------
def _client(server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url)


def _parent_of(server, storage):
    """The only parent run whose study lives in ``storage``."""
    study = _study(storage)
    client = _client(server)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`mlx.role` = 'parent' AND tags.`mlx.study_name` = '{study.study_name}'",
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def _children(server, parent):
    return _client(server).search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )


def _study(storage):
    import optuna

    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def _trials(storage):
    return _study(storage).get_trials(deepcopy=False)


def _counted(trials):
    """Finished trials that count against the budget (a lost trial a slot replaced does not)."""
    replaced = {t.user_attrs[REPLACES] for t in trials if REPLACES in t.user_attrs}
    return [t for t in trials if t.number not in replaced and t.state.is_finished()]


def _wait_until(condition, what, processes, timeout=120):
    """Poll ``condition()`` until true; fail if it times out or one of ``processes`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for process in processes:
            if not process.alive():
                pytest.fail(
                    f"`mlx` in {process.folder.name} exited ({process.process.returncode}) "
                    f"while waiting for {what}:\n{process.output()[-3000:]}"
                )
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _study_ready(storage):
    """The study once the coordinator has created it (and its slots), else None."""
    import optuna

    try:
        names = optuna.get_all_study_names(storage)
    except Exception:  # the coordinator is still creating the schema
        return None
    return _study(storage) if names else None


def _running_early(storage, max_epochs_done):
    """A RUNNING trial that has reported at most ``max_epochs_done`` epochs, else None."""
    from optuna.trial import TrialState

    study = _study_ready(storage)
    if study is None:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if 1 <= len(trial.intermediate_values) <= max_epochs_done:
            return trial
    return None


def _assert_complete_run(server, storage, parent, *, expect_replaced=0):
    """One parent FINISHED with one test evaluation; one child per trial; nothing RUNNING."""
    from optuna.trial import TrialState

    trials = _trials(storage)
    counted = _counted(trials)
    assert len(counted) == N_TRIALS, [(t.number, t.state.name) for t in trials]
    states = {t.state for t in trials}
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    replacements = [t for t in trials if REPLACES in t.user_attrs]
    if expect_replaced is not None:
        assert len(replacements) == expect_replaced, [(t.number, t.user_attrs) for t in trials]

    client = _client(server)
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mlx.test_evaluated"] == "true"
    assert "test_accuracy" in parent.data.metrics
    assert len(client.get_metric_history(parent.info.run_id, "test_accuracy")) == 1

    children = _children(server, parent)
    numbers = [int(c.data.tags["mlx.trial_number"]) for c in children]
    assert sorted(numbers) == sorted(t.number for t in trials), "one child run per trial"
    assert not [c.info.run_id for c in children if c.info.status == "RUNNING"]
    return trials, children


# --- the tests --------------------------------------------------------------------------------
def test_coordinator_and_two_workers_share_one_study(server, storage, launch):
    seed = 1
    # Workers first, as on machines started before the coordinator: they wait for it.
    workers = [
        launch(f"machine-{i}", *_worker_args(storage, server, seed, f"worker-{i}")) for i in (1, 2)
    ]
    coordinator = launch("machine-0", *_coordinator_args(storage, server, seed))
    output = coordinator.finish()
    for worker in workers:
        assert "worker done" in worker.finish()

    parent = _parent_of(server, storage)
    assert parent.info.run_id in output
    trials, children = _assert_complete_run(server, storage, parent)
    assert len(trials) == N_TRIALS
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert all(c.info.status == "FINISHED" for c in children)
    who = {c.data.tags["mlx.worker"] for c in children}
    assert len(who) > 1, f"one process ran every trial: {who}"
    assert who & {"worker-1", "worker-2"}, who


def test_worker_killed_mid_trial_is_replaced(server, storage, launch):
    seed = 2
    victim = launch("victim", *_worker_args(storage, server, seed, "victim"))
    coordinator = launch("coordinator", *_coordinator_args(storage, server, seed))

    def victim_mid_trial():
        trial = _running_early(storage, max_epochs_done=8)
        if trial is None:
            return None
        parent = _parents_running(server)
        if parent is None:
            return None
        for child in _children(server, parent):
            if (
                child.info.status == "RUNNING"
                and child.data.tags.get("mlx.worker") == "victim"
                and child.data.tags.get("mlx.trial_number") == str(trial.number)
            ):
                return trial
        return None

    trial = _wait_until(victim_mid_trial, "a trial running in the victim", [victim, coordinator])
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    coordinator.finish()

    parent = _parent_of(server, storage)
    trials, children = _assert_complete_run(server, storage, parent, expect_replaced=1)
    lost = next(t for t in trials if t.number == trial.number)
    assert lost.state.name == "FAIL"
    assert any(t.user_attrs.get(REPLACES) == trial.number for t in trials)
    orphan = next(c for c in children if c.data.tags["mlx.trial_number"] == str(trial.number))
    assert orphan.info.status == "KILLED"
    assert orphan.data.tags["mlx.worker"] == "victim"


def _parents_running(server):
    client = _client(server)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        "tags.`mlx.role` = 'parent' AND attributes.status = 'RUNNING'",
    )
    return runs[0] if len(runs) == 1 else None


def test_coordinator_killed_and_resumed(server, storage, launch):
    seed = 3
    args = _coordinator_args(storage, server, seed)
    first = launch("coordinator", *args)

    def mid_search():
        study = _study_ready(storage)
        if study is None or len(_counted(study.get_trials(deepcopy=False))) < 2:
            return None
        return _running_early(storage, max_epochs_done=8)

    trial = _wait_until(mid_search, "the coordinator mid-search", [first])
    parent_before = _parents_running(server)
    assert parent_before is not None
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL

    folder = first.folder
    again = _MlxProcess(folder, (*args, "--resume"))
    try:
        again.finish()
    finally:
        again.kill()

    parent = _parent_of(server, storage)
    assert parent.info.run_id == parent_before.info.run_id
    trials, children = _assert_complete_run(server, storage, parent, expect_replaced=1)
    assert next(t for t in trials if t.number == trial.number).state.name == "FAIL"
    killed = [c for c in children if c.data.tags["mlx.trial_number"] == str(trial.number)]
    assert [c.info.status for c in killed] == ["KILLED"]


def test_worker_of_another_definition_refuses_to_join(server, storage, launch, tmp_path):
    seed = 4
    coordinator = launch(
        "coordinator", *_coordinator_args(storage, server, seed, "--n-trials", "60")
    )
    other_space = tmp_path / "other_space.py"
    text = EXPERIMENT.read_text()
    assert "FloatDistribution(1e-3, 3e-2, log=True)" in text
    other_space.write_text(
        text.replace("FloatDistribution(1e-3, 3e-2", "FloatDistribution(1e-4, 3e-2")
    )
    _wait_until(lambda: _parents_running(server), "the coordinator's parent run", [coordinator])

    refusing = [
        launch(
            "other-space", *_worker_args(storage, server, seed, "other-space"), file=other_space
        ),
        launch("other-seed", *_worker_args(storage, server, seed + 100, "other-seed")),
    ]
    for worker in refusing:
        code = worker.wait(timeout=120)
        output = worker.output()
        assert code != 0, output
        assert "refusing to join" in output and "same experiment file" in output, output
        assert "Traceback" not in output
    assert coordinator.alive(), coordinator.output()[-3000:]
    # No trial ran under another definition.
    parent = _parents_running(server)
    workers = {c.data.tags["mlx.worker"] for c in _children(server, parent)}
    assert all(w.endswith("(coordinator)") for w in workers), workers
    coordinator.process.send_signal(signal.SIGINT)
    assert coordinator.wait() == 130
    assert _client(server).get_run(parent.info.run_id).info.status == "KILLED"


def _all_text_of_database(dbname):
    """Every value of every column of every table in ``dbname``, as text."""
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN, dbname=dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
            tables = [row[0] for row in cur.fetchall()]
            chunks = []
            for table in tables:
                cur.execute(f'SELECT t::text FROM "{table}" AS t')
                chunks += [row[0] for row in cur.fetchall()]
            return tables, "\n".join(chunks)
    finally:
        conn.close()


def test_passwords_never_leak(tmp_path, launch):
    import mlflow
    from mlflow.entities import ViewType

    password = f"Pw-{uuid.uuid4().hex[:12]}-secret"
    seed = 6
    with (
        postgres_role(password) as role,
        postgres_database("mlx_secret_mlflow", owner=role) as mlflow_db,
        postgres_database("mlx_secret_optuna", owner=role) as optuna_db,
    ):
        backend = pg_url(mlflow_db, user=role, password=password)
        storage = pg_url(optuna_db, user=role, password=password)
        folder = tmp_path / "server"
        folder.mkdir()
        with MlflowServer(backend, folder / "artifacts", folder) as server:
            worker = launch("worker", *_worker_args(storage, server, seed, "worker"))
            coordinator = launch("coordinator", *_coordinator_args(storage, server, seed))
            outputs = {"coordinator": coordinator.finish(), "worker": worker.finish()}
            for who, text in outputs.items():
                assert password not in text, who

            client = _client(server)
            experiments = client.search_experiments(view_type=ViewType.ALL)
            runs = client.search_runs([e.experiment_id for e in experiments])
            assert len(runs) == N_TRIALS + 1
            (parent,) = [r for r in runs if r.data.tags.get("mlx.role") == "parent"]
            # Redacted, not dropped: the run still says where its study lives.
            assert f"{role}:***@" in parent.data.tags["mlx.optuna_storage"]
            downloads = tmp_path / "downloads"
            for run in runs:
                data = run.data
                texts = [*data.params, *data.params.values(), *data.tags, *data.tags.values()]
                texts += list(data.metrics)
                texts += [run.info.artifact_uri or "", run.info.run_name or ""]
                leaked = [t for t in texts if password in t]
                assert not leaked, (run.info.run_name, leaked)
                target = downloads / run.info.run_id
                target.mkdir(parents=True)
                client.download_artifacts(run.info.run_id, "", str(target))
            for experiment in experiments:
                for model in client.search_logged_models([experiment.experiment_id]):
                    target = downloads / model.model_id
                    target.mkdir(parents=True)
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=f"models:/{model.model_id}",
                        dst_path=str(target),
                        tracking_uri=server.url,
                    )
            files = [p for p in downloads.rglob("*") if p.is_file()]
            assert len(files) > N_TRIALS
            assert any(p.name == "MLmodel" for p in files)
            leaked = [str(p) for p in files if password.encode() in p.read_bytes()]
            assert not leaked
            on_disk = [p for p in (folder / "artifacts").rglob("*") if p.is_file()]
            assert not [str(p) for p in on_disk if password.encode() in p.read_bytes()]

        for db in (mlflow_db, optuna_db):
            tables, text = _all_text_of_database(db)
            assert len(tables) > 5
            assert password not in text, db


def test_postgres_restart_mid_search(server, storage, launch):
    if os.geteuid() != 0 and not os.environ.get("MLX_REQUIRE_POSTGRES"):
        pytest.skip("restarting PostgreSQL needs root (pg_ctlcluster)")
    versions = sorted(os.listdir("/etc/postgresql"), key=float)
    seed = 5
    workers = [
        launch(f"machine-{i}", *_worker_args(storage, server, seed, f"worker-{i}")) for i in (1, 2)
    ]
    coordinator = launch("machine-0", *_coordinator_args(storage, server, seed))
    processes = [coordinator, *workers]

    def some_finished():
        study = _study_ready(storage)
        return study is not None and len(_counted(study.get_trials(deepcopy=False))) >= 2

    _wait_until(some_finished, "two finished trials", processes)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
        check=True,
        timeout=60,
    )
    for process in processes:
        process.finish()
    parent = _parent_of(server, storage)
    _assert_complete_run(server, storage, parent, expect_replaced=None)
