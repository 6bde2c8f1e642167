"""The function Optuna calls per trial: fit on the training split, score on the validation split.

A trial clones the estimator, sets the trial's parameters, fits on the training split and scores
on the validation split. With several candidate models, the trial first chooses one (see
:mod:`mlx.search.candidates`) and then only that model's parameters. Estimators that learn
incrementally (``partial_fit`` and a ``max_iter`` parameter, alone or as the last step of a
Pipeline) are trained epoch by epoch: the validation score of each epoch is reported to the
trial so that the pruner can stop bad trials early, and both learning curves are kept. What a
trial produced is kept as a :class:`TrialRecord` for whoever logs it; this package knows
nothing of MLflow.
"""

import pickle
import time
import warnings
from dataclasses import dataclass, field

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

from mlx.pipelines import final_step, last_step, with_last_step
from mlx.search.candidates import MODEL_PARAM, choose, is_single, split_params
from mlx.search.early_stopping import BEST_EPOCH, EarlyStopping, own_early_stopping_off
from mlx.search.limits import constrain
from mlx.search.loop import fit_begins
from mlx.search.retry import retrying

__all__ = [
    "Objective",
    "TrialRecord",
    "fit_model",
    "iter_epochs",
    "n_epochs",
    "pickled_size",
    "seeded",
    "suggest",
]

# Settings of a Pipeline's leading steps whose fitted outputs a run keeps (see _features).
_FEATURE_SETTINGS = 4
# Messages kept per trial from the warnings a fit raised (ConvergenceWarning, ...).
_MAX_WARNINGS = 3


