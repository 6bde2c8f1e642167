"""Optuna: the study and its storage, the sampler and pruner, and the trial objective.

A trial clones the estimator, sets the trial's parameters, fits on the training split and scores
on the validation split. With several candidate models, the trial first chooses one (see
:mod:`mlx._candidates`) and then only that model's parameters. Estimators that learn incrementally (``partial_fit`` and a ``max_iter``
parameter, alone or as the last step of a Pipeline) are trained epoch by epoch: the validation
score of each epoch is reported to the trial so that the pruner can stop bad trials early, and
both learning curves are kept. What a trial produced is handed to an ``on_trial`` callback as a
:class:`TrialRecord`; this module knows nothing of MLflow.
"""

import contextlib
import logging
import pickle
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import optuna
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from sklearn.base import clone, is_classifier
from sklearn.pipeline import Pipeline

from mlx import _candidates, scheduling
from mlx._sqlite import sqlite_path, write_ahead_log
from mlx.evaluation import final_step
from mlx.exceptions import first_line

__all__ = [
    "DEFAULT_STORAGE_FILE",
    "Objective",
    "TrialRecord",
    "create_study",
    "fit_model",
    "load_study",
    "make_storage",
    "n_epochs",
    "optimize",
    "resolve_storage",
    "seeded",
    "suggest",
]

logger = logging.getLogger("mlx")

DEFAULT_STORAGE_FILE = "mlx-optuna.db"
_INTERRUPTED = "interrupted (Ctrl-C)"
# Messages kept per trial from the warnings a fit raised (ConvergenceWarning, ...).
_MAX_WARNINGS = 3


@dataclass
class TrialRecord:
    """What one trial produced, for logging.

    ``state`` is ``"COMPLETE"``, ``"PRUNED"`` or ``"FAIL"``; ``curves`` holds the per-epoch
    ``"train"`` and ``"val"`` scores of epoch-by-epoch training (empty lists otherwise).
    ``model`` is the chosen candidate's name in a search over several (None otherwise), and
    ``params`` then holds ``model`` and that model's own parameters only. ``size`` is the
    number of bytes of the pickled fitted model (complete trials).
    """

    number: int
    params: dict
    state: str
    value: float | None = None
    train_score: float | None = None
    fit_time: float | None = None
    curves: dict = field(default_factory=lambda: {"train": [], "val": []})
    error: str | None = None
    warnings: list = field(default_factory=list)
    start_time: float | None = None
    end_time: float | None = None
    interrupted: bool = False
    model: str | None = None
    size: int | None = None


def resolve_storage(url=None):
    """The Optuna storage URL: ``url`` if given, else ``mlx-optuna.db`` in the working directory.

    A plain file path (no ``://``) means a SQLite file at that path.
    """
    if url is None:
        url = str(Path.cwd() / DEFAULT_STORAGE_FILE)
    if "://" not in url:
        url = f"sqlite:///{Path(url).resolve()}"
    return url


def make_storage(url, *, heartbeat_interval=None, grace_period=None):
    """An Optuna RDB storage on ``url``; with a heartbeat, lost trials get replaced.

    Heartbeats are off unless ``heartbeat_interval`` is given; a running trial silent for
    ``grace_period`` seconds (default three intervals) is failed and a new slot replaces it
    (:func:`mlx.scheduling.replace_lost`).
    """
    engine_kwargs = {"pool_pre_ping": True}
    path = sqlite_path(url)
    if path is not None:
        write_ahead_log(path)
    if url.startswith("sqlite"):
        # Wait for a lock instead of failing at once when another process writes.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    if heartbeat_interval is not None and grace_period is None:
        grace_period = 3 * heartbeat_interval
    with warnings.catch_warnings():
        # Heartbeats are "experimental" in Optuna since 2.x; they are what mlx relies on.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=scheduling.replace_lost if heartbeat_interval else None,
        )


def create_study(name, *, storage, seed, sampler=None, pruner=None):
    """Create the study ``name`` (maximising), or load it if it exists."""
    quiet_optuna()
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=sampler if sampler is not None else optuna.samplers.TPESampler(seed=seed),
        pruner=pruner
        if pruner is not None
        else optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3),
        load_if_exists=True,
    )


def load_study(name, *, storage, sampler=None, pruner=None):
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def suggest(trial, space):
    """Estimator parameters for ``trial`` from a dict of distributions or a callable space."""
    if callable(space):
        params = space(trial)
        if not isinstance(params, dict):
            raise TypeError(
                f"the search_space function must return a dict of estimator parameters, "
                f"got {type(params).__name__}."
            )
        return params
    params = {}
    for name, dist in space.items():
        if isinstance(dist, FloatDistribution):
            value = trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
        elif isinstance(dist, IntDistribution):
            value = trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        elif isinstance(dist, CategoricalDistribution):
            value = trial.suggest_categorical(name, dist.choices)
        else:
            raise TypeError(f"unsupported distribution {dist!r} for {name!r}.")
        params[name] = value
    return params


