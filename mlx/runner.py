"""One experiment end to end, as the coordinator of its search runs it.

``run`` reads as the data flow::

    prepare data -> identity -> stores -> test ledger -> study and budget -> parent run
    -> search (child run per trial) -> best -> refit -> test once -> log figures and model

The runner wires the other packages with small callbacks: :mod:`mlx.search` (Optuna) hands
each finished trial to :mod:`mlx.tracking` (MLflow) as a record; :mod:`mlx.evaluation` judges
the refit model. The parent MLflow run always ends (FINISHED, FAILED or KILLED), whatever
happens in between.
"""

import contextlib
import functools
import logging
import os
import platform
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from mlx import coordinator, evaluation, painter, results, search, tracking
from mlx import data as mdata
from mlx import overrides as moverrides
from mlx.console import quiet_library_logs, sigterm_interrupts
from mlx.exceptions import ExperimentError, SearchError
from mlx.experiment import Experiment, definition_hash, load_experiment
from mlx.local_workers import LocalWorkers, local_workers
from mlx.stores import redact_url
from mlx.tracking import schema
from mlx.workers import objective

__all__ = ["run", "run_test"]

logger = logging.getLogger(__name__)

# ``resume=True`` and ``--resume`` without a run id: the latest unfinished run.
_LATEST = "latest"
# Seconds the workers' background writes get to end their last child runs before a child run
# still RUNNING counts as lost (its process died).
_ORPHAN_SETTLE_SECONDS = 15.0


class _Urls(NamedTuple):
    tracking: str
    storage: str


class _Stores(NamedTuple):
    tracker: tracking.Tracker
    storage_url: str
    storage: object  # the Optuna storage


class _Best(NamedTuple):
    trial: object  # Optuna's FrozenTrial
    model: str  # the candidate's name
    params: dict  # its own estimator parameters
    logged: dict  # what is logged and returned: with the model's name among several


