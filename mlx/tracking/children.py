"""Child runs: one MLflow run per trial, nested under the parent run of the search.

A trial costs three store writes. A trial that runs for more than a second gets its run then
(``create_run`` with its tags), so the UI shows it RUNNING, and when it ends one ``log_batch``
(params, metrics and final tags) and its end (status, end time and final name in one write).
A shorter trial's run is made when it ends, already named and tagged as it finished: then
``log_batch`` carries no tags and the end no new name, each of which costs MLflow a
transaction of its own (1.4 and 0.5 ms of the 11 a trial's writes cost on SQLite).

What a trial produced arrives as a record with the fields of :class:`mlx.search.TrialRecord`.
Against a tracking server the writes are made in order on a background thread (see
:mod:`mlx.tracking._writes`): call :meth:`ChildRuns.flush` when a batch of trials ends. There
every run is made when its trial starts: a background write costs the trial nothing, and a
trial told to the study while its writes are still queued then has a run that whoever ends the
search finds RUNNING and waits for (:func:`end_orphans` with ``settle``), rather than none.
"""

import threading
import time

import numpy as np

from mlx.tracking import _schema as schema
from mlx.tracking import _writes

__all__ = ["ChildRuns", "add_unwritten", "end_orphans", "trial_summaries"]

# MLflow run status of a finished trial by its Optuna state; pruned trials finished normally
# (``mlx.trial_state`` tells them apart).
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
_LOST = "lost: its process stopped"
_UNWRITTEN = "not recorded: the MLflow store failed before this trial's child run was written"
# Seconds a trial runs before its child run is made RUNNING (shorter trials make it at the end).
SHOW_RUNNING_AFTER = 1.0
# Who made a trial's child run: the thread that shows it RUNNING, or its end (or the stop).
_RUNNING, _ENDED = "running", "ended"
# Seconds the thread that makes runs RUNNING waits for work before it ends.
_IDLE_SECONDS = 5.0
# Seconds at most that background writes wait for the next trial's fit (see Background.hold):
# longer than telling the study and claiming a trial (60 ms on PostgreSQL), short enough that a
# finished trial does not look RUNNING for long when no trial follows.
_HOLD_SECONDS = 0.5
# Seconds a stopping process waits for a RUNNING creation in progress on that thread.
_SHOW_WAIT_SECONDS = 30.0


