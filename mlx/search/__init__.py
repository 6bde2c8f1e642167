"""Optuna only: the storage, the study and its sampler and pruner policy, the trial budget and
its claims, the objective and the optimize loop. Nothing here knows MLflow.

A search, as the coordinator runs it::

    storage = open_storage(resolve_storage(url), heartbeat=None)
    study = create_study(name, storage=storage, seed=0)
    add_budget(study, storage, n_trials)                    # the budget, claimed in slots
    coordinate(study, storage, Objective(...), on_trial=log_the_record)

Workers on other machines :func:`load_study` the same study and :func:`optimize` it.
"""

from optuna.trial import TrialState

from mlx.search.candidates import MODEL_PARAM, fixed_shares, is_single, split_params
from mlx.search.early_stopping import BEST_EPOCH
from mlx.search.limits import chosen_trial, cost_of, trial_costs
from mlx.search.loop import Ran, coordinate, fit_begins, optimize
from mlx.search.objective import (
    Objective,
    TrialRecord,
    fit_model,
    n_epochs,
    pickled_size,
    suggest,
)
from mlx.search.retry import retrying
from mlx.search.slots import (
    CANCELLED,
    LOST,
    REPLACES,
    Budget,
    add_budget,
    budget,
    enqueue,
    fail_lost,
    lost_trials,
    planned,
    replace_interrupted,
    set_budget,
)
from mlx.search.storage import (
    DEFAULT_STORAGE_FILE,
    default_heartbeat,
    open_storage,
    resolve_storage,
)
from mlx.search.study import (
    StudyExistsError,
    create_study,
    default_pruner,
    default_sampler,
    load_study,
)

__all__ = [
    "BEST_EPOCH",
    "DEFAULT_STORAGE_FILE",
    "MODEL_PARAM",
    "CANCELLED",
    "LOST",
    "REPLACES",
    "Budget",
    "Objective",
    "Ran",
    "StudyExistsError",
    "TrialRecord",
    "TrialState",
    "add_budget",
    "budget",
    "chosen_trial",
    "coordinate",
    "cost_of",
    "create_study",
    "default_heartbeat",
    "default_pruner",
    "default_sampler",
    "enqueue",
    "fail_lost",
    "lost_trials",
    "fit_begins",
    "fit_model",
    "fixed_shares",
    "is_single",
    "load_study",
    "n_epochs",
    "open_storage",
    "optimize",
    "pickled_size",
    "planned",
    "replace_interrupted",
    "resolve_storage",
    "retrying",
    "set_budget",
    "split_params",
    "suggest",
    "trial_costs",
]
