"""Workers: processes that join a running search and run its trials.

A worker rebuilds the same split from the same experiment file, finds the study by its
definition hash and the coordinator's parent run in the MLflow store, and claims trials until the
study's budget is spent (see :mod:`mlx.search.slots`). Workers run anywhere that reaches the
same Optuna storage and MLflow store: ``mlx worker`` on other machines, or local processes
that ``mlx run --workers N`` starts (:mod:`mlx.local_workers`).
"""

import json
import logging
import os
import platform
import sys
import threading
import time

from mlx import data as mdata
from mlx import search, tracking
from mlx.console import sigterm_interrupts
from mlx.exceptions import ExperimentError, SearchError, TrackingError
from mlx.experiment import Experiment, definition_hash, load_experiment
from mlx.local_workers import GO, SPEC_VARIABLE, WorkerSpec
from mlx.overrides import parse
from mlx.stores import redact_url, sqlite_path
from mlx.tracking import schema

__all__ = ["objective", "serve", "work"]

logger = logging.getLogger(__name__)

# Seconds between looks for the store and the coordinator.
_POLL_SECONDS = 1.0


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
            on_fit=children.fitting,
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
        train_score=experiment.train_score,
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


def serve():
    """The body of a local worker process: read its spec, then :func:`work`.

    The worker starts before its coordinator has checked anything: an error it meets before
    its release (a broken experiment file, say) is its coordinator's to report, which then
    never releases it. It waits for that verdict: never released, it ends without a word;
    released, it reports the error itself.
    """
    from mlx.console import one_line_errors, quiet_libraries

    spec = WorkerSpec(**json.loads(os.environ.pop(SPEC_VARIABLE)))
    _exit_with_parent(spec.parent_pid)
    quiet_libraries()
    release = _Release()

    @one_line_errors
    @_quietly_interrupted
    def serve_once():
        try:
            return work(
                spec.path,
                ready=release.wait,
                tracking_uri=spec.tracking_uri,
                storage=spec.storage,
                heartbeat=spec.heartbeat,
                worker_id=spec.worker_id,
                coordinator=tracking.coordinator_tag(spec.parent_pid),
                overrides=parse(spec.overrides),
            )
        except Exception:
            release.wait()
            raise

    serve_once()


def _quietly_interrupted(func):
    """``func``, exiting 130 without a word on Ctrl-C: its coordinator says so itself."""

    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


class _Release:
    """The coordinator's release, read once from stdin; never released, the worker ends."""

    def __init__(self):
        self.released = False

    def wait(self):
        """Block until the coordinator releases this worker; end quietly if it never does."""
        if self.released:
            return
        if sys.stdin.readline() != GO:
            sys.exit(0)
        self.released = True


def _exit_with_parent(pid):
    """A local worker ends when its coordinator is gone (even after kill -9)."""

    def watch():
        while os.getppid() == pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="mlx-parent-watch", daemon=True).start()
