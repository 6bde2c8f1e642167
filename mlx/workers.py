"""Workers: processes that join a running search and run its trials.

A worker rebuilds the same split from the same experiment file, finds the study by its
definition hash and the coordinator's parent run in the MLflow store, and claims slots until the
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
from mlx.exceptions import ExperimentError, SearchError
from mlx.experiment import Experiment, identity, load_experiment
from mlx.tracking import schema

__all__ = ["WorkerSpec", "local_workers", "objective", "work"]

logger = logging.getLogger(__name__)

_SPEC_VARIABLE = "MLX_WORKER_SPEC"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Seconds a stopping local worker gets to end its trial before it is killed.
_STOP_GRACE = 30


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
):
    """Join the running search of ``experiment`` as a worker; return how many trials it ran.

    It waits up to ``wait`` seconds for a coordinator (``mlx run``) to start, and refuses to
    join one whose definition differs (another file, data or seed).
    """
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    experiment = experiment.replace(timeout=timeout, seed=seed)
    prepared = mdata.prepare(experiment)
    digest, study_name = identity(experiment, prepared.fingerprints)
    tracker = tracking.Tracker(tracking.resolve_tracking_uri(tracking_uri))
    storage_url = search.resolve_storage(storage)
    # The storage is opened only once the coordinator runs: opening an empty database creates
    # Optuna's schema, which two processes must not do at once.
    parent = _wait_for_coordinator(tracker, experiment, study_name, digest, wait)
    heartbeat = search.default_heartbeat(heartbeat, storage_url, workers=2)
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
    return search.optimize(
        study,
        optuna_storage,
        objective(experiment, prepared),
        timeout=experiment.timeout,
        on_start=children.start,
        on_trial=children.finish,
    ).count


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
    )


def _wait_for_coordinator(tracker, experiment, study_name, digest, wait):
    deadline = time.monotonic() + wait
    announced = False
    while True:
        parent = tracking.find_parent(tracker, experiment.name, study_name, statuses=("RUNNING",))
        if parent is not None:
            return parent
        others = tracking.other_definitions(tracker, experiment.name, study_name)
        if others:
            theirs = others[0].data.tags.get(schema.TAG_HASH, "?")
            raise ExperimentError(
                f"refusing to join: this experiment file defines study {study_name!r} "
                f"(definition hash {digest[:10]}), but the running coordinator's study is "
                f"{others[0].data.tags.get(schema.TAG_STUDY)!r} (hash {theirs[:10]}). Workers "
                f"must use the same experiment file, data and --seed as the coordinator."
            )
        if time.monotonic() > deadline:
            raise SearchError(
                f"no coordinator of study {study_name!r} appeared within {wait:g} s; start it "
                f"with `mlx run FILE` and the same --storage and --tracking-uri."
            )
        if not announced:
            logger.warning("waiting for the coordinator of study %s ...", study_name)
            announced = True
        time.sleep(1.0)


@dataclasses.dataclass
class WorkerSpec:
    """Everything a local worker process needs to join the search (sent as JSON)."""

    path: str
    seed: int
    storage: str
    tracking_uri: str
    worker_id: str
    parent_pid: int
    timeout: float | None = None
    heartbeat: int | None = None


@contextlib.contextmanager
def local_workers(experiment, n, *, storage_url, tracking_uri, heartbeat=None):
    """Start ``n`` worker processes on this machine for the duration of the block.

    Each gets a :class:`WorkerSpec` through its environment, not its command line, where ``ps``
    would show a password. BLAS gets one share of the cores per process so that the processes
    do not fight over them.
    """
    if n <= 0:
        yield []
        return
    threads = str(max(1, (os.cpu_count() or 1) // (n + 1)))
    processes = []
    for i in range(n):
        spec = WorkerSpec(
            path=str(experiment.path),
            seed=experiment.seed,
            storage=storage_url,
            tracking_uri=tracking_uri,
            worker_id=f"{platform.node()}-local{i + 1}",
            parent_pid=os.getpid(),
            timeout=experiment.timeout,
            heartbeat=heartbeat,
        )
        env = {
            **os.environ,
            _SPEC_VARIABLE: json.dumps(dataclasses.asdict(spec)),
            **dict.fromkeys(_THREAD_VARIABLES, threads),
        }
        command = [sys.executable, "-c", "from mlx.workers import serve; serve()"]
        processes.append(subprocess.Popen(command, env=env))
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(int(threads)):
            yield processes
    except BaseException:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        raise
    finally:
        for process in processes:
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
    one_line_errors(work)(
        spec.path,
        tracking_uri=spec.tracking_uri,
        storage=spec.storage,
        seed=spec.seed,
        timeout=spec.timeout,
        heartbeat=spec.heartbeat,
        worker_id=spec.worker_id,
    )


def _exit_with_parent(pid):
    """A local worker ends when its coordinator is gone (even after kill -9)."""

    def watch():
        while os.getppid() == pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="mlx-parent-watch", daemon=True).start()
