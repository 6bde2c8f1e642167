"""Trial slots: a study's trial budget as WAITING trials that any process may claim.

``study.optimize(n_trials=...)`` counts trials per process, so several processes sharing one
study overshoot its budget. Here the budget itself lives in the study: the coordinator enqueues
it as WAITING trials ("slots"), and every process (the coordinator, a local worker, a worker on
another machine) claims one slot at a time through the storage, runs it and tells the result.
The claim is the storage's atomic WAITING -> RUNNING transition, the one Optuna itself uses for
enqueued trials, so two processes never run the same slot; when no slot is left, the budget is
spent. Exactly the budgeted number of trials runs, however many processes share it.

A trial stopped from outside has no result of its own and does not count toward the budget: a
trial whose process died (``kill -9``, a lost machine) is *lost*. With a heartbeat (see
:mod:`mlx.search.heartbeat`) it is failed once its heartbeat is older than the grace period;
without one, ``mlx run --resume`` fails the trials left RUNNING. A trial stopped by Ctrl-C or
SIGTERM is *interrupted* (failed, and marked so); ``--resume`` replaces it. Either way a fresh
slot replaces it (the new trial's user attribute ``mlx.replaces`` names the one it replaces).
A smaller budget on resume *cancels* waiting slots (failed and marked ``mlx.cancelled``, never
run); finished trials are never cancelled.
"""

import collections
import contextlib
import fcntl
import logging
import warnings
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from mlx.search.candidates import MODEL_PARAM
from mlx.search.heartbeat import heartbeat_interval
from mlx.search.retry import retrying
from mlx.stores import sqlite_path

__all__ = [
    "BUDGET",
    "CANCELLED",
    "INTERRUPTED",
    "REPLACES",
    "Budget",
    "Slots",
    "add_budget",
    "budget",
    "counted_trials",
    "enqueue",
    "fail_lost",
    "fill",
    "planned",
    "replace_interrupted",
    "replace_lost",
    "set_budget",
]

logger = logging.getLogger(__name__)

# The user attribute of a slot that replaces a lost trial: the lost trial's number.
REPLACES = "mlx.replaces"
# The user attributes of a trial stopped by Ctrl-C or SIGTERM, and of a slot cancelled unused.
INTERRUPTED = "mlx.interrupted"
CANCELLED = "mlx.cancelled"
# The study's user attribute that holds its budget (the n_trials of the run that set it last).
BUDGET = "mlx.n_trials"


@dataclass
class Budget:
    """Trials of a study that count against its budget, by state (lost trials excluded)."""

    waiting: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    fail: int = 0
    lost: int = 0

    @property
    def finished(self):
        return self.complete + self.pruned + self.fail

    @property
    def counted(self):
        return self.waiting + self.running + self.finished


def planned(study):
    """The study's budget as its last run set it (None for a study mlx did not create)."""
    return retrying(lambda: study.user_attrs.get(BUDGET))


def counted_trials(study):
    """``(trials, lost)``: the trials that count against the budget, and how many do not.

    Lost and interrupted trials that a slot replaced, and cancelled slots, do not count.
    """
    trials = retrying(study.get_trials, deepcopy=False)
    replaced = {t.user_attrs[REPLACES] for t in trials if REPLACES in t.user_attrs}
    counted = [t for t in trials if t.number not in replaced and not t.user_attrs.get(CANCELLED)]
    return counted, len(replaced)


def budget(study):
    """Count the study's trials; a lost trial that a slot replaced counts as ``lost`` only."""
    trials, lost = counted_trials(study)
    counts = Budget(lost=lost)
    for trial in trials:
        if trial.state == TrialState.WAITING:
            counts.waiting += 1
        elif trial.state == TrialState.RUNNING:
            counts.running += 1
        elif trial.state == TrialState.COMPLETE:
            counts.complete += 1
        elif trial.state == TrialState.PRUNED:
            counts.pruned += 1
        elif trial.state == TrialState.FAIL:
            counts.fail += 1
    return counts


