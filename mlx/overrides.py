"""Overrides: an experiment's settings changed for one run, without editing its file.

``mlx run FILE --set KEY=VALUE`` (repeatable) and ``mlx.run(..., overrides={KEY: VALUE})``.
KEY is an argument of :class:`~mlx.Experiment` that holds a value (``split``, ``metric``,
``seed``, ``n_trials``, ``refit``, ``validation``, ...) or a parameter of its estimator that the
search does not search, in scikit-learn's ``step__param`` spelling (``mlpclassifier__max_iter``;
``<model>__<param>`` for one of several ``estimators``). VALUE is read as a Python literal
(``3``, ``0.5``, ``(0.7, 0.15, 0.15)``, ``None``, ``True``, ``'text'``); a VALUE that is no
literal is the plain string, as Hydra and DVC read ``key=word`` (``metric=f1_macro`` is
``metric='f1_macro'``; ``--set n_trials=1O`` is the string ``'1O'``, which the check of
``n_trials`` then refuses).

The overridden experiment is built again from the file's arguments with the overrides in
place, so every value meets the checks (and the defaults) the file's own values meet. It is
another experiment: each changed value the search depends on changes its definition and so the
definition hash in its study's name. ``n_trials`` and ``timeout`` are the search's budget, not
its definition (as ``--n-trials`` always was), and ``register`` only what happens after it.
"""

import ast
import difflib
import inspect
import json
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from mlx.exceptions import ExperimentError

__all__ = [
    "apply",
    "assignments",
    "command_words",
    "parse",
    "parse_value",
    "settings",
    "to_json",
    "with_flags",
]

# Arguments of Experiment that are Python objects the file builds, not values one types.
_OBJECTS = ("data", "estimator", "estimators", "search_space", "sampler", "pruner")
# The name a single estimator's parameters go by (see Experiment.candidates).
_SINGLE = "model"


def parse(texts: Iterable[str]) -> dict[str, Any]:
    """``["seed=3", "metric=f1_macro"]`` -> ``{"seed": 3, "metric": "f1_macro"}``.

    Raises
    ------
    ExperimentError
        An item without ``=`` or without a key, or a key given twice.
    """
    overrides: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ExperimentError(
                f"--set takes KEY=VALUE, got {text!r}; for example --set seed=3 or "
                f"--set mlpclassifier__max_iter=100."
            )
        if key in overrides:
            raise ExperimentError(f"--set {key}=... is given twice; give each key once.")
        overrides[key] = parse_value(value)
    return overrides


def parse_value(text: str) -> Any:
    """A Python literal (``ast.literal_eval``), else the plain string."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def settings(experiment_type: type) -> list[str]:
    """The arguments of ``experiment_type`` (``Experiment``) that ``--set`` may change."""
    names = inspect.signature(experiment_type).parameters  # the class's: __init__ without self
    return [name for name in names if name != "self" and name not in _OBJECTS]


def apply(experiment: Any, overrides: Mapping[str, Any]) -> Any:
    """``experiment`` built again with ``overrides`` (see :meth:`Experiment.with_overrides`)."""
    if not isinstance(overrides, Mapping):
        raise ExperimentError(
            f"overrides must be a dict {{key: value}}, got {type(overrides).__name__}."
        )
    if not overrides:
        return experiment
    known = settings(type(experiment))
    changed = {}
    params: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key in known:
            changed[key] = value
        else:
            model, name = _parameter(experiment, key, known)
            _check_value(experiment, key, model, name, value)
            params.setdefault(model, {})[name] = value
    changed.update(_estimators(experiment, params))
    try:
        new = type(experiment)(**{**experiment._arguments, **changed})
    except ExperimentError as exc:
        raise ExperimentError(f"with {' '.join(command_words(overrides))}: {exc}") from None
    new.path, new.description = experiment.path, experiment.description
    new.overrides = {**experiment.overrides, **overrides}
    return new


def _parameter(experiment, key, known):
    """``(model, parameter)`` that ``key`` names, or an ExperimentError with a did-you-mean."""
    if not isinstance(key, str):
        raise ExperimentError(f"an override's key must be a string, got {key!r}.")
    if key in _OBJECTS:
        raise ExperimentError(
            f"{key} cannot be overridden: it is a Python object that the experiment file "
            f"builds; edit the file. --set changes {', '.join(known)} and the estimator's "
            f"parameters (step__param)."
        )
    candidates = experiment.candidates
    single = experiment.estimators is None
    params = {}
    for model, (estimator, _) in candidates.items():
        for name in estimator.get_params(deep=True):
            params[name if single else f"{model}__{name}"] = (model, name)
    if key not in params:
        close = difflib.get_close_matches(key, [*known, *params], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        owner = (
            type(experiment.estimator).__name__
            if single
            else f"a model of estimators ({', '.join(candidates)}; spell it model__param)"
        )
        raise ExperimentError(
            f"unknown override {key!r}: neither an Experiment setting ({', '.join(known)}) nor "
            f"a parameter of {owner} (see estimator.get_params()).{hint}"
        )
    return params[key]


def _check_value(experiment, key, model, name, value):
    """The estimator's parameter must be fixed (not searched) and accept ``value``."""
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    estimator, space = experiment.candidates[model]
    current = estimator.get_params(deep=True)
    if _holds_estimators(current[name]):
        raise ExperimentError(
            f"override {key!r} is a step (an estimator), not a value; set one of its "
            f"parameters ({key}__<param>) or edit the experiment file."
        )
    if isinstance(space, Mapping) and name in space:
        raise ExperimentError(
            f"override {key!r} is searched (search_space[{name!r}]): every trial would replace "
            f"a fixed value. Remove it from search_space, or override another parameter."
        )
    # As the file's search space is checked: against the owner's declared constraints, so
    # that a bad value fails now, not in every trial.
    owner_key, _, param = name.rpartition("__")
    owner = current[owner_key] if owner_key else estimator
    constraints = getattr(owner, "_parameter_constraints", None)
    if not isinstance(constraints, dict) or param not in constraints:
        return
    try:
        validate_parameter_constraints(
            {param: constraints[param]}, {param: value}, caller_name=type(owner).__name__
        )
    except InvalidParameterError as exc:
        raise ExperimentError(f"override {key}={value!r}: {exc}") from None


