"""Trial slots: a study's trial budget, claimed one trial at a time by any process.

``study.optimize(n_trials=...)`` counts trials per process, so several processes sharing one
study overshoot its budget. Here the budget itself lives in the study (its user attribute
``mlx.n_trials``), and every process (the coordinator, a local worker, a worker on another
machine) claims one trial at a time through the storage, runs it and tells the result. A claim
takes a WAITING trial (a "slot") if one waits, through the storage's atomic WAITING -> RUNNING
transition, the one Optuna itself uses for enqueued trials; otherwise, on SQLite, it counts
the study's trials and, while they are fewer than the budget, adds the next trial RUNNING.
Claiming, counting and adding happen under a lock file beside the SQLite file, held by every
process that can share it, so exactly the budgeted number of trials runs, however many
processes share it; when the budget is spent, no claim succeeds.

On SQLite trials are added as they are claimed, not enqueued up front: Optuna's cached storage
reads every unfinished trial of the study again before each sample, so a budget kept as
WAITING trials made the early trials of a long search slow (330 ms instead of 60 ms a trial
in a 1,000-trial search). On PostgreSQL, where the server's row locks make each claim of a
WAITING trial atomic and a claim stays one write, a few slots wait at a time (``POOL``): a
process that finds none tops the pool up from the budget under an advisory lock of the
server (counting and adding cost five calls to the server, paid once per pool rather than
once per claim; a whole 1,000-trial budget waiting made early trials 311 ms instead of 66 ms).
Other database servers (MySQL) get their whole budget enqueued up front.

A trial stopped from outside has no result of its own and does not count toward the budget: a
trial whose process died (``kill -9``, a lost machine) is *lost*. With a heartbeat (see
:mod:`mlx.search.heartbeat`) it is failed once its heartbeat is older than the grace period;
without one, ``mlx run --resume`` fails the trials left RUNNING. A trial stopped by Ctrl-C or
SIGTERM is *interrupted* (failed, and marked so); ``--resume`` replaces it. Either way a fresh
slot replaces it (the new trial's user attribute ``mlx.replaces`` names the one it replaces).
A smaller budget on resume *cancels* waiting slots (failed and marked ``mlx.cancelled``, never
run); finished trials are never cancelled. When each model has a fixed share of the budget
(study attribute ``mlx.models``), each added trial fixes the model whose share is furthest
behind, in the order of :func:`~mlx.search.candidates.fixed_shares`.
"""

import collections
import contextlib
import fcntl
import logging
import threading
import warnings
from dataclasses import dataclass

import optuna
import sqlalchemy
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import TrialState

from mlx.exceptions import first_line
from mlx.search.candidates import MODEL_PARAM, fixed_shares
from mlx.search.heartbeat import heartbeat_interval
from mlx.search.retry import retried_as_a_whole, retrying
from mlx.stores import sqlite_path

