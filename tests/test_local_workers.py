"""Local workers: when they open the stores, and the BLAS threads of each process.

A local worker (``mlx run --workers N``) waits in ``ready()`` until its coordinator has created
the study and the parent run. Local SQLite stores are copies of an empty template, which two
processes may make at once, so the worker opens them before that wait and is ready when the
first slot is; a database server's or tracking server's empty store gets its schema from the
first process that opens it, so the worker touches those only after its release.

While trials run, each process gets its share of the cores for BLAS; the coordinator's refit,
once every trial has ended, gets them all back.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _signals import default_sigint
from _sleepy import write_experiment

import mlx
from mlx import tracking
from mlx.workers import work

# Appended to the experiment file: every fit records its process and its BLAS threads.
_RECORD_FITS = """
from threadpoolctl import threadpool_info

_fit = LogisticRegression.fit


def _recorded_fit(self, X, y, *args, **kwargs):
    blas = min(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    with open(FITS, "a") as log:
        log.write(f"{os.getpid()} {blas}\\n")
    return _fit(self, X, y, *args, **kwargs)


LogisticRegression.fit = _recorded_fit
"""

EXPERIMENT = """
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from optuna.distributions import IntDistribution

import mlx

experiment = mlx.Experiment(
    name="early-stores",
    data=lambda: load_iris(return_X_y=True),
    estimator=KNeighborsClassifier(),
    search_space={"n_neighbors": IntDistribution(1, 10)},
    n_trials=2,
)
"""


class _Released(Exception):
    """Raised by the test's ready(): the worker got as far as its release."""


def _path(tmp_path):
    path = tmp_path / "experiment.py"
    path.write_text(EXPERIMENT)
    return path


def test_a_worker_opens_local_sqlite_stores_before_its_release(tmp_path):
    mlflow_db, optuna_db = tmp_path / "stores" / "mlflow.db", tmp_path / "stores" / "optuna.db"
    seen = {}

    def ready():
        seen["stores"] = mlflow_db.exists(), optuna_db.exists()
        raise _Released

    with pytest.raises(_Released):
        work(
            _path(tmp_path),
            tracking_uri=f"sqlite:///{mlflow_db}",
            storage=f"sqlite:///{optuna_db}",
            ready=ready,
            wait=0,
        )
    assert seen["stores"] == (True, True)


def test_a_worker_touches_server_stores_only_after_its_release(tmp_path):
    """Unreachable servers: the worker reaches its release without trying them."""
    released = []

    def ready():
        released.append(True)
        raise _Released

    with pytest.raises(_Released):
        work(
            _path(tmp_path),
            tracking_uri="http://127.0.0.1:9",  # the discard port: nothing answers
            storage="postgresql://nobody@127.0.0.1:9/none",
            ready=ready,
            wait=0,
        )
    assert released == [True]


def test_a_worker_released_after_its_coordinators_run_ended_ends_at_once(tmp_path):
    """A search quicker than a worker's start: the worker must not wait for a coordinator.

    Waiting, it kept its coordinator waiting for it at the end of the run (30 s, then killed).
    """
    path = _path(tmp_path)
    stores = {
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "storage": f"sqlite:///{tmp_path / 'optuna.db'}",
    }
    mlx.run(path, show_progress=False, no_test=True, **stores)
    ran = work(path, ready=lambda: None, coordinator=tracking.coordinator_tag(), wait=5, **stores)
    assert ran == 0


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every process gets it all")
def test_trials_share_the_cores_and_the_refit_gets_them_back(tmp_path):
    fits = tmp_path / "fits.log"
    prelude = _RECORD_FITS.replace("FITS", repr(str(fits)))
    path = write_experiment(tmp_path, name="threads", sleep=0.05, n_trials=6, prelude=prelude)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    command = [sys.executable, "-m", "mlx", "run", str(path), "--workers", "2", "--no-test"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    *trials, refit = [tuple(map(int, line.split())) for line in fits.read_text().splitlines()]
    share = max(1, os.cpu_count() // 2)
    assert len(trials) == 6 and {threads for _, threads in trials} == {share}, trials
    # The last fit is the coordinator's refit (a trial of its own came first).
    coordinator = {pid for pid, _ in trials if pid == refit[0]}
    assert coordinator and refit[1] > share, (refit, trials)


def test_a_refused_run_stops_its_starting_workers_quietly(tmp_path):
    """The coordinator refuses (its test split was used) while its worker still imports.

    The worker, stopped by SIGINT in the middle of its imports, printed a KeyboardInterrupt
    traceback of thirty lines above the refusal.
    """
    path = write_experiment(tmp_path, name="refused", sleep=0.0, n_trials=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    command = [sys.executable, "-m", "mlx", "run", str(path)]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]

    again = subprocess.run(
        [*command, "--workers", "2"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 3, again.stderr[-3000:]
    assert "already evaluated 1 time" in again.stderr
    assert "Traceback" not in again.stderr and "KeyboardInterrupt" not in again.stderr, (
        again.stderr[-3000:]
    )


_STOPPED_IN_A_CALLBACK = """
import os
import time
import weakref


class Module:
    pass


def cleanup(ref):  # as importlib's module-lock cleanup, where a SIGINT once landed
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(10))


try:
    module = Module()
    ref = weakref.ref(module, cleanup)
    del module
    time.sleep(10)
    print("not stopped")
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_a_worker_stopped_inside_a_callback_python_ignores_is_stopped_quietly():
    """A SIGINT that lands in a callback (Python prints its exception and goes on) still stops
    the worker, without a word: once it printed "Exception ignored" and imported on."""
    from mlx.local_workers import _STOP_ON_SIGINT

    program = _STOP_ON_SIGINT + _STOPPED_IN_A_CALLBACK
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")


def _both_inside_a_trial(process, folder, from_number=0):
    """Wait until the run of ``process`` (``--workers 2``, default stores in ``folder``) has two
    trials numbered ``from_number`` or more running, one in each process: ``(storage URL, study
    name, the worker's pid)``."""
    import time

    import optuna
    from optuna.trial import TrialState

    storage, names, running = f"sqlite:///{folder / 'mlx-optuna.db'}", [], []
    deadline = time.monotonic() + 120
    while len(running) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        names = optuna.get_all_study_names(storage) if (folder / "mlx-optuna.db").exists() else []
        if names:
            study = optuna.load_study(study_name=names[0], storage=storage)
            trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            running = [t for t in trials if t.number >= from_number]
    assert len(running) == 2, "the coordinator and its worker were not both inside a trial"
    (worker,) = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return storage, names[0], int(worker)


def test_ctrl_c_stops_the_coordinator_and_its_worker_mid_trial_and_resume_ends_the_run(tmp_path):
    """Ctrl-C at the terminal (SIGINT to the process group), each process inside a trial.

    One message, the coordinator's (the worker said ``mlx: interrupted`` too), every run ended;
    the resume replaces the two interrupted trials and ends with the whole budget.
    """
    import signal
    import time

    import mlflow
    import optuna
    from optuna.trial import TrialState

    from mlx.search.slots import INTERRUPTED

    path = write_experiment(tmp_path, name="stopped", sleep=0.05, n_trials=10)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    command = [sys.executable, "-m", "mlx", "run", str(path), "--workers", "2"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**env, "MLX_TEST_STALL_FROM": "6", "PYTHONFAULTHANDLER": "1"},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,  # as from a terminal, whoever started the tests
    )
    # Both in a stalled trial: a short one could end before the signal comes.
    storage, study_name, worker = _both_inside_a_trial(process, tmp_path, from_number=6)
    os.killpg(process.pid, signal.SIGINT)
    # The coordinator stops its worker with SIGINT too; here that arrives while the worker is
    # ending its trial, which it must not cut short (a traceback, its child run left RUNNING).
    time.sleep(0.01)
    os.kill(worker, signal.SIGINT)
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)  # faulthandler prints where each thread is
        pytest.fail(f"Ctrl-C did not stop the run in 120 s:\n{process.communicate()[1][-12000:]}")
    assert process.returncode == 130, err[-3000:]
    assert err.count("mlx: interrupted") == 1 and "Traceback" not in err, err[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"]

    resumed = subprocess.run(
        [*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name=study_name, storage=storage)
    interrupted = [t for t in study.trials if t.user_attrs.get(INTERRUPTED)]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(interrupted) == 2 and len(complete) == 10


def _load_recorder(tmp_path):
    """An experiment file that records the pid of every process that loads it."""
    loads = tmp_path / "loads.log"
    prelude = f"with open({str(loads)!r}, 'a') as _log:\n    _log.write(f'{{os.getpid()}}\\n')\n"
    path = write_experiment(tmp_path, name="early", sleep=0.05, n_trials=4, prelude=prelude)
    return path, loads


_WHAT_STARTS_BEFORE_SCIKIT_LEARN = """
import sys

import mlx.local_workers
from mlx import painter
from mlx.cli import cli

seen = []
mlx.local_workers._start = lambda spec, n: seen.append(("workers", "sklearn" in sys.modules)) or []
painter.start = lambda: seen.append(("helper", "sklearn" in sys.modules))
try:
    cli.main(sys.argv[1:], standalone_mode=False)
finally:
    print(seen)
"""


@pytest.mark.parametrize(("options", "started"), [((), "helper"), (("--workers", "2"), "workers")])
def test_the_command_starts_its_helper_or_workers_before_it_imports_scikit_learn(
    tmp_path, options, started
):
    """They import for a second or two on the other core while this process does: started
    after its own imports, they would make the run wait for them."""
    path = tmp_path / "stops.py"
    path.write_text("raise SystemExit(0)  # loaded after the start, if all goes well\n")
    command = [sys.executable, "-c", _WHAT_STARTS_BEFORE_SCIKIT_LEARN, "run", str(path), *options]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == f"[({started!r}, False)]", done.stdout + done.stderr[-2000:]


def test_the_command_starts_its_workers_early_and_the_run_takes_them_over(tmp_path):
    """``mlx run --workers 2`` starts its worker before it loads the file; the run uses it.

    Had the run not recognised the worker started early (its file, overrides or stores spelt
    differently), it would have started another one: three processes would load the file.
    """
    path, loads = _load_recorder(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    command = [sys.executable, "-m", "mlx", "run", str(path), "--workers", "2", "--no-test"]
    command += ["--seed", "3", "--set", "n_trials=6", "--storage", "optuna.db"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    pids = loads.read_text().split()
    assert len(pids) == len(set(pids)) == 2, pids
    assert (tmp_path / "optuna.db").exists() and not (tmp_path / "mlx-optuna.db").exists()


# The data cannot be read: at once in a local worker (BLAS pinned by its coordinator), a few
# seconds later in the coordinator, so that the worker meets the error first.
_FAILING_DATA = """
import os
import time


def _no_data():
    time.sleep(0 if os.environ.get("OMP_NUM_THREADS") else 3)
    raise OSError("the data folder is not mounted")
"""


def test_a_worker_started_early_leaves_an_error_before_its_release_to_its_coordinator(tmp_path):
    """The worker meets the data's error first, before its release: the coordinator alone says.

    The worker printed its own ``mlx: error: ...`` line above its coordinator's.
    """
    path = write_experiment(tmp_path, name="no-data", prelude=_FAILING_DATA)
    path.write_text(path.read_text().replace("lambda: load_iris(return_X_y=True)", "_no_data"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    command = [sys.executable, "-m", "mlx", "run", str(path), "--workers", "2"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.count("the data folder is not mounted") == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


def test_a_worker_stopped_mid_trial_gives_its_slot_back_to_the_running_search(tmp_path):
    """``kill -INT`` of one worker: the run goes on and still ends with the whole budget.

    The worker's trial ends interrupted, without a result; the coordinator replaces it while
    the search runs (it counted as spent: the run ended with one trial fewer than asked for).
    """
    import signal

    import optuna
    from optuna.trial import TrialState

    from mlx.search.slots import INTERRUPTED, REPLACES

    path = write_experiment(tmp_path, name="one-stopped", sleep=0.4, n_trials=8)
    # Only the worker (its BLAS pinned by the coordinator) stalls, inside its first trial.
    text = path.read_text()
    stall = 'stall = trial.number >= int(os.environ.get("MLX_TEST_STALL_FROM", 10**9))'
    assert stall in text
    path.write_text(text.replace(stall, 'stall = bool(os.environ.get("OMP_NUM_THREADS"))'))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    command = [sys.executable, "-m", "mlx", "run", str(path), "--workers", "2", "--no-test"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    storage, study_name, worker = _both_inside_a_trial(process, tmp_path)
    os.kill(worker, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]

    study = optuna.load_study(study_name=study_name, storage=storage)
    (stopped,) = [t for t in study.trials if t.user_attrs.get(INTERRUPTED)]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8, err[-3000:]
    assert [t.user_attrs.get(REPLACES) for t in complete].count(stopped.number) == 1