@sigterm_interrupts()
@quiet_library_logs()
def run(
    experiment: Experiment | str | os.PathLike[str],
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    seed: int | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    no_test: bool = False,
    allow_test_reuse: bool = False,
    show_progress: bool = True,
    resume: bool | str = False,
    workers: int = 1,
    heartbeat: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    register: str | None = None,
) -> results.RunResult:
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
        Override the experiment's settings for this run (short for ``overrides``).
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
    resume : bool or str, default=False
        Continue the latest unfinished run of this experiment's definition (or the run of this
        id) instead of starting a new search: its study until its trials have a result (trials
        stopped from outside are replaced), and its parent run. ``n_trials`` then sets a new
        total (never cancelling a finished trial); by default the run keeps its own.
    workers : int, default=1
        Processes running trials on this machine, this one included (needs an experiment file).
    heartbeat : int, default=None
        Seconds between the heartbeats of running trials, after which (times three) a trial of a
        dead process is failed and replaced. Default: 10 with workers or a database server,
        else off.
    overrides : dict, default=None
        Settings and fixed estimator parameters changed for this run, ``{"seed": 3,
        "mlpclassifier__max_iter": 100}`` (see :meth:`Experiment.with_overrides`); recorded on
        the parent run. Changing what the search depends on makes it another definition: a
        resume, workers and ``run_test`` need the same overrides.
    register : str, default=None
        Register the tested model as a new version of this registered model, alias
        ``candidate`` (short for ``overrides={"register": ...}``); not with ``no_test``.

    Returns
    -------
    result : RunResult
        Shown as a small table with a link to the MLflow run in Jupyter.

    Raises
    ------
    ExperimentError, DataError
        Invalid experiment, overrides or data, before anything is written.

    Notes
    -----
    While it runs, MLflow's, Alembic's and Optuna's INFO logging is turned down as the ``mlx``
    command does (in a notebook it would bury the result); their loggers' levels are restored
    when it returns or raises.
    TestReuseError
        The test split was evaluated before and neither ``no_test`` nor ``allow_test_reuse``.
    SearchError
        No trial completed, or nothing to resume.
    AlreadyRunningError
        A coordinator of the same definition is running.
    Interrupted
        Ctrl-C or SIGTERM: the parent run ended KILLED, the finished trials are kept.
    """
    flags = {"n_trials": n_trials, "timeout": timeout, "seed": seed, "register": register}
    overrides = moverrides.with_flags(overrides, flags)
    register = overrides.get("register")
    if no_test and register:
        raise ExperimentError(
            f"--register {register} registers the tested model, but --no-test tests nothing: "
            f"drop one of them (`mlx test FILE --register {register}` tests and registers later)."
        )
    with contextlib.ExitStack() as stack:
        # Local workers start first: they import and load the data while this process does.
        helpers = stack.enter_context(
            _local_workers(experiment, workers, overrides, tracking_uri, storage, heartbeat)
        )
        experiment = _configured(experiment, overrides)
        # A new total on resume, from --n-trials or --set n_trials=... alike.
        n_trials = experiment.n_trials if "n_trials" in experiment.overrides else None
        urls = _Urls(tracking.resolve_tracking_uri(tracking_uri), search.resolve_storage(storage))
        if workers == 1:
            # The figures' helper process imports matplotlib on another core meanwhile; local
            # workers need the cores for trials, and the figures are then drawn here.
            painter.start()
        ctx = _prepare(experiment, urls, heartbeat, workers)
        resumed = None
        if resume:
            resumed = coordinator.resumable(experiment, ctx.digest, ctx.tracker, _run_id(resume))
        use_count = _ledger(ctx, resumed, no_test, allow_test_reuse)
        if resume:
            study, parent = coordinator.reopen(experiment, resumed, ctx.stores)
        else:
            coordinator.refuse_running(experiment, ctx.digest, ctx.tracker)
            ledger = tracking.ledger_tags(ctx.fingerprint, use_count)
            study, parent = coordinator.start(experiment, ctx.digest, ctx.stores, ledger)
        resume_command = _resume_command(
            ctx, parent, urls, no_test=no_test, allow_test_reuse=allow_test_reuse
        )
        stack.enter_context(coordinator.ends(parent, resume_command))
        helpers.release()
        if resume:
            # The budget the run had, unless this resume sets a new one.
            planned = n_trials or search.planned(study) or experiment.n_trials
            ctx.experiment = experiment.replace(n_trials=planned)
            coordinator.recover(ctx.experiment, study, ctx.stores, parent, planned)
            parent.log(tags={schema.TAG_USE_COUNT: str(use_count)})
        else:
            _log_inputs(experiment, ctx.prepared, parent)
        trial_objective = objective(ctx.experiment, ctx.prepared)
        records = _search(
            ctx.experiment,
            study,
            ctx.stores,
            parent,
            trial_objective,
            show_progress,
            claimed_all=lambda: _claimed_all(helpers),
        )
        test = None if no_test else allow_test_reuse
        return _conclude(ctx, study, parent, trial_objective, records, test, use_count)


@sigterm_interrupts()
@quiet_library_logs()
def run_test(
    experiment: Experiment | str | os.PathLike[str],
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    allow_test_reuse: bool = False,
    overrides: Mapping[str, Any] | None = None,
    register: str | None = None,
) -> results.RunResult:
    """Evaluate the test split once for a run that searched without it (``--no-test``).

    No trial runs: the run's best configuration is refit as it was and evaluated, through the
    same test ledger as :func:`run`, and the run records the evaluation.

    Parameters
    ----------
    experiment : Experiment or path
        The experiment file the run searched (same definition: file, data, seed).
    run_id : str, default=None
        The run; by default the latest finished run of this definition not yet tested.
    tracking_uri, storage, allow_test_reuse
        As for :func:`run`.
    overrides : dict, default=None
        The overrides the run searched with (its definition).
    register : str, default=None
        Register the tested model, as for :func:`run`.

    Returns
    -------
    result : RunResult
    """
    experiment = _configured(experiment, moverrides.with_flags(overrides, {"register": register}))
    urls = _Urls(tracking.resolve_tracking_uri(tracking_uri), search.resolve_storage(storage))
    painter.start()
    ctx = _prepare(experiment, urls, None, 1)
    untested = coordinator.untested(experiment, ctx.digest, ctx.tracker, run_id)
    use_count = _ledger(ctx, untested, False, allow_test_reuse)
    study, parent = coordinator.reopen(experiment, untested, ctx.stores)
    with coordinator.ends(parent, _resume_command(ctx, parent, urls)):
        trial_objective = objective(experiment, ctx.prepared)
        return _conclude(ctx, study, parent, trial_objective, {}, allow_test_reuse, use_count)


@dataclass
class _Context:
    """What every step of a run works with."""

    experiment: Experiment
    prepared: mdata.Prepared
    digest: str
    stores: _Stores

    @property
    def tracker(self):
        return self.stores.tracker

    @property
    def fingerprint(self):
        return self.prepared.fingerprints["test"]


def _prepare(experiment, urls, heartbeat, workers):
    """The data audited and split, the definition's hash and the open stores."""
    prepared = mdata.prepare(experiment)
    for message in prepared.audit["warnings"]:
        logger.warning("data: %s", message)
    digest = definition_hash(experiment, prepared.fingerprints)
    return _Context(experiment, prepared, digest, _open_stores(urls, heartbeat, workers))