def enqueue(study, n, fixed_params=None, user_attrs=None):
    """Add ``n`` slots; ``fixed_params`` are fixed in each (the sampler picks the rest).

    A slot without fixed parameters is a bare WAITING trial, not ``enqueue_trial({})``: an
    empty set of fixed parameters would still mark the trial as enqueued, which some samplers
    (``GridSampler``) refuse.
    """
    for _ in range(n):
        if fixed_params:
            retrying(
                study.enqueue_trial, dict(fixed_params), user_attrs=user_attrs, skip_if_exists=False
            )
        else:
            slot = optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=user_attrs)
            retrying(study.add_trial, slot)


def set_budget(study, storage, n_trials, shares=None):
    """Make ``n_trials`` the study's budget; return the number of slots added (< 0: cancelled).

    More than the study has: slots are added (see :func:`fill`). Fewer: waiting slots are
    cancelled, at most as many as wait (finished and running trials are never cancelled);
    with ``shares``, each model's own excess.
    """
    retrying(study.set_user_attr, BUDGET, n_trials)
    added = fill(study, n_trials, shares)
    trials, _ = counted_trials(study)
    counted = {t.number for t in trials}
    waiting = [
        (t, i) for t, i in _trials(study, storage, TrialState.WAITING) if t.number in counted
    ]
    if shares is None:
        excess = {None: max(0, len(trials) - n_trials)}
    else:
        wanted = collections.Counter(shares)
        have = collections.Counter(_model_of(t) for t in trials)
        excess = {name: max(0, have[name] - wanted[name]) for name in have}
    cancelled = 0
    for trial, trial_id in reversed(waiting):  # the last slots first
        key = None if shares is None else _model_of(trial)
        if excess.get(key, 0) > 0:
            excess[key] -= 1
            cancelled += _cancel(storage, trial_id)
    return added - cancelled


def _model_of(trial):
    return trial.params.get(MODEL_PARAM) or trial.system_attrs.get("fixed_params", {}).get(
        MODEL_PARAM
    )


def _cancel(storage, trial_id):
    """Cancel a waiting slot: 1 if cancelled, 0 if a process claimed it meanwhile.

    The slot is claimed first, through the same atomic WAITING -> RUNNING transition as any
    claim, so that a trial another process just started is never failed.
    """
    try:
        if not retrying(storage.set_trial_state_values, trial_id, state=TrialState.RUNNING):
            return 0
    except UpdateFinishedTrialError:
        return 0
    retrying(storage.set_trial_user_attr, trial_id, CANCELLED, True)
    retrying(storage.set_trial_state_values, trial_id, state=TrialState.FAIL)
    return 1


def add_budget(study, n_trials, shares=None):
    """Enqueue ``n_trials`` slots, each model's share in the order of ``shares`` (see :func:`fill`)."""
    retrying(study.set_user_attr, BUDGET, n_trials)
    if shares is None:
        enqueue(study, n_trials)
        return
    for name in shares:
        enqueue(study, 1, fixed_params={MODEL_PARAM: name})


def fill(study, n_trials, shares=None):
    """Enqueue the slots that ``n_trials`` misses; return how many were added.

    ``shares`` (see :func:`mlx.search.candidates.fixed_shares`) gives the model of each of the
    ``n_trials`` slots when every model has a fixed share; each model then gets the slots of
    its share that the study lacks, in the order of ``shares``. Without it, slots are plain.
    """
    if shares is None:
        missing = max(0, n_trials - budget(study).counted)
        enqueue(study, missing)
        return missing
    trials, _ = counted_trials(study)
    have = collections.Counter(_model_of(t) for t in trials)
    added = 0
    for name in shares:
        if have[name]:
            have[name] -= 1
            continue
        enqueue(study, 1, fixed_params={MODEL_PARAM: name})
        added += 1
    return added


