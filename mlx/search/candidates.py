"""Several candidate models in one Optuna search: the choice of model and each model's space.

Optuna keeps one distribution per parameter name across a study, but two models may well use
the same name with different ranges (``max_depth`` of a tree and of a forest, or ``depth`` in two
define-by-run spaces). So the choice of model is the categorical parameter ``model`` and every
parameter of model ``knn`` is known to Optuna as ``"knn:<name>"``; :func:`split_params`
translates a trial's parameters back to the chosen model and its own, unprefixed names. A
single-model experiment (its one candidate is called ``"model"``) keeps plain parameter names.
"""

import functools

__all__ = [
    "MODEL_PARAM",
    "choose",
    "fixed_shares",
    "is_single",
    "optuna_name",
    "split_params",
]

# The trial parameter that holds the chosen model's name; also the name of the single candidate
# of a one-model experiment (so no candidate of several may be called so).
MODEL_PARAM = "model"
_SEPARATOR = ":"


def is_single(candidates):
    """True for the one unnamed candidate of a single-model experiment."""
    return list(candidates) == [MODEL_PARAM]


def optuna_name(model, param):
    """The name Optuna knows ``param`` of candidate ``model`` by."""
    return f"{model}{_SEPARATOR}{param}"


def choose(trial, candidates):
    """The candidate ``trial`` evaluates, and a trial that names parameters after it.

    Returns ``(name, trial_like)``: suggesting ``"alpha"`` on ``trial_like`` suggests
    ``"<name>:alpha"`` on ``trial``. For a single-model experiment: ``("model", trial)``.
    """
    if is_single(candidates):
        return MODEL_PARAM, trial
    name = trial.suggest_categorical(MODEL_PARAM, list(candidates))
    return name, _PrefixedTrial(trial, optuna_name(name, ""))


def split_params(params, candidates):
    """``(model, params)`` from a trial's Optuna parameters: the chosen model's own, unprefixed.

    For a single-model experiment the parameters are returned as they are.
    """
    if is_single(candidates):
        return MODEL_PARAM, dict(params)
    name = params[MODEL_PARAM]
    prefix = optuna_name(name, "")
    return name, {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def fixed_shares(names, n_trials):
    """The model of each of ``n_trials`` trials when every model has a fixed share.

    Each model gets ``n_trials // len(names)`` trials and the first ``n_trials % len(names)``
    models one more. The models take turns, so that a search stopped early (timeout) has
    tried each of them about equally often.
    """
    names = list(names)
    share, extra = divmod(n_trials, len(names))
    counts = {name: share + (i < extra) for i, name in enumerate(names)}
    order = []
    for turn in range(share + (extra > 0)):
        order += [name for name in names if counts[name] > turn]
    return order


class _PrefixedTrial:
    """A trial whose ``suggest_*`` methods put a prefix before the parameter name.

    A define-by-run space written for one model thus runs unchanged inside a search over
    several; everything else (``report``, ``should_prune``, ``number``) is the trial's own.
    """

    def __init__(self, trial, prefix):
        self._trial = trial
        self._prefix = prefix

    def __getattr__(self, attr):
        value = getattr(self._trial, attr)
        if attr.startswith("suggest_") and callable(value):
            return functools.partial(self._suggest, value)
        return value

    def _suggest(self, method, name, *args, **kwargs):
        return method(self._prefix + name, *args, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}({self._trial!r}, prefix={self._prefix!r})"
