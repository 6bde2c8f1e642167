"""Creating and loading a study, with one sampler and pruner policy for every process.

The coordinator creates the study; workers and a resumed coordinator load it. Optuna does not
store the sampler or the pruner with a study, so each process builds its own, and they must
agree: all of them go through :func:`policy`. A worker's default sampler gets a seed of its own
(derived from the experiment's seed and the worker's id): workers seeded alike would sample the
same parameters from the same history.
"""

import hashlib
import logging
import warnings

import optuna
from optuna.exceptions import DuplicatedStudyError as StudyExistsError

from mlx.exceptions import SearchError
from mlx.search.retry import retrying

__all__ = [
    "StudyExistsError",
    "create_study",
    "default_pruner",
    "default_sampler",
    "load_study",
    "policy",
    "quiet_optuna",
]

# The objective is a score (greater is better), whatever the metric.
DIRECTION = "maximize"


def default_sampler(seed, worker_id=None):
    """TPE seeded by ``seed``, or by a seed derived from it and ``worker_id``."""
    if worker_id is not None:
        seed = int.from_bytes(hashlib.sha256(f"{seed}:{worker_id}".encode()).digest()[:4])
    return optuna.samplers.TPESampler(seed=seed)


def default_pruner():
    """Median pruning once 5 trials have finished, from the 4th epoch of a trial on."""
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)


def policy(seed, *, sampler=None, pruner=None, worker_id=None):
    """``(sampler, pruner)`` of a process: the experiment's own, else the defaults."""
    if sampler is None:
        sampler = default_sampler(seed, worker_id)
    if pruner is None:
        pruner = default_pruner()
    return sampler, pruner


def create_study(name, *, storage, seed, sampler=None, pruner=None, objective_name=None):
    """Create the study ``name`` (see :func:`policy`), its objective named ``objective_name``.

    The name is stored in the study, so that optuna-dashboard and Optuna's plots label the
    objective (``val_accuracy``) for every process that loads it.

    Raises
    ------
    StudyExistsError
        A study of that name exists already.
    """
    quiet_optuna()
    sampler, pruner = policy(seed, sampler=sampler, pruner=pruner)
    study = retrying(
        optuna.create_study,
        storage=storage,
        study_name=name,
        direction=DIRECTION,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=False,
    )
    if objective_name is not None:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retrying(study.set_metric_names, [objective_name])
    return study


def load_study(name, *, storage, seed, sampler=None, pruner=None, worker_id=None):
    """The existing study ``name`` (see :func:`policy`).

    Raises
    ------
    SearchError
        There is no such study in ``storage``.
    """
    quiet_optuna()
    sampler, pruner = policy(seed, sampler=sampler, pruner=pruner, worker_id=worker_id)
    try:
        return retrying(
            optuna.load_study, study_name=name, storage=storage, sampler=sampler, pruner=pruner
        )
    except KeyError:
        raise SearchError(
            f"no study {name!r} in the Optuna storage; start the experiment without "
            f"--resume, or point --storage at the storage it ran on."
        ) from None


def quiet_optuna():
    """Optuna logs warnings only, failed trials as one line each."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _OneLineTracebacks) for f in handler.filters):
            handler.addFilter(_OneLineTracebacks())


class _OneLineTracebacks(logging.Filter):
    """Drops tracebacks from Optuna's log records: a failed trial is one line, not a page."""

    def filter(self, record):
        record.exc_info = None
        record.exc_text = None
        # Optuna follows each failure with "failed with value None": the error line says it all.
        return "failed with value None" not in record.getMessage()
