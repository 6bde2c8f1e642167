"""The coordinator's hold on a search: one run, one study, one parent run at a time.

A plain ``mlx run`` starts a new search: the next run number of the experiment, a study of its
own (``<name>-<definition hash>-<number>``) with its trial budget, and a RUNNING parent
run named ``<name> #<number>``. A second coordinator of the same definition is refused while
the first one lives; a parent run left RUNNING by a coordinator that died on this machine is
ended KILLED (and stays resumable). ``--resume`` reopens the latest unfinished run (or the one
named) with its study, and accounts for what the interruption left: lost and interrupted
trials are replaced, orphan child runs ended, the budget set. Whatever happens in between, the
parent run ends FINISHED, FAILED or KILLED (:func:`ends`).
"""

import contextlib
import json
import logging
import shlex

from mlx import search, tracking
from mlx.exceptions import AlreadyRunningError, Interrupted, SearchError, TrackingError
from mlx.overrides import to_json
from mlx.stores import is_local, redact_url
from mlx.tracking import schema

__all__ = [
    "add_unwritten",
    "ends",
    "recover",
    "refuse_running",
    "reopen",
    "resumable",
    "start",
    "untested",
]

logger = logging.getLogger(__name__)

# Statuses of a parent run that --resume may continue.
_UNFINISHED = ("RUNNING", "KILLED", "FAILED")
# Run numbers tried when a study of that number already exists in the Optuna storage (a store
# reset while the storage was kept).
_MAX_NUMBER_TRIES = 100


def refuse_running(experiment, digest, tracker):
    """Refuse a second coordinator of the same definition; end parents of dead ones KILLED."""
    for parent in tracker.parents(experiment.name, "attributes.status = 'RUNNING'"):
        if parent.data.tags.get(schema.TAG_HASH) != digest:
            continue
        if tracking.coordinator_alive(parent):
            name = parent.info.run_name
            raise AlreadyRunningError(
                f"run {name!r} ({parent.info.run_id}) of this experiment is running now "
                f"(coordinator {parent.data.tags.get(schema.TAG_COORDINATOR, '?')}): a second "
                f"coordinator would evaluate the same test split. Join it with `mlx worker "
                f"{_file(experiment)}`, or wait until it ends; if it is not running any more, "
                f"continue it with `mlx run {_file(experiment)} --resume {parent.info.run_id}`."
            )
        tracker.log(parent.info.run_id, tags={schema.TAG_ERROR: "lost: its coordinator stopped"})
        tracker.end_run(parent.info.run_id, "KILLED")
        logger.warning(
            "run %r was left RUNNING by a coordinator that stopped; it is ended KILLED (continue "
            "it with --resume %s)",
            parent.info.run_name,
            parent.info.run_id,
        )


def start(experiment, digest, stores, ledger_tags, *, n_trials=None):
    """A new search: a study with its trial budget and its RUNNING parent run.

    Returns ``(study, ParentRun)``.
    """
    tracker = stores.tracker
    experiment_id = tracker.experiment_id(experiment.name)
    tracker.describe_experiment(
        experiment_id,
        experiment.description.split("\n", 1)[0],
        experiment.metric_name,
        models=experiment.estimators is not None,
    )
    number = tracking.next_run_number(tracker, experiment.name)
    for _ in range(_MAX_NUMBER_TRIES):
        try:
            study = search.create_study(
                _study_name(experiment, digest, number),
                storage=stores.storage,
                seed=experiment.seed,
                sampler=experiment.sampler,
                pruner=experiment.pruner,
                objective_name=schema.val(experiment.metric_name),
            )
            break
        except search.StudyExistsError:
            number += 1
    else:
        raise SearchError(f"no free study name for run {number} of {experiment.name!r}.")
    # The budget first: a worker that sees the parent run must find trials to claim.
    search.add_budget(study, stores.storage, experiment.n_trials, fixed_models(experiment))
    run_id = tracker.start_run(
        experiment_id,
        schema.run_name(experiment.name, number),
        tags={
            schema.TAG_ROLE: schema.ROLE_PARENT,
            schema.TAG_STUDY: study.study_name,
            schema.TAG_HASH: digest,
            schema.TAG_RUN_NUMBER: str(number),
            schema.TAG_COORDINATOR: tracking.coordinator_tag(),
            schema.TAG_OPTUNA_STORAGE: redact_url(stores.storage_url),
            schema.MLFLOW_NOTE: experiment.description,
            **ledger_tags,
            **tracking.provenance(experiment),
        },
    )
    name = schema.run_name(experiment.name, number)
    return study, tracking.ParentRun(tracker, run_id, experiment_id, name)