@dataclass
class TrialRecord:
    """What one trial produced, for logging.

    ``state`` is ``"COMPLETE"``, ``"PRUNED"`` or ``"FAIL"``; ``curves`` holds the per-epoch
    ``"train"`` and ``"val"`` scores of epoch-by-epoch training (empty lists otherwise).
    ``params`` are the estimator's parameters as the space built them; in a search over several
    models, ``model`` is the chosen candidate's name (None otherwise) and ``params`` holds
    ``model`` and that model's own parameters only. ``size`` is the
    number of bytes of the pickled fitted model (complete trials). With early stopping,
    ``best_epoch`` and ``stopped_epoch`` count epochs from 1. With cross-validation,
    ``fold_scores`` holds the score of each fold (``value`` is their mean). With limits on
    the model's cost, ``within_limits`` says whether the trial kept within them (None without).
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
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    fold_scores: list = field(default_factory=list)
    within_limits: bool | None = None


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


def n_epochs(estimator, max_epochs=None):
    """Epochs of epoch-by-epoch training for ``estimator``, or None to call ``fit`` once.

    Epoch-by-epoch applies when the (last step of the) estimator has ``partial_fit`` and either
    ``max_epochs`` is given or it has an integer ``max_iter`` parameter (its epoch budget).
    Estimators with ``partial_fit`` but no ``max_iter`` (naive Bayes) learn in one pass.
    """
    last = last_step(estimator)
    if not hasattr(last, "partial_fit"):
        return None
    if max_epochs is not None:
        return int(max_epochs)
    max_iter = last.get_params(deep=False).get("max_iter")
    if isinstance(max_iter, int | np.integer) and not isinstance(max_iter, bool) and max_iter > 0:
        return int(max_iter)
    return None


def iter_epochs(estimator, X, y, epochs, *, transformed=False):
    """Fit ``estimator`` epoch by epoch; yield ``(epoch, last_step, X_seen_by_last_step)``.

    With ``transformed``, ``X`` is already what the last step sees (the steps before it are
    fitted). The last step's own early stopping is off meanwhile (see
    :mod:`mlx.search.early_stopping`): the caller decides when to stop.
    """
    if transformed:
        last, Xt = last_step(estimator), X
    else:
        last, Xt = final_step(estimator, X, fit_y=y, fit=True)
    first = {"classes": np.unique(y)} if is_classifier(last) else {}
    with own_early_stopping_off(last):
        for epoch in range(epochs):
            last.partial_fit(Xt, y, **(first if epoch == 0 else {}))
            yield epoch, last, Xt


def fit_model(estimator, X, y, epochs=None):
    """Fit ``estimator`` as a trial does (epoch by epoch when ``epochs``); return it."""
    if epochs is None:
        return estimator.fit(X, y)
    for _ in iter_epochs(estimator, X, y, epochs):
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
    folds : list or None
        ``[((X, y) to fit, (X, y) held out), ...]``: cross-validation instead of ``train`` and
        ``val``. A trial's score is then the mean over the folds; the pruner hears the running
        mean after each fold.
    limits : dict or None
        ``{"model_bytes": ..., "fit_seconds": ...}``, the limits of the experiment (see
        :mod:`mlx.search.limits`): each trial records its costs and constraints in the study.
    train_score : bool, default=True
        Whether a trial is scored on its training rows too (the record's ``train_score`` and
        train curve).
    """

    def __init__(
        self,
        candidates,
        scorer,
        train,
        val,
        *,
        seed,
        max_epochs=None,
        folds=None,
        limits=None,
        train_score=True,
    ):
        self.candidates = dict(candidates)
        self.scorer = scorer
        self.train = train
        self.val = val
        self.seed = seed
        self.max_epochs = max_epochs
        self.folds = folds
        self.limits = dict(limits or {})
        self.train_score = train_score
        # The fitted leading steps of a Pipeline and what they output, by setting (see
        # _features); a few settings are kept, each holding transformed copies of the data.
        self._feature_cache = {}
        self.feature_cache_size = _FEATURE_SETTINGS
        # Per-trial results that Optuna's storage need not hold (curves, fit time): read and
        # removed by :meth:`finish` right after the trial ends.
        self.records = {}

    def build(self, params, model=MODEL_PARAM):
        """A fresh, seeded clone of candidate ``model`` with ``params`` set."""
        estimator = self.candidates[model][0]
        return seeded(clone(estimator).set_params(**params), self.seed)

    def suggest(self, trial):
        """``(model, estimator params)`` of ``trial``: the chosen candidate and its parameters."""
        model, named = choose(trial, self.candidates)
        return model, suggest(named, self.candidates[model][1])

    def configuration(self, params):
        """``(model, estimator params)`` of a finished trial from its Optuna ``params``.

        The space is replayed on the trial's values, so a define-by-run space gives back the
        estimator parameters it built from them.
        """
        return self.suggest(optuna.trial.FixedTrial(params))

    def __call__(self, trial):
        record = TrialRecord(number=trial.number, params={}, state="RUNNING")
        record.start_time = time.time()
        self.records[trial.number] = record
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    model, params = retrying(self.suggest, trial)
                    record.model = None if is_single(self.candidates) else model
                    # The estimator's own parameters, as a define-by-run space built them (not
                    # the numbers Optuna suggested them from): what the run's summary shows.
                    record.params = (
                        params if record.model is None else {MODEL_PARAM: model, **params}
                    )
                    estimator = self.build(params, model)
                    fit_begins()
                    if self.folds is None:
                        value, estimator = self._fit_and_score(trial, estimator, record)
                    else:
                        value, estimator = self._cross_validate(trial, estimator, record)
                    record.size = pickled_size(estimator)
                    if self.limits:
                        # The time of one fit: a cross-validated trial fits once per fold.
                        fits = 1 if self.folds is None else len(self.folds)
                        record.within_limits = constrain(
                            trial, record.size, record.fit_time / fits, self.limits
                        )
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
            retrying(trial.set_user_attr, "error", record.error[:1000])
            raise

    def _fit_and_score(self, trial, estimator, record):
        """``(validation score, fitted estimator)``; epoch by epoch where it applies."""
        start = time.perf_counter()
        estimator, (Xt_train, y_train), (Xt_val, y_val) = self._features(
            estimator, self.train, self.val
        )
        last = last_step(estimator)
        epochs = n_epochs(estimator, self.max_epochs)
        if epochs is None:
            last.fit(Xt_train, y_train)
            record.fit_time = time.perf_counter() - start
            record.train_score = self._train_score(last, Xt_train, y_train)
            return self.scorer(last, Xt_val, y_val), estimator
        stopper = EarlyStopping.of(last)
        record.fit_time, value = time.perf_counter() - start, float("nan")
        start = time.perf_counter()
        for epoch, last, _ in iter_epochs(estimator, Xt_train, y_train, epochs, transformed=True):
            record.fit_time += time.perf_counter() - start
            value = float(self.scorer(last, Xt_val, y_val))
            record.curves["val"].append(value)
            record.train_score = self._train_score(last, Xt_train, y_train)
            if record.train_score is not None:
                record.curves["train"].append(record.train_score)
            retrying(trial.report, value, epoch)
            if retrying(trial.should_prune):
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} of {epochs}")
            if stopper is not None and stopper.update(epoch, value, last):
                break
            start = time.perf_counter()
        if stopper is None:
            return value, estimator
        record.best_epoch = stopper.best_epoch + 1
        record.stopped_epoch = len(record.curves["val"])
        retrying(trial.set_user_attr, BEST_EPOCH, record.best_epoch)
        return stopper.best_score, with_last_step(estimator, stopper.best_model)

    def _features(self, estimator, train, val, fold=None):
        """``(estimator, (Xt, y) to fit, (Xt, y) held out)``: what its last step sees.

        The steps before a Pipeline's last (features, scaling) are fitted once per setting of
        their parameters and kept for the run (the few latest settings): a search that tunes
        only the model does not recompute the features in every trial. The estimator gets the
        fitted steps; the refit and the logged model stay the whole Pipeline.
        """
        (X_fit, y_fit), (X_held, y_held) = train, val
        if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
            return estimator, (X_fit, y_fit), (X_held, y_held)
        key = (fold, repr(sorted(estimator[:-1].get_params(deep=True).items())))
        cached = self._feature_cache.pop(key, None)
        if cached is None:
            head = estimator[:-1]
            cached = (head.steps, head.fit_transform(X_fit, y_fit), head.transform(X_held))
        self._feature_cache[key] = cached  # the most recent last
        while len(self._feature_cache) > self.feature_cache_size:
            self._feature_cache.pop(next(iter(self._feature_cache)))
        steps, Xt_fit, Xt_held = cached
        estimator.steps[:-1] = list(steps)
        return estimator, (Xt_fit, y_fit), (Xt_held, y_held)

    def _cross_validate(self, trial, estimator, record):
        """``(mean score over the folds, the last fold's estimator)``."""
        # Early stopping needs a validation curve, which folds do not give epoch by epoch: the
        # estimator's own (on a part of each fold's training rows) stops it.
        own = EarlyStopping.of(last_step(estimator)) is not None
        epochs = None if own else n_epochs(estimator, self.max_epochs)
        record.fit_time, train_scores, fitted = 0.0, [], estimator
        for fold, (train, held) in enumerate(self.folds):
            start = time.perf_counter()
            fitted, (Xt_fit, y_fit), (Xt_held, y_held) = self._features(
                clone(estimator), train, held, fold
            )
            last = last_step(fitted)
            if epochs is None:
                last.fit(Xt_fit, y_fit)
            else:
                for _ in iter_epochs(fitted, Xt_fit, y_fit, epochs, transformed=True):
                    pass
            record.fit_time += time.perf_counter() - start
            record.fold_scores.append(float(self.scorer(last, Xt_held, y_held)))
            if self.train_score:
                train_scores.append(float(self.scorer(last, Xt_fit, y_fit)))
            mean = float(np.mean(record.fold_scores))
            retrying(trial.report, mean, fold)
            if retrying(trial.should_prune):
                raise optuna.TrialPruned(f"pruned after fold {fold + 1} of {len(self.folds)}")
        if train_scores:
            record.train_score = float(np.mean(train_scores))
        return mean, fitted

    def _train_score(self, estimator, X, y):
        """The score of ``estimator`` on the rows it was fitted on; None when not wanted."""
        return float(self.scorer(estimator, X, y)) if self.train_score else None

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
        if not record.params:  # it failed before its space was built
            record.model, record.params = self._logged_params(trial.params)
        if state == TrialState.COMPLETE:
            record.value = value
        record.end_time = time.time()
        return record

    def _logged_params(self, optuna_params):
        """``(model, params)`` for logging: the chosen model and its own, unprefixed params."""
        if is_single(self.candidates):
            return None, dict(optuna_params)
        if MODEL_PARAM not in optuna_params:  # failed before choosing
            return None, {}
        model, params = split_params(optuna_params, self.candidates)
        return model, {MODEL_PARAM: model, **params}


def pickled_size(estimator):
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
