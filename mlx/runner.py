"""One experiment end to end: audit -> split -> search -> refit -> test once -> log.

The runner wires the other modules together with small callbacks: :mod:`mlx.search` reports each
finished trial as a record, which the runner hands to :mod:`mlx.tracking`. The parent MLflow run
always ends (FINISHED, FAILED or KILLED), whatever happens in between.
"""

import collections
import contextlib
import hashlib
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from mlx import _candidates, evaluation, scheduling, search
from mlx import data as mdata
from mlx.exceptions import (
    DataError,
    ExperimentError,
    SearchError,
    TestReuseError,
    TrackingError,
    first_line,
)
from mlx.experiment import Experiment, definition_hash, load_experiment
from mlx.tracking import (
    TAG_EVALUATED,
    TAG_FINGERPRINT,
    TAG_HASH,
    TAG_ROLE,
    TAG_STUDY,
    TAG_USE_COUNT,
    Tracker,
    redact_url,
    resolve_tracking_uri,
    trial_summaries,
    ui_command,
)

__all__ = ["RunResult", "run", "work"]

logger = logging.getLogger("mlx")

# Fixed estimator parameters longer than this (as text) are not logged as params.
_MAX_FIXED_PARAM = 250
_VERSIONED = ("numpy", "scikit-learn", "optuna", "mlflow", "pandas")
_DEFAULT_HEARTBEAT = 10
_POLL_SECONDS = 1.0
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class RunResult:
    """What :func:`run` returns.

    ``best_value`` is the best validation score; ``test_scores`` the test metrics (None with
    ``no_test``); ``model`` the best configuration refit as the experiment's ``refit`` says.
    """

    experiment_name: str
    study_name: str
    run_id: str
    metric_name: str
    best_params: dict
    best_value: float
    test_scores: dict | None
    model: object
    model_uri: str = ""
    trial_counts: dict = field(default_factory=dict)
    test_use_count: int = 0
    tracking_uri: str = ""

    def summary(self):
        """A short human-readable summary (URLs redacted)."""
        lines = [
            f"experiment  {self.experiment_name}   (study {self.study_name})",
            "trials      " + ", ".join(f"{k.lower()} {v}" for k, v in self.trial_counts.items()),
            "best params " + ", ".join(f"{k}={_short(v)}" for k, v in self.best_params.items()),
            f"validation  {self.metric_name} = {self.best_value:.4f}",
        ]
        if self.test_scores is None:
            lines.append("test        not evaluated (--no-test)")
        else:
            scores = ", ".join(
                f"{k} = {v:.4f}" for k, v in self.test_scores.items() if isinstance(v, float)
            )
            lines.append(f"test        {scores}   (use {self.test_use_count} of this test set)")
        lines.append(f"MLflow run  {self.run_id}   (model {self.model_uri})")
        lines.append(f"open the UI {ui_command(self.tracking_uri)}")
        return "\n".join(lines)


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def run(
    experiment,
    *,
    n_trials=None,
    timeout=None,
    seed=None,
    tracking_uri=None,
    storage=None,
    no_test=False,
    allow_test_reuse=False,
    show_progress=True,
    resume=False,
    workers=1,
    heartbeat=None,
):
    """Run an experiment: search on validation, test once, log everything to MLflow.

    This process is the *coordinator*: it alone splits, creates the study and the parent run,
    and evaluates the test split once every trial of the study has finished. Trials may also be
    run by workers (``workers`` local processes, or :func:`work` on other machines sharing the
    storage and the tracking server).

    Parameters
    ----------
    experiment : Experiment or path
        An :class:`~mlx.Experiment`, or the path of an experiment file.
    n_trials, timeout, seed : optional
        Override the experiment's settings for this run.
    tracking_uri : str, default=None
        MLflow store; default ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
        working directory.
    storage : str, default=None
        Optuna storage URL; default ``sqlite:///mlx-optuna.db`` in the working directory.
    no_test : bool, default=False
        Search and validate only; the test split is not evaluated.
    allow_test_reuse : bool, default=False
        Evaluate a test split that an earlier run already evaluated (the run records the count).
    show_progress : bool, default=True
        Show a progress bar over trials.
    resume : bool, default=False
        Continue the interrupted run of this experiment (same definition hash): its study until
        ``n_trials`` trials have finished in total, and its parent run.
    workers : int, default=1
        Processes running trials on this machine, this one included (needs an experiment file).
    heartbeat : int, default=None
        Seconds between the heartbeats of running trials, after which (times three) a trial of a
        dead process is failed and replaced. Default: 10 with workers or a database server,
        else off.

    Returns
    -------
    result : RunResult

    Raises
    ------
    ExperimentError, DataError
        Invalid experiment or data, before anything is written.
    TestReuseError
        The test split was evaluated before and neither ``no_test`` nor ``allow_test_reuse``.
    SearchError
        No trial completed, or nothing to resume.
    """
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    experiment = experiment.replace(n_trials=n_trials, timeout=timeout, seed=seed)
    workers = int(workers)
    if workers < 1:
        raise ExperimentError(f"workers must be >= 1, got {workers}.")
    if workers > 1 and experiment.path is None:
        raise ExperimentError(
            "workers > 1 run the experiment file in other processes: load it from a file "
            "(mlx run FILE --workers N, or mlx.run('experiments/x.py', workers=N))."
        )
    dataset, parts, audit, summary = _prepare_data(experiment)
    fingerprints, digest, study_name = _identity(experiment, summary)

    uri = resolve_tracking_uri(tracking_uri)
    tracker = Tracker(uri)
    storage_url = search.resolve_storage(storage)
    optuna_storage = _open_storage(storage_url, _heartbeat(heartbeat, storage_url, workers))
    use_count = _test_use_count(tracker, fingerprints["test"], no_test, allow_test_reuse)
    if resume:
        parent = _resumable_parent(tracker, experiment, study_name, uri)
        parent_id, experiment_id = parent.info.run_id, parent.info.experiment_id
        study = _load_study(experiment, study_name, optuna_storage)
        tracker.reopen(parent_id)
    else:
        experiment_id = tracker.experiment_id(experiment.name)
        study = _create_study(experiment, study_name, optuna_storage)
        # Slots first: a worker that sees the parent run must also see work to do.
        _enqueue_slots(study, experiment)
        parent_id = tracker.start_run(
            experiment_id,
            study_name,
            tags={
                TAG_STUDY: study_name,
                TAG_HASH: digest,
                TAG_FINGERPRINT: fingerprints["test"],
                TAG_USE_COUNT: str(use_count),
                TAG_EVALUATED: "false",
                TAG_ROLE: "parent",
                "mlx.optuna_storage": redact_url(storage_url),
                **_provenance(experiment),
            },
        )
    try:
        if resume:
            _recover(experiment, study, optuna_storage, tracker, parent_id, storage_url)
            tracker.log(parent_id, tags={TAG_USE_COUNT: str(use_count)})
        with _local_workers(experiment, workers - 1, storage_url, uri, heartbeat):
            result = _search_and_evaluate(
                experiment,
                dataset,
                parts,
                tracker=tracker,
                study=study,
                storage=optuna_storage,
                experiment_id=experiment_id,
                parent_id=parent_id,
                audit=audit,
                summary=summary,
                no_test=no_test,
                use_count=use_count,
                show_progress=show_progress,
                log_inputs=not resume,
            )
    except BaseException as exc:
        # Whatever happened, the parent run must not stay RUNNING; recording the failure must
        # not hide the error itself.
        interrupted = isinstance(exc, KeyboardInterrupt)
        status = "KILLED" if interrupted else "FAILED"
        message = redact_url(f"{type(exc).__name__}: {exc}")
        _try(tracker.log, parent_id, tags={"mlx.error": message})
        _try(tracker.end_run, parent_id, status)
        if interrupted or isinstance(exc, TrackingError):
            logger.warning(
                "%s: the finished trials are kept in study %s; continue with "
                "`mlx run %s --resume` (same --storage and --tracking-uri)%s.",
                "interrupted" if interrupted else "the MLflow store failed",
                study_name,
                experiment.path or "FILE",
                "" if interrupted else " once the store answers again",
            )
        raise
    tracker.end_run(parent_id, "FINISHED")
    result.tracking_uri = uri
    return result


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

    The worker rebuilds the same split from the same file, finds the study by its definition
    hash and the coordinator's parent run on the tracking server, and runs trials as child runs
    under it until the study's budget is spent. It waits up to ``wait`` seconds for a
    coordinator (``mlx run``) to start, and refuses to join one whose definition differs.
    """
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    experiment = experiment.replace(timeout=timeout, seed=seed)
    dataset, parts, _, summary = _prepare_data(experiment, quiet=True)
    _, digest, study_name = _identity(experiment, summary)
    tracker = Tracker(resolve_tracking_uri(tracking_uri))
    storage_url = search.resolve_storage(storage)
    # The storage is opened only once the coordinator runs: opening an empty database creates
    # Optuna's schema, which two processes must not do at once.
    parent = _wait_for_coordinator(tracker, experiment, study_name, digest, wait)
    optuna_storage = _open_storage(storage_url, _heartbeat(heartbeat, storage_url, 2))
    worker_id = worker_id or f"{platform.node()}-{os.getpid()}"
    study = _load_study(experiment, study_name, optuna_storage, worker_id=worker_id)
    objective = _objective(experiment, dataset, parts)
    logger.info("worker %s joined study %s", worker_id, study_name)
    children = _ChildRuns(
        tracker, parent.info.experiment_id, parent.info.run_id, study_name, worker_id, experiment
    )
    return search.optimize(
        study,
        optuna_storage,
        objective,
        timeout=experiment.timeout,
        on_start=children.start,
        on_trial=children.finish,
    ).count


class _ChildRuns:
    """One MLflow child run per trial of this process, opened when it starts."""

    def __init__(self, tracker, experiment_id, parent_id, study_name, worker, experiment):
        self.tracker = tracker
        self.experiment_id = experiment_id
        self.parent_id = parent_id
        self.study_name = study_name
        self.worker = worker
        self.metric_name = experiment.metric_name
        self._runs = {}

    def start(self, number):
        self._runs[number] = self.tracker.start_trial(
            number,
            experiment_id=self.experiment_id,
            parent_id=self.parent_id,
            study_name=self.study_name,
            worker=self.worker,
        )

    def finish(self, record):
        # Logged synchronously: the writes are CPU-bound ORM work, so a logging thread only
        # competed with the trials for the GIL (measured: slower per trial, not faster).
        run_id = self._runs.pop(record.number)
        self.tracker.finish_trial(run_id, record, metric_name=self.metric_name)


def _identity(experiment, summary):
    """``(split fingerprints, definition hash, study name)`` of an experiment on its data."""
    fingerprints = {name: entry["fingerprint"] for name, entry in summary["splits"].items()}
    digest = definition_hash(experiment, fingerprints)
    return fingerprints, digest, f"{experiment.name}-{digest[:10]}"


def _resumable_parent(tracker, experiment, study_name, uri):
    parent = tracker.find_parent(experiment.name, study_name)
    if parent is None:
        raise SearchError(
            f"nothing to resume: no run of study {study_name!r} in {redact_url(uri)}. Start it "
            f"without --resume; a changed experiment file, data or seed is a new study."
        )
    if parent.info.status == "FINISHED":
        raise SearchError(
            f"nothing to resume: run {parent.info.run_id} of study {study_name!r} finished. "
            f"Run without --resume to add trials to the study in a new run."
        )
    return parent


def _recover(experiment, study, storage, tracker, parent_id, storage_url):
    """Account for what a dead coordinator left: lost trials, RUNNING child runs, the budget.

    On a local file storage no other machine can be running trials, so every RUNNING trial
    belonged to the dead run; on a database server, only trials whose heartbeat stopped are.
    """
    scheduling.fail_lost(study, storage, running_are_lost=_is_local(storage_url))
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    tracker.end_orphan_trials(parent_id, alive={str(t.number) for t in running})
    added = _top_up_slots(study, experiment)
    done = scheduling.budget(study).finished
    logger.warning("resuming study %s: %d trials finished, %d to go", study.study_name, done, added)


def _wait_for_coordinator(tracker, experiment, study_name, digest, wait):
    deadline = time.monotonic() + wait
    announced = False
    while True:
        parent = tracker.find_parent(experiment.name, study_name, statuses=("RUNNING",))
        if parent is not None:
            return parent
        others = tracker.parents_of_other_definitions(experiment.name, study_name)
        if others:
            theirs = others[0].data.tags.get(TAG_HASH, "?")
            raise ExperimentError(
                f"refusing to join: this experiment file defines study {study_name!r} "
                f"(definition hash {digest[:10]}), but the running coordinator's study is "
                f"{others[0].data.tags.get(TAG_STUDY)!r} (hash {theirs[:10]}). Workers must use "
                f"the same experiment file, data and --seed as the coordinator."
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


@contextlib.contextmanager
def _local_workers(experiment, n, storage_url, tracking_uri, heartbeat):
    """Start ``n`` worker processes on this machine for the duration of the block.

    URLs go through the environment, not the command line, where ``ps`` would show a password.
    BLAS gets one thread per process so that the processes do not fight over the cores.
    """
    if n <= 0:
        yield []
        return
    env = {
        **os.environ,
        "MLX_STORAGE": storage_url,
        "MLFLOW_TRACKING_URI": tracking_uri,
        **dict.fromkeys(_THREAD_VARIABLES, str(max(1, (os.cpu_count() or 1) // (n + 1)))),
    }
    command = [sys.executable, "-m", "mlx", "worker", str(experiment.path), "--quiet"]
    command += ["--seed", str(experiment.seed), "--parent-pid", str(os.getpid())]
    if experiment.timeout is not None:
        command += ["--timeout", str(experiment.timeout)]
    if heartbeat is not None:
        command += ["--heartbeat", str(heartbeat)]
    processes = [
        subprocess.Popen([*command, "--worker-id", f"{platform.node()}-local{i + 1}"], env=env)
        for i in range(n)
    ]
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(max(1, (os.cpu_count() or 1) // (n + 1))):
            yield processes
    except BaseException:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        raise
    finally:
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _prepare_data(experiment, quiet=False):
    """Load, audit and split the data: ``(dataset, parts, audit, split summary)``."""
    task = experiment.task
    dataset = mdata.load(experiment.data, task)
    if dataset.y is None and experiment.metric_name != "silhouette":
        raise DataError(
            f"metric {experiment.metric_name!r} compares with labels, but data() returned y=None."
        )
    audit = mdata.audit(dataset.X, dataset.y, dataset.groups, task=task)
    parts = mdata.split(
        dataset, experiment.split, experiment.seed, stratify=task == "classification"
    )
    summary = mdata.split_summary(dataset, parts, task=task)
    audit["shared_rows"] = summary["shared_rows"]
    for what, count in summary["shared_rows"].items():
        if count:
            audit["warnings"].append(f"{count} rows of {what.replace('_in_', ' also in ')}.")
    for message in [] if quiet else audit["warnings"]:
        logger.warning("data: %s", message)
    return dataset, parts, audit, summary


def _test_use_count(tracker, fingerprint, no_test, allow_test_reuse):
    """Uses of this test split including this run; refuses a reuse that was not allowed."""
    earlier = tracker.test_uses(fingerprint)
    if earlier and not (no_test or allow_test_reuse):
        first = earlier[0]
        raise TestReuseError(
            f"this test split (fingerprint {fingerprint[:12]}) was already evaluated "
            f"{len(earlier)} time(s), first in run {first.info.run_id} of experiment "
            f"{tracker.experiment_name(first.info.experiment_id)!r}. Use --no-test "
            f"(no_test=True) to search and validate only, or --allow-test-reuse "
            f"(allow_test_reuse=True) to evaluate it again (the run records the count)."
        )
    return len(earlier) + (0 if no_test else 1)


def _is_local(storage_url):
    """Whether the storage is a file on this machine (no other machine can share it)."""
    return storage_url.startswith("sqlite") or "://" not in storage_url


def _heartbeat(heartbeat, storage_url, workers):
    if heartbeat is not None:
        return int(heartbeat)
    return _DEFAULT_HEARTBEAT if workers > 1 or not _is_local(storage_url) else None


def _open_storage(storage_url, heartbeat):
    try:
        return scheduling.retrying(search.make_storage, storage_url, heartbeat_interval=heartbeat)
    except Exception as exc:
        raise SearchError(
            f"cannot use the Optuna storage {redact_url(storage_url)}: "
            f"{redact_url(first_line(exc))}"
        ) from None


def _create_study(experiment, study_name, storage):
    return search.create_study(
        study_name,
        storage=storage,
        seed=experiment.seed,
        sampler=experiment.sampler,
        pruner=experiment.pruner,
    )


def _load_study(experiment, study_name, storage, worker_id=None):
    """The existing study ``study_name``; a worker's sampler gets a seed of its own.

    Workers seeded alike would sample the same parameters from the same history.
    """
    import optuna

    sampler = experiment.sampler
    if sampler is None:
        seed = experiment.seed
        if worker_id is not None:
            seed = int.from_bytes(hashlib.sha256(f"{seed}:{worker_id}".encode()).digest()[:4])
        sampler = optuna.samplers.TPESampler(seed=seed)
    try:
        return scheduling.retrying(
            search.load_study,
            study_name,
            storage=storage,
            sampler=sampler,
            pruner=experiment.pruner,
        )
    except KeyError:
        raise SearchError(
            f"no study {study_name!r} in the Optuna storage; start the experiment without "
            f"--resume, or point --storage at the storage it ran on."
        ) from None


def _enqueue_slots(study, experiment):
    """The trial budget as slots; with ``model_budget="fixed"``, each model's share of it."""
    if experiment.model_budget != "fixed" or _candidates.is_single(experiment.candidates):
        scheduling.enqueue(study, experiment.n_trials)
        return
    for name in _candidates.fixed_shares(experiment.candidates, experiment.n_trials):
        scheduling.enqueue(study, 1, fixed_params={_candidates.MODEL_PARAM: name})