def _ledger(ctx, resumed, no_test, allow_test_reuse):
    """Uses of the test split with this run's; refuses a reuse that was not allowed."""
    return tracking.test_use_count(
        ctx.tracker,
        ctx.fingerprint,
        no_test=no_test,
        allow_test_reuse=allow_test_reuse,
        run_id=resumed and resumed.info.run_id,
    )


def _conclude(ctx, study, parent, trial_objective, records, test, use_count):
    """Best, refit, test once (unless ``test`` is None; else it allows a reuse), log, result."""
    experiment, prepared = ctx.experiment, ctx.prepared
    counts = _trial_counts(study, prepared.audit, parent)
    best = _best(experiment, study, trial_objective, parent)
    # Handed to the painter first: drawn while the model is refit, tested and logged.
    searched = results.search_figures(experiment, study, records, best)
    model, X_fit = _refit(experiment, prepared, trial_objective, best)
    interval = results.validation_interval(experiment, prepared, model)
    if interval is not None:
        name = schema.best_val(experiment.metric_name)
        parent.log(metrics={schema.ci_low(name): interval[0], schema.ci_high(name): interval[1]})
    log_the_model = functools.partial(results.log_model, model, X_fit, best.logged, parent)
    no_test = test is None
    if no_test:
        test_scores, intervals, model_uri = None, {}, log_the_model()
    else:
        use_count = tracking.claim_test(
            parent.tracker, parent.run_id, ctx.fingerprint, allow_reuse=test
        )
        # The model is logged while the painter draws the test's figures.
        test_scores, intervals, model_uri = results.test_once(
            experiment, prepared, model, parent, meanwhile=log_the_model
        )
    results.log_figures(parent, searched)
    if experiment.limits:
        _log_costs(experiment, study, best, model, parent)
    results.compare_models(
        experiment, prepared, study, trial_objective, parent, best, model, no_test
    )
    registered = _register(experiment, parent, model_uri, test_scores, intervals, best)
    result = results.RunResult(
        experiment_name=experiment.name,
        study_name=study.study_name,
        run_id=parent.run_id,
        metric_name=experiment.metric_name,
        best_params=best.logged,
        best_value=float(best.trial.value),
        test_scores=test_scores,
        model=model,
        model_uri=model_uri,
        trial_counts=counts,
        test_use_count=use_count,
        tracking_uri=ctx.tracker.uri,
        run_name=parent.name,
        best_trial=best.trial.number,
        validation_interval=interval,
        test_intervals=intervals,
        registered=registered,
        experiment_id=parent.experiment_id,
    )
    parent.log(tags={schema.MLFLOW_NOTE: results.description(experiment, result)})
    return result


def _register(experiment, parent, model_uri, test_scores, intervals, best):
    """The tested model as a new version of ``experiment.register``: its URI, or ""."""
    if not experiment.register:
        return ""
    if test_scores is None:
        logger.warning(
            "not registered as %r: the test split was not evaluated (--no-test); `mlx test "
            "FILE` evaluates it and registers the model",
            experiment.register,
        )
        return ""
    return tracking.register_model(
        parent,
        experiment.register,
        model_uri,
        metric=experiment.metric_name,
        scores=test_scores,
        intervals=intervals,
        validation=best.trial.value,
        experiment_name=experiment.name,
    )


def _configured(experiment, overrides) -> Experiment:
    """The experiment (loaded from its file if need be) with this run's overrides."""
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    return experiment.with_overrides(overrides)