class ChildRuns:
    """The child runs of the trials this process runs, one per trial (see the module's docstring).

    Parameters
    ----------
    tracker : Tracker
    experiment_id, parent_id : str
        The MLflow experiment and the parent run the children go under.
    study_name : str
    worker : str
        Who runs the trials (``host-pid``, a worker id), recorded on each child.
    metric_name : str
        The experiment's metric, for the names of the scores.
    show_running_after : float, default=None
        Seconds a trial runs before its child run is made, RUNNING; a trial that ends sooner
        gets its run when it ends. 0 makes every run when its trial starts. None:
        ``SHOW_RUNNING_AFTER`` with writes made in the trial's thread, 0 with background writes.
    """

    def __init__(
        self,
        tracker,
        experiment_id,
        parent_id,
        study_name,
        worker,
        metric_name,
        show_running_after=None,
    ):
        self.tracker = tracker
        self.experiment_id = experiment_id
        self.parent_id = parent_id
        self.study_name = study_name
        self.worker = worker
        self.metric_name = metric_name
        self._runs = {}  # trial number -> _Run, from its start to its finish
        self._ending = []  # finished trials' _Runs whose end may still be queued
        background = _writes.background_wanted(tracker.uri)
        self._writes = _writes.Background() if background else _writes.Inline()
        if show_running_after is None:
            show_running_after = 0.0 if background else SHOW_RUNNING_AFTER
        self.show_running_after = show_running_after
        self._later = _Later(self._show_running)

    @property
    def background(self):
        """Whether the writes are made on a background thread (a tracking server)."""
        return self._writes.background

    def start(self, number):
        """Trial ``number`` starts: its child run is made RUNNING now, or later if still running.

        With background writes, "now" is when its fit begins (:meth:`fitting`).
        """
        run = self._runs[number] = _Run(number, time.time())
        if self.show_running_after > 0:
            self._later.call(run, self.show_running_after)
        elif not self.background:
            self._show_running(run)

    def fitting(self, number):
        """Trial ``number``'s fit begins: the background writes held since the last trial go.

        Held while the study was told, the next trial claimed and sampled (see
        :meth:`~mlx.tracking._writes.Background.hold`), they now run beside the fit.
        """
        run = self._runs.get(number)
        if run is not None and self.background and self.show_running_after == 0:
            self._show_running(run)
        self._writes.release()

    def _show_running(self, run):
        """Make ``run`` RUNNING (one store write), unless its trial has ended already."""
        with run.lock:
            if run.maker is not None:
                return
            run.maker = _RUNNING
        try:
            self._writes.submit(
                run,
                lambda: self._create(run, "RUNNING"),
                f"creating the child run of trial {run.number}",
            )
        except Exception as exc:  # made inline on the waiting thread: raised by finish
            run.error = exc
            if threading.current_thread() is threading.main_thread():
                raise
        finally:
            run.shown.set()

    def finish(self, record):
        """Log a finished trial into its child run and end it (three store writes at most).

        A trial stopped by Ctrl-C ends KILLED; failed trials FAILED; complete and pruned
        trials FINISHED.
        """
        # A background write that failed stops the search here, before this trial's writes
        # are queued: the trial then fails as interrupted and its run ends KILLED (abandon).
        self._writes.check()
        run = self._runs.pop(record.number)
        self._ending = [r for r in self._ending if not r.ended]
        self._ending.append(run)
        with run.lock:
            shown = run.maker == _RUNNING
            run.maker = run.maker or _ENDED
        params, metrics, steps, tags = _logged(record, self.metric_name)
        status = "KILLED" if record.interrupted else _STATUS.get(record.state, "FAILED")
        name = schema.trial_name(record.number, record.model, record.state)
        if shown:
            run.shown.wait()  # its creation, made inline on the waiting thread, is over
            if run.error is not None:
                raise run.error

            def log_and_end():
                self.tracker.log(run.id, params=params, metrics=metrics, steps=steps, tags=tags)
                self.tracker.end_run(run.id, status, end_time=record.end_time, name=name)
                run.ended = True

        else:

            def log_and_end():
                self._create(run, record.state, name, tags)
                self.tracker.log(run.id, params=params, metrics=metrics, steps=steps)
                self.tracker.end_run(run.id, status, end_time=record.end_time)
                run.ended = True

        self._writes.submit(run, log_and_end, f"logging trial {record.number}'s child run")
        self._writes.hold(_HOLD_SECONDS)

    def flush(self):
        """Wait for the queued writes; a :class:`~mlx.exceptions.TrackingError` if one failed."""
        self._writes.flush()

    def _create(self, run, state, name=None, tags=None):
        """Make ``run``'s child run (RUNNING, as MLflow makes every run), tagged in ``state``."""
        tags = {
            **_trial_tags(self.study_name, run.number, state),
            schema.TAG_WORKER: self.worker,
            **(tags or {}),
        }
        run.id = self.tracker.start_run(
            self.experiment_id,
            name or schema.trial_name(run.number),
            tags=tags,
            parent_id=self.parent_id,
            start_time=run.start_time,
        )

    def _make_killed(self, run, error):
        """Make, ended KILLED, the run of a trial stopped before its run was made."""
        try:
            self._create(run, "FAIL", tags={schema.TAG_ERROR: error})
            self.tracker.end_run(run.id, "KILLED")
        except Exception:  # the store fails: a resumed run adds the trial's run (add_unwritten)
            pass
        run.ended = True

    def abandon(self, error):
        """End this process's open child runs KILLED with ``error`` (the process is stopping).

        The queued writes are made first, so that the trials that finished keep what they
        logged; a run whose writes failed ends KILLED here too. A trial whose run was not made
        yet gets one, ended KILLED.
        """
        self._later.cancel()
        self._writes.drain()
        runs = [*self._runs.values(), *self._ending]
        self._runs, self._ending = {}, []
        for run in runs:
            with run.lock:
                maker, run.maker = run.maker, run.maker or _ENDED
            if maker == _RUNNING:
                run.shown.wait(_SHOW_WAIT_SECONDS)
            elif maker is None:
                self._make_killed(run, error)
        # A Ctrl-C may have cut a run's creation short after MLflow made it: its id never came
        # back, so it is looked for among the parent's RUNNING children.
        unknown = {str(run.number) for run in runs if run.id is None and not run.ended}
        ids = [run.id for run in runs if run.id is not None and not run.ended]
        if unknown:
            ids += [
                child.info.run_id
                for child in self.tracker.children(self.parent_id, "attributes.status = 'RUNNING'")
                if child.data.tags.get(schema.TAG_TRIAL) in unknown
                and child.data.tags.get(schema.TAG_WORKER) == self.worker
            ]
        for run_id in ids:
            self.tracker.log(run_id, tags={schema.TAG_ERROR: error, schema.TAG_STATE: "FAIL"})
            self.tracker.end_run(run_id, "KILLED")


