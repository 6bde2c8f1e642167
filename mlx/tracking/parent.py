"""The parent run of a search: finding it again, and what it records about the experiment.

A parent run holds the experiment's settings as params (with the estimator's fixed
parameters), its provenance as tags (library versions, the experiment file, the git commit),
and later the best configuration, the test evaluation and the model.
"""

import inspect
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from mlx.tracking import _schema as schema
from mlx.tracking.store import Tracker

__all__ = [
    "ParentRun",
    "all_params",
    "coordinator_alive",
    "coordinator_tag",
    "find_parent",
    "next_run_number",
    "fixed_params",
    "other_definitions",
    "provenance",
    "requirements",
    "settings",
]

# Fixed estimator parameters longer than this (as text) are not logged as params.
_MAX_FIXED_PARAM = 250
_VERSIONED = ("numpy", "scikit-learn", "optuna", "mlflow", "pandas")


class ParentRun(NamedTuple):
    """The parent run of a search, and the store it is in."""

    tracker: Tracker
    run_id: str
    experiment_id: str
    name: str = ""

    def log(self, **entries):
        """Params, metrics, tags or steps (see :meth:`Tracker.log`)."""
        self.tracker.log(self.run_id, **entries)


def find_parent(tracker, experiment_name, *, digest, statuses=None, run_id=None, coordinator=None):
    """The latest parent run of the definition ``digest`` (with one of ``statuses``).

    With ``run_id``, that run, if it is such a parent; with ``coordinator`` (``host:pid``),
    only a run of that coordinator; else None.
    """
    query = f"tags.`{schema.TAG_HASH}` = '{digest}'"
    if run_id is not None:
        query += f" AND attributes.run_id = '{run_id}'"
    if coordinator is not None:
        query += f" AND tags.`{schema.TAG_COORDINATOR}` = '{coordinator}'"
    for run in tracker.parents(experiment_name, query):
        if statuses is None or run.info.status in statuses:
            return run
    return None


def other_definitions(tracker, experiment_name, digest):
    """RUNNING parent runs of ``experiment_name`` whose definition is not ``digest``."""
    running = tracker.parents(experiment_name, "attributes.status = 'RUNNING'")
    return [r for r in running if r.data.tags.get(schema.TAG_HASH) != digest]


def next_run_number(tracker, experiment_name):
    """One more than the highest run number of the experiment's parent runs (deleted ones too)."""
    numbers = [
        int(run.data.tags.get(schema.TAG_RUN_NUMBER, 0))
        for run in tracker.parents(experiment_name, deleted=True)
    ]
    return max(numbers, default=0) + 1


def coordinator_tag(pid=None):
    """Who coordinates a run started here: ``host:pid`` (this process's, by default)."""
    return f"{platform.node()}:{pid or os.getpid()}"


def coordinator_alive(parent):
    """False when the parent run's coordinator ran on this machine and has stopped.

    On another machine there is no telling: it counts as alive.
    """
    host, _, pid = parent.data.tags.get(schema.TAG_COORDINATOR, "").rpartition(":")
    if host != platform.node() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def settings(experiment, X, parts):
    """Parent-run params: the settings and the estimator's fixed (non-searched) parameters.

    With several candidate models, their names and types instead of fixed parameters (which
    would mix the models' parameters in one list; the experiment file holds them). ``parts``
    are the ``(name, row indices)`` of the splits.
    """
    if experiment.estimators is None:
        space = experiment.search_space
        # Which parameters a define-by-run space sets is known only once it has run: its
        # fixed parameters are logged after the search (see fixed_params).
        params = fixed_params(experiment.estimator, space) if isinstance(space, dict) else {}
        params[schema.PARAM_ESTIMATOR] = type(experiment.estimator).__name__
    else:
        params = {
            schema.estimator_param(name): type(estimator).__name__
            for name, estimator in experiment.estimators.items()
        }
        params[schema.PARAM_MODELS] = ",".join(experiment.estimators)
        params[schema.PARAM_MODEL_BUDGET] = experiment.model_budget
    params.update(
        {
            schema.PARAM_TASK: experiment.task,
            schema.PARAM_METRIC: experiment.metric_name,
            **{
                schema.split_param(name): fraction
                for name, fraction in zip(("train", "val", "test"), experiment.split, strict=True)
            },
            schema.PARAM_SEED: experiment.seed,
            schema.PARAM_N_TRIALS: experiment.n_trials,
            schema.PARAM_REFIT: experiment.refit,
            schema.PARAM_VALIDATION: experiment.validation,
            schema.PARAM_DATA_ROWS: len(X),
            schema.PARAM_DATA_FEATURES: X.shape[1],
        }
    )
    params.update({schema.rows_param(name): len(rows) for name, rows in parts})
    params.update({schema.limit_param(name): v for name, v in experiment.limits.items()})
    return params


def fixed_params(estimator, searched):
    """The parameters the experiment sets and the search does not: its choices, not defaults.

    A parameter left at its class's default is not logged (the MLflow UI would show dozens of
    columns such as ``memory`` and ``verbose``); the full set is :func:`all_params`.
    """
    params = estimator.get_params(deep=True)
    return {
        key: value
        for key, value in params.items()
        if key not in searched
        and _loggable(value)
        and not _is_default(key, value, estimator, params)
    }


def all_params(estimator):
    """Every parameter of ``estimator`` (nested ones too), as JSON-ready text."""
    return {
        key: value if _loggable(value) else repr(value)
        for key, value in estimator.get_params(deep=True).items()
        if not hasattr(value, "get_params")  # a step appears through its own parameters
    }


def _loggable(value):
    return (value is None or isinstance(value, bool | int | float | str)) and len(
        str(value)
    ) <= _MAX_FIXED_PARAM


def _is_default(key, value, estimator, params):
    owner_key, _, name = key.rpartition("__")
    owner = params.get(owner_key) if owner_key else estimator
    parameter = inspect.signature(type(owner).__init__).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return False
    default = parameter.default
    return type(default) is type(value) and default == value


def provenance(experiment):
    """Tags that say what ran: versions, the estimator, the file, its git commit, overrides."""
    import mlx

    tags = {schema.version_tag(name): _version(name) for name in _VERSIONED}
    tags[schema.version_tag("mlx")] = mlx.__version__
    tags[schema.version_tag("python")] = platform.python_version()
    if experiment.overrides:
        from mlx.overrides import to_json

        tags[schema.TAG_OVERRIDES] = to_json(experiment.overrides)
    tags[schema.TAG_ESTIMATOR] = repr(
        experiment.estimator if experiment.estimators is None else experiment.estimators
    )
    folder = Path.cwd()
    if experiment.path is not None:
        folder = experiment.path.parent
        tags[schema.MLFLOW_SOURCE] = str(experiment.path)
        tags[schema.TAG_EXPERIMENT_FILE] = str(experiment.path)
    commit = _git(folder, "rev-parse", "HEAD")
    if commit:
        tags[schema.MLFLOW_GIT_COMMIT] = commit
        # Changes to tracked files only: the stores a run writes beside the file do not count.
        changed = _git(folder, "status", "--porcelain", "--untracked-files=no")
        tags[schema.TAG_GIT_DIRTY] = str(bool(changed)).lower()
    return tags


def requirements(model, X):
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