def _open_stores(urls, heartbeat, workers):
    tracker = tracking.Tracker(urls.tracking)
    interval = search.default_heartbeat(heartbeat, urls.storage, workers)
    return _Stores(tracker, urls.storage, search.open_storage(urls.storage, heartbeat=interval))


def _run_id(resume):
    """The run ``resume`` names (``--resume RUN_ID``), or None for the latest unfinished one."""
    return resume if isinstance(resume, str) and resume != _LATEST else None


def _resume_command(ctx, parent, urls, *, no_test=False, allow_test_reuse=False):
    """The command that continues this run: its overrides, its test choice, the store options
    that are not defaults (without its test choice, the resumed run would be refused or would
    evaluate a test split that this run left alone)."""
    words = ["mlx", "run", str(ctx.experiment.path or "FILE"), "--resume", parent.run_id]
    words += moverrides.command_words(ctx.experiment.overrides)
    if no_test:
        words.append("--no-test")
    elif allow_test_reuse:
        words.append("--allow-test-reuse")
    if urls.tracking != tracking.resolve_tracking_uri(None):
        words += ["--tracking-uri", redact_url(urls.tracking)]
    if urls.storage != search.resolve_storage(None):
        words += ["--storage", redact_url(urls.storage)]
    return " ".join(words)


def _log_inputs(experiment, prepared, parent):
    """The settings, the data's audit and split, and the experiment file."""
    tracker, run_id = parent.tracker, parent.run_id
    parts = prepared.parts.items()
    parent.log(params=tracking.settings(experiment, prepared.dataset.X, parts))
    tracker.log_dict(run_id, prepared.audit, schema.ARTIFACT_AUDIT)
    tracker.log_dict(run_id, prepared.summary, schema.ARTIFACT_SPLIT)
    every = {name: tracking.all_params(est) for name, (est, _) in experiment.candidates.items()}
    tracker.log_dict(run_id, every, schema.ARTIFACT_PARAMS)
    tracker.log_datasets(run_id, _datasets(experiment, prepared))
    if prepared.dataset.source_report is not None:
        tracker.log_dict(run_id, prepared.dataset.source_report, schema.ARTIFACT_SOURCE_REPORT)
    if experiment.path is not None:
        tracker.log_file(run_id, experiment.path, schema.ARTIFACT_EXPERIMENT)


def _datasets(experiment, prepared):
    """The three splits as MLflow dataset inputs: name, fingerprint, context and profile."""
    source = str(experiment.path) if experiment.path else experiment.name
    out = []
    for split, rows in prepared.parts.items():
        X, _ = prepared.rows(split)
        entry = prepared.summary["splits"][split]
        profile = {"rows": len(rows), "features": int(X.shape[1]), "source": source}
        profile.update({k: v for k, v in entry.items() if k in ("class_counts", "groups")})
        name = f"{experiment.name}-{split}"
        out.append((name, entry["fingerprint"], schema.DATASET_CONTEXTS[split], profile))
    return out


def _local_workers(experiment, workers, overrides, tracking_uri, storage, heartbeat):
    """The other ``workers - 1`` processes of this machine, for the duration of the run.

    They start before the experiment file is loaded here; they get the stores as given and
    the overrides as text, and resolve and apply them as this process does.
    """
    if int(workers) < 1:
        raise ExperimentError(f"workers must be >= 1, got {workers}.")
    if workers == 1:
        return contextlib.nullcontext(LocalWorkers([]))
    path = experiment.path if isinstance(experiment, Experiment) else experiment
    if path is None:
        raise ExperimentError(
            "workers > 1 run the experiment file in other processes: load it from a file "
            "(mlx run FILE --workers N, or mlx.run('experiments/x.py', workers=N))."
        )
    if isinstance(experiment, Experiment):  # overrides applied before this run's
        overrides = {**experiment.overrides, **overrides}
    return local_workers(
        path,
        workers - 1,
        moverrides.assignments(overrides),
        tracking_uri=tracking_uri,
        storage=storage,
        heartbeat=heartbeat,
    )


def _claimed_all(helpers):
    """This process has no trial left to run, the workers their last ones (if any).

    Called again at each look at the study: what it does is done once.
    """
    helpers.claimed_all()
    # With local workers no figure helper runs (the cores are theirs: a helper's imports would
    # slow the trials and the refit), so this process draws the figures: it imports for them
    # while it waits for the workers' last trials and refits.
    painter.warm_up()


