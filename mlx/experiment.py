"""The experiment an experiment file declares, and loading such a file.

An experiment file is a Python module with a module-level ``experiment = mlx.Experiment(...)``.
Everything that can be checked without loading data or fitting anything is checked when the
``Experiment`` is built, so that a typo fails in a second with a message naming the problem,
before any store is touched.
"""

import copy
import difflib
import hashlib
import importlib.util
import json
import numbers
import re
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from sklearn.base import BaseEstimator, is_classifier, is_clusterer, is_regressor

from mlx.evaluation import needs_labels, resolve_metric
from mlx.exceptions import ExperimentError

if TYPE_CHECKING:  # Optuna is imported on first use: `import mlx` stays fast.
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.trial import Trial

__all__ = ["TASKS", "Experiment", "definition_hash", "load_experiment"]

Task = Literal["classification", "regression", "clustering"]
# A dict from ``get_params()`` keys to Optuna distributions, or ``(trial) -> params``.
SearchSpace = Mapping[str, Any] | Callable[["Trial"], dict[str, Any]]

TASKS = ("classification", "regression", "clustering")
_REFITS = ("train", "train+val")
_BUDGETS = ("shared", "fixed")
# The name a single estimator goes by among the candidates; several named candidates
# (one search over model types) go by the user's names instead.
_SINGLE = "model"
# Candidate names end up in Optuna parameter names ("<name>:<param>"), MLflow params and tags
# and file names: letters, digits, "_", "-" and "." only, so none of them needs escaping.
_CANDIDATE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Experiment:
    """What to learn from which data, how to search, and how to judge it.

    Parameters
    ----------
    name : str
        Name of the experiment; the MLflow experiment and the Optuna study are named after it.
    data : callable
        Returns ``(X, y)`` or ``(X, y, groups)``; numpy arrays or pandas objects. ``y`` is None
        for clustering without labels. ``groups`` (recording, speaker, session, ...) keeps each
        group inside a single split.
    estimator : estimator object, default=None
        Any scikit-learn estimator or Pipeline (from scikit-learn or :mod:`mlx.estimators`).
        Give either ``estimator`` or ``estimators``.
    search_space : dict or callable, default=None
        Either a dict from ``estimator.get_params()`` keys to Optuna distributions
        (``FloatDistribution``, ``IntDistribution``, ``CategoricalDistribution``), or a callable
        ``(trial) -> dict`` in Optuna's define-by-run style returning estimator parameters.
        None or ``{}`` evaluates the estimator as it is. With ``estimators``: a dict from each
        candidate's name to such a space (None evaluates every candidate as it is).
    estimators : dict, default=None
        Several candidate models for one search, by name: ``{"knn": make_pipeline(...),
        "forest": RandomForestClassifier()}``. Names use letters, digits, ``_``, ``-`` and ``.``.
        Each trial chooses a model and then only that model's parameters; the model's name is
        the trial's ``model`` parameter. All candidates must share one task.
    model_budget : {"shared", "fixed"}, default="shared"
        How ``estimators`` share the trials: ``"shared"`` lets the sampler learn which model is
        worth trials (the model is a categorical parameter like any other); ``"fixed"`` gives
        each model ``n_trials // n_models`` trials, the remainder going to the first models in
        declaration order.
    metric : str or callable, default=None
        A scikit-learn scorer name (``"accuracy"``, ``"f1_macro"``, ``"r2"``,
        ``"neg_root_mean_squared_error"``, ...), ``"silhouette"`` for clustering, or a scorer
        callable ``(estimator, X, y) -> float`` where greater is better. Defaults to accuracy,
        r2 or silhouette by task. The search maximises it.
    split : tuple of 3 floats, default=(0.8, 0.1, 0.1)
        Train, validation and test fractions; each > 0, summing to 1.
    seed : int, default=0
        Seeds the split, the sampler and every ``random_state`` of the estimator left at None.
    n_trials : int, default=20
        Number of trials of the search.
    timeout : float, default=None
        Stop the search after this many seconds.
    sampler, pruner : Optuna sampler / pruner, default=None
        Default ``TPESampler(seed=seed)`` and ``MedianPruner``.
    task : {"classification", "regression", "clustering"}, default=None
        Inferred from the estimator when None.
    refit : {"train", "train+val"}, default=None
        Data the best configuration is refit on before the single test evaluation; by default
        the training split ("train"), and every row of the search with cross-validation.
    validation : "holdout" or int, default="holdout"
        How a trial is scored: on the one validation split, or (an int k >= 2) by k-fold
        cross-validation over the training and validation rows together, for small data where
        one validation split is too few rows to tell configurations apart. Folds are
        stratified for classification and keep groups together; the test split is cut once
        either way and never seen. A trial's score is the mean over the folds, and the best
        configuration is refit on the training and validation rows together.
    max_epochs : int, default=None
        Epochs of epoch-by-epoch training (estimators with ``partial_fit``); defaults to the
        estimator's ``max_iter``. Setting it also turns epoch-by-epoch training on for a
        ``partial_fit`` estimator without ``max_iter``.
    register : str, default=None
        Register the refit model, once its test split is evaluated, as a new version of this
        registered model in MLflow's model registry, with the alias ``candidate``
        (``models:/<register>@candidate``). A run without the test (``--no-test``) registers
        nothing; ``mlx test`` registers when it evaluates.
    max_model_bytes : int, default=None
        A hard limit on the size of a trial's fitted model (its pickled bytes). Trials over it
        are infeasible: Optuna's sampler steers away from them (``trial.set_constraint``), and
        the configuration refit and tested is the most accurate trial within every limit (ties:
        the cheaper in the limited costs, size before time, then the earlier trial). The parent
        run logs ``search/cost.csv`` and ``search/cost.png``: every complete trial's score
        against its costs, within the limits or not, and the Pareto front. No trial within the
        limits: the run fails before the test split is touched.
    max_fit_seconds : float, default=None
        A hard limit on the seconds of one fit of a trial (with cross-validation, the mean over
        the folds), as ``max_model_bytes``. Timings vary with the machine's load.
    train_score : bool, default=True
        Score each trial on its training rows too (``train_<metric>``, and the train curve of
        epoch-by-epoch training), so that the gap to the validation score shows overfitting.
        It costs a prediction on the training rows per trial (per epoch, per fold); False
        skips it, as scikit-learn's ``return_train_score=False`` does. The search does not
        depend on it.

    Attributes
    ----------
    path : pathlib.Path or None
        The experiment file, when loaded by :func:`load_experiment`.
    description : str
        The experiment file's docstring (the run's description in MLflow); empty otherwise.
    candidates : dict
        ``{name: (estimator, search_space)}``: the models the search chooses from, in
        declaration order; a single ``estimator`` goes by the name ``"model"``.
    metric_name : str
        Name used for the metric in MLflow (``val_<metric_name>``, ``test_...``).
    overrides : dict
        The settings and estimator parameters changed by :meth:`with_overrides` (``--set``);
        empty for the experiment as its file declares it.
    """

    def __init__(
        self,
        name: str,
        data: Callable[[], Any],
        estimator: BaseEstimator | None = None,
        search_space: SearchSpace | Mapping[str, SearchSpace | None] | None = None,
        *,
        metric: str | Callable[..., float] | None = None,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        n_trials: int = 20,
        timeout: float | None = None,
        sampler: "BaseSampler | None" = None,
        pruner: "BasePruner | None" = None,
        task: Task | None = None,
        refit: Literal["train", "train+val"] | None = None,
        max_epochs: int | None = None,
        estimators: Mapping[str, BaseEstimator] | None = None,
        model_budget: Literal["shared", "fixed"] = "shared",
        validation: Literal["holdout"] | int = "holdout",
        register: str | None = None,
        max_model_bytes: int | None = None,
        max_fit_seconds: float | None = None,
        train_score: bool = True,
    ) -> None:
        # The arguments as given: with_overrides builds the experiment again from them, so that
        # an overridden value meets the same checks (and defaults) as one written in the file.
        self._arguments = {key: value for key, value in locals().items() if key != "self"}
        self.name = _check_name(name)
        if not callable(data):
            raise ExperimentError(
                f"data must be a callable returning (X, y) or (X, y, groups), got "
                f"{type(data).__name__}; wrap arrays as data=lambda: (X, y)."
            )
        self.data = data
        if estimators is None:
            self.estimator = _check_estimator(estimator)
            self.search_space = _check_space(search_space, estimator)
            self.estimators = None
            self.task = _check_task(task, estimator)
        else:
            if estimator is not None:
                raise ExperimentError(
                    "give either estimator (one model) or estimators (several candidates by "
                    "name), not both."
                )
            self.estimator = None
            self.estimators = _check_estimators(estimators)
            self.search_space = _check_spaces(search_space, self.estimators)
            self.task = _check_common_task(task, self.estimators)
        if model_budget not in _BUDGETS:
            raise ExperimentError(f"model_budget must be one of {_BUDGETS}, got {model_budget!r}.")
        self.model_budget = model_budget
        self.metric = metric
        self.metric_name, self.scorer = _resolve_metric(metric, self.task)
        self.split = _check_split(split)
        self.seed = _check_int("seed", seed, minimum=0)
        self.n_trials = _check_int("n_trials", n_trials, minimum=1)
        self.timeout = _check_timeout(timeout)
        self.sampler = _check_optuna("sampler", sampler, "optuna.samplers", "BaseSampler")
        self.pruner = _check_optuna("pruner", pruner, "optuna.pruners", "BasePruner")
        if refit is not None and refit not in _REFITS:
            raise ExperimentError(f"refit must be one of {_REFITS}, got {refit!r}.")
        self.validation = _check_validation(validation, refit)
        # Cross-validated configurations are refit on every row they were judged on.
        self.refit = refit or ("train" if self.validation == "holdout" else "train+val")
        self.max_epochs = None if max_epochs is None else _check_int("max_epochs", max_epochs, 1)
        self.max_model_bytes = _check_limit("max_model_bytes", max_model_bytes, integer=True)
        self.max_fit_seconds = _check_limit("max_fit_seconds", max_fit_seconds)
        self.register = _check_register(register)
        if not isinstance(train_score, bool):
            raise ExperimentError(
                f"train_score must be True or False, got {train_score!r}; "
                f"--set train_score=False skips scoring the training rows."
            )
        self.train_score = train_score
        self.path: Path | None = None
        self.description: str = ""
        self.overrides: dict[str, Any] = {}

    def replace(
        self, *, n_trials: int | None = None, timeout: float | None = None, seed: int | None = None
    ) -> Self:
        """A copy with the given settings changed (None keeps the current value)."""
        new = copy.copy(self)
        if n_trials is not None:
            new.n_trials = _check_int("n_trials", n_trials, minimum=1)
        if timeout is not None:
            new.timeout = _check_timeout(timeout)
        if seed is not None:
            new.seed = _check_int("seed", seed, minimum=0)
        changed = {"n_trials": n_trials, "timeout": timeout, "seed": seed}
        new._arguments = {
            **self._arguments,
            **{key: value for key, value in changed.items() if value is not None},
        }
        return new

    def with_overrides(self, overrides: Mapping[str, Any]) -> Self:
        """A copy with settings or fixed estimator parameters changed (``mlx run --set``).

        Parameters
        ----------
        overrides : dict
            ``{key: value}``; a key is an argument of ``Experiment`` that holds a value
            (``split``, ``metric``, ``seed``, ``n_trials``, ``refit``, ``validation``, ...) or a
            parameter of the estimator that the search space does not search, in scikit-learn's
            ``step__param`` spelling (``"mlpclassifier__max_iter"``; ``"<model>__<param>"`` for
            one of several ``estimators``).

        Returns
        -------
        experiment : Experiment
            Checked as the file is, with ``overrides`` recorded. Every changed value the search
            depends on changes its :meth:`definition`, so its study is another one.

        Raises
        ------
        ExperimentError
            An unknown key (with the closest known one), a searched parameter, or a value the
            setting or parameter does not accept.
        """
        from mlx.overrides import apply

        return apply(self, overrides)

    @property
    def needs_labels(self) -> bool:
        """Whether the metric compares with labels (every metric but silhouette does)."""
        return needs_labels(self.metric_name)

    @property
    def limits(self) -> dict[str, float]:
        """The limits set: ``{"model_bytes": ..., "fit_seconds": ...}`` (empty without)."""
        limits = {"model_bytes": self.max_model_bytes, "fit_seconds": self.max_fit_seconds}
        return {name: limit for name, limit in limits.items() if limit is not None}

    @property
    def candidates(self) -> dict[str, tuple[BaseEstimator, SearchSpace]]:
        """``{name: (estimator, search_space)}``, in declaration order."""
        if self.estimators is None:
            return {_SINGLE: (self.estimator, self.search_space)}
        return {name: (est, self.search_space[name]) for name, est in self.estimators.items()}

    def definition(self) -> dict[str, Any]:
        """A canonical, JSON-serialisable description of what the search depends on.

        The number of trials and the timeout are left out on purpose: running more trials of the
        same definition extends the same study. The data enters through the split fingerprints,
        which the runner adds (see :func:`definition_hash`).
        """
        definition = {
            "name": self.name,
            "task": self.task,
            "candidates": {
                name: {"estimator": _canonical_params(est), "space": _canonical_space(space)}
                for name, (est, space) in self.candidates.items()
            },
            "metric": self.metric_name,
            "split": list(self.split),
            "seed": self.seed,
            "refit": self.refit,
            "max_epochs": self.max_epochs,
            "sampler": None if self.sampler is None else type(self.sampler).__name__,
            "pruner": None if self.pruner is None else type(self.pruner).__name__,
        }
        if self.estimators is not None:
            # Only where it matters: single-model definitions (and their studies) stay as they were.
            definition["model_budget"] = self.model_budget
        if self.validation != "holdout":
            definition["validation"] = self.validation
        if self.limits:
            definition["limits"] = self.limits
        return definition

    def __repr__(self) -> str:
        models = (
            f"estimator={self.estimator!r}"
            if self.estimators is None
            else f"estimators={list(self.estimators)!r}"
        )
        return (
            f"Experiment(name={self.name!r}, {models}, "
            f"metric={self.metric_name!r}, task={self.task!r}, n_trials={self.n_trials})"
        )