class Slots:
    """Claims the WAITING slots of ``study`` through ``storage``, one at a time.

    The ids of the waiting trials are read once and tried in order (another process may have
    claimed some meanwhile: its claim wins, the next id is tried); the study is read again only
    when they run out. A claim is then one store write, as Optuna's own ``ask`` is.
    """

    def __init__(self, study, storage):
        self.study = study
        self.storage = storage
        self._waiting = []

    def claim(self):
        """Claim a WAITING slot: ``(trial, trial_id)``, or None when the budget is spent."""
        for refreshed in (False, True):
            if refreshed or not self._waiting:
                self._waiting = [
                    trial_id
                    for _, trial_id in _trials(self.study, self.storage, TrialState.WAITING)
                ]
            while self._waiting:
                trial_id = self._waiting.pop(0)
                try:
                    with _claim_lock(self.storage):
                        claimed = retrying(
                            self.storage.set_trial_state_values, trial_id, state=TrialState.RUNNING
                        )
                except UpdateFinishedTrialError:
                    continue
                if claimed:  # else another process claimed it first
                    return retrying(optuna.Trial, self.study, trial_id), trial_id
        return None


@contextlib.contextmanager
def _claim_lock(storage):
    """Within the block, no other process claims a slot of this local SQLite study.

    Optuna claims a WAITING trial by reading its state, then writing RUNNING. On SQLite the
    Python driver opens the transaction only at the write, so two processes can both read
    WAITING and both claim the trial (seen: one trial run twice by a coordinator and its local
    worker). A lock file beside the database serialises the claims of the processes of this
    machine, the only ones that can share a SQLite file. Database servers lock rows themselves.
    """
    path = sqlite_path(getattr(getattr(storage, "_backend", storage), "url", "") or "")
    if path is None:
        yield
        return
    with open(f"{path}.claims.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _trials(study, storage, state):
    """``(frozen trial, storage trial id)`` of the study's trials in ``state``."""
    study_id = retrying(storage.get_study_id_from_name, study.study_name)
    for frozen in retrying(study.get_trials, deepcopy=False, states=(state,)):
        number = frozen.number
        yield frozen, retrying(storage.get_trial_id_from_study_id_trial_number, study_id, number)


def replace_lost(study, frozen):
    """Give a lost trial's slot back to the budget (a storage's stale-trial callback)."""
    logger.warning(
        "trial %d was lost (its process stopped without finishing it); a new slot replaces it",
        frozen.number,
    )
    # A slot that fixed parameters (a model type's share of the budget) keeps them.
    fixed = frozen.system_attrs.get("fixed_params")
    enqueue(study, 1, fixed_params=fixed, user_attrs={REPLACES: frozen.number})


def replace_interrupted(study):
    """Replace every trial stopped by Ctrl-C or SIGTERM that no slot replaces yet."""
    trials = retrying(study.get_trials, deepcopy=False)
    replaced = {t.user_attrs[REPLACES] for t in trials if REPLACES in t.user_attrs}
    for frozen in trials:
        if frozen.user_attrs.get(INTERRUPTED) and frozen.number not in replaced:
            fixed = frozen.system_attrs.get("fixed_params")
            enqueue(study, 1, fixed_params=fixed, user_attrs={REPLACES: frozen.number})


def fail_lost(study, storage, *, running_are_lost=False):
    """Fail and replace lost trials.

    With a heartbeat, trials whose heartbeat is older than the grace period are lost. With
    ``running_are_lost`` (resuming on a storage without heartbeat, where no other process can
    be running trials), every RUNNING trial is.
    """
    if not running_are_lost:
        if heartbeat_interval(storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retrying(optuna.storages.fail_stale_trials, study)
        return
    for frozen, trial_id in list(_trials(study, storage, TrialState.RUNNING)):
        try:
            storage.set_trial_user_attr(trial_id, "error", "lost: its process stopped")
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        replace_lost(study, frozen)