def resumable(experiment, digest, tracker, run_id=None):
    """The latest unfinished run of this definition (or ``run_id``), read only.

    Raises
    ------
    SearchError
        There is no such run.
    AlreadyRunningError
        Its coordinator is alive.
    """
    parent = tracking.find_parent(
        tracker, experiment.name, digest=digest, statuses=_UNFINISHED, run_id=run_id
    )
    if parent is None:
        raise SearchError(_nothing_to_resume(experiment, digest, tracker, run_id))
    if parent.info.status == "RUNNING" and tracking.coordinator_alive(parent):
        raise AlreadyRunningError(
            f"run {parent.info.run_name!r} ({parent.info.run_id}) is running now (coordinator "
            f"{parent.data.tags.get(schema.TAG_COORDINATOR, '?')}); resume it once it stopped, "
            f"or join it with `mlx worker {_file(experiment)}`."
        )
    return parent


def untested(experiment, digest, tracker, run_id=None):
    """The latest finished run of this definition that searched without the test (or ``run_id``).

    Raises
    ------
    SearchError
        There is no such run.
    """
    query = f"tags.`{schema.TAG_EVALUATED}` = 'false'"
    for parent in tracker.parents(experiment.name, query):
        matches = run_id is None or parent.info.run_id == run_id
        ours = parent.data.tags.get(schema.TAG_HASH) == digest
        if matches and ours and parent.info.status == "FINISHED":
            return parent
    which = "" if run_id is None else f" {run_id} is not one:"
    finished = [p for p in tracker.parents(experiment.name, query) if p.info.status == "FINISHED"]
    raise SearchError(
        f"nothing to test:{which} no finished run of this experiment file's definition (hash "
        f"{digest[:10]}) searched without its test split in {redact_url(tracker.uri)}. "
        f"`mlx run FILE --no-test` makes one; `mlx show {experiment.name}` lists the runs."
        f"{_overrides_hint(experiment, finished, 'test')}"
    )


def reopen(experiment, parent, stores):
    """The run ``parent`` (see :func:`resumable`) RUNNING again: ``(study, ParentRun)``."""
    tracker = stores.tracker
    study = search.load_study(
        parent.data.tags[schema.TAG_STUDY],
        storage=stores.storage,
        seed=experiment.seed,
        sampler=experiment.sampler,
        pruner=experiment.pruner,
    )
    tracker.reopen(parent.info.run_id)
    tracker.log(parent.info.run_id, tags={schema.TAG_COORDINATOR: tracking.coordinator_tag()})
    return study, tracking.ParentRun(
        tracker, parent.info.run_id, parent.info.experiment_id, parent.info.run_name
    )


def add_unwritten(study, parent, lost_only=False):
    """Child runs, ended KILLED, for the study's finished trials that have none.

    A trial whose process died before its run was made, or that ran while the store failed,
    has none (see :func:`mlx.tracking.add_unwritten`); each gets the reason the study holds.
    ``lost_only``: only the trials whose process died (the others' writes may still be queued);
    the store is not read when there are none.
    """
    trials = search.retrying(study.get_trials, deepcopy=False)
    dead = search.lost_trials(trials)
    finished = []
    for t in trials:
        # A slot cancelled unused (a smaller budget on resume) never ran.
        if (
            not t.state.is_finished()
            or t.datetime_start is None
            or t.user_attrs.get(search.CANCELLED)
        ):
            continue
        lost = t.number in dead
        if lost or not lost_only:
            error = t.user_attrs.get("error") or (search.LOST if lost else None)
            finished.append((t.number, t.state.name, error))
    if not finished:
        return
    tracking.add_unwritten(
        parent.tracker, parent.experiment_id, parent.run_id, study.study_name, finished
    )


