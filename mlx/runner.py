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
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mlx import data as mdata
from mlx import evaluation, search, tracking
from mlx.exceptions import ExperimentError, SearchError, TrackingError
from mlx.experiment import Experiment, identity, load_experiment
from mlx.stores import is_local, redact_url
from mlx.tracking import schema
from mlx.workers import local_workers, objective

__all__ = ["RunResult", "run"]

logger = logging.getLogger(__name__)


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
        lines.append(f"open the UI {tracking.ui_command(self.tracking_uri)}")
        return "\n".join(lines)


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


class _Stores(NamedTuple):
    tracker: tracking.Tracker
    storage_url: str
    storage: object  # the Optuna storage
    heartbeat: int | None


class _Parent(NamedTuple):
    run_id: str
    experiment_id: str


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
    use_count = tracking.test_use_count(
        stores.tracker,
        prepared.fingerprints["test"],
        no_test=no_test,
        allow_test_reuse=allow_test_reuse,
    )
    if resume:
        study, parent = _reopen(experiment, study_name, stores)
    else:
        study, parent = _start(experiment, study_name, digest, stores, prepared, use_count)
    tracker = stores.tracker
    with _ends(tracker, parent.run_id, experiment, study_name):
        if resume:
            _recover(experiment, study, stores, parent.run_id)
            tracker.log(parent.run_id, tags={schema.TAG_USE_COUNT: str(use_count)})
        else:
            _log_inputs(experiment, prepared, tracker, parent.run_id)
        trial_objective = objective(experiment, prepared)
        with local_workers(
            experiment,
            workers - 1,
            storage_url=stores.storage_url,
            tracking_uri=tracker.uri,
            heartbeat=heartbeat,
        ):
            records = _search(experiment, study, stores, parent, trial_objective, show_progress)
        counts = _trial_counts(study, prepared.audit, tracker, parent.run_id)
        best = _best(experiment, study, trial_objective, tracker, parent.run_id)
        model = _refit(experiment, prepared, trial_objective, best)
        test_scores = None
        if not no_test:
            test_scores = _test_once(experiment, prepared, model, tracker, parent.run_id)
        _log_search(experiment, study, records, best, tracker, parent.run_id)
        _compare_models(
            experiment,
            prepared,
            study,
            trial_objective,
            tracker,
            parent.run_id,
            no_test,
            best,
            model,
        )
        model_uri = _log_model(experiment, prepared, model, best, tracker, parent.run_id)
    return RunResult(
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
        tracking_uri=tracker.uri,
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


def _start(experiment, study_name, digest, stores, prepared, use_count):
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
            **tracking.ledger_tags(prepared.fingerprints["test"], use_count),
            schema.TAG_ROLE: schema.ROLE_PARENT,
            schema.TAG_OPTUNA_STORAGE: redact_url(stores.storage_url),
            **tracking.provenance(experiment),
        },
    )
    return study, _Parent(run_id, experiment_id)


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
    return study, _Parent(parent.info.run_id, parent.info.experiment_id)


def _shares(experiment):
    """The model of each slot when each model has a fixed share of the budget, else None."""
    if experiment.model_budget != "fixed" or experiment.estimators is None:
        return None
    return search.fixed_shares(experiment.candidates, experiment.n_trials)


@contextlib.contextmanager
def _ends(tracker, run_id, experiment, study_name):
    """The parent run ends FINISHED after the block, else FAILED or KILLED (Ctrl-C)."""
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


def _recover(experiment, study, stores, parent_id):
    """Account for what a dead coordinator left: lost trials, RUNNING child runs, the budget.

    On a local file storage no other machine can be running trials, so every RUNNING trial
    belonged to the dead run; on a database server, only trials whose heartbeat stopped are.
    """
    search.fail_lost(study, stores.storage, running_are_lost=is_local(stores.storage_url))
    running = study.get_trials(deepcopy=False, states=(search.TrialState.RUNNING,))
    tracking.end_orphans(stores.tracker, parent_id, alive={str(t.number) for t in running})
    added = search.fill(study, experiment.n_trials, _shares(experiment))
    done = search.budget(study).finished
    logger.warning("resuming study %s: %d trials finished, %d to go", study.study_name, done, added)


