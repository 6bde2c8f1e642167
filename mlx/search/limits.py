"""Hard limits on what a model may cost: its pickled size and its fit time.

An experiment with ``max_model_bytes`` or ``max_fit_seconds`` searches as usual, but each trial
records what its model cost (the user attribute ``mlx.cost``) and tells Optuna whether it kept
within the limits through ``trial.set_constraint`` (Optuna 5's way; the samplers' deprecated
``constraints_func`` is not needed, so any sampler, the experiment's own included, sees the
constraints, in the coordinator and in every worker alike). TPE and NSGA-II then sample away
from configurations that broke a limit.

The trial a constrained run refits and tests is chosen by :func:`chosen_trial`: the most
accurate trial within every limit; ties go to the cheaper trial in the limited costs (size
before time), then to the earlier trial. A constraint is the relative excess ``cost / limit - 1``: zero or less
keeps the limit, and excesses in bytes and in seconds weigh alike when TPE ranks infeasible
trials.
"""

import math

from optuna.trial import TrialState

from mlx.exceptions import SearchError
from mlx.search.candidates import is_single, split_params
from mlx.search.retry import retrying

__all__ = ["COST", "COSTS", "chosen_trial", "constrain", "cost_of", "feasible", "trial_costs"]

# The user attribute that holds a trial's costs: {"model_bytes": int | None, "fit_seconds": float}.
COST = "mlx.cost"
# What a limit may bound, with the Experiment option that sets it.
COSTS = {"model_bytes": "max_model_bytes", "fit_seconds": "max_fit_seconds"}


def constrain(trial, size, fit_seconds, limits):
    """Record a trial's costs and its constraints (one per limit) in the study.

    ``size`` is the pickled size of the fitted model in bytes (None if it cannot be pickled:
    then it breaks a size limit), ``fit_seconds`` the time of one fit. Returns whether the
    trial kept within every limit.
    """
    cost = {"model_bytes": size, "fit_seconds": fit_seconds}
    retrying(trial.set_user_attr, COST, cost)
    excess = {}
    for name, limit in limits.items():
        value = cost[name]
        excess[name] = math.inf if value is None else value / limit - 1
        retrying(trial.set_constraint, name, excess[name])
    return all(value <= 0 for value in excess.values())


def cost_of(trial):
    """``{"model_bytes": ..., "fit_seconds": ...}`` of a finished trial (None where unknown)."""
    cost = trial.user_attrs.get(COST) or {}
    return {name: cost.get(name) for name in COSTS}


def feasible(trial):
    """Whether ``trial`` kept within every limit (Optuna's rule: each constraint <= 0).

    A trial without constraints (pruned or failed before its model was measured) is not.
    """
    constraints = trial.constraints
    return bool(constraints) and all(value <= 0 for value in constraints.values())


def chosen_trial(study, limits):
    """The complete trial a run with ``limits`` refits and tests.

    The most accurate trial within every limit; ties go to the cheaper trial in the limited
    costs (size before time), then to the earlier trial. Without limits, Optuna's best trial.

    Raises
    ------
    SearchError
        No complete trial kept within the limits.
    """
    if not limits:
        return retrying(lambda: study.best_trial)
    complete = retrying(study.get_trials, deepcopy=False, states=(TrialState.COMPLETE,))
    within = [trial for trial in complete if feasible(trial)]
    if not within:
        raise SearchError(_none_within(study.study_name, complete, limits))
    return min(within, key=lambda trial: _rank(trial, limits))


def _rank(trial, limits):
    # The limited costs break ties (size before time), so that the chosen trial is on the front
    # of score against them; an unlimited fit time does not: timings vary from run to run.
    cost = cost_of(trial)
    limited = [math.inf if cost[name] is None else cost[name] for name in COSTS if name in limits]
    return (-trial.value, *limited, trial.number)


def _none_within(study_name, complete, limits):
    stated = ", ".join(f"{COSTS[name]}={limit:g}" for name, limit in limits.items())
    least = []
    for name in limits:
        values = [cost_of(t)[name] for t in complete if cost_of(t)[name] is not None]
        if values:
            least.append(f"the least {name} was {min(values):.4g}")
    seen = f" ({'; '.join(least)})" if least else ""
    return (
        f"none of the {len(complete)} complete trials of study {study_name!r} kept within "
        f"{stated}{seen}, so there is no model to test. Raise the limit, or search smaller or "
        f"faster models."
    )


def trial_costs(study, candidates):
    """The complete trials with their costs, for the front: a list of dicts.

    Keys: ``number``, ``model`` (the candidate's name among several, else None), ``value``
    (validation score), ``model_bytes``, ``fit_seconds``, ``feasible``.
    """
    rows = []
    complete = retrying(study.get_trials, deepcopy=False, states=(TrialState.COMPLETE,))
    single = is_single(candidates)
    for trial in sorted(complete, key=lambda t: t.number):
        model = None if single else split_params(trial.params, candidates)[0]
        rows.append(
            {
                "number": trial.number,
                "model": model,
                "value": trial.value,
                **cost_of(trial),
                "feasible": feasible(trial),
            }
        )
    return rows
