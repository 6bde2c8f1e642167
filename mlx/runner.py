"""One experiment end to end: audit -> split -> search -> refit -> test once -> log.

The runner wires the other modules together with small callbacks: :mod:`mlx.search` reports each
finished trial as a record, which the runner hands to :mod:`mlx.tracking`. The parent MLflow run
always ends (FINISHED, FAILED or KILLED), whatever happens in between.
"""

import logging
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from mlx import data as mdata
from mlx import evaluation, search
from mlx.exceptions import DataError, SearchError, TestReuseError
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
    ui_command,
)

__all__ = ["RunResult", "run"]

logger = logging.getLogger("mlx")

_TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL")
# Fixed estimator parameters longer than this (as text) are not logged as params.
_MAX_FIXED_PARAM = 250
_VERSIONED = ("numpy", "scikit-learn", "optuna", "mlflow", "pandas")


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
):
    """Run an experiment: search on validation, test once, log everything to MLflow.

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
        No trial completed.
    """
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    experiment = experiment.replace(n_trials=n_trials, timeout=timeout, seed=seed)
    dataset, parts, audit, summary = _prepare_data(experiment)
    fingerprints = {name: entry["fingerprint"] for name, entry in summary["splits"].items()}
    digest = definition_hash(experiment, fingerprints)
    study_name = f"{experiment.name}-{digest[:10]}"

    uri = resolve_tracking_uri(tracking_uri)
    tracker = Tracker(uri)
    use_count = _test_use_count(tracker, fingerprints["test"], no_test, allow_test_reuse)
    experiment_id = tracker.experiment_id(experiment.name)
    storage_url = search.resolve_storage(storage)
    study = _create_study(experiment, study_name, storage_url)
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
        result = _search_and_evaluate(
            experiment,
            dataset,
            parts,
            tracker=tracker,
            study=study,
            experiment_id=experiment_id,
            parent_id=parent_id,
            audit=audit,
            summary=summary,
            no_test=no_test,
            use_count=use_count,
            show_progress=show_progress,
        )
    except BaseException as exc:
        # Whatever happened, the parent run must not stay RUNNING; recording the failure must
        # not hide the error itself.
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        message = redact_url(f"{type(exc).__name__}: {exc}")
        _try(tracker.log, parent_id, tags={"mlx.error": message})
        _try(tracker.end_run, parent_id, status)
        raise
    tracker.end_run(parent_id, "FINISHED")
    result.tracking_uri = uri
    return result


def _prepare_data(experiment):
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
    for message in audit["warnings"]:
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


def _create_study(experiment, study_name, storage_url):
    try:
        storage = search.make_storage(storage_url)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SearchError(
            f"cannot use the Optuna storage {redact_url(storage_url)}: {redact_url(first_line)}"
        ) from None
    return search.create_study(
        study_name,
        storage=storage,
        seed=experiment.seed,
        sampler=experiment.sampler,
        pruner=experiment.pruner,
    )


def _search_and_evaluate(
    experiment,
    dataset,
    parts,
    *,
    tracker,
    study,
    experiment_id,
    parent_id,
    audit,
    summary,
    no_test,
    use_count,
    show_progress,
):
    name = experiment.metric_name
    ((estimator, space),) = experiment.candidates.values()
    X_train, y_train = mdata.take(dataset.X, parts.train), mdata.take(dataset.y, parts.train)
    X_val, y_val = mdata.take(dataset.X, parts.val), mdata.take(dataset.y, parts.val)
    settings = _settings(experiment, dataset, estimator, space)
    settings.update({f"mlx.rows.{name}": len(indices) for name, indices in parts.items()})
    tracker.log(parent_id, params=settings)
    tracker.log_dict(parent_id, audit, "audit.json")
    tracker.log_dict(parent_id, summary, "split.json")
    if experiment.path is not None:
        tracker.log_file(parent_id, experiment.path, "experiment")

    objective = search.Objective(
        estimator,
        space,
        experiment.scorer,
        (X_train, y_train),
        (X_val, y_val),
        seed=experiment.seed,
        max_epochs=experiment.max_epochs,
    )
    records = {}
    progress = _progress(experiment, show_progress)

    def on_trial(record):
        # Logged synchronously: the writes are CPU-bound ORM work, so a logging thread only
        # competed with the trials for the GIL (measured: slower per trial, not faster).
        records[record.number] = record
        tracker.log_trial(
            record,
            experiment_id=experiment_id,
            parent_id=parent_id,
            metric_name=name,
            study_name=study.study_name,
        )
        progress.update(1)
        if record.state == "COMPLETE":
            best = max(r.value for r in records.values() if r.state == "COMPLETE")
            progress.set_postfix_str(f"best val {name}={best:.4f}", refresh=False)

    try:
        search.optimize(
            study,
            objective,
            n_trials=experiment.n_trials,
            timeout=experiment.timeout,
            on_trial=on_trial,
        )
    finally:
        progress.close()

    counts = _trial_counts(study)
    tracker.log(parent_id, tags={f"mlx.trials_{k.lower()}": str(v) for k, v in counts.items()})
    if counts["COMPLETE"] == 0:
        errors = [r.error for r in records.values() if r.error]
        hint = f" First error: {errors[0]}" if errors else ""
        raise SearchError(
            f"none of the {sum(counts.values())} trials of study {study.study_name!r} completed, "
            f"so there is no model to test.{hint}"
        )
    best = study.best_trial
    best_params = search.suggest(_fixed_trial(best.params), space)
    tracker.log(
        parent_id,
        params={f"best.{k}": v for k, v in best_params.items()},
        metrics={f"best_val_{name}": best.value},
        tags={"mlx.best_trial": str(best.number)},
    )

    model = objective.build(best_params)
    if experiment.refit == "train+val":
        X_fit = _concat(X_train, X_val)
        y_fit = None if y_train is None else _concat(y_train, y_val)
    else:
        X_fit, y_fit = X_train, y_train
    search.fit_model(model, X_fit, y_fit, epochs=search.n_epochs(model, experiment.max_epochs))

    test_scores = None
    figures = evaluation.study_figures(study)
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


def _fixed_trial(params):
    import optuna

    return optuna.trial.FixedTrial(params)


def _trial_counts(study):
    counts = dict.fromkeys(_TRIAL_STATES, 0)
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name in counts:
            counts[trial.state.name] += 1
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


def _settings(experiment, dataset, estimator, space):
    """Parent-run params: the settings and the estimator's fixed (non-searched) parameters."""
    searched = set(space) if isinstance(space, dict) else set()
    params = {
        key: value
        for key, value in estimator.get_params(deep=True).items()
        if key not in searched
        and (value is None or isinstance(value, bool | int | float | str))
        and len(str(value)) <= _MAX_FIXED_PARAM
    }
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
            "mlx.estimator": type(estimator).__name__,
        }
    )
    return params


def _provenance(experiment):
    import mlx

    tags = {f"mlx.version.{name}": _version(name) for name in _VERSIONED}
    tags["mlx.version.mlx"] = mlx.__version__
    tags["mlx.version.python"] = platform.python_version()
    tags["mlx.estimator"] = repr(experiment.estimator)
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
