"""MLflow: the tracking store, parent and child runs, batched logging, the model, the test ledger.

All writes go through ``MlflowClient`` with explicit run ids (no active-run stack), so the same
code serves a coordinator and workers in other processes. A trial costs three store writes:
``create_run`` (with its tags) when it starts, so the UI shows it RUNNING, then one
``log_batch`` (params, metrics and final tags) and ``set_terminated`` when it ends.

SQLite stores are put in write-ahead-log mode (see :func:`mlx._sqlite.write_ahead_log`).

The *test ledger* lives in the runs' tags: every parent run carries ``mlx.test_fingerprint`` and
``mlx.test_use_count``, and ``mlx.test_evaluated = true`` once the test split was evaluated.
Looking the fingerprint up across all experiments of the store tells whether a test set was
already used.
"""

import contextlib
import functools
import os
import re
import time
from pathlib import Path

from mlx._sqlite import sqlite_path as _sqlite_path
from mlx._sqlite import write_ahead_log
from mlx.exceptions import TrackingError, first_line

__all__ = [
    "DEFAULT_TRACKING_FILE",
    "EXPERIMENT_KIND",
    "Tracker",
    "redact_url",
    "resolve_tracking_uri",
    "trial_summaries",
    "ui_command",
]

DEFAULT_TRACKING_FILE = "mlflow.db"
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
TAG_STUDY = "mlx.study_name"
TAG_HASH = "mlx.definition_hash"
TAG_FINGERPRINT = "mlx.test_fingerprint"
TAG_EVALUATED = "mlx.test_evaluated"
TAG_USE_COUNT = "mlx.test_use_count"
TAG_STATE = "mlx.trial_state"
TAG_ROLE = "mlx.role"
TAG_TRIAL = "mlx.trial_number"
TAG_WORKER = "mlx.worker"
# The chosen model of a trial in a search over several model types.
TAG_MODEL = "mlx.model"
# MLflow's limits per log_batch call.
_MAX_PARAMS_TAGS, _MAX_METRICS, _MAX_ENTITIES = 100, 1000, 1000
_MAX_PARAM_LEN, _MAX_TAG_LEN = 6000, 8000
# user:password@ right after the scheme; the password may hold an unescaped "@".
_USERINFO = re.compile(r"(?<=://)([^/@:]*):([^/]*)@")
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
# Seconds a tracking server or database may take to answer before it counts as unreachable.
_CONNECT_TIMEOUT = 10


def redact_url(url):
    """``url`` with any password replaced by ``***`` (``scheme://user:***@host/...``)."""
    if url is None:
        return None
    return _USERINFO.sub(r"\1:***@", str(url))


def resolve_tracking_uri(uri=None):
    """Explicit ``uri`` > ``MLFLOW_TRACKING_URI`` > ``sqlite:///<cwd>/mlflow.db``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri = f"sqlite:///{Path.cwd() / DEFAULT_TRACKING_FILE}"
    return uri


def _check_reachable(uri):
    """Fail within seconds when the tracking server or database at ``uri`` does not answer.

    MLflow retries on its own: a database URL ten times over about 100 s
    (``create_sqlalchemy_engine_with_retry``, not configurable), a server URL with exponential
    backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``). One attempt with a short timeout tells a
    wrong or stopped store at once; a store that answers is then opened by MLflow as usual.
    """
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    dialect = scheme.split("+", 1)[0]
    try:
        if dialect in ("http", "https"):
            import requests

            # Any HTTP answer (even 404 from a server without /health) shows the server is up.
            requests.get(f"{uri.rstrip('/')}/health", timeout=_CONNECT_TIMEOUT).close()
        elif dialect in ("postgresql", "mysql", "mssql"):
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            timeout = {"connect_timeout": _CONNECT_TIMEOUT} if dialect != "mssql" else {}
            engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=timeout)
            try:
                engine.connect().close()
            finally:
                engine.dispose()
    except Exception as exc:
        what = "tracking server" if dialect.startswith("http") else "tracking database"
        raise TrackingError(
            f"cannot reach the MLflow {what} {redact_url(uri)}: "
            f"{redact_url(_root_cause(exc))}. Check that it is running and that the URL is "
            f"right, or pass another --tracking-uri."
        ) from None


def _root_cause(exc):
    """The first line of the innermost error (the driver's or the socket's own words)."""
    exc = getattr(exc, "orig", None) or exc
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return first_line(exc)


def ui_command(uri):
    """The shell command that opens the MLflow UI on the store ``uri`` (password redacted)."""
    if uri.startswith(("http://", "https://")):
        return f"open {redact_url(uri)} in a browser"
    return f"mlx ui --tracking-uri '{redact_url(uri)}'   (or: mlflow ui --backend-store-uri '{redact_url(uri)}')"


def _ms(seconds=None):
    return int(1000 * (time.time() if seconds is None else seconds))


def _clean_key(key):
    # MLflow keys allow alphanumerics, _ - . space / only.
    return re.sub(r"[^\w\-. /]", "_", str(key))[:250]


def _guarded(method):
    """Store errors of ``method`` become a TrackingError (see ``Tracker._store_errors``)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._store_errors():
            return method(self, *args, **kwargs)

    return wrapper