__all__ = [
    "BUDGET",
    "CANCELLED",
    "INTERRUPTED",
    "LOST",
    "MODELS",
    "REPLACES",
    "Budget",
    "Slots",
    "add_budget",
    "budget",
    "counted_trials",
    "enqueue",
    "fail_lost",
    "lost_trials",
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
# The error of a trial whose process died (no heartbeat, or left RUNNING by a dead run).
LOST = "lost: its process stopped"
# The study's user attributes that hold its budget (the n_trials of the run that set it last)
# and, when each model has a fixed share of it, the models in the order they take turns.
BUDGET = "mlx.n_trials"
MODELS = "mlx.models"
# Slots that wait at most on PostgreSQL: enough that a few processes claim without topping up
# in turn, few enough that re-reading them before each sample costs little (about 0.2 ms a
# waiting slot there).
POOL = 8
# The first key of the PostgreSQL advisory lock that serialises topping up ("mlx" in ASCII);
# the second is the study's id.
_LOCK_CLASS = 0x6D6C78


@dataclass
class Budget:
    """Trials of a study that count against its budget, by state; and the replaced ones.

    ``lost`` and ``interrupted`` count the trials that a slot replaced, which do not count:
    lost when their process died, interrupted when Ctrl-C or SIGTERM stopped them.
    """

    waiting: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    fail: int = 0
    lost: int = 0
    interrupted: int = 0

    @property
    def finished(self):
        return self.complete + self.pruned + self.fail


def planned(study):
    """The study's budget as its last run set it (None for a study mlx did not create)."""
    return retrying(lambda: study.user_attrs.get(BUDGET))


def counted_trials(study, trials=None):
    """``(trials, lost)``: the trials that count against the budget, and how many do not.

    Lost and interrupted trials that a slot replaced, and cancelled slots, do not count.
    ``trials``: the study's trials, if just read.
    """
    if trials is None:
        trials = retrying(study.get_trials, deepcopy=False)
    replaced = _replaced(trials)
    counted = [t for t in trials if t.number not in replaced and not t.user_attrs.get(CANCELLED)]
    return counted, len(replaced)


def _replaced(trials):
    """The numbers of the trials that a slot replaces."""
    return {t.user_attrs[REPLACES] for t in trials if REPLACES in t.user_attrs}


def lost_trials(trials):
    """The numbers of the ``trials`` whose process died: replaced by a slot, not interrupted."""
    return _replaced(trials) - {t.number for t in trials if t.user_attrs.get(INTERRUPTED)}


def budget(study, trials=None):
    """Count the study's trials; a trial that a slot replaced counts as lost or interrupted only.

    ``trials``: the study's trials, if just read.
    """
    if trials is None:
        trials = retrying(study.get_trials, deepcopy=False)
    lost = len(lost_trials(trials))
    trials, replaced = counted_trials(study, trials)
    counts = Budget(lost=lost, interrupted=replaced - lost)
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


def add_budget(study, storage, n_trials, models=None):
    """Give a new study its budget of ``n_trials``; ``models`` each get a fixed share of it.

    ``models`` are the candidate names in the order they take turns (see
    :func:`mlx.search.candidates.fixed_shares`); None lets the sampler choose the model.
    """
    _set_budget_attrs(study, n_trials, models)
    if not _adds_trials(storage):
        _fill(study, storage, n_trials, models)


def set_budget(study, storage, n_trials, models=None):
    """Make ``n_trials`` the study's budget; return the number of slots added (< 0: cancelled).

    Fewer than the study has: waiting slots are cancelled, at most as many as wait (finished
    and running trials are never cancelled); with ``models``, each model's own excess.
    """
    _set_budget_attrs(study, n_trials, models)
    added = 0 if _adds_trials(storage) else _fill(study, storage, n_trials, models)
    trials, _ = counted_trials(study)
    counted = {t.number for t in trials}
    waiting = [
        (t, i) for t, i in _trials(study, storage, TrialState.WAITING) if t.number in counted
    ]
    if models is None:
        excess = {None: max(0, len(trials) - n_trials)}
    else:
        wanted = collections.Counter(fixed_shares(models, n_trials))
        have = collections.Counter(_model_of(t) for t in trials)
        excess = {name: max(0, have[name] - wanted[name]) for name in have}
    cancelled = 0
    for trial, trial_id in reversed(waiting):  # the last slots first
        key = None if models is None else _model_of(trial)
        if excess.get(key, 0) > 0:
            excess[key] -= 1
            cancelled += _cancel(storage, trial_id)
    return added - cancelled


def _set_budget_attrs(study, n_trials, models):
    retrying(study.set_user_attr, BUDGET, n_trials)
    retrying(study.set_user_attr, MODELS, None if models is None else list(models))


def _missing(trials, n_trials, models):
    """The fixed model of each trial that ``trials`` lack of the budget, in the order to add.

    None stands for a trial whose model the sampler chooses (``models`` is None).
    """
    if models is None:
        return [None] * max(0, n_trials - len(trials))
    have = collections.Counter(_model_of(t) for t in trials)
    missing = []
    for name in fixed_shares(models, n_trials):
        if have[name]:
            have[name] -= 1
        else:
            missing.append(name)
    return missing


def _fixed(model):
    return None if model is None else {MODEL_PARAM: model}


def _fill(study, storage, n_trials, models):
    """Enqueue the slots that the budget misses (up to a pool of them); return how many."""
    pool = _pool(storage)
    if pool is None:
        return _top_up(study, n_trials, models)[1]
    study_id = retrying(storage.get_study_id_from_name, study.study_name)
    return _top_up_locked(study, storage, study_id, pool)[1]


def _budget_of(study):
    """``(n_trials, models)`` as the study's attributes hold them; None if mlx did not set them."""
    attrs = retrying(lambda: study.user_attrs)
    return None if attrs.get(BUDGET) is None else (attrs[BUDGET], attrs.get(MODELS))


def _top_up(study, n_trials, models, pool=None, still_locked=None):
    """``(waiting, added)``: enqueue missing slots until ``pool`` wait (None: all missing).

    ``still_locked`` raises if the lock under which the trials were counted is lost.
    """
    trials, _ = counted_trials(study)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    missing = _missing(trials, n_trials, models)
    if pool is not None:
        missing = missing[: max(0, pool - waiting)]
    for model in missing:
        if still_locked is not None:
            still_locked()
        enqueue(study, 1, fixed_params=_fixed(model))
    return waiting + len(missing), len(missing)


def _top_up_locked(study, storage, study_id, pool):
    """:func:`_top_up` to the budget read under the study's advisory lock.

    Returns ``(waiting, added)``; for a study without a budget of mlx's, its waiting slots.
    A server restart (seen in the middle of a top-up) ends the lock's session, which frees
    the lock for another process: so the lock's connection is checked before each slot is
    added, and any failed call repeats the whole top-up, counting the trials again.
    """

    def locked():
        try:
            with _advisory_lock(storage, study_id) as still_locked, retried_as_a_whole():
                held = _budget_of(study)
                if held is None:  # a study mlx did not create: its slots are all
                    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                    return len(waiting), 0
                return _top_up(study, *held, pool, still_locked)
        except sqlalchemy.exc.DBAPIError as exc:  # the lock's connection met a server restart
            raise StorageInternalError(f"advisory lock: {exc}") from exc

    return retrying(locked)


def _pool(storage):
    """Slots kept waiting at most on ``storage``: ``POOL`` on PostgreSQL, else None (all)."""
    return POOL if _dialect(storage) == "postgresql" else None


def _dialect(storage):
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    return None if engine is None else engine.dialect.name


@contextlib.contextmanager
def _advisory_lock(storage, study_id):
    """Within the block no other process tops up this PostgreSQL study's pool of slots.

    A session-level lock on a connection of the storage's own pool: released when the block
    ends, or by the server when the process dies or restarts. The block gets a function that
    raises ``DBAPIError`` if the lock's session has ended (its connection no longer answers).
    A connection that cannot unlock (Ctrl-C broke it) is closed instead, which releases the
    lock too, and the block's own exception is the one raised.
    """
    engine = getattr(storage, "_backend", storage).engine
    key = {"kind": _LOCK_CLASS, "study": study_id}
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:kind, :study)"), key)
        try:
            yield lambda: connection.execute(sqlalchemy.text("SELECT 1"))
        finally:
            try:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:kind, :study)"), key)
            except sqlalchemy.exc.SQLAlchemyError:
                connection.invalidate()


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