def _top_up_slots(study, experiment):
    """Enqueue the slots the budget misses (each model's missing share in fixed mode)."""
    if experiment.model_budget != "fixed" or _candidates.is_single(experiment.candidates):
        return scheduling.top_up(study, experiment.n_trials)
    model = _candidates.MODEL_PARAM
    wanted = collections.Counter(
        _candidates.fixed_shares(experiment.candidates, experiment.n_trials)
    )
    trials, _ = scheduling.counted_trials(study)
    have = collections.Counter(
        t.params.get(model) or t.system_attrs.get("fixed_params", {}).get(model) for t in trials
    )
    added = 0
    for name, count in wanted.items():
        missing = max(0, count - have[name])
        scheduling.enqueue(study, missing, fixed_params={model: name})
        added += missing
    return added


def _objective(experiment, dataset, parts):
    return search.Objective(
        experiment.candidates,
        experiment.scorer,
        (mdata.take(dataset.X, parts.train), mdata.take(dataset.y, parts.train)),
        (mdata.take(dataset.X, parts.val), mdata.take(dataset.y, parts.val)),
        seed=experiment.seed,
        max_epochs=experiment.max_epochs,
    )


def _search_and_evaluate(
    experiment,
    dataset,
    parts,
    *,
    tracker,
    study,
    storage,
    experiment_id,
    parent_id,
    audit,
    summary,
    no_test,
    use_count,
    show_progress,
    log_inputs=True,
):
    name = experiment.metric_name
    if log_inputs:  # a resumed run logged them when it started
        settings = _settings(experiment, dataset)
        settings.update({f"mlx.rows.{name}": len(indices) for name, indices in parts.items()})
        tracker.log(parent_id, params=settings)
        tracker.log_dict(parent_id, audit, "audit.json")
        tracker.log_dict(parent_id, summary, "split.json")
        if experiment.path is not None:
            tracker.log_file(parent_id, experiment.path, "experiment")

    objective = _objective(experiment, dataset, parts)
    (X_train, y_train), (X_val, y_val) = objective.train, objective.val
    records = {}
    progress = _progress(experiment, show_progress)
    progress.update(scheduling.budget(study).finished)
    worker = f"{platform.node()}-{os.getpid()} (coordinator)"
    children = _ChildRuns(tracker, experiment_id, parent_id, study.study_name, worker, experiment)

    def on_trial(record):
        records[record.number] = record
        children.finish(record)
        progress.update(1)
        if record.state == "COMPLETE":
            best = max(r.value for r in records.values() if r.state == "COMPLETE")
            progress.set_postfix_str(f"best val {name}={best:.4f}", refresh=False)

    try:
        _coordinate(
            study, storage, objective, experiment.timeout, children.start, on_trial, progress
        )
    finally:
        progress.close()
    # Every trial has ended now: a child run still RUNNING belonged to a process that died.
    tracker.end_orphan_trials(parent_id, alive=set())

    counts = _trial_counts(study)
    tracker.log(parent_id, tags={f"mlx.trials_{k.lower()}": str(v) for k, v in counts.items()})
    if counts["COMPLETE"] == 0:
        errors = [t.user_attrs["error"] for t in study.trials if "error" in t.user_attrs]
        first = errors[0].strip().splitlines()[0] if errors else ""
        hint = f" First error: {first}" if first else ""
        if audit["nan"]["total"] or audit["inf"]["total"]:
            hint += (
                f" X has {audit['nan']['total']} NaN and {audit['inf']['total']} infinite values "
                "(audit.json): put an imputer such as sklearn.impute.SimpleImputer first in the "
                "Pipeline, or drop those rows."
            )
        raise SearchError(
            f"none of the {sum(counts.values())} trials of study {study.study_name!r} completed, "
            f"so there is no model to test.{hint}"
        )
    best = scheduling.retrying(lambda: study.best_trial)
    best_model, own_params = objective.suggest(_fixed_trial(best.params))
    best_params = own_params
    if not _candidates.is_single(experiment.candidates):
        # Only the overall winner is refit and tested; its type is part of its parameters.
        best_params = {_candidates.MODEL_PARAM: best_model, **own_params}
    fixed = {}
    if _candidates.is_single(experiment.candidates):
        ((estimator, space),) = experiment.candidates.values()
        if callable(space):
            fixed = _fixed_params(estimator, set(own_params))
    tracker.log(
        parent_id,
        params={**fixed, **{f"best.{k}": v for k, v in best_params.items()}},
        metrics={f"best_val_{name}": best.value},
        tags={"mlx.best_trial": str(best.number)},
    )

    model = objective.build(own_params, best_model)
    if experiment.refit == "train+val":
        X_fit = _concat(X_train, X_val)
        y_fit = None if y_train is None else _concat(y_train, y_val)
    else:
        X_fit, y_fit = X_train, y_train
    search.fit_model(model, X_fit, y_fit, epochs=search.n_epochs(model, experiment.max_epochs))

    test_scores = None
    # Read from the storage, which may be a database server restarting for a moment.
    figures = scheduling.retrying(evaluation.study_figures, study)
    try:
        if not no_test:
            # Recorded before the metrics exist: even a crash mid-evaluation counts as a use.
            tracker.log(parent_id, tags={TAG_EVALUATED: "true"})
            X_test, y_test = mdata.take(dataset.X, parts.test), mdata.take(dataset.y, parts.test)
            evaluated = evaluation.evaluate(
                model,
                X_test,
                y_test,
                task=experiment.task,
                metric_name=name,
                scorer=experiment.scorer,
            )
            test_scores = evaluated["metrics"]
            tracker.log(parent_id, metrics={f"test_{k}": v for k, v in test_scores.items()})
            for file, text in evaluated["tables"].items():
                tracker.log_text(parent_id, text, f"test/{file}")
            for file, fig in evaluated["figures"].items():
                tracker.log_figure(parent_id, fig, f"test/{file}")
        record = records.get(best.number)
        curve = evaluation.learning_curve_figure(
            record.curves if record else None, name, f"Learning curve, trial {best.number}"
        )
        if curve is not None:
            figures["learning_curve.png"] = curve
        for file, fig in figures.items():
            tracker.log_figure(parent_id, fig, f"search/{file}")
    finally:
        evaluation.close(figures)
    _compare_models(
        experiment,
        study,
        objective,
        tracker,
        parent_id,
        test=None
        if no_test
        else (mdata.take(dataset.X, parts.test), mdata.take(dataset.y, parts.test)),
        winner=(best_model, model if experiment.refit == "train" else None),
    )
    example = mdata.take(X_fit, np.arange(min(5, len(X_fit))))
    model_uri = tracker.log_model(
        parent_id, model, example, _requirements(model, X_fit), params=best_params
    )
    tracker.log(parent_id, tags={"mlx.model_uri": model_uri})
    return RunResult(
        experiment_name=experiment.name,
        study_name=study.study_name,
        run_id=parent_id,
        metric_name=name,
        best_params=best_params,
        best_value=float(best.value),
        test_scores=test_scores,
        model=model,
        model_uri=model_uri,
        trial_counts=counts,
        test_use_count=use_count,
    )