def _holds_estimators(value):
    if hasattr(value, "get_params") and not isinstance(value, type):
        return True
    return isinstance(value, list | tuple) and any(_holds_estimators(v) for v in value)


def _estimators(experiment, params):
    """The ``estimator`` / ``estimators`` arguments with the overridden parameters set."""
    if not params:
        return {}
    from sklearn.base import clone

    def changed(model, estimator):
        if model not in params:
            return estimator
        return clone(estimator).set_params(**params[model])

    if experiment.estimators is None:
        return {"estimator": changed(_SINGLE, experiment.estimator)}
    return {
        "estimators": {
            model: changed(model, estimator) for model, estimator in experiment.estimators.items()
        }
    }


def _text(value):
    """``value`` as ``--set`` reads it back: a bare word where that round-trips, else repr."""
    if isinstance(value, str) and value and parse_value(value) == value:
        return value
    return repr(value)


def with_flags(overrides: Mapping[str, Any] | None, flags: Mapping[str, Any]) -> dict:
    """``overrides`` with the flags given (``--seed 3`` is short for ``--set seed=3``).

    Raises
    ------
    ExperimentError
        A flag given again, with another value, among the overrides.
    """
    merged = dict(overrides or {})
    for key, value in flags.items():
        if value is None:
            continue
        if key in merged and merged[key] != value:
            raise ExperimentError(
                f"{key} is given twice: {value!r}, and {merged[key]!r} in the overrides "
                f"(--set {key}=...); give it once."
            )
        merged[key] = value
    return merged


def assignments(overrides: Mapping[str, Any]) -> list[str]:
    """``["seed=3", "metric=f1_macro"]``: what ``parse`` turns back into ``overrides``.

    Raises
    ------
    ExperimentError
        A value that is no Python literal (from the Python API), which text cannot carry.
    """
    out = []
    for key, value in overrides.items():
        text = _text(value)
        if parse_value(text) != value:
            raise ExperimentError(
                f"override {key}={value!r} is no Python literal, so it cannot be passed to "
                f"other processes (workers) as text; set it in the experiment file instead."
            )
        out.append(f"{key}={text}")
    return out


def command_words(overrides: Mapping[str, Any]) -> list[str]:
    """``["--set", "seed=3", ...]``, quoted for a shell (any value: shown, not parsed)."""
    words = []
    for key, value in overrides.items():
        words += ["--set", shlex.quote(f"{key}={_text(value)}")]
    return words


def to_json(overrides: Mapping[str, Any]) -> str:
    """The overrides as a JSON object of their ``--set`` texts (the parent run's tag)."""
    return json.dumps({key: _text(value) for key, value in overrides.items()})