def _log_inputs(experiment, prepared, tracker, parent_id):
    """The settings, the data's audit and split, and the experiment file."""
    parts = prepared.parts.items()
    tracker.log(parent_id, params=tracking.settings(experiment, prepared.dataset.X, parts))
    tracker.log_dict(parent_id, prepared.audit, schema.ARTIFACT_AUDIT)
    tracker.log_dict(parent_id, prepared.summary, schema.ARTIFACT_SPLIT)
    if experiment.path is not None:
        tracker.log_file(parent_id, experiment.path, schema.ARTIFACT_EXPERIMENT)


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
    tracking.end_orphans(stores.tracker, parent.run_id, alive=set())
    return records


def _trial_counts(study, audit, tracker, parent_id):
    """Trials by state, logged on the parent; refuses a search where none completed."""
    budget = search.budget(study)
    counts = {"COMPLETE": budget.complete, "PRUNED": budget.pruned, "FAIL": budget.fail}
    if budget.lost:
        counts["LOST"] = budget.lost
    tracker.log(parent_id, tags={schema.trials_tag(k): str(v) for k, v in counts.items()})
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


def _best(experiment, study, trial_objective, tracker, parent_id):
    """The best trial and its configuration, logged on the parent run."""
    trial = search.retrying(lambda: study.best_trial)
    model, params = trial_objective.suggest(_fixed_trial(trial.params))
    single = search.is_single(experiment.candidates)
    # Only the overall winner is refit and tested; among several, its type is a parameter.
    logged = params if single else {search.MODEL_PARAM: model, **params}
    fixed = {}
    if single and callable(experiment.search_space):
        fixed = tracking.fixed_params(experiment.estimator, set(params))
    tracker.log(
        parent_id,
        params={**fixed, **{schema.best_param(k): v for k, v in logged.items()}},
        metrics={schema.best_val(experiment.metric_name): trial.value},
        tags={schema.TAG_BEST_TRIAL: str(trial.number)},
    )
    return _Best(trial, model, params, logged)


def _refit(experiment, prepared, trial_objective, best):
    """The best configuration fitted on the data the experiment's ``refit`` names."""
    X_fit, y_fit = _fit_rows(experiment, prepared)
    model = trial_objective.build(best.params, best.model)
    epochs = search.n_epochs(model, experiment.max_epochs)
    return search.fit_model(model, X_fit, y_fit, epochs=epochs)


def _fit_rows(experiment, prepared):
    X_train, y_train = prepared.rows("train")
    if experiment.refit != "train+val":
        return X_train, y_train
    X_val, y_val = prepared.rows("val")
    return _concat(X_train, X_val), None if y_train is None else _concat(y_train, y_val)


def _test_once(experiment, prepared, model, tracker, parent_id):
    """The single evaluation of the test split: metrics, tables and figures on the parent."""
    # Recorded before the metrics exist: even a crash mid-evaluation counts as a use.
    tracking.mark_evaluated(tracker, parent_id)
    X_test, y_test = prepared.rows("test")
    evaluated = evaluation.evaluate(
        model,
        X_test,
        y_test,
        task=experiment.task,
        metric_name=experiment.metric_name,
        scorer=experiment.scorer,
    )
    scores = evaluated["metrics"]
    tracker.log(parent_id, metrics={schema.test(k): v for k, v in scores.items()})
    for file, text in evaluated["tables"].items():
        tracker.log_text(parent_id, text, f"{schema.ARTIFACT_TEST}/{file}")
    try:
        for file, fig in evaluated["figures"].items():
            tracker.log_figure(parent_id, fig, f"{schema.ARTIFACT_TEST}/{file}")
    finally:
        evaluation.close(evaluated["figures"])
    return scores


