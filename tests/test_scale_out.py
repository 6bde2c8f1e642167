"""Scale-out on real engines: a coordinator and workers sharing a PostgreSQL study and an MLflow server.

Every process here is the real ``mlx`` command started in a working folder of its own (as on
separate machines), against a real PostgreSQL server (127.0.0.1:5432) and a real ``mlflow
server`` whose backend store is PostgreSQL. Faults are real too: ``kill -9`` of a worker or of
the coordinator, a restart of the PostgreSQL server. The experiment is tests/scale_experiment.py
(about a second per trial), so that several processes really share the trials.

The tests share one MLflow server and must run in one process, in file order (the PostgreSQL
restart is last): ``pytest -m slow -n 2 --dist loadfile``. (``--dist loadgroup`` with the
``xdist_group`` mark below should do the same, but does not group on pytest 9.2 with
pytest-xdist 3.8: pytest-dev/pytest-xdist#1386.)
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
    postgres_to_itself,
    require_postgres,
)
from _signals import default_sigint

from mlx.search import REPLACES
from mlx.tracking import schema

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postgres")]

EXPERIMENT = Path(__file__).with_name("scale_experiment.py")
EXPERIMENT_NAME = "scale-out-digits"
N_TRIALS = 8
# Seconds any one process of a test may take; a hang fails the test instead of stalling CI.
PROCESS_TIMEOUT = 180
REPLACES = REPLACES


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
            preexec_fn=default_sigint,
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
class _Stores:
    """What one test's processes wrote: its parent run, child runs and Optuna study.

    The parent run is found by its ``mlx.optuna_storage`` tag (each test has a database of its
    own). The Optuna storage is opened only once the parent exists: by then the coordinator has
    created the study, so this process never races it on creating the schema.
    """

    def __init__(self, server, storage_url):
        from mlflow import MlflowClient

        from mlx.tracking import redact_url

        self.client = MlflowClient(tracking_uri=server.url)
        self.storage_url = storage_url
        self.storage_tag = redact_url(storage_url)
        self._study = None

    def parent(self, status=None):
        """The parent run of this test's study (None before the coordinator created it)."""
        experiment = self.client.get_experiment_by_name(EXPERIMENT_NAME)
        if experiment is None:
            return None
        query = (
            f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}' "
            f"AND tags.`{schema.TAG_OPTUNA_STORAGE}` = '{self.storage_tag}'"
        )
        if status is not None:
            query += f" AND attributes.status = '{status}'"
        runs = self.client.search_runs([experiment.experiment_id], query)
        assert len(runs) <= 1, [r.info.run_id for r in runs]
        return runs[0] if runs else None

    def children(self, parent, extra=""):
        query = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'{extra}"
        return self.client.search_runs([parent.info.experiment_id], query)

    def study(self):
        if self._study is None:
            import optuna

            parent = self.parent()
            if parent is None:
                return None
            self._study = optuna.load_study(
                study_name=parent.data.tags[schema.TAG_STUDY],
                storage=optuna.storages.RDBStorage(self.storage_url),
            )
        return self._study

    def trials(self):
        study = self.study()
        return [] if study is None else study.get_trials(deepcopy=False)

    def running_trial(self, number=None, max_epochs_done=10):
        """A RUNNING trial (number ``number``) at most ``max_epochs_done`` epochs in, or None.

        A trial that has reported fewer epochs than it trains (the experiment's 15 unless set) is
        surely mid-trial.
        """
        for trial in self.trials():
            if (
                trial.state.name == "RUNNING"
                and (number is None or trial.number == number)
                and 1 <= len(trial.intermediate_values) <= max_epochs_done
            ):
                return trial
        return None


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
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _assert_complete_run(stores, *, n_trials=N_TRIALS, replaced=0):
    """One parent FINISHED with one test evaluation; one child per trial; nothing RUNNING.

    ``replaced`` is the number of lost trials that new slots replaced (None: any number).
    Returns ``(trials, children)``.
    """
    trials = stores.trials()
    assert len(_counted(trials)) == n_trials, [(t.number, t.state.name) for t in trials]
    assert not [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    replacements = [t for t in trials if REPLACES in t.user_attrs]
    if replaced is not None:
        assert len(replacements) == replaced, [(t.number, t.user_attrs) for t in trials]

    parent = stores.parent()
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[schema.TAG_EVALUATED] == "true"
    history = stores.client.get_metric_history(parent.info.run_id, schema.test("accuracy"))
    assert len(history) == 1, "the test split is evaluated once"

    children = stores.children(parent)
    numbers = sorted(int(c.data.tags[schema.TAG_TRIAL]) for c in children)
    assert numbers == sorted(t.number for t in trials), "one child run per trial"
    assert not [c.info.run_name for c in children if c.info.status == "RUNNING"]
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

    stores = _Stores(server, storage)
    trials, children = _assert_complete_run(stores)
    assert stores.parent().info.run_id in output
    assert [t.state.name for t in trials] == ["COMPLETE"] * N_TRIALS
    assert all(c.info.status == "FINISHED" for c in children)
    who = {c.data.tags[schema.TAG_WORKER] for c in children}
    assert len(who) > 1, f"one process ran every trial: {who}"
    assert who & {"worker-1", "worker-2"}, who


def test_a_worker_killed_mid_trial_is_replaced(server, storage, launch):
    seed, n_trials = 2, 10
    # Trials of 60 epochs, caught up to epoch 50: the victim writes its child runs on a
    # background thread, which on two cores shared with the coordinator and the server can
    # create a trial's run seconds after the trial started (15-epoch trials all ended before).
    longer = ("--set", "mlpclassifier__max_iter=60")
    victim = launch("victim", *_worker_args(storage, server, seed, "victim", *longer))
    coordinator = launch(
        "coordinator",
        *_coordinator_args(storage, server, seed, "--n-trials", str(n_trials), *longer),
    )
    stores = _Stores(server, storage)

    def victim_mid_trial():
        parent = stores.parent()
        if parent is None:
            return None
        extra = f" AND attributes.status = 'RUNNING' AND tags.`{schema.TAG_WORKER}` = 'victim'"
        for child in stores.children(parent, extra):
            number = int(child.data.tags[schema.TAG_TRIAL])
            trial = stores.running_trial(number, max_epochs_done=50)
            if trial is not None:
                return trial
        return None

    trial = _wait_until(victim_mid_trial, "a trial running in the victim", [victim, coordinator])
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    coordinator.finish()

    trials, children = _assert_complete_run(stores, n_trials=n_trials, replaced=1)
    assert next(t for t in trials if t.number == trial.number).state.name == "FAIL"
    assert [t.number for t in trials if t.user_attrs.get(REPLACES) == trial.number]
    (orphan,) = [c for c in children if c.data.tags[schema.TAG_TRIAL] == str(trial.number)]
    assert orphan.info.status == "KILLED"
    assert orphan.data.tags[schema.TAG_WORKER] == "victim"


def test_the_coordinator_killed_and_resumed_finishes(server, storage, launch):
    seed, n_trials = 3, 10
    args = _coordinator_args(storage, server, seed, "--n-trials", str(n_trials))
    first = launch("coordinator", *args)
    stores = _Stores(server, storage)

    def mid_search():
        return len(_counted(stores.trials())) >= 1 and stores.running_trial()

    trial = _wait_until(mid_search, "the coordinator mid-search", [first])
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    before = stores.parent()
    assert before.info.status == "RUNNING"

    again = _MlxProcess(first.folder, (*args, "--resume"))
    try:
        again.finish()
    finally:
        again.kill()

    trials, children = _assert_complete_run(stores, n_trials=n_trials, replaced=1)
    assert stores.parent().info.run_id == before.info.run_id
    assert next(t for t in trials if t.number == trial.number).state.name == "FAIL"
    lost = [c for c in children if c.data.tags[schema.TAG_TRIAL] == str(trial.number)]
    assert [c.info.status for c in lost] == ["KILLED"]


def test_a_worker_of_another_definition_refuses_to_join(server, storage, launch, tmp_path):
    seed = 4
    # Enough trials that it is still running when the refusals come.
    coordinator = launch(
        "coordinator", *_coordinator_args(storage, server, seed, "--n-trials", "500")
    )
    stores = _Stores(server, storage)
    _wait_until(lambda: stores.parent("RUNNING"), "the coordinator's parent run", [coordinator])

    other_space = tmp_path / "other_space.py"
    original = "FloatDistribution(1e-3, 3e-2, log=True)"
    assert original in EXPERIMENT.read_text()
    other_space.write_text(
        EXPERIMENT.read_text().replace(original, "FloatDistribution(1e-4, 3e-2, log=True)")
    )
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
        assert "Traceback" not in output, output
    assert coordinator.alive(), coordinator.output()[-3000:]
    parent = stores.parent("RUNNING")
    workers = {c.data.tags[schema.TAG_WORKER] for c in stores.children(parent)}
    assert all(w.endswith("(coordinator)") for w in workers), workers

    coordinator.process.send_signal(signal.SIGINT)
    assert coordinator.wait() == 130, coordinator.output()[-3000:]
    assert stores.parent().info.status == "KILLED"


def _text_of_database(dbname):
    """``(tables, text)``: every row of every table of ``dbname``, as text."""
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN, dbname=dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
            tables = [row[0] for row in cur.fetchall()]
            rows = []
            for table in tables:
                cur.execute(f'SELECT t::text FROM "{table}" AS t')
                rows += [row[0] for row in cur.fetchall()]
            return tables, "\n".join(rows)
    finally:
        conn.close()


def _download_everything(client, tracking_uri, folder):
    """Download every artifact of every run and logged model of the store into ``folder``.

    Returns ``(runs, files)``. ``mlflow-artifacts:`` locations resolve through the global
    tracking URI, so the caller points ``MLFLOW_TRACKING_URI`` at the server.
    """
    import mlflow
    from mlflow.entities import ViewType

    experiments = client.search_experiments(view_type=ViewType.ALL)
    ids = [e.experiment_id for e in experiments]
    runs = client.search_runs(ids, run_view_type=ViewType.ALL)
    for run in runs:
        target = folder / run.info.run_id
        target.mkdir(parents=True)
        client.download_artifacts(run.info.run_id, "", str(target))
    for model in client.search_logged_models(ids):
        target = folder / model.model_id
        target.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(
            artifact_uri=model.artifact_location, dst_path=str(target), tracking_uri=tracking_uri
        )
    return runs, [p for p in folder.rglob("*") if p.is_file()]


def test_passwords_never_leak(tmp_path, launch, monkeypatch):
    password = f"Pw-{uuid.uuid4().hex[:12]}-secret"
    seed = 6
    with (
        postgres_role(password) as role,
        postgres_database("mlx_secret_mlflow", owner=role) as mlflow_db,
        postgres_database("mlx_secret_optuna", owner=role) as optuna_db,
    ):
        storage = pg_url(optuna_db, user=role, password=password)
        folder = tmp_path / "server"
        folder.mkdir()
        # The server itself is given the URL with the password: its command line may hold it.
        backend = pg_url(mlflow_db, user=role, password=password)
        with MlflowServer(backend, folder / "artifacts", folder) as server:
            worker = launch("worker", *_worker_args(storage, server, seed, "worker"))
            coordinator = launch("coordinator", *_coordinator_args(storage, server, seed))
            outputs = {"coordinator": coordinator.finish(), "worker": worker.finish()}
            for who, text in outputs.items():
                assert password not in text, who

            monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
            stores = _Stores(server, storage)
            parent = stores.parent()
            # Redacted, not dropped: the run still says where its study lives.
            assert f"{role}:***@" in parent.data.tags[schema.TAG_OPTUNA_STORAGE]
            runs, files = _download_everything(stores.client, server.url, tmp_path / "downloads")
            assert len(runs) == N_TRIALS + 1
            for run in runs:
                data = run.data
                texts = [*data.params.items(), *data.tags.items(), *data.metrics]
                texts += [run.info.artifact_uri, run.info.run_name]
                assert not [t for t in texts if password in str(t)], run.info.run_name
            assert any(p.name == "MLmodel" for p in files) and len(files) > 5
            assert not [str(p) for p in files if password.encode() in p.read_bytes()]
            on_disk = [p for p in (folder / "artifacts").rglob("*") if p.is_file()]
            assert not [str(p) for p in on_disk if password.encode() in p.read_bytes()]

        for db in (mlflow_db, optuna_db):
            tables, text = _text_of_database(db)
            assert len(tables) > 5, tables
            assert parent.info.run_id in text or db == optuna_db
            assert password not in text, db


def test_opening_the_storage_retries_while_postgres_restarts(storage, monkeypatch):
    """A process that starts while the database restarts waits for it, as running ones do."""
    from optuna.exceptions import StorageInternalError

    from mlx.search import storage as storages

    make_storage, calls = storages._rdb_storage, []

    def restarting_once(*args, **kwargs):  # the fault: the first attempt meets the restart
        calls.append(args)
        if len(calls) == 1:
            raise StorageInternalError("An exception is raised during the commit.")
        return make_storage(*args, **kwargs)

    monkeypatch.setattr(storages, "_rdb_storage", restarting_once)
    opened = storages.open_storage(storage, heartbeat=1)
    assert len(calls) == 2
    opened.engine.dispose()


def test_a_postgres_restart_mid_search_is_survived(server, storage, launch):
    # Last in the module: it restarts the database of the shared MLflow server too.
    if os.geteuid() != 0 and not os.environ.get("MLX_REQUIRE_POSTGRES"):
        pytest.skip("restarting PostgreSQL (pg_ctlcluster) needs root")
    version = max(os.listdir("/etc/postgresql"), key=float)
    seed, n_trials = 5, 12
    # The other test process's tests on this server wait meanwhile (they would see it go down).
    with postgres_to_itself():
        workers = [
            launch(f"machine-{i}", *_worker_args(storage, server, seed, f"worker-{i}"))
            for i in (1, 2)
        ]
        coordinator = launch(
            "machine-0", *_coordinator_args(storage, server, seed, "--n-trials", str(n_trials))
        )
        stores = _Stores(server, storage)
        processes = [coordinator, *workers]

        def all_joined():
            parent = stores.parent()
            children = stores.children(parent) if parent else []
            return {"worker-1", "worker-2"} <= {c.data.tags[schema.TAG_WORKER] for c in children}

        # Every process is in the search (the restart is not the one a worker starts into).
        _wait_until(all_joined, "both workers running trials", processes)
        assert len(_counted(stores.trials())) < n_trials - 2
        restart = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
        subprocess.run(restart, check=True, timeout=120)
        outputs = [process.finish() for process in processes]
    # The restart hit the search (the storage calls were retried), not its end.
    assert any("storage unavailable" in output for output in outputs), outputs
    # Trials whose heartbeat could not be recorded during the restart may have been replaced.
    # (A fresh reader: the connections of the one above died with the restart.)
    _assert_complete_run(_Stores(server, storage), n_trials=n_trials, replaced=None)