def _search(experiment, study, stores, parent, trial_objective, show_progress, claimed_all=None):
    """Run the study to its end, each trial in a child run; the records of this process's.

    ``claimed_all()`` is called at each look at the study once this process finds no trial
    left to claim (while other processes end theirs).
    """
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
        if not record.interrupted:  # a new slot replaces it: not one of the budget's trials
            progress.update(1)
        # Trials over the experiment's limits on cost are not the best, however good.
        scores = [
            r.value
            for r in records.values()
            if r.state == "COMPLETE" and r.within_limits is not False
        ]
        if record.state == "COMPLETE" and scores:
            progress.set_postfix_str(f"best val {name}={max(scores):.4f}", refresh=False)

    def on_poll(counts):
        if claimed_all is not None:
            claimed_all()
        progress.n = counts.finished
        progress.refresh()

    try:
        search.coordinate(
            study,
            stores.storage,
            trial_objective,
            timeout=experiment.timeout,
            on_start=children.start,
            on_fit=children.fitting,
            on_trial=on_trial,
            on_poll=on_poll,
        )
        # Writes made in the background (a tracking server) land before the conclusion.
        children.flush()
    except BaseException as exc:
        children.abandon(str(exc) or type(exc).__name__)
        raise
    finally:
        progress.close()
    # Every trial has ended now: a child run still RUNNING belonged to a process that died,
    # or to a worker whose background writes have not landed yet (it gets a few seconds).
    settle = _ORPHAN_SETTLE_SECONDS if children.background else 0.0
    tracking.end_orphans(parent.tracker, parent.run_id, alive=set(), settle=settle)
    # A short trial's run is made when it ends: one whose process died has none. Every other
    # trial's run is written (or queued, in the background) before the study hears of it.
    coordinator.add_unwritten(study, parent, lost_only=True)
    return records


def _trial_counts(study, audit, parent):
    """Trials by state, logged on the parent; refuses a search where none completed."""
    budget = search.budget(study)
    counts = {"COMPLETE": budget.complete, "PRUNED": budget.pruned, "FAIL": budget.fail}
    # Trials that a slot replaced, named for what stopped them (a resumed run has some).
    for state, count in (("INTERRUPTED", budget.interrupted), ("LOST", budget.lost)):
        if count:
            counts[state] = count
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
    """The best trial (within the limits, if any) and its configuration, logged on the parent."""
    trial = search.chosen_trial(study, experiment.limits)
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


def _log_costs(experiment, study, best, model, parent):
    """Accuracy against cost: the trials' scores and costs, the front, the chosen trial."""
    limits, metric, chosen = experiment.limits, experiment.metric_name, best.trial.number
    rows = search.retrying(search.trial_costs, study, experiment.candidates)
    tracker, folder = parent.tracker, schema.ARTIFACT_SEARCH
    csv = evaluation.cost_csv(rows, metric, limits, chosen)
    tracker.log_text(parent.run_id, csv, f"{folder}/{schema.COST_CSV}")
    sketch = painter.Sketch(evaluation.cost_figure, (rows, metric, limits, chosen))
    results.log_figures(parent, painter.paint({f"{folder}/{schema.COST_PNG}": sketch}))
    # The limit judged the trial's model; a refit on more rows (kNN keeps them all) may grow.
    size = search.pickled_size(model)
    if size is not None and size > limits.get("model_bytes", size):
        logger.warning(
            "the refit model has %d bytes, over max_model_bytes=%d (its trial's model had %s; "
            "refit=%r)",
            size,
            limits["model_bytes"],
            search.cost_of(best.trial)["model_bytes"],
            experiment.refit,
        )


def _refit(experiment, prepared, trial_objective, best):
    """The best configuration fitted on the data the experiment's ``refit`` names, and that data."""
    X_fit, y_fit = _fit_rows(experiment, prepared)
    model = trial_objective.build(best.params, best.model)
    # Early stopped under the runner: as many epochs as the best trial's best model had.
    epochs = best.trial.user_attrs.get(search.BEST_EPOCH) or search.n_epochs(
        model, experiment.max_epochs
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit_model(model, X_fit, y_fit, epochs=epochs)
    # As a trial's warnings: one line each, not a source line on the terminal.
    for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
        logger.warning("refit: %s", message)
    return model, X_fit


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
