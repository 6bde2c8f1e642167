"""The optimize loop: claim a slot, run the trial, tell the study, until the budget is spent.

Any number of processes run :func:`optimize` on one study (see :mod:`mlx.search.slots`); the
coordinator runs :func:`coordinate`, which also waits for the other processes' last trials.
"""

import contextlib
import logging
import signal
import threading
import time
from typing import NamedTuple

import optuna
from optuna.study import _tell as _optuna_tell
from optuna.trial import TrialState

from mlx.exceptions import first_line
from mlx.search.heartbeat import Heartbeat, heartbeat_interval
from mlx.search.retry import retrying
from mlx.search.slots import INTERRUPTED as INTERRUPTED_ATTR
from mlx.search.slots import Slots, budget, fail_lost, replace_interrupted
from mlx.search.study import quiet_optuna

__all__ = ["INTERRUPTED", "Ran", "coordinate", "fit_begins", "optimize"]

logger = logging.getLogger(__name__)

# The error of a trial stopped by Ctrl-C (SIGTERM says so itself).
INTERRUPTED = "interrupted (Ctrl-C)"
# Seconds between looks at the study while other processes finish their trials: the run
# concludes at most this long after the last one (a look reads the study's trials).
_POLL_SECONDS = 0.25


# What the running trial of this thread defers to its fit (see fit_begins).
_deferred = threading.local()
# What Study.tell calls to record a result (see _tell); private to Optuna, so looked up.
_tell_beneath = getattr(_optuna_tell, "_tell_with_warning", None)


class Ran(NamedTuple):
    """What :func:`optimize` did: trials run by this process; whether the study was stopped."""

    count: int  # type: ignore[assignment]  # the field shadows tuple.count, unused here
    stopped: bool


def fit_begins():
    """Called by an objective once its trial's parameters are chosen, as its fit begins.

    The loop defers work of its own to this moment (topping up the slots, the ``on_fit``
    callback of :func:`optimize`): a fit spends its time in numpy, which lets other threads
    run, while during the claim, the sampling and the tell their Python work would slow the
    trial's own calls to the storage. An objective that never calls it has that work done
    when it returns. Outside a trial of :func:`optimize`, it does nothing.
    """
    work, _deferred.work = getattr(_deferred, "work", None), None
    if work is not None:
        work()


def _tell(study, trial, value=None, state=None):
    """Tell ``study`` the result of ``trial`` (skipped if it is finished already), as Optuna's
    own ``optimize`` loop does.

    ``Study.tell`` also reads the finished trial back from the storage and deep-copies it for
    its return value, which the loop never uses: 1.9 ms a trial on SQLite (a tenth of what
    tracking a trial costs there). Optuna's ``optimize`` calls the function beneath it, which
    stops at the storage write; ``Study.tell`` stands in should a later Optuna drop it.
    """
    if _tell_beneath is None:
        study.tell(trial, value, state=state, skip_if_finished=True)
        return
    _tell_beneath(study, trial, value, state, skip_if_finished=True)


def optimize(study, storage, objective, *, timeout=None, on_start=None, on_fit=None, on_trial=None):
    """Claim and run trials of ``study`` until its budget is spent or ``timeout`` passes.

    Slots are claimed one at a time through ``storage``, so any number of processes may run
    this on the same study. ``on_start(number)`` is called when a trial starts,
    ``on_fit(number)`` when its fit begins (see :func:`fit_begins`) and ``on_trial(record)``
    when it ends. A trial that raises is told FAIL (its error in the record and the trial's
    ``error`` user attribute) and the search goes on; an error raised by a callback stops it
    (``on_fit``'s, raised inside the objective, fails the trial instead). Ctrl-C or SIGTERM
    (a ``KeyboardInterrupt``) ends the running trial as FAIL, marked interrupted (the record's
    ``interrupted`` is set; a resumed search replaces it), reports it, then propagates. Returns
    a :class:`Ran`.
    """
    quiet_optuna()
    deadline = None if timeout is None else time.monotonic() + timeout
    ran = 0
    slots = Slots(study, storage)
    # Lost trials are looked for once per heartbeat interval, not before every trial: a trial
    # is lost only after three silent intervals, and each look is a query of the storage.
    interval, next_look = heartbeat_interval(storage) or 0, 0.0
    with _optimize_loop(study) as stopped:
        while deadline is None or time.monotonic() < deadline:
            if time.monotonic() >= next_look:
                fail_lost(study, storage)
                next_look = time.monotonic() + interval
            claimed = slots.claim()
            if claimed is None:
                break
            trial, trial_id = claimed
            try:
                if on_start is not None:
                    on_start(trial.number)
            except KeyboardInterrupt as exc:  # between the claim and the trial
                _interrupted(trial, exc)
                retrying(_tell, study, trial, state=TrialState.FAIL)
                raise
            _deferred.work = _fit_work(slots, on_fit, trial.number)
            try:
                record, state, interruption = _run_trial(storage, objective, trial, trial_id)
            finally:
                undone, _deferred.work = _deferred.work, None
            if undone is not None and interruption is None:  # the objective did not say so
                undone()
            ran += 1
            try:
                # The trial's child run ends before the study hears of it: whoever sees the
                # trial finished in the study may rely on its run being final.
                if on_trial is not None:
                    on_trial(record)
            except BaseException as exc:
                # A result that could not be recorded (the store failed, Ctrl-C while logging)
                # is no result: the trial fails as interrupted and a resumed search replaces it.
                _interrupted(trial, exc)
                record.value, state = None, TrialState.FAIL
                raise
            finally:
                with _signals_held():
                    retrying(_tell, study, trial, record.value, state=state)
            if interruption is not None:
                raise interruption
            if stopped():
                break
    # A top-up of slots still under way ends first (after an error, it ends with the process).
    slots.close()
    return Ran(ran, stopped=stopped())