def seeded(estimator, seed):
    """Set every ``random_state`` left at None (also inside a Pipeline) to ``seed``."""
    unset = {
        key: seed
        for key, value in estimator.get_params(deep=True).items()
        if (key == "random_state" or key.endswith("__random_state")) and value is None
    }
    return estimator.set_params(**unset) if unset else estimator


def _last_step(estimator):
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def n_epochs(estimator, max_epochs=None):
    """Epochs of epoch-by-epoch training for ``estimator``, or None to call ``fit`` once.

    Epoch-by-epoch applies when the (last step of the) estimator has ``partial_fit`` and either
    ``max_epochs`` is given or it has an integer ``max_iter`` parameter (its epoch budget).
    Estimators with ``partial_fit`` but no ``max_iter`` (naive Bayes) learn in one pass.
    """
    last = _last_step(estimator)
    if not hasattr(last, "partial_fit"):
        return None
    if max_epochs is not None:
        return int(max_epochs)
    max_iter = last.get_params(deep=False).get("max_iter")
    if isinstance(max_iter, int | np.integer) and not isinstance(max_iter, bool) and max_iter > 0:
        return int(max_iter)
    return None


def _iter_epochs(estimator, X, y, epochs):
    """Fit ``estimator`` epoch by epoch; yield ``(epoch, last_step, X_seen_by_last_step)``."""
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        Xt = estimator[:-1].fit_transform(X, y)
    else:
        Xt = X
    last = _last_step(estimator)
    first = {"classes": np.unique(y)} if is_classifier(last) else {}
    for epoch in range(epochs):
        last.partial_fit(Xt, y, **(first if epoch == 0 else {}))
        yield epoch, last, Xt


def fit_model(estimator, X, y, epochs=None):
    """Fit ``estimator`` as a trial does (epoch by epoch when ``epochs``); return it."""
    if epochs is None:
        return estimator.fit(X, y)
    for _ in _iter_epochs(estimator, X, y, epochs):
        pass
    return estimator


class Objective:
    """The function Optuna calls per trial: fit on train, return the validation score.

    Parameters
    ----------
    candidates : dict
        ``{name: (estimator, space)}`` (see ``Experiment.candidates``): the estimator is cloned
        for each trial, the space is a dict or callable (see :func:`suggest`). With more than
        the single ``"model"``, each trial chooses a candidate first.
    scorer : callable
        ``(estimator, X, y) -> float``, greater is better.
    train, val : tuple
        ``(X, y)`` of the training and validation splits.
    seed : int
        Seeds the estimator's unset ``random_state`` parameters.
    max_epochs : int or None
        See :func:`n_epochs`.
    """

    def __init__(self, candidates, scorer, train, val, *, seed, max_epochs=None):
        self.candidates = dict(candidates)
        self.scorer = scorer
        self.train = train
        self.val = val
        self.seed = seed
        self.max_epochs = max_epochs
        # Per-trial results that Optuna's storage need not hold (curves, fit time): read and
        # removed by :meth:`finish` right after the trial ends.
        self.records = {}

    def build(self, params, model=_candidates.MODEL_PARAM):
        """A fresh, seeded clone of candidate ``model`` with ``params`` set."""
        estimator = self.candidates[model][0]
        return seeded(clone(estimator).set_params(**params), self.seed)

    def suggest(self, trial):
        """``(model, estimator params)`` of ``trial``: the chosen candidate and its parameters."""
        model, named = _candidates.choose(trial, self.candidates)
        return model, suggest(named, self.candidates[model][1])

    def __call__(self, trial):
        record = TrialRecord(number=trial.number, params={}, state="RUNNING")
        record.start_time = time.time()
        self.records[trial.number] = record
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    model, params = scheduling.retrying(self.suggest, trial)
                    record.model, record.params = self._logged_params(trial.params)
                    estimator = self.build(params, model)
                    value = self._fit_and_score(trial, estimator, record)
                    record.size = _pickled_size(estimator)
                finally:
                    record.warnings = _unique_messages(caught)
            if not np.isfinite(value):
                raise ValueError(f"the validation score is {value}")
            record.value = float(value)
            return record.value
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            scheduling.retrying(trial.set_user_attr, "error", record.error[:1000])
            raise

    def _fit_and_score(self, trial, estimator, record):
        (X_train, y_train), (X_val, y_val) = self.train, self.val
        epochs = n_epochs(estimator, self.max_epochs)
        if epochs is None:
            start = time.perf_counter()
            estimator.fit(X_train, y_train)
            record.fit_time = time.perf_counter() - start
            record.train_score = float(self.scorer(estimator, X_train, y_train))
            return self.scorer(estimator, X_val, y_val)
        record.fit_time, Xt_val, value = 0.0, None, float("nan")
        start = time.perf_counter()
        for epoch, last, Xt_train in _iter_epochs(estimator, X_train, y_train, epochs):
            record.fit_time += time.perf_counter() - start
            if Xt_val is None:
                # The steps before the last are fitted now: transform validation data once.
                Xt_val = final_step(estimator, X_val)[1]
            value = float(self.scorer(last, Xt_val, y_val))
            record.train_score = float(self.scorer(last, Xt_train, y_train))
            record.curves["val"].append(value)
            record.curves["train"].append(record.train_score)
            scheduling.retrying(trial.report, value, epoch)
            if scheduling.retrying(trial.should_prune):
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} of {epochs}")
            start = time.perf_counter()
        return value

    def fail(self, number, error):
        """Record ``error`` for trial ``number`` (a trial stopped from outside)."""
        record = self.records.get(number)
        if record is not None:
            record.error = error

    def finish(self, trial, state, value=None):
        """The record of ``trial``, ending in ``state`` (a ``TrialState``) with ``value``."""
        record = self.records.pop(trial.number, None)
        if record is None:
            record = TrialRecord(number=trial.number, params={}, state="")
        record.state = state.name
        record.model, record.params = self._logged_params(trial.params)
        if state == TrialState.COMPLETE:
            record.value = value
        record.end_time = time.time()
        return record

    def _logged_params(self, optuna_params):
        """``(model, params)`` for logging: the chosen model and its own, unprefixed params."""
        if _candidates.is_single(self.candidates):
            return None, dict(optuna_params)
        if _candidates.MODEL_PARAM not in optuna_params:  # failed before choosing
            return None, {}
        model, params = _candidates.split_params(optuna_params, self.candidates)
        return model, {_candidates.MODEL_PARAM: model, **params}


