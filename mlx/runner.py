"""One experiment end to end, as the coordinator of its search runs it.

``run`` reads as the data flow::

    prepare data -> identity -> stores -> test ledger -> study and slots -> parent run
    -> search (child run per trial) -> best -> refit -> test once -> log figures and model

The runner wires the other packages with small callbacks: :mod:`mlx.search` (Optuna) hands
each finished trial to :mod:`mlx.tracking` (MLflow) as a record; :mod:`mlx.evaluation` judges
the refit model. The parent MLflow run always ends (FINISHED, FAILED or KILLED), whatever
happens in between.
"""

import contextlib
import logging
import os
import platform
import sys
from typing import NamedTuple

import numpy as np

from mlx import data as mdata
from mlx import results, search, tracking
from mlx.exceptions import ExperimentError, SearchError, TrackingError
from mlx.experiment import Experiment, identity, load_experiment
from mlx.stores import is_local, redact_url
from mlx.tracking import schema
from mlx.workers import local_workers, objective

__all__ = ["run"]

logger = logging.getLogger(__name__)


class _Stores(NamedTuple):
    tracker: tracking.Tracker
    storage_url: str
    storage: object  # the Optuna storage
    heartbeat: int | None


class _Best(NamedTuple):
    trial: object  # Optuna's FrozenTrial
    model: str  # the candidate's name
    params: dict  # its own estimator parameters
    logged: dict  # what is logged and returned: with the model's name among several


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
    run by workers (``workers`` local processes, or :func:`mlx.workers.work` on other machines
    sharing the storage and the tracking server).

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
    experiment = _configured(experiment, n_trials, timeout, seed, workers)
    prepared = mdata.prepare(experiment)
    for message in prepared.audit["warnings"]:
        logger.warning("data: %s", message)
    digest, study_name = identity(experiment, prepared.fingerprints)
    stores = _open_stores(tracking_uri, storage, heartbeat, workers)
    fingerprint = prepared.fingerprints["test"]
    use_count = tracking.test_use_count(
        stores.tracker, fingerprint, no_test=no_test, allow_test_reuse=allow_test_reuse
    )
    if resume:
        study, parent = _reopen(experiment, study_name, stores)
    else:
        study, parent = _start(experiment, study_name, digest, stores, fingerprint, use_count)
    with _ends(parent, experiment, study_name):
        if resume:
            _recover(experiment, study, stores, parent, use_count)
        else:
            _log_inputs(experiment, prepared, parent)
        trial_objective = objective(experiment, prepared)
        with _local_workers(experiment, workers, stores):
            records = _search(experiment, study, stores, parent, trial_objective, show_progress)
        counts = _trial_counts(study, prepared.audit, parent)
        best = _best(experiment, study, trial_objective, parent)
        model, X_fit = _refit(experiment, prepared, trial_objective, best)
        test_scores = None if no_test else results.test_once(experiment, prepared, model, parent)
        results.log_search(experiment, study, records, best, parent)
        results.compare_models(
            experiment, prepared, study, trial_objective, parent, best, model, no_test
        )
        model_uri = results.log_model(model, X_fit, best.logged, parent)
    return results.RunResult(
        experiment_name=experiment.name,
        study_name=study_name,
        run_id=parent.run_id,
        metric_name=experiment.metric_name,
        best_params=best.logged,
        best_value=float(best.trial.value),
        test_scores=test_scores,
        model=model,
        model_uri=model_uri,
        trial_counts=counts,
        test_use_count=use_count,
        tracking_uri=stores.tracker.uri,
    )


def _configured(experiment, n_trials, timeout, seed, workers):
    """The experiment (loaded from its file if need be) with this run's overrides."""
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    if int(workers) < 1:
        raise ExperimentError(f"workers must be >= 1, got {workers}.")
    if workers > 1 and experiment.path is None:
        raise ExperimentError(
            "workers > 1 run the experiment file in other processes: load it from a file "
            "(mlx run FILE --workers N, or mlx.run('experiments/x.py', workers=N))."
        )
    return experiment.replace(n_trials=n_trials, timeout=timeout, seed=seed)