class Slots:
    """Claims trials of ``study`` through ``storage``, one at a time, until the budget is spent.

    On SQLite (and in memory) a claim takes the first waiting slot if there is one (a
    replacement), else adds the budget's next trial, RUNNING, unless the budget is spent: one
    read of the study under the lock serves both. Elsewhere the budget waits as slots (on
    PostgreSQL a pool of them, topped up when none is left): their ids are read once and tried
    in order (another process may have claimed some meanwhile: its claim wins, the next id is
    tried), and the study is read again only when they run out, so that a claim is one store
    write, as Optuna's own ``ask`` is. Once a claim took the last of them, :meth:`top_up_ahead`
    tops the pool up on a thread while the trial runs; :meth:`close` waits for that top-up.
    """

    def __init__(self, study, storage):
        self.study = study
        self.storage = storage
        self._study_id = None
        self._waiting = []
        self._adds = _adds_trials(storage)
        self._pool = _pool(storage)
        self._refill = None
        self._refill_due = False

    def claim(self):
        """Claim a trial: ``(trial, trial_id)``, or None when the budget is spent."""
        if self._study_id is None:
            self._study_id = retrying(self.storage.get_study_id_from_name, self.study.study_name)
        if self._adds:
            with _claims_lock(self.storage):
                trials, _ = counted_trials(self.study)
                self._waiting = [t.number for t in trials if t.state == TrialState.WAITING]
                trial_id = self._claim_waiting()
                if trial_id is None:
                    trial_id = self._add_running(trials)
            if trial_id is None:
                return None
        else:
            trial_id = self._claim_waiting()
            while trial_id is None:
                self._wait_for_refill()
                trial_id = self._claim_waiting(read=True)
                if trial_id is None and not self._topped_up():
                    return None
            self._refill_due = self._pool is not None and not self._waiting
        try:
            return retrying(optuna.Trial, self.study, trial_id), trial_id
        except KeyboardInterrupt:
            # Claimed RUNNING, not started: left so, it would be taken for lost (its process
            # gone) rather than interrupted. Failed as interrupted, a slot replaces it.
            retrying(self.storage.set_trial_user_attr, trial_id, INTERRUPTED, True)
            retrying(self.storage.set_trial_state_values, trial_id, state=TrialState.FAIL)
            raise

    def close(self):
        """Wait for a top-up under way (see :meth:`claim`), so that no write outlives the search."""
        self._wait_for_refill()

    def top_up_ahead(self):
        """Top the pool up on a thread, if the last claim took the last slot this process knew.

        Topping up costs a store write per slot (about 5 ms each on PostgreSQL), which the next
        claim would otherwise wait for; the loop calls this as the trial's fit begins (see
        :func:`mlx.search.loop.fit_begins`). A top-up that fails is only logged: the next
        claim that finds no slot tops up itself.
        """
        if not self._refill_due:
            return
        self._refill_due = False

        def refill():
            try:
                _top_up_locked(self.study, self.storage, self._study_id, self._pool)
            except Exception as exc:
                logger.warning("slots not topped up ahead: %s", first_line(exc))

        self._refill = threading.Thread(target=refill, name="mlx-slots", daemon=True)
        self._refill.start()

    def _wait_for_refill(self):
        if self._refill is not None:
            self._refill.join()
            self._refill = None

    def _topped_up(self):
        """Whether slots wait now, after topping the pool up (PostgreSQL) if none did."""
        if self._pool is None:  # the whole budget was enqueued: none waiting means it is spent
            return False
        waiting, _ = _top_up_locked(self.study, self.storage, self._study_id, self._pool)
        return waiting > 0

    def _claim_waiting(self, read=False):
        """The id of a waiting slot now claimed, or None; ``read``: read the waiting ones first."""
        if read:
            self._waiting = [
                t.number
                for t in retrying(
                    self.study.get_trials, deepcopy=False, states=(TrialState.WAITING,)
                )
            ]
        while self._waiting:
            # Through the study's cached storage, which knows the ids of the trials just read.
            trial_id = retrying(
                self.study._storage.get_trial_id_from_study_id_trial_number,
                self._study_id,
                self._waiting.pop(0),
            )
            try:
                claimed = retrying(
                    self.storage.set_trial_state_values, trial_id, state=TrialState.RUNNING
                )
            except UpdateFinishedTrialError:
                continue
            if claimed:  # else another process claimed it first
                return trial_id
        return None

    def _add_running(self, trials):
        """The id of the budget's next trial, added RUNNING; None if the budget is spent.

        ``trials`` are the study's counted trials, read under the lock.
        """
        held = _budget_of(self.study)
        if held is None:  # a study mlx did not create: its slots are its budget
            return None
        missing = _missing(trials, *held)
        if not missing:
            return None
        fixed = _fixed(missing[0])
        trial = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            system_attrs=None if fixed is None else {"fixed_params": fixed},
        )
        # Through the study's own (cached) storage, as Optuna's ``ask`` adds a trial: a trial
        # added behind the cache's back cannot take a parameter until the cache reads the study.
        cached = self.study._storage
        return retrying(cached.create_new_trial, self._study_id, template_trial=trial)