def _trial_tags(study_name, number, state):
    """The tags that make a run the child run of trial ``number`` of the study, in ``state``."""
    return {
        schema.TAG_STUDY: study_name,
        schema.TAG_ROLE: schema.ROLE_TRIAL,
        schema.TAG_TRIAL: str(number),
        schema.TAG_STATE: state,
    }


class _Run:
    """A trial's child run: made or not yet (and by whom), its id once made, ended or not."""

    __slots__ = ("ended", "error", "id", "lock", "maker", "number", "shown", "start_time")

    def __init__(self, number, start_time):
        self.number = number
        self.start_time = start_time
        self.lock = threading.Lock()
        self.maker = None  # who makes it: _RUNNING while the trial runs, or _ENDED at its end
        self.shown = threading.Event()  # the RUNNING creation is over (made, queued or failed)
        self.error = None  # why the RUNNING creation failed, raised by finish
        self.id = None
        self.ended = False


class _Later:
    """Calls ``function(run)`` some seconds after :meth:`call`, on one daemon thread.

    One trial runs at a time in a process, so one call waits at a time; a new call replaces
    it. The thread ends when idle (a notebook that runs many searches keeps none).
    """

    def __init__(self, function):
        self._function = function
        self._due = None  # (monotonic deadline, run)
        self._wake = threading.Condition()
        self._thread = None

    def call(self, run, seconds):
        with self._wake:
            idle, self._due = self._due is None, (time.monotonic() + seconds, run)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="mlx-show-running", daemon=True
                )
                self._thread.start()
            elif idle:
                # Waking the thread for every short trial costs the trials a GIL hand-over each;
                # a thread that waits for an earlier deadline finds the new one when it wakes.
                self._wake.notify()

    def cancel(self):
        with self._wake:
            self._due = None

    def _work(self):
        while True:
            with self._wake:
                while self._due is None or self._due[0] > time.monotonic():
                    wait = _IDLE_SECONDS if self._due is None else self._due[0] - time.monotonic()
                    if not self._wake.wait(wait) and self._due is None:
                        self._thread = None
                        return
                run, self._due = self._due[1], None
            self._function(run)