class Tracker:
    """Writes one experiment's runs to the MLflow store at ``uri``."""

    def __init__(self, uri):
        from mlflow import MlflowClient

        self.uri = uri
        path = _sqlite_path(uri)
        if path is not None:
            write_ahead_log(path)
        _check_reachable(uri)
        with self._store_errors():
            self.client = MlflowClient(tracking_uri=uri)

    # --- experiment and runs -------------------------------------------------------------
    @contextlib.contextmanager
    def _store_errors(self):
        # The first calls to a store are where a wrong or unreachable URI shows up; the driver's
        # message can repeat the URL, password included, so it goes through redact_url.
        try:
            yield
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(
                f"cannot use the MLflow store {redact_url(self.uri)}: {redact_url(first_line(exc))}"
            ) from None

    def experiment_id(self, name):
        """Id of the MLflow experiment ``name``, created (once) if missing."""
        from mlflow.exceptions import MlflowException

        with self._store_errors():
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    return self.client.create_experiment(
                        name, artifact_location=self._artifact_location(), tags=EXPERIMENT_KIND
                    )
                except MlflowException:
                    # Another process created it in between: use theirs.
                    experiment = self.client.get_experiment_by_name(name)
                    if experiment is None:
                        raise
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"the MLflow experiment {name!r} is deleted in {redact_url(self.uri)}; restore it "
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or "
                f"rename the experiment."
            )
        return experiment.experiment_id

    def _artifact_location(self):
        # Artifacts beside a SQLite store (not in whatever directory the run started from).
        path = _sqlite_path(self.uri)
        return None if path is None else (path.parent / "mlartifacts").resolve().as_uri()

    def start_run(self, experiment_id, name, tags=None, parent_id=None, start_time=None):
        tags = {k: _truncate(v, _MAX_TAG_LEN) for k, v in (tags or {}).items()}
        if parent_id is not None:
            tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(
            experiment_id, start_time=_ms(start_time), tags=tags, run_name=name
        )
        return run.info.run_id

    def end_run(self, run_id, status, end_time=None):
        """Terminate ``run_id`` with ``status`` (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(run_id, status=status, end_time=_ms(end_time))

    def log(self, run_id, *, params=None, metrics=None, tags=None, steps=None):
        """Log in as few ``log_batch`` calls as MLflow's limits allow.

        ``metrics`` maps names to values (step 0); ``steps`` maps names to per-step values.
        """
        from mlflow.entities import Metric, Param, RunTag

        now = _ms()
        entities = [
            Param(_clean_key(k), _truncate(v, _MAX_PARAM_LEN)) for k, v in (params or {}).items()
        ]
        entities += [RunTag(k, _truncate(v, _MAX_TAG_LEN)) for k, v in (tags or {}).items()]
        metric_list = [Metric(_clean_key(k), float(v), now, 0) for k, v in (metrics or {}).items()]
        for key, values in (steps or {}).items():
            metric_list += [
                Metric(_clean_key(key), float(v), now, step) for step, v in enumerate(values)
            ]
        while entities or metric_list:
            head, entities = entities[:_MAX_PARAMS_TAGS], entities[_MAX_PARAMS_TAGS:]
            room = min(_MAX_ENTITIES - len(head), _MAX_METRICS)
            chunk, metric_list = metric_list[:room], metric_list[room:]
            self.client.log_batch(
                run_id,
                metrics=chunk,
                params=[e for e in head if isinstance(e, Param)],
                tags=[e for e in head if isinstance(e, RunTag)],
            )

    @_guarded
    def start_trial(self, number, *, experiment_id, parent_id, study_name, worker):
        """The RUNNING child run of trial ``number``, run by ``worker`` (one store write)."""
        return self.start_run(
            experiment_id,
            f"trial-{number:04d}",
            tags={
                TAG_STUDY: study_name,
                TAG_ROLE: "trial",
                TAG_TRIAL: str(number),
                TAG_STATE: "RUNNING",
                TAG_WORKER: worker,
            },
            parent_id=parent_id,
        )

    @_guarded
    def finish_trial(self, run_id, record, *, metric_name):
        """Log a finished trial into its child run and end it (two store writes).

        A trial stopped by Ctrl-C ends KILLED; failed trials FAILED; complete and pruned
        trials FINISHED (``mlx.trial_state`` tells which).
        """
        tags = {TAG_STATE: record.state}
        if record.error:
            tags["mlx.error"] = record.error
        if record.warnings:
            tags["mlx.warnings"] = " | ".join(record.warnings)
        if record.model is not None:
            tags[TAG_MODEL] = record.model
        metrics, steps = {}, {}
        if record.curves.get("val"):
            steps[f"val_{metric_name}"] = record.curves["val"]
            steps[f"train_{metric_name}"] = record.curves["train"]
            metrics["epochs"] = len(record.curves["val"])
        else:
            if record.value is not None:
                metrics[f"val_{metric_name}"] = record.value
            if record.train_score is not None:
                metrics[f"train_{metric_name}"] = record.train_score
        if record.fit_time is not None:
            metrics["fit_time"] = record.fit_time
        if record.size is not None:
            metrics["model_bytes"] = record.size
        self.log(run_id, params=record.params, metrics=metrics, steps=steps, tags=tags)
        status = "KILLED" if record.interrupted else _STATUS.get(record.state, "FAILED")
        self.end_run(run_id, status, end_time=record.end_time)
        return run_id

    @_guarded
    def find_parent(self, experiment_name, study_name, statuses=None):
        """The latest parent run of ``study_name`` (optionally only with one of ``statuses``)."""
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return None
        runs = self.client.search_runs(
            [experiment.experiment_id],
            f"tags.`{TAG_ROLE}` = 'parent' AND tags.`{TAG_STUDY}` = '{study_name}'",
            max_results=50,
            order_by=["attributes.start_time DESC"],
        )
        for run in runs:
            if statuses is None or run.info.status in statuses:
                return run
        return None

    @_guarded
    def parents_of_other_definitions(self, experiment_name, study_name):
        """RUNNING parent runs of ``experiment_name`` whose study is not ``study_name``."""
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return []
        runs = self.client.search_runs(
            [experiment.experiment_id],
            f"tags.`{TAG_ROLE}` = 'parent' AND attributes.status = 'RUNNING'",
            max_results=50,
        )
        return [r for r in runs if r.data.tags.get(TAG_STUDY) != study_name]

    @_guarded
    def reopen(self, run_id):
        """Mark a KILLED or FAILED run RUNNING again (resuming it)."""
        self.client.update_run(run_id, status="RUNNING")

    @_guarded
    def end_orphan_trials(self, parent_id, alive):
        """End (KILLED) the RUNNING child runs whose trial number is not in ``alive``.

        Such a child belongs to a trial whose process died; returns how many were ended.
        """
        run = self.client.get_run(parent_id)
        children = _pages(
            self.client.search_runs,
            [run.info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{parent_id}' AND attributes.status = 'RUNNING'",
        )
        ended = 0
        for child in children:
            if child.data.tags.get(TAG_TRIAL) not in alive:
                self.client.set_tag(child.info.run_id, "mlx.error", "lost: its process stopped")
                self.end_run(child.info.run_id, "KILLED")
                ended += 1
        return ended

    # --- artifacts and model ---------------------------------------------------------------
    def log_dict(self, run_id, dictionary, name):
        self.client.log_dict(run_id, dictionary, name)

    def log_text(self, run_id, text, name):
        self.client.log_text(run_id, text, name)

    def log_figure(self, run_id, figure, name):
        self.client.log_figure(run_id, figure, name, save_kwargs={"dpi": 100})

    def log_file(self, run_id, path, artifact_path=None):
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_model(self, run_id, model, X_example, pip_requirements, params=None):
        """Log ``model`` as the run's ``model`` with a signature and an input example.

        Returns the model's URI (``models:/<model_id>``). The LoggedModel is created here in
        the run's experiment: MLflow's fluent API would put it in the globally active one.
        """
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature

        signature = infer_signature(X_example, model.predict(X_example))
        serialization = _serialization(model)
        if serialization["serialization_format"] == "skops":
            pip_requirements = [*pip_requirements, _pinned("skops")]
        else:
            pip_requirements = [*pip_requirements, _pinned("cloudpickle")]
        experiment_id = self.client.get_run(run_id).info.experiment_id
        logged = self.client.create_logged_model(
            experiment_id,
            name="model",
            source_run_id=run_id,
            params={_clean_key(k): _truncate(v, _MAX_PARAM_LEN) for k, v in (params or {}).items()},
        )
        with _global_tracking_uri(self.uri):
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                model_id=logged.model_id,
                signature=signature,
                input_example=X_example,
                pip_requirements=pip_requirements,
                run_id=run_id,
                **serialization,
            )
        return info.model_uri

    # --- the test ledger -------------------------------------------------------------------
    def test_uses(self, fingerprint):
        """Runs (in any experiment, also deleted ones) that evaluated this test fingerprint."""
        from mlflow.entities import ViewType

        query = f"tags.`{TAG_FINGERPRINT}` = '{fingerprint}' AND tags.`{TAG_EVALUATED}` = 'true'"
        with self._store_errors():
            experiments = _pages(self.client.search_experiments, ViewType.ALL)
            ids = [e.experiment_id for e in experiments]
            if not ids:
                return []
            runs = _pages(
                self.client.search_runs,
                ids,
                query,
                ViewType.ALL,
                order_by=["attributes.start_time ASC"],
            )
            return list(runs)

    def experiment_name(self, experiment_id):
        return self.client.get_experiment(experiment_id).name

    # --- reading back (mlx list / mlx show) --------------------------------------------------
    @_guarded
    def latest_parents(self):
        """Per mlx experiment: its latest parent run and the number of parent runs."""
        out = []
        for experiment in _pages(self.client.search_experiments):
            runs = list(
                _pages(
                    self.client.search_runs,
                    [experiment.experiment_id],
                    f"tags.`{TAG_ROLE}` = 'parent'",
                    order_by=["attributes.start_time DESC"],
                )
            )
            if runs:
                out.append((experiment.name, runs[0], len(runs)))
        return out

    @_guarded
    def trials(self, experiment_name):
        """The latest parent run of ``experiment_name`` and its child (trial) runs."""
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise TrackingError(
                f"no experiment {experiment_name!r} in {redact_url(self.uri)}; `mlx list` shows "
                f"the experiments there."
            )
        parents = self.client.search_runs(
            [experiment.experiment_id],
            f"tags.`{TAG_ROLE}` = 'parent'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if not parents:
            raise TrackingError(f"experiment {experiment_name!r} has no mlx run yet.")
        parent = parents[0]
        return parent, self.children(parent)

    @_guarded
    def children(self, parent):
        """The child (trial) runs of the run ``parent`` (a Run or a run id)."""
        if isinstance(parent, str):
            parent = self.client.get_run(parent)
        runs = _pages(
            self.client.search_runs,
            [parent.info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        )
        return list(runs)


def trial_summaries(runs, metric_name):
    """The trials of a search over several models, as :func:`mlx.evaluation.leaderboard` takes.

    ``runs`` are child runs; those without a model (a trial that failed before choosing one,
    a single-model search) are left out.
    """
    return [
        {
            "number": int(run.data.tags.get(TAG_TRIAL, -1)),
            "model": run.data.tags[TAG_MODEL],
            "state": run.data.tags.get(TAG_STATE, ""),
            "value": run.data.metrics.get(f"val_{metric_name}"),
            "fit_time": run.data.metrics.get("fit_time"),
            # MLflow keeps metrics as floats; a size is a count of bytes.
            "size": _int_or_none(run.data.metrics.get("model_bytes")),
        }
        for run in runs
        if TAG_MODEL in run.data.tags
    ]


def _int_or_none(value):
    return None if value is None else int(value)


def _serialization(model):
    """MLflow's safe default format, skops, trusting exactly the types of this model.

    skops refuses types it does not know (our estimators, scikit-learn's distance metrics)
    unless listed as trusted; the model was built here, so its own types are trusted. A model
    skops cannot serialise at all falls back to cloudpickle.
    """
    try:
        import skops.io

        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception:
        return {"serialization_format": "cloudpickle"}
    return {"serialization_format": "skops", "skops_trusted_types": trusted}


def _pinned(distribution):
    from importlib import metadata

    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def _pages(search, *args, **kwargs):
    token = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def _truncate(value, limit):
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _global_tracking_uri(uri):
    """Point MLflow's global tracking URI at ``uri`` for a fluent API call, then restore it."""
    import mlflow

    env = os.environ.get("MLFLOW_TRACKING_URI")
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env