def _coordinate(study, storage, objective, timeout, on_start, on_trial, progress):
    """Run slots until the study's budget is spent and every trial of any process has ended.

    While other processes finish their last trials, the coordinator polls the study (and so
    fails and replaces trials whose heartbeat stopped, then runs the replacements itself).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    stopped = False
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if remaining != 0.0:
            ran = search.optimize(
                study, storage, objective, timeout=remaining, on_start=on_start, on_trial=on_trial
            )
            if ran.stopped:  # the sampler has nothing left to try (an exhausted grid)
                stopped = True
        counts = scheduling.budget(study)
        progress.n = counts.finished
        progress.refresh()
        timed_out = deadline is not None and time.monotonic() >= deadline
        if counts.running == 0 and (counts.waiting == 0 or timed_out or stopped):
            return
        time.sleep(_POLL_SECONDS)


def _compare_models(experiment, study, objective, tracker, parent_id, *, test, winner):
    """The parent's view across model types: leaderboard, and decision boundaries in 2-D.

    The leaderboard (several models) is read back from the child runs, so it holds the trials
    of every process. Decision boundaries (classification on two features) show the best
    configuration of each model type fitted on the training split; test points are drawn only
    when the test split is evaluated anyway.
    """
    metric = experiment.metric_name
    names = list(experiment.candidates)
    if not _candidates.is_single(experiment.candidates):
        trials = trial_summaries(tracker.children(parent_id), metric)
        rows = evaluation.leaderboard(trials, names)
        tracker.log_text(parent_id, evaluation.leaderboard_csv(rows, metric), "leaderboard.csv")
        tracker.log_figure(
            parent_id, evaluation.leaderboard_figure(rows, metric), "leaderboard.png"
        )
    X_train, y_train = objective.train
    if experiment.task != "classification" or np.shape(X_train)[1] != 2:
        return
    best = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        model = _candidates.split_params(trial.params, experiment.candidates)[0]
        if model not in best or trial.value > best[model].value:
            best[model] = trial
    models, titles = {}, {}
    for name in [n for n in names if n in best]:
        trial = best[name]
        if name == winner[0] and winner[1] is not None:
            models[name] = winner[1]  # already fitted on the training split
        else:
            params = objective.suggest(_fixed_trial(trial.params))[1]
            models[name] = search.fit_model(
                objective.build(params, name),
                X_train,
                y_train,
                epochs=search.n_epochs(experiment.candidates[name][0], experiment.max_epochs),
            )
        mark = " (winner)" if name == winner[0] and len(best) > 1 else ""
        titles[name] = f"val {metric} {trial.value:.3f}, trial {trial.number}{mark}"
    figure = evaluation.decision_boundary_figure(models, (X_train, y_train), test, titles)
    if figure is not None:
        tracker.log_figure(parent_id, figure, "decision_boundaries.png")


def _fixed_trial(params):
    import optuna

    return optuna.trial.FixedTrial(params)


def _trial_counts(study):
    """Trials of the study by state; lost trials (replaced by another) only when there are."""
    budget = scheduling.budget(study)
    counts = {"COMPLETE": budget.complete, "PRUNED": budget.pruned, "FAIL": budget.fail}
    if budget.lost:
        counts["LOST"] = budget.lost
    return counts


def _concat(a, b):
    import pandas as pd

    if isinstance(a, pd.DataFrame | pd.Series):
        return pd.concat([a, b])
    return np.concatenate([np.asarray(a), np.asarray(b)])


def _progress(experiment, show):
    from tqdm.auto import tqdm

    return tqdm(
        total=experiment.n_trials,
        desc=experiment.name,
        unit="trial",
        disable=not show,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _settings(experiment, dataset):
    """Parent-run params: the settings and the estimator's fixed (non-searched) parameters.

    With several candidate models, their names and types instead of fixed parameters (which
    would mix the models' parameters in one list; the experiment file holds them).
    """
    if _candidates.is_single(experiment.candidates):
        ((estimator, space),) = experiment.candidates.values()
        # Which parameters a define-by-run space sets is known only once it has run: its
        # fixed parameters are logged after the search (see _fixed_params).
        params = _fixed_params(estimator, space) if isinstance(space, dict) else {}
        params["mlx.estimator"] = type(estimator).__name__
    else:
        params = {
            f"mlx.estimator.{name}": type(estimator).__name__
            for name, (estimator, _) in experiment.candidates.items()
        }
        params["mlx.models"] = ",".join(experiment.candidates)
        params["mlx.model_budget"] = experiment.model_budget
    X = dataset.X
    params.update(
        {
            "mlx.task": experiment.task,
            "mlx.metric": experiment.metric_name,
            "mlx.split.train": experiment.split[0],
            "mlx.split.val": experiment.split[1],
            "mlx.split.test": experiment.split[2],
            "mlx.seed": experiment.seed,
            "mlx.n_trials": experiment.n_trials,
            "mlx.refit": experiment.refit,
            "mlx.data.rows": len(X),
            "mlx.data.features": X.shape[1],
        }
    )
    return params


def _fixed_params(estimator, searched):
    """The estimator's loggable parameters that the search does not set."""
    return {
        key: value
        for key, value in estimator.get_params(deep=True).items()
        if key not in searched
        and (value is None or isinstance(value, bool | int | float | str))
        and len(str(value)) <= _MAX_FIXED_PARAM
    }


def _provenance(experiment):
    import mlx

    tags = {f"mlx.version.{name}": _version(name) for name in _VERSIONED}
    tags["mlx.version.mlx"] = mlx.__version__
    tags["mlx.version.python"] = platform.python_version()
    tags["mlx.estimator"] = repr(
        experiment.estimator if experiment.estimators is None else experiment.estimators
    )
    folder = Path.cwd()
    if experiment.path is not None:
        folder = experiment.path.parent
        tags["mlflow.source.name"] = str(experiment.path)
        tags["mlx.experiment_file"] = str(experiment.path)
    commit = _git(folder, "rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["mlx.git_dirty"] = str(bool(_git(folder, "status", "--porcelain"))).lower()
    return tags


def _git(folder, *args):
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _version(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _requirements(model, X):
    """Pinned pip requirements of the model (given explicitly: MLflow's inference is slow)."""
    import pandas as pd

    names = {"mlflow", "scikit-learn", "numpy", "scipy"}
    if isinstance(X, pd.DataFrame):
        names.add("pandas")
    parts = [model, *model.get_params(deep=True).values()]
    reqs = [f"{name}=={_version(name)}" for name in sorted(names)]
    if any(type(p).__module__.startswith("mlx.") for p in parts):
        import mlx

        reqs.append(f"mlx-experiments=={mlx.__version__}")
    return reqs


def _try(func, *args, **kwargs):
    # Used on the way out of a failure: a second error must not hide the first.
    try:
        func(*args, **kwargs)
    except Exception:
        logger.debug("ignored error while recording a failure", exc_info=True)