def _logged(record, metric):
    """``(params, metrics, steps, tags)`` of a trial record."""
    tags = {schema.TAG_STATE: record.state}
    if record.error:
        tags[schema.TAG_ERROR] = record.error
    if record.warnings:
        tags[schema.TAG_WARNINGS] = " | ".join(record.warnings)
    if record.model is not None:
        tags[schema.TAG_MODEL] = record.model
    if record.within_limits is not None:
        tags[schema.TAG_WITHIN_LIMITS] = str(record.within_limits).lower()
    metrics, steps = {}, {}
    if record.curves.get("val"):
        steps[schema.val(metric)] = record.curves["val"]
        if record.curves["train"]:
            steps[schema.train(metric)] = record.curves["train"]
        metrics[schema.METRIC_EPOCHS] = len(record.curves["val"])
    else:
        if record.value is not None:
            metrics[schema.val(metric)] = record.value
        if record.train_score is not None:
            metrics[schema.train(metric)] = record.train_score
    if record.fit_time is not None:
        metrics[schema.METRIC_FIT_TIME] = record.fit_time
    if record.size is not None:
        metrics[schema.METRIC_MODEL_BYTES] = record.size
    if record.fold_scores:
        steps[schema.fold(schema.val(metric))] = record.fold_scores
        metrics[schema.spread(schema.val(metric))] = float(np.std(record.fold_scores))
    if record.best_epoch is not None:
        metrics[schema.METRIC_BEST_EPOCH] = record.best_epoch
        metrics[schema.METRIC_STOPPED_EPOCH] = record.stopped_epoch
    return record.params, metrics, steps, tags


def end_orphans(tracker, parent_id, alive, settle=0.0):
    """End (KILLED) the RUNNING child runs whose trial number is not in ``alive``.

    Such a child belongs to a trial whose process died; returns how many were ended. With
    ``settle`` seconds, such children get that long to end first: a process writing in the
    background may have told the study its trial ended before the trial's run did.
    """
    deadline = time.monotonic() + settle
    while True:
        running = tracker.children(parent_id, "attributes.status = 'RUNNING'")
        orphans = [c for c in running if c.data.tags.get(schema.TAG_TRIAL) not in alive]
        if not orphans or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    for child in orphans:
        tracker.log(child.info.run_id, tags={schema.TAG_ERROR: _LOST})
        tracker.end_run(child.info.run_id, "KILLED")
    return len(orphans)


def add_unwritten(tracker, experiment_id, parent_id, study_name, trials):
    """Child runs, ended KILLED, for finished trials that have none; returns how many.

    ``trials`` are ``(number, state, error)`` of the study's finished trials, ``error`` the
    reason the study holds for a trial that was stopped (None for none). A trial whose process
    died before its run was made (a short trial's run is made when it ends), or that ran while
    the store failed (its run's creation queued in the background and never made), has none:
    it is recorded here, so that every trial that ran has its child run.
    """
    have = {c.data.tags.get(schema.TAG_TRIAL) for c in tracker.children(parent_id)}
    added = 0
    for number, state, error in trials:
        if str(number) in have:
            continue
        tags = {**_trial_tags(study_name, number, state), schema.TAG_ERROR: error or _UNWRITTEN}
        name = schema.trial_name(number)
        run_id = tracker.start_run(experiment_id, name, tags=tags, parent_id=parent_id)
        tracker.end_run(run_id, "KILLED")
        added += 1
    return added


def trial_summaries(runs, metric_name):
    """The trials of a search over several models, as :func:`mlx.evaluation.leaderboard` takes.

    ``runs`` are child runs; those without a model (a trial that failed before choosing one,
    a single-model search) are left out.
    """
    return [
        {
            "number": int(run.data.tags.get(schema.TAG_TRIAL, -1)),
            "model": run.data.tags[schema.TAG_MODEL],
            "state": run.data.tags.get(schema.TAG_STATE, ""),
            "value": run.data.metrics.get(schema.val(metric_name)),
            "fit_time": run.data.metrics.get(schema.METRIC_FIT_TIME),
            # MLflow keeps metrics as floats; a size is a count of bytes.
            "size": _int_or_none(run.data.metrics.get(schema.METRIC_MODEL_BYTES)),
            # Trials over an experiment's limits on cost do not compete for the best.
            "within_limits": run.data.tags.get(schema.TAG_WITHIN_LIMITS) != "false",
        }
        for run in runs
        if schema.TAG_MODEL in run.data.tags
    ]


def _int_or_none(value):
    return None if value is None else int(value)