def _log_search(experiment, study, records, best, tracker, parent_id):
    """The study's figures and the best trial's learning curve."""
    # Read from the storage, which may be a database server restarting for a moment.
    figures = search.retrying(evaluation.study_figures, study)
    try:
        record = records.get(best.trial.number)
        curve = evaluation.learning_curve_figure(
            record.curves if record else None,
            experiment.metric_name,
            f"Learning curve, trial {best.trial.number}",
        )
        if curve is not None:
            figures[schema.LEARNING_CURVE] = curve
        for file, fig in figures.items():
            tracker.log_figure(parent_id, fig, f"{schema.ARTIFACT_SEARCH}/{file}")
    finally:
        evaluation.close(figures)


def _compare_models(
    experiment, prepared, study, trial_objective, tracker, parent_id, no_test, best, model
):
    """The parent's view across model types: leaderboard, and decision boundaries in 2-D.

    The leaderboard (several models) is read back from the child runs, so it holds the trials
    of every process. Decision boundaries (classification on two features) show the best
    configuration of each model type fitted on the training split; test points are drawn only
    when the test split is evaluated anyway.
    """
    metric, names = experiment.metric_name, list(experiment.candidates)
    if not search.is_single(experiment.candidates):
        trials = tracking.trial_summaries(tracker.children(parent_id), metric)
        rows = evaluation.leaderboard(trials, names)
        tracker.log_text(
            parent_id, evaluation.leaderboard_csv(rows, metric), schema.LEADERBOARD_CSV
        )
        figure = evaluation.leaderboard_figure(rows, metric)
        tracker.log_figure(parent_id, figure, schema.LEADERBOARD_PNG)
    X_train, y_train = prepared.rows("train")
    if experiment.task != "classification" or np.shape(X_train)[1] != 2:
        return
    winners = _best_per_model(experiment, study)
    models, titles = {}, {}
    for name in [n for n in names if n in winners]:
        trial = winners[name]
        if name == best.model and experiment.refit == "train":
            models[name] = model  # already fitted on the training split
        else:
            params = trial_objective.suggest(_fixed_trial(trial.params))[1]
            estimator = trial_objective.build(params, name)
            epochs = search.n_epochs(experiment.candidates[name][0], experiment.max_epochs)
            models[name] = search.fit_model(estimator, X_train, y_train, epochs=epochs)
        mark = " (winner)" if name == best.model and len(winners) > 1 else ""
        titles[name] = f"val {metric} {trial.value:.3f}, trial {trial.number}{mark}"
    test = None if no_test else prepared.rows("test")
    figure = evaluation.decision_boundary_figure(models, (X_train, y_train), test, titles)
    if figure is not None:
        tracker.log_figure(parent_id, figure, schema.DECISION_BOUNDARIES)


def _best_per_model(experiment, study):
    """The best complete trial of each model type."""
    best = {}
    for trial in study.get_trials(deepcopy=False, states=(search.TrialState.COMPLETE,)):
        model = search.split_params(trial.params, experiment.candidates)[0]
        if model not in best or trial.value > best[model].value:
            best[model] = trial
    return best


def _log_model(experiment, prepared, model, best, tracker, parent_id):
    """The refit model with its signature and an input example; returns its URI."""
    from mlflow.models import infer_signature

    X_fit, _ = _fit_rows(experiment, prepared)
    example = mdata.take(X_fit, np.arange(min(5, len(X_fit))))
    signature = infer_signature(example, model.predict(example))
    requirements = tracking.requirements(model, X_fit)
    model_uri = tracker.log_model(
        parent_id, model, example, signature, requirements, params=best.logged
    )
    tracker.log(parent_id, tags={schema.TAG_MODEL_URI: model_uri})
    return model_uri


def _fixed_trial(params):
    import optuna

    return optuna.trial.FixedTrial(params)


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