def definition_hash(experiment: Experiment, fingerprints: Mapping[str, str]) -> str:
    """sha256 of the experiment's definition and the split fingerprints (hex digest)."""
    payload = {"definition": experiment.definition(), "fingerprints": dict(fingerprints)}
    text = json.dumps(payload, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def load_experiment(path: str | PathLike[str]) -> Experiment:
    """Import an experiment file and return its ``experiment`` object.

    Parameters
    ----------
    path : str or path-like
        The Python file that defines ``experiment = mlx.Experiment(...)``.

    Returns
    -------
    experiment : Experiment
        With ``experiment.path`` set to the resolved file path.

    Raises
    ------
    ExperimentError
        Missing file, syntax error (with file and line), an exception while importing, no
        ``experiment`` or one of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise ExperimentError(f"experiment file {str(path)!r} not found{where}; check the path.")
    path = path.resolve()
    # A unique module name so that two files called alike never share a module.
    module_name = f"_mlx_experiment_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"{path} is not a Python file (expected a .py experiment file).")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ExperimentError(f"syntax error in {exc.filename}:{exc.lineno}: {exc.msg}.") from None
    except ExperimentError as exc:
        raise ExperimentError(f"{path}: {exc}") from None
    except Exception as exc:
        line = _traceback_line(exc, path)
        raise ExperimentError(
            f"{path}{line}: importing the experiment file raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.modules.pop(module_name, None)
    experiment = getattr(module, "experiment", None)
    if experiment is None:
        raise ExperimentError(
            f"{path} defines no `experiment`; add `experiment = mlx.Experiment(...)` at module level."
        )
    if not isinstance(experiment, Experiment):
        raise ExperimentError(
            f"`experiment` in {path} is a {type(experiment).__name__}, not an mlx.Experiment; "
            f"assign `experiment = mlx.Experiment(...)`."
        )
    experiment.path = path
    experiment.description = (module.__doc__ or "").strip()
    return experiment


def _traceback_line(exc, path):
    tb, line = exc.__traceback__, ""
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line


def _check_name(name):
    if not isinstance(name, str) or not name.strip():
        raise ExperimentError(f"name must be a non-empty string, got {name!r}.")
    if len(name) > 200 or any(c in name for c in "\n\r\t"):
        raise ExperimentError(f"name must be one line of at most 200 characters, got {name!r}.")
    return name


def _check_estimator(estimator, where="estimator"):
    if estimator is None:
        raise ExperimentError(f"{where} is missing; pass {where}=<a scikit-learn estimator>.")
    if isinstance(estimator, type):
        raise ExperimentError(
            f"{where} must be an instance, got the class {estimator.__name__}; "
            f"write {estimator.__name__}()."
        )
    if not (isinstance(estimator, BaseEstimator) or hasattr(estimator, "get_params")):
        raise ExperimentError(
            f"{where} must be a scikit-learn estimator (with get_params and fit), got "
            f"{type(estimator).__name__}."
        )
    if not hasattr(estimator, "fit"):
        raise ExperimentError(f"{where} {type(estimator).__name__} has no fit method.")
    return estimator


def _check_estimators(estimators):
    if not isinstance(estimators, dict) or not estimators:
        raise ExperimentError(
            f"estimators must be a non-empty dict from model names to estimators, got "
            f"{estimators!r}."
        )
    for name, estimator in estimators.items():
        if not isinstance(name, str) or not _CANDIDATE_NAME.fullmatch(name):
            raise ExperimentError(
                f"model name {name!r} in estimators must be 1-64 letters, digits, '_', '-' or '.'."
            )
        if name == _SINGLE:
            raise ExperimentError(
                f"model name {_SINGLE!r} is reserved (the trial parameter that holds the choice of "
                f"model); rename it in estimators."
            )
        _check_estimator(estimator, f"estimators[{name!r}]")
    return dict(estimators)


def _check_spaces(spaces, estimators):
    """One space per candidate, keyed by the candidates' names."""
    if spaces is None:
        return dict.fromkeys(estimators, {})
    if not isinstance(spaces, dict):
        raise ExperimentError(
            f"with estimators, search_space must be a dict from model names "
            f"({', '.join(estimators)}) to spaces, got {type(spaces).__name__}."
        )
    unknown = [key for key in spaces if key not in estimators]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(estimators), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ExperimentError(
            f"search_space has an entry for {unknown[0]!r}, which is not a model in estimators "
            f"({', '.join(estimators)}); with estimators, search_space is keyed by model name."
            f"{hint}"
        )
    missing = [name for name in estimators if name not in spaces]
    if missing:
        raise ExperimentError(
            f"search_space has no entry for model {missing[0]!r}; give it {{}} to evaluate it "
            f"as it is."
        )
    return {
        name: _check_space(spaces[name], estimator, f"search_space[{name!r}]")
        for name, estimator in estimators.items()
    }


def _check_space(space, estimator, where="search_space"):
    if space is None:
        return {}
    if callable(space):
        return space
    if not isinstance(space, dict):
        raise ExperimentError(
            f"{where} must be a dict of Optuna distributions or a callable (trial) -> dict, "
            f"got {type(space).__name__}."
        )
    from optuna.distributions import BaseDistribution

    known = estimator.get_params(deep=True)
    for key, dist in space.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ExperimentError(
                f"{where} parameter {key!r} is not a parameter of "
                f"{type(estimator).__name__} (see estimator.get_params()).{hint}"
            )
        if not isinstance(dist, BaseDistribution):
            raise ExperimentError(
                f"{where}[{key!r}] must be an Optuna distribution (FloatDistribution, "
                f"IntDistribution, CategoricalDistribution), got {dist!r}."
            )
        _check_range(f"{where}[{key!r}]", key, dist, estimator, known)
    return dict(space)


def _check_range(where, key, dist, estimator, params):
    """The ends of a numeric distribution must be values the parameter accepts.

    Checked against the owning estimator's ``_parameter_constraints`` (scikit-learn's and mlx's
    estimators declare them), so that a FloatDistribution for an integer or a range past a bound
    fails now, not in every trial. A bad categorical choice is left to its trials.
    """
    from optuna.distributions import FloatDistribution, IntDistribution
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    if not isinstance(dist, FloatDistribution | IntDistribution):
        return
    owner_key, _, name = key.rpartition("__")
    owner = params.get(owner_key) if owner_key else estimator
    constraints = getattr(owner, "_parameter_constraints", None)
    if not isinstance(constraints, dict) or name not in constraints:
        return
    for end in (dist.low, dist.high):
        try:
            validate_parameter_constraints(
                {name: constraints[name]}, {name: end}, caller_name=type(owner).__name__
            )
        except InvalidParameterError as exc:
            integer = isinstance(dist, FloatDistribution) and "must be an int" in str(exc)
            fix = "Use IntDistribution" if integer else "Keep the range within those values"
            raise ExperimentError(
                f"{where} = {type(dist).__name__}({dist.low!r}, {dist.high!r}) does not fit the "
                f"parameter: {exc} {fix}."
            ) from None


def _check_common_task(task, estimators):
    """The task all candidates share (each checked as a single estimator would be)."""
    tasks = {}
    for name, estimator in estimators.items():
        try:
            tasks[name] = _check_task(task, estimator)
        except ExperimentError as exc:
            raise ExperimentError(f"model {name!r}: {exc}") from None
    if len(set(tasks.values())) > 1:
        listed = ", ".join(f"{name} ({t})" for name, t in tasks.items())
        raise ExperimentError(
            f"the models in estimators must share one task, got {listed}; compare models of "
            f"one task per experiment."
        )
    return next(iter(tasks.values()))


def _check_task(task, estimator):
    if task is not None:
        if task not in TASKS:
            raise ExperimentError(f"task must be one of {TASKS}, got {task!r}.")
    elif is_classifier(estimator):
        task = "classification"
    elif is_regressor(estimator):
        task = "regression"
    elif is_clusterer(estimator):
        task = "clustering"
    else:
        raise ExperimentError(
            f"cannot infer the task of {type(estimator).__name__}; pass task='classification', "
            f"'regression' or 'clustering'."
        )
    if task == "clustering" and not hasattr(estimator, "predict"):
        raise ExperimentError(
            f"{type(estimator).__name__} cannot predict clusters of new data (no predict); the "
            f"validation and test splits need it. Use a clusterer with predict, such as KMeans."
        )
    return task


def _resolve_metric(metric, task):
    try:
        return resolve_metric(metric, task)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None


def _check_split(split):
    try:
        fractions = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        raise ExperimentError(
            f"split must be three fractions (train, val, test), got {split!r}."
        ) from None
    if len(fractions) != 3:
        raise ExperimentError(
            f"split must be three fractions (train, val, test), got {len(fractions)}: {split!r}."
        )
    if min(fractions) <= 0:
        raise ExperimentError(f"each split fraction must be > 0, got split={split!r}.")
    if abs(sum(fractions) - 1) > 1e-6:
        raise ExperimentError(
            f"split fractions must sum to 1, got split={split!r} (sum {sum(fractions):g}); for "
            f"example split=(0.8, 0.1, 0.1)."
        )
    return fractions


def _check_validation(validation, refit):
    if validation == "holdout":
        return validation
    if isinstance(validation, bool) or not isinstance(validation, numbers.Integral):
        raise ExperimentError(
            f'validation must be "holdout" or a number of folds >= 2, got {validation!r}.'
        )
    if validation < 2:
        raise ExperimentError(f"validation must be at least 2 folds, got {validation}.")
    if refit == "train":
        raise ExperimentError(
            f'refit="train" does not fit validation={validation}: cross-validation judges a '
            f"configuration on the training and validation rows together, and the refit uses "
            f'them all. Leave refit out (it becomes "train+val") or use validation="holdout".'
        )
    return int(validation)


def _check_register(register):
    if register is None:
        return None
    if (
        not isinstance(register, str)
        or not register.strip()
        or any(c in register for c in "/:\n\r\t")
    ):
        raise ExperimentError(
            f"register must be the name of a registered model (one line, without '/' or ':'), "
            f"got {register!r}."
        )
    return register


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ExperimentError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_limit(name, value, integer=False):
    if value is None:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        what = "a whole number of bytes" if integer else "a number of seconds"
        raise ExperimentError(f"{name} must be {what} > 0 or None, got {value!r}.")
    return int(value) if integer else float(value)


def _check_timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout <= 0:
        raise ExperimentError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}.")
    return float(timeout)