def recover(experiment, study, stores, parent, n_trials):
    """Account for what an interrupted run left, and set its budget to ``n_trials``.

    Trials stopped from outside have no result of their own: lost ones (their process died)
    and interrupted ones (Ctrl-C, SIGTERM) are replaced by fresh slots. On a local file storage
    no other machine can be running trials, so every RUNNING trial belonged to the dead run; on
    a database server, only trials whose heartbeat stopped are.
    """
    search.fail_lost(study, stores.storage, running_are_lost=is_local(stores.storage_url))
    search.replace_interrupted(study)
    running = study.get_trials(deepcopy=False, states=(search.TrialState.RUNNING,))
    tracking.end_orphans(parent.tracker, parent.run_id, alive={str(t.number) for t in running})
    add_unwritten(study, parent)
    search.set_budget(study, stores.storage, n_trials, fixed_models(experiment))
    finished = search.budget(study).finished
    logger.warning(
        "resuming %s: %d of %d trials finished, %d to go",
        study.study_name,
        finished,
        n_trials,
        max(0, n_trials - finished),
    )


def fixed_models(experiment):
    """The models when each has a fixed share of the budget (in turn order), else None."""
    if experiment.model_budget != "fixed" or experiment.estimators is None:
        return None
    return list(experiment.candidates)


@contextlib.contextmanager
def ends(parent, resume_command):
    """The parent run ends FINISHED after the block, else FAILED or KILLED (Ctrl-C, SIGTERM).

    An interruption comes out as one :class:`~mlx.exceptions.Interrupted` whose message says
    what is kept and gives ``resume_command``.
    """
    tracker, run_id = parent.tracker, parent.run_id
    try:
        yield
    except BaseException as exc:
        # Recording the failure must not hide the error itself.
        interrupted = isinstance(exc, KeyboardInterrupt)
        message = redact_url(f"{type(exc).__name__}: {exc}")
        _try(tracker.log, run_id, tags={schema.TAG_ERROR: message})
        _try(tracker.end_run, run_id, "KILLED" if interrupted else "FAILED")
        if interrupted:
            raise Interrupted(
                f"{str(exc) or 'interrupted (Ctrl-C)'}: the finished trials are kept; continue with "
                f"`{resume_command}`.",
                signum=getattr(exc, "signum", 2),
            ) from None
        if isinstance(exc, TrackingError):
            logger.warning(
                "the MLflow store failed: the finished trials are kept; continue with `%s` "
                "once the store answers again.",
                resume_command,
            )
        raise
    tracker.end_run(run_id, "FINISHED")


def _study_name(experiment, digest, number):
    return f"{experiment.name}-{digest[:10]}-{number}"


def _nothing_to_resume(experiment, digest, tracker, run_id):
    unfinished = [
        p
        for p in tracker.parents(experiment.name)
        if p.info.status in _UNFINISHED and run_id in (None, p.info.run_id)
    ]
    hint = _overrides_hint(experiment, unfinished, "continue")
    if run_id is not None:
        return (
            f"nothing to resume: {run_id} is not an unfinished run of this experiment file's "
            f"definition (hash {digest[:10]}) in {redact_url(tracker.uri)}; `mlx show "
            f"{experiment.name}` lists its runs.{hint}"
        )
    latest = tracking.find_parent(tracker, experiment.name, digest=digest)
    if latest is None:
        return (
            f"nothing to resume: no run of this experiment file's definition (hash "
            f"{digest[:10]}) in {redact_url(tracker.uri)}. Start it without --resume; a changed "
            f"experiment file, data, seed or --set is a new definition.{hint}"
        )
    return (
        f"nothing to resume: every run of this definition finished, the latest "
        f"{latest.info.run_name!r} ({latest.info.run_id}). Run without --resume to start a new "
        f"search."
    )


def _overrides_hint(experiment, runs, what):
    """A sentence naming the latest of ``runs`` if its overrides differ from ours, else "".

    Overrides change the definition: a run made with others is found only with the same.
    """
    ours = _defining(json.loads(to_json(experiment.overrides)))
    for parent in runs:
        theirs = _defining(json.loads(parent.data.tags.get(schema.TAG_OVERRIDES, "{}")))
        if theirs == ours:
            return ""
        words = " ".join(f"--set {shlex.quote(f'{k}={v}')}" for k, v in theirs.items())
        return (
            f" Run {parent.info.run_name!r} ({parent.info.run_id}) was made with "
            f"{words or 'no --set'}: give the same to {what} it."
        )
    return ""


def _defining(overrides):
    # The budget and the registry do not change the definition.
    return {k: v for k, v in overrides.items() if k not in ("n_trials", "timeout", "register")}


def _file(experiment):
    return str(experiment.path) if experiment.path is not None else "FILE"


def _try(func, *args, **kwargs):
    # Used on the way out of a failure: a second error must not hide the first.
    try:
        func(*args, **kwargs)
    except Exception:
        logger.debug("ignored error while recording a failure", exc_info=True)