def _adds_trials(storage):
    """Whether claims add the budget's trials (else slots are enqueued: a pool, or all).

    Only on SQLite (and in memory), where :func:`_claims_lock` serialises every process that
    can share the study, and where a call to the store costs little. On a database server a
    claim that counts and adds (five calls) cost more than re-reading waiting slots (38 ms a
    claim against 7 ms on PostgreSQL); its row locks make each claim of a WAITING trial
    atomic, so slots wait there, topped up a pool at a time.
    """
    return _dialect(storage) in (None, "sqlite")


@contextlib.contextmanager
def _claims_lock(storage):
    """Within the block, no other process claims or adds a trial of this SQLite study.

    Optuna claims a WAITING trial by reading its state, then writing RUNNING. On SQLite the
    Python driver opens the transaction only at the write, so two processes can both read
    WAITING and both claim the trial (seen: one trial run twice by a coordinator and its local
    worker); likewise two could count the same trials and both add the last one. A lock file
    beside the database serialises the processes of this machine, the only ones that can share
    a SQLite file. A study in memory belongs to one process.
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


def replace_interrupted(study, trials=None):
    """Replace every trial stopped by Ctrl-C or SIGTERM that no slot replaces yet.

    ``trials``: the study's trials, if just read. Returns the numbers of the trials replaced.
    """
    if trials is None:
        trials = retrying(study.get_trials, deepcopy=False)
    replaced = _replaced(trials)
    interrupted = [t for t in trials if t.user_attrs.get(INTERRUPTED) and t.number not in replaced]
    for frozen in interrupted:
        fixed = frozen.system_attrs.get("fixed_params")
        enqueue(study, 1, fixed_params=fixed, user_attrs={REPLACES: frozen.number})
    return [frozen.number for frozen in interrupted]


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
            storage.set_trial_user_attr(trial_id, "error", LOST)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        replace_lost(study, frozen)