def _open_stores(tracking_uri, storage, heartbeat, workers):
    tracker = tracking.Tracker(tracking.resolve_tracking_uri(tracking_uri))
    storage_url = search.resolve_storage(storage)
    interval = search.default_heartbeat(heartbeat, storage_url, workers)
    return _Stores(
        tracker, storage_url, search.open_storage(storage_url, heartbeat=interval), heartbeat
    )


def _start(experiment, study_name, digest, stores, fingerprint, use_count):
    """A new study with its budget as slots, and its RUNNING parent run."""
    experiment_id = stores.tracker.experiment_id(experiment.name)
    study = search.create_study(
        study_name,
        storage=stores.storage,
        seed=experiment.seed,
        sampler=experiment.sampler,
        pruner=experiment.pruner,
    )
    # Slots first: a worker that sees the parent run must also see work to do.
    search.add_budget(study, experiment.n_trials, _shares(experiment))
    run_id = stores.tracker.start_run(
        experiment_id,
        study_name,
        tags={
            schema.TAG_STUDY: study_name,
            schema.TAG_HASH: digest,
            **tracking.ledger_tags(fingerprint, use_count),
            schema.TAG_ROLE: schema.ROLE_PARENT,
            schema.TAG_OPTUNA_STORAGE: redact_url(stores.storage_url),
            **tracking.provenance(experiment),
        },
    )
    return study, tracking.ParentRun(stores.tracker, run_id, experiment_id)


def _reopen(experiment, study_name, stores):
    """The interrupted run's study and parent run, RUNNING again."""
    parent = tracking.find_parent(stores.tracker, experiment.name, study_name)
    if parent is None:
        raise SearchError(
            f"nothing to resume: no run of study {study_name!r} in "
            f"{redact_url(stores.tracker.uri)}. Start it without --resume; a changed experiment "
            f"file, data or seed is a new study."
        )
    if parent.info.status == "FINISHED":
        raise SearchError(
            f"nothing to resume: run {parent.info.run_id} of study {study_name!r} finished. "
            f"Run without --resume to add trials to the study in a new run."
        )
    study = search.load_study(
        study_name,
        storage=stores.storage,
        seed=experiment.seed,
        sampler=experiment.sampler,
        pruner=experiment.pruner,
    )
    stores.tracker.reopen(parent.info.run_id)
    return study, tracking.ParentRun(stores.tracker, parent.info.run_id, parent.info.experiment_id)


def _shares(experiment):
    """The model of each slot when each model has a fixed share of the budget, else None."""
    if experiment.model_budget != "fixed" or experiment.estimators is None:
        return None
    return search.fixed_shares(experiment.candidates, experiment.n_trials)


@contextlib.contextmanager
def _ends(parent, experiment, study_name):
    """The parent run ends FINISHED after the block, else FAILED or KILLED (Ctrl-C)."""
    tracker, run_id = parent.tracker, parent.run_id
    try:
        yield
    except BaseException as exc:
        # Recording the failure must not hide the error itself.
        interrupted = isinstance(exc, KeyboardInterrupt)
        message = redact_url(f"{type(exc).__name__}: {exc}")
        _try(tracker.log, run_id, tags={schema.TAG_ERROR: message})
        _try(tracker.end_run, run_id, "KILLED" if interrupted else "FAILED")
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
    tracker.end_run(run_id, "FINISHED")


def _recover(experiment, study, stores, parent, use_count):
    """Account for what a dead coordinator left: lost trials, RUNNING child runs, the budget.

    On a local file storage no other machine can be running trials, so every RUNNING trial
    belonged to the dead run; on a database server, only trials whose heartbeat stopped are.
    """
    search.fail_lost(study, stores.storage, running_are_lost=is_local(stores.storage_url))
    running = study.get_trials(deepcopy=False, states=(search.TrialState.RUNNING,))
    tracking.end_orphans(parent.tracker, parent.run_id, alive={str(t.number) for t in running})
    added = search.fill(study, experiment.n_trials, _shares(experiment))
    done = search.budget(study).finished
    logger.warning("resuming study %s: %d trials finished, %d to go", study.study_name, done, added)
    parent.log(tags={schema.TAG_USE_COUNT: str(use_count)})


