"""Child runs: one MLflow run per trial, nested under the parent run of the search.

A trial costs three store writes: ``create_run`` (with its tags) when it starts, so the UI
shows it RUNNING, then one ``log_batch`` (params, metrics and final tags) and its end
(status, end time and its final name in one write) when it ends. What a trial produced arrives as a record with the fields of
:class:`mlx.search.TrialRecord`. Against a tracking server the writes are made in order on a
background thread (see :mod:`mlx.tracking._writes`): call :meth:`ChildRuns.flush` when a batch
of trials ends.
"""

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


class ChildRuns:
    """The child runs of the trials this process runs, opened when each trial starts.

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
    """

    def __init__(self, tracker, experiment_id, parent_id, study_name, worker, metric_name):
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

    @property
    def background(self):
        """Whether the writes are made on a background thread (a tracking server)."""
        return self._writes.background

    def start(self, number):
        """Open the RUNNING child run of trial ``number`` (one store write)."""
        run = self._runs[number] = _Run()
        tags = {**_trial_tags(self.study_name, number, "RUNNING"), schema.TAG_WORKER: self.worker}
        started = time.time()  # the trial's start, not the moment a background write is made

        def create():
            run.id = self.tracker.start_run(
                self.experiment_id,
                schema.trial_name(number),
                tags=tags,
                parent_id=self.parent_id,
                start_time=started,
            )

        self._writes.submit(run, create, f"creating the child run of trial {number}")

    def finish(self, record):
        """Log a finished trial into its child run, end and rename it (two store calls).

        A trial stopped by Ctrl-C ends KILLED; failed trials FAILED; complete and pruned
        trials FINISHED.
        """
        # A background write that failed stops the search here, before this trial's writes
        # are queued: the trial then fails as interrupted and its run ends KILLED (abandon).
        self._writes.check()
        run = self._runs.pop(record.number)
        self._ending = [r for r in self._ending if not r.ended]
        self._ending.append(run)
        params, metrics, steps, tags = _logged(record, self.metric_name)
        status = "KILLED" if record.interrupted else _STATUS.get(record.state, "FAILED")
        # Renamed as it ends (its state in the name): a name logged as a tag costs MLflow a
        # transaction of its own inside log_batch.
        name = schema.trial_name(record.number, record.model, record.state)

        def log_and_end():
            self.tracker.log(run.id, params=params, metrics=metrics, steps=steps, tags=tags)
            self.tracker.end_run(run.id, status, end_time=record.end_time, name=name)
            run.ended = True

        self._writes.submit(run, log_and_end, f"logging trial {record.number}'s child run")

    def flush(self):
        """Wait for the queued writes; a :class:`~mlx.exceptions.TrackingError` if one failed."""
        self._writes.flush()

    def abandon(self, error):
        """End this process's open child runs KILLED with ``error`` (the process is stopping).

        The queued writes are made first, so that the trials that finished keep what they
        logged; a run whose writes failed ends KILLED here too.
        """
        self._writes.drain()
        # A Ctrl-C may have cut a run's creation short after MLflow made it: its id never came
        # back, so it is looked for among the parent's RUNNING children.
        unknown = {str(number) for number, run in self._runs.items() if run.id is None}
        runs = [*self._runs.values(), *self._ending]
        self._runs, self._ending = {}, []
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
    """A child run: its id once created (maybe by the background thread); ended or not."""

    __slots__ = ("ended", "id")

    def __init__(self):
        self.id = None
        self.ended = False


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

    ``trials`` are ``(number, state)`` of the study's finished trials. A trial that ran while the
    store failed may have had its child run's creation queued in the background and never
    made; a resumed run records it, so that every trial that ran has its child run.
    """
    have = {c.data.tags.get(schema.TAG_TRIAL) for c in tracker.children(parent_id)}
    added = 0
    for number, state in trials:
        if str(number) in have:
            continue
        tags = {**_trial_tags(study_name, number, state), schema.TAG_ERROR: _UNWRITTEN}
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
