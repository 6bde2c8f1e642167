"""Workers: processes that join a running search and run its trials.

A worker rebuilds the same split from the same experiment file, finds the study by its
definition hash and the coordinator's parent run in the MLflow store, and claims trials until the
study's budget is spent (see :mod:`mlx.search.slots`). Workers run anywhere that reaches the
same Optuna storage and MLflow store: ``mlx worker`` on other machines, or local processes
that ``mlx run --workers N`` starts with :func:`local_workers`.
"""

import contextlib
import dataclasses
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time

from mlx import data as mdata
from mlx import search, tracking
from mlx.console import sigterm_interrupts
from mlx.exceptions import ExperimentError, SearchError, TrackingError
from mlx.experiment import Experiment, definition_hash, load_experiment
from mlx.overrides import assignments, parse
from mlx.stores import redact_url, sqlite_path
from mlx.tracking import schema

__all__ = ["LocalWorkers", "WorkerSpec", "local_workers", "objective", "work"]

logger = logging.getLogger(__name__)

_SPEC_VARIABLE = "MLX_WORKER_SPEC"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Seconds a stopping local worker gets to end its trial before it is killed.
_STOP_GRACE = 30
# Seconds between looks for the store and the coordinator.
_POLL_SECONDS = 1.0
# What the coordinator writes to a local worker's stdin to release it.
_GO = "go\n"
# A local worker's program. Stopped by SIGINT (Ctrl-C, or its coordinator stopping) while it
# still imports, it ends quietly, as it does later (see serve): its coordinator says so.
_BOOTSTRAP = """
import sys
try:
    from mlx.workers import serve
    serve()
except KeyboardInterrupt:
    sys.exit(130)
"""


@sigterm_interrupts()
def work(
    experiment,
    *,
    tracking_uri=None,
    storage=None,
    seed=None,
    timeout=None,
    wait=600.0,
    heartbeat=None,
    worker_id=None,
    coordinator=None,
    ready=None,
    overrides=None,
):
    """Join the running search of ``experiment`` as a worker; return how many trials it ran.

    ``coordinator`` (``host:pid``) restricts the search joined to that coordinator's run (local
    workers know theirs); ``ready()`` is called once the data is loaded (a local worker waits
    there for its coordinator), before the stores are opened unless they are local SQLite files.

    It waits up to ``wait`` seconds for the MLflow store to answer and for a coordinator
    (``mlx run``) to start, and refuses to join one whose definition differs (another file,
    data, seed or ``overrides``: the coordinator's must be given). SIGTERM stops it as Ctrl-C
    does: its running trial ends interrupted.
    """
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    experiment = experiment.with_overrides(overrides or {}).replace(timeout=timeout, seed=seed)
    prepared = mdata.prepare(experiment)
    digest = definition_hash(experiment, prepared.fingerprints)
    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    storage_url = search.resolve_storage(storage)
    heartbeat = search.default_heartbeat(heartbeat, storage_url, workers=2)
    # Local SQLite stores are made as copies of an empty one (mlx.stores.from_template), which
    # processes may do at once: they are opened while the coordinator sets up, so that the
    # worker is ready when the first slot is. A database server's empty store gets its schema
    # from the first process that opens it, which two must not do at once: it is opened once
    # the coordinator runs.
    early = sqlite_path(tracking_uri) is not None and sqlite_path(storage_url) is not None
    if early:
        tracker = tracking.Tracker(tracking_uri)
        optuna_storage = search.open_storage(storage_url, heartbeat=heartbeat)
    if ready is not None:
        ready()
    deadline = time.monotonic() + wait
    if not early:
        tracker = _wait_for_store(tracking_uri, deadline)
    parent = _wait_for_coordinator(tracker, experiment, digest, coordinator, deadline, wait)
    if parent is None:
        logger.info("the search ended before this worker was ready: no trial left to run")
        return 0
    study_name = parent.data.tags[schema.TAG_STUDY]
    if not early:
        optuna_storage = search.open_storage(storage_url, heartbeat=heartbeat)
    worker_id = worker_id or f"{platform.node()}-{os.getpid()}"
    study = search.load_study(
        study_name,
        storage=optuna_storage,
        seed=experiment.seed,
        sampler=experiment.sampler,
        pruner=experiment.pruner,
        worker_id=worker_id,
    )
    logger.info("worker %s joined study %s", worker_id, study_name)
    children = tracking.ChildRuns(
        tracker,
        parent.info.experiment_id,
        parent.info.run_id,
        study_name,
        worker_id,
        experiment.metric_name,
    )
    try:
        ran = search.optimize(
            study,
            optuna_storage,
            objective(experiment, prepared),
            timeout=experiment.timeout,
            on_start=children.start,
            on_trial=children.finish,
        ).count
        children.flush()  # background writes (a tracking server) land before the worker ends
        return ran
    except BaseException as exc:
        children.abandon(str(exc) or type(exc).__name__)
        raise