def _log_inputs(experiment, prepared, parent):
    """The settings, the data's audit and split, and the experiment file."""
    tracker, run_id = parent.tracker, parent.run_id
    parts = prepared.parts.items()
    parent.log(params=tracking.settings(experiment, prepared.dataset.X, parts))
    tracker.log_dict(run_id, prepared.audit, schema.ARTIFACT_AUDIT)
    tracker.log_dict(run_id, prepared.summary, schema.ARTIFACT_SPLIT)
    if experiment.path is not None:
        tracker.log_file(run_id, experiment.path, schema.ARTIFACT_EXPERIMENT)


def _local_workers(experiment, workers, stores):
    """The other ``workers - 1`` processes of this machine, for the duration of the search."""
    return local_workers(
        experiment,
        workers - 1,
        storage_url=stores.storage_url,
        tracking_uri=stores.tracker.uri,
        heartbeat=stores.heartbeat,
    )


def _search(experiment, study, stores, parent, trial_objective, show_progress):
    """Run the study to its end, each trial in a child run; the records of this process's."""
    name = experiment.metric_name
    records = {}
    progress = _progress(experiment, show_progress)
    progress.update(search.budget(study).finished)
    worker = f"{platform.node()}-{os.getpid()} (coordinator)"
    children = tracking.ChildRuns(
        stores.tracker, parent.experiment_id, parent.run_id, study.study_name, worker, name
    )

    def on_trial(record):
        records[record.number] = record
        children.finish(record)
        progress.update(1)
        if record.state == "COMPLETE":
            best = max(r.value for r in records.values() if r.state == "COMPLETE")
            progress.set_postfix_str(f"best val {name}={best:.4f}", refresh=False)

    def on_poll(counts):
        progress.n = counts.finished
        progress.refresh()

    try:
        search.coordinate(
            study,
            stores.storage,
            trial_objective,
            timeout=experiment.timeout,
            on_start=children.start,
            on_trial=on_trial,
            on_poll=on_poll,
        )
    finally:
        progress.close()
    # Every trial has ended now: a child run still RUNNING belonged to a process that died.
    tracking.end_orphans(parent.tracker, parent.run_id, alive=set())
    return records


def _trial_counts(study, audit, parent):
    """Trials by state, logged on the parent; refuses a search where none completed."""
    budget = search.budget(study)
    counts = {"COMPLETE": budget.complete, "PRUNED": budget.pruned, "FAIL": budget.fail}
    if budget.lost:
        counts["LOST"] = budget.lost
    parent.log(tags={schema.trials_tag(k): str(v) for k, v in counts.items()})
    if counts["COMPLETE"]:
        return counts
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


def _best(experiment, study, trial_objective, parent):
    """The best trial and its configuration, logged on the parent run."""
    trial = search.retrying(lambda: study.best_trial)
    model, params = trial_objective.configuration(trial.params)
    single = search.is_single(experiment.candidates)
    # Only the overall winner is refit and tested; among several, its type is a parameter.
    logged = params if single else {search.MODEL_PARAM: model, **params}
    fixed = {}
    if single and callable(experiment.search_space):
        fixed = tracking.fixed_params(experiment.estimator, set(params))
    parent.log(
        params={**fixed, **{schema.best_param(k): v for k, v in logged.items()}},
        metrics={schema.best_val(experiment.metric_name): trial.value},
        tags={schema.TAG_BEST_TRIAL: str(trial.number)},
    )
    return _Best(trial, model, params, logged)


def _refit(experiment, prepared, trial_objective, best):
    """The best configuration fitted on the data the experiment's ``refit`` names, and that data."""
    X_fit, y_fit = _fit_rows(experiment, prepared)
    model = trial_objective.build(best.params, best.model)
    epochs = search.n_epochs(model, experiment.max_epochs)
    return search.fit_model(model, X_fit, y_fit, epochs=epochs), X_fit


def _fit_rows(experiment, prepared):
    X_train, y_train = prepared.rows("train")
    if experiment.refit != "train+val":
        return X_train, y_train
    X_val, y_val = prepared.rows("val")
    return _concat(X_train, X_val), None if y_train is None else _concat(y_train, y_val)


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


def _try(func, *args, **kwargs):
    # Used on the way out of a failure: a second error must not hide the first.
    try:
        func(*args, **kwargs)
    except Exception:
        logger.debug("ignored error while recording a failure", exc_info=True)