def _pickled_size(estimator):
    """Bytes of the pickled fitted estimator (its memory footprint, roughly); None if unpicklable."""
    try:
        return len(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # a lambda inside a FunctionTransformer, an open handle, ...
        return None


def _unique_messages(caught):
    messages = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in messages:
            messages.append(text)
        if len(messages) == _MAX_WARNINGS:
            break
    return messages


class _OneLineTracebacks(logging.Filter):
    """Drops tracebacks from Optuna's log records: a failed trial is one line, not a page."""

    def filter(self, record):
        record.exc_info = None
        record.exc_text = None
        # Optuna follows each failure with "failed with value None": the error line says it all.
        return "failed with value None" not in record.getMessage()


def quiet_optuna():
    """Optuna logs warnings only, failed trials as one line each."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _OneLineTracebacks) for f in handler.filters):
            handler.addFilter(_OneLineTracebacks())


class Ran(NamedTuple):
    """What :func:`optimize` did: trials run by this process; whether the study was stopped."""

    count: int
    stopped: bool


def optimize(study, storage, objective, *, timeout=None, on_start=None, on_trial=None):
    """Run slots of ``study`` until none is left or ``timeout`` passes.

    Slots are claimed one at a time through ``storage`` (see :mod:`mlx.scheduling`), so any
    number of processes may run this on the same study. ``on_start(number)`` is called when a
    trial starts and ``on_trial(record)`` when it ends. A trial that raises is told FAIL (its
    error in the record and the trial's ``error`` user attribute) and the search goes on; an
    error raised by a callback stops it. Ctrl-C ends the running trial as FAIL (the record's
    ``interrupted`` is set), reports it, then propagates. Returns a :class:`Ran`.
    """
    quiet_optuna()
    deadline = None if timeout is None else time.monotonic() + timeout
    ran = 0
    slots = scheduling.Slots(study, storage)
    with _optimize_loop(study):
        while deadline is None or time.monotonic() < deadline:
            scheduling.fail_lost(study, storage)
            claimed = slots.claim()
            if claimed is None:
                break
            trial, trial_id = claimed
            if on_start is not None:
                on_start(trial.number)
            record, state = _run_trial(storage, objective, trial, trial_id)
            ran += 1
            try:
                # The trial's child run ends before the study hears of it: whoever sees the
                # trial finished in the study may rely on its run being final.
                if on_trial is not None:
                    on_trial(record)
            finally:
                scheduling.retrying(
                    study.tell, trial, record.value, state=state, skip_if_finished=True
                )
            if record.interrupted:
                raise KeyboardInterrupt
            if study._stop_flag:
                return Ran(ran, stopped=True)
    return Ran(ran, stopped=False)


def _run_trial(storage, objective, trial, trial_id):
    """Run one claimed trial: ``(record, state)``, not yet told to the study."""
    value, state, interrupted = None, TrialState.FAIL, False
    try:
        with scheduling.Heartbeat(storage, trial_id):
            value = objective(trial)
        state = TrialState.COMPLETE
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except KeyboardInterrupt:
        interrupted = True
        objective.fail(trial.number, _INTERRUPTED)
        scheduling.retrying(trial.set_user_attr, "error", _INTERRUPTED)
    except Exception as exc:
        logger.warning("trial %d failed: %s", trial.number, _one_line(exc))
    record = objective.finish(trial, state, value)
    record.interrupted = interrupted
    return record, state


@contextlib.contextmanager
def _optimize_loop(study):
    # Optuna lets samplers stop a study (GridSampler does, once its grid is exhausted) only
    # inside its own optimize loop, which this loop stands in for: flag it the same way.
    study._thread_local.in_optimize_loop = True
    study._stop_flag = False
    try:
        yield
    finally:
        study._thread_local.in_optimize_loop = False


def _one_line(exc):
    return f"{type(exc).__name__}: {first_line(exc)}"[:500]