def _check_optuna(name, value, module, base):
    if value is None:
        return None
    cls = getattr(importlib.import_module(module), base)
    if not isinstance(value, cls):
        raise ExperimentError(f"{name} must be an {module}.{base}, got {type(value).__name__}.")
    return value


def _canonical_params(estimator):
    params = estimator.get_params(deep=True)
    return {key: _canonical_value(params[key]) for key in sorted(params)}


def _canonical_value(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "get_params"):
        # Nested estimators appear with their parameters as separate deep keys already.
        return type(value).__name__
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    text = repr(value)
    # A default repr carries a memory address, which differs from run to run.
    return type(value).__qualname__ if " at 0x" in text else text


def _canonical_space(space):
    if callable(space):
        name = getattr(space, "__qualname__", type(space).__name__)
        code = getattr(space, "__code__", None)
        # The function's bytecode and constants identify it well enough: an edited conditional
        # space gives a new study.
        digest = hashlib.sha256()
        if code is not None:
            _hash_code(code, digest)
        return {"callable": name, "code": digest.hexdigest()}
    from optuna.distributions import distribution_to_json

    return {key: distribution_to_json(space[key]) for key in sorted(space)}


def _hash_code(code, digest):
    digest.update(code.co_code)
    for const in code.co_consts:
        # Nested code objects (lambdas, comprehensions) have a repr with a memory address.
        if hasattr(const, "co_code"):
            _hash_code(const, digest)
        else:
            digest.update(repr(const).encode())
