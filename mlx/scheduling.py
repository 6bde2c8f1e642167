"""Trial slots: a study's trial budget as WAITING trials that any process may claim.

``study.optimize(n_trials=...)`` counts trials per process, so several processes sharing one
study overshoot its budget. Here the budget itself lives in the study: the coordinator enqueues
it as WAITING trials ("slots"), and every process (the coordinator, a local worker, a worker on
another machine) claims one slot at a time through the storage, runs it and tells the result.
The claim is the storage's atomic WAITING -> RUNNING transition, the one Optuna itself uses for
enqueued trials, so two processes never run the same slot; when no slot is left, the budget is
spent. Exactly the budgeted number of trials runs, however many processes share it.

A trial whose process died (``kill -9``, a lost machine) is *lost*. With a heartbeat (Optuna's
RDB storage with ``heartbeat_interval``) it is failed once its heartbeat is older than the grace
period; without one, ``mlx run --resume`` fails the trials left RUNNING. Either way a fresh slot
replaces it (the new trial's user attribute ``mlx.replaces`` names the lost one), so a lost
trial does not eat the budget.
"""

import logging
import threading
import time
import warnings
from dataclasses import dataclass

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import TrialState

from mlx.exceptions import first_line

__all__ = [
    "REPLACES",
    "Budget",
    "Heartbeat",
    "Slots",
    "budget",
    "counted_trials",
    "enqueue",
    "fail_lost",
    "replace_lost",
    "retrying",
    "top_up",
]

logger = logging.getLogger("mlx")

REPLACES = "mlx.replaces"
# A storage that stops answering (a database server restarting) is retried this long.
_RETRY_SECONDS = 120.0


def retrying(func, *args, **kwargs):
    """Call ``func``, retrying while the storage is unreachable (up to two minutes).

    Optuna turns database errors into ``StorageInternalError``; a server that restarts for a
    moment surfaces as a few of them, after which the connection pool reconnects.
    """
    delay, deadline = 0.5, time.monotonic() + _RETRY_SECONDS
    while True:
        try:
            return func(*args, **kwargs)
        except StorageInternalError as exc:
            if time.monotonic() > deadline:
                raise
            logger.warning("storage unavailable (%s); retrying in %.1f s", first_line(exc), delay)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


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


def counted_trials(study):
    """The study's trials that count against its budget (all but replaced lost ones)."""
    trials = retrying(study.get_trials, deepcopy=False)
    replaced = {t.user_attrs[REPLACES] for t in trials if REPLACES in t.user_attrs}
    return [t for t in trials if t.number not in replaced], len(replaced)


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


def top_up(study, n_trials):
    """Enqueue slots until ``n_trials`` trials count against the budget; return how many."""
    missing = max(0, n_trials - budget(study).counted)
    enqueue(study, missing)
    return missing


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
                    claimed = retrying(
                        self.storage.set_trial_state_values, trial_id, state=TrialState.RUNNING
                    )
                except UpdateFinishedTrialError:
                    continue
                if claimed:  # else another process claimed it first
                    return retrying(optuna.Trial, self.study, trial_id), trial_id
        return None


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


def fail_lost(study, storage, *, running_are_lost=False):
    """Fail and replace lost trials.

    With a heartbeat, trials whose heartbeat is older than the grace period are lost. With
    ``running_are_lost`` (resuming on a storage without heartbeat, where no other process can
    be running trials), every RUNNING trial is.
    """
    if not running_are_lost:
        if _heartbeat_interval(storage):
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


def _heartbeat_interval(storage):
    get = getattr(storage, "get_heartbeat_interval", None)
    return get() if callable(get) else None


class Heartbeat:
    """Records a running trial's heartbeat every ``heartbeat_interval`` seconds, in a thread.

    Does nothing on a storage without heartbeat.
    """

    def __init__(self, storage, trial_id):
        self.storage = storage
        self.trial_id = trial_id
        self.interval = _heartbeat_interval(storage)
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if self.interval:
            self._beat()
            self._thread = threading.Thread(target=self._run, name="mlx-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self):
        try:
            self.storage.record_heartbeat(self.trial_id)
        except Exception as exc:  # a missed beat is retried at the next interval
            logger.warning("heartbeat of a trial not recorded: %s", first_line(exc))

    def _run(self):
        while not self._stop.wait(self.interval):
            self._beat()

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