def objective(experiment, prepared):
    """The trial objective of ``experiment``: fit on its training split, score on validation.

    The coordinator and every worker build it alike from the same prepared data.
    """
    return search.Objective(
        experiment.candidates,
        experiment.scorer,
        prepared.rows("train"),
        prepared.rows("val"),
        seed=experiment.seed,
        max_epochs=experiment.max_epochs,
        folds=prepared.fold_rows(),
        limits=experiment.limits,
    )


def _wait_for_store(uri, deadline):
    """The MLflow store at ``uri``, waiting until ``deadline`` for it to answer.

    A worker may start before the tracking server does (a batch job, a machine that boots
    faster); it waits as it waits for the coordinator.
    """
    announced = False
    while True:
        try:
            return tracking.Tracker(uri)
        except TrackingError:
            if time.monotonic() > deadline:
                raise
            if not announced:
                logger.warning("waiting for the MLflow store %s to answer ...", redact_url(uri))
                announced = True
            time.sleep(_POLL_SECONDS)


def _wait_for_coordinator(tracker, experiment, digest, coordinator, deadline, wait):
    """The RUNNING parent run of this definition, waiting until ``deadline`` for it.

    None for a local worker (``coordinator`` given) whose coordinator's run has ended: it was
    released once that run existed, so a run no longer RUNNING has ended (a search quicker than
    the worker's start), and waiting would keep the coordinator waiting for the worker.
    """
    announced = False
    while True:
        parent = tracking.find_parent(
            tracker, experiment.name, digest=digest, statuses=("RUNNING",), coordinator=coordinator
        )
        if parent is not None or coordinator is not None:
            return parent
        others = tracking.other_definitions(tracker, experiment.name, digest)
        if others:
            theirs = others[0].data.tags.get(schema.TAG_HASH, "?")
            raise ExperimentError(
                f"refusing to join: this experiment file's definition has hash {digest[:10]}, "
                f"but the running coordinator's run {others[0].info.run_name!r} has hash "
                f"{theirs[:10]}. Workers must use the same experiment file, data, --seed and "
                f"--set options as the coordinator."
            )
        if time.monotonic() > deadline:
            raise SearchError(
                f"no coordinator of experiment {experiment.name!r} (definition hash "
                f"{digest[:10]}) appeared within {wait:g} s; start it with `mlx run FILE` and "
                f"the same --storage and --tracking-uri."
            )
        if not announced:
            logger.warning("waiting for the coordinator of %s ...", experiment.name)
            announced = True
        time.sleep(_POLL_SECONDS)


@dataclasses.dataclass
class WorkerSpec:
    """Everything a local worker process needs to join the search (sent as JSON)."""

    path: str
    seed: int
    storage: str
    tracking_uri: str
    worker_id: str
    parent_pid: int
    coordinator: str
    timeout: float | None = None
    heartbeat: int | None = None
    overrides: list[str] | None = None  # the coordinator's, as --set KEY=VALUE texts