def coordinate(
    study,
    storage,
    objective,
    *,
    timeout=None,
    on_start=None,
    on_fit=None,
    on_trial=None,
    on_poll=None,
):
    """Run trials until the study's budget is spent and every trial of any process has ended.

    While other processes finish their last trials, the coordinator polls the study (and so
    fails and replaces trials whose heartbeat stopped, then runs the replacements itself).
    ``on_poll(budget)`` is called with the study's :class:`~mlx.search.slots.Budget` after
    each look.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    stopped = False
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if remaining != 0.0:
            ran = optimize(
                study,
                storage,
                objective,
                timeout=remaining,
                on_start=on_start,
                on_fit=on_fit,
                on_trial=on_trial,
            )
            if ran.stopped:  # the sampler has nothing left to try (an exhausted grid)
                stopped = True
        timed_out = deadline is not None and time.monotonic() >= deadline
        # A worker stopped mid-trial (its own Ctrl-C, SIGTERM) gave no result: its slot goes
        # back to the budget while the search runs, as a resumed search would give it back.
        trials = retrying(study.get_trials, deepcopy=False)  # one read of the study a look
        replaced = [] if timed_out or stopped else replace_interrupted(study, trials)
        if replaced:
            logger.warning(
                "trial %s was interrupted in a worker; a new slot replaces it",
                ", ".join(map(str, replaced)),
            )
            continue
        counts = budget(study, trials)
        if on_poll is not None:
            on_poll(counts)
        if counts.running == 0 and (counts.waiting == 0 or timed_out or stopped):
            return
        time.sleep(_POLL_SECONDS)


def _fit_work(slots, on_fit, number):
    """What trial ``number`` defers to its fit: the slots' top-up, then ``on_fit(number)``."""

    def work():
        slots.top_up_ahead()
        if on_fit is not None:
            on_fit(number)

    return work


def _run_trial(storage, objective, trial, trial_id):
    """Run one claimed trial: ``(record, state, interruption)``, not yet told to the study.

    ``interruption`` is the ``KeyboardInterrupt`` that stopped the trial, or None.
    """
    value, state, interruption = None, TrialState.FAIL, None
    try:
        with Heartbeat(storage, trial_id):
            value = objective(trial)
        state = TrialState.COMPLETE
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except KeyboardInterrupt as exc:
        interruption = exc
        objective.fail(trial.number, _interrupted(trial, exc))
    except Exception as exc:
        logger.warning("trial %d failed: %s", trial.number, _one_line(exc))
    record = objective.finish(trial, state, value)
    record.interrupted = interruption is not None
    return record, state, interruption


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C or SIGTERM during the block takes effect once it ends, not inside it.

    A tell cut short leaves a finished trial RUNNING (its child run logged, its result lost),
    and a resumed run then takes it for lost. The signal is raised again after the block, to
    whatever handled it before (Python's KeyboardInterrupt, mlx's SIGTERM handler, a worker's
    own). Signals can be held only in the main thread; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    # An ignored signal stays ignored; one whose handler Python did not set (None) is left alone.
    held = [
        s
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) not in (signal.SIG_IGN, None)
    ]
    before = {s: signal.signal(s, lambda signum, _: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


def _interrupted(trial, exc):
    """Mark ``trial`` as stopped from outside (a resumed search replaces it); its error text."""
    error = str(exc) or INTERRUPTED
    retrying(trial.set_user_attr, "error", error)
    retrying(trial.set_user_attr, INTERRUPTED_ATTR, True)
    return error


@contextlib.contextmanager
def _optimize_loop(study):
    """Stand in for Optuna's own optimize loop; yields a function: has a sampler stopped it?

    Optuna lets samplers stop a study (GridSampler does, once its grid is exhausted) only inside
    its own ``study.optimize``, through two private attributes. This loop replaces that one, so
    it sets them the same way: the only place mlx writes Optuna's private state.
    """
    study._thread_local.in_optimize_loop = True
    study._stop_flag = False
    try:
        yield lambda: study._stop_flag
    finally:
        study._thread_local.in_optimize_loop = False


def _one_line(exc):
    return f"{type(exc).__name__}: {first_line(exc)}"[:500]