class LocalWorkers:
    """The worker processes :func:`local_workers` started, waiting to be released."""

    def __init__(self, processes, limits=None):
        self.processes = processes
        self._limits = limits  # this process's share of the BLAS threads, while workers run

    def release(self):
        """Let the workers open the stores and join: the coordinator's run exists now.

        Until then they import, load the data and open local SQLite stores (copies of an
        empty store, safe to make at once): a worker that opened a database server's fresh store
        while the coordinator creates it would run the store's migrations twice at once.
        """
        for process in self.processes:
            with contextlib.suppress(OSError):  # a worker that already ended
                process.stdin.write(_GO)
                process.stdin.flush()

    def claimed_all(self):
        """This process claims no more trials: its refit gets all the BLAS threads back.

        The workers run their last trials meanwhile, on their own share of the cores.
        """
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None


@contextlib.contextmanager
def local_workers(experiment, n, *, storage_url, tracking_uri, heartbeat=None):
    """Start ``n`` worker processes on this machine for the duration of the block.

    Yields a :class:`LocalWorkers` to release once the coordinator's run exists. Each worker
    gets a :class:`WorkerSpec` through its environment, not its command line, where ``ps``
    would show a password. BLAS gets one share of the cores per process so that the processes
    do not fight over them.
    """
    threads = str(max(1, (os.cpu_count() or 1) // (n + 1))) if n > 0 else None
    processes = []
    for i in range(max(0, n)):
        spec = WorkerSpec(
            path=str(experiment.path),
            seed=experiment.seed,
            storage=storage_url,
            tracking_uri=tracking_uri,
            worker_id=f"{platform.node()}-local{i + 1}",
            parent_pid=os.getpid(),
            coordinator=tracking.coordinator_tag(),
            timeout=experiment.timeout,
            heartbeat=heartbeat,
            overrides=assignments(experiment.overrides),
        )
        env = {
            **os.environ,
            _SPEC_VARIABLE: json.dumps(dataclasses.asdict(spec)),
            **dict.fromkeys(_THREAD_VARIABLES, threads),
        }
        command = [sys.executable, "-c", _BOOTSTRAP]
        processes.append(subprocess.Popen(command, env=env, stdin=subprocess.PIPE, text=True))
    if not processes:
        yield LocalWorkers([])
        return
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(int(threads))
    try:
        yield LocalWorkers(processes, limits)
    except BaseException:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        raise
    finally:
        limits.restore_original_limits()
        for process in processes:
            with contextlib.suppress(OSError):
                process.stdin.close()  # a worker never released reads EOF and ends
            try:
                process.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve():
    """The body of a local worker process: read its :class:`WorkerSpec`, then :func:`work`."""
    from mlx.console import one_line_errors, quiet_libraries

    spec = WorkerSpec(**json.loads(os.environ.pop(_SPEC_VARIABLE)))
    _exit_with_parent(spec.parent_pid)
    quiet_libraries()
    one_line_errors(_quietly_interrupted(work))(
        spec.path,
        ready=_released,
        tracking_uri=spec.tracking_uri,
        storage=spec.storage,
        seed=spec.seed,
        timeout=spec.timeout,
        heartbeat=spec.heartbeat,
        worker_id=spec.worker_id,
        coordinator=spec.coordinator,
        overrides=parse(spec.overrides or []),
    )


def _quietly_interrupted(func):
    """``func``, exiting 130 without a word on Ctrl-C: its coordinator says so itself."""

    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def _released():
    """Block until the coordinator releases this worker; end quietly if it never does."""
    if sys.stdin.readline() != _GO:
        sys.exit(0)


def _exit_with_parent(pid):
    """A local worker ends when its coordinator is gone (even after kill -9)."""

    def watch():
        while os.getppid() == pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="mlx-parent-watch", daemon=True).start()
