"""The MLflow store: runs written through ``MlflowClient`` with explicit run ids.

No active-run stack: the same code serves a coordinator and workers in other processes. Every
public method of :class:`Tracker` goes through one guard, so a store that fails or cannot be
reached surfaces as a one-line :class:`~mlx.exceptions.TrackingError` with the URL's password
hidden, whichever call met it. SQLite stores are put in write-ahead-log mode (see
:func:`mlx.stores.write_ahead_log`).
"""

import contextlib
import functools
import os
import re
import time
from pathlib import Path

from mlx.exceptions import TrackingError, first_line
from mlx.stores import cache_folder, from_template, redact_url, sqlite_path, write_ahead_log
from mlx.tracking import _schema as schema

__all__ = ["DEFAULT_TRACKING_FILE", "Tracker", "resolve_tracking_uri", "ui_command"]

DEFAULT_TRACKING_FILE = "mlflow.db"
# MLflow's limits per log_batch call.
_MAX_PARAMS_TAGS, _MAX_METRICS, _MAX_ENTITIES = 100, 1000, 1000
_MAX_PARAM_LEN, _MAX_TAG_LEN = 6000, 8000
# skops's module of trusted type names (see _skops_io).
_SKOPS_TRUSTED = "skops.io._trusted_types"
# Seconds a tracking server or database may take to answer before it counts as unreachable.
_CONNECT_TIMEOUT = 10


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
    cause = None
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
        cause = redact_url(_root_cause(exc))
    if cause is not None:
        # Raised outside the except block: the driver's error, whose text may hold the URL's
        # secrets, must not ride along as the hidden __context__.
        what = "tracking server" if dialect.startswith("http") else "tracking database"
        raise TrackingError(
            f"cannot reach the MLflow {what} {redact_url(uri)}: {cause}. Check that it is "
            f"running and that the URL is right, or pass another --tracking-uri."
        )


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


def _guard_store_calls(cls):
    """Route every public method of ``cls`` through ``Tracker._store_errors``.

    One guard for every read and write: whichever call meets a failing store, the user gets one
    line naming the store (password hidden), not a driver's page of traceback. Guards nest: a
    method calling another is guarded once in effect.
    """
    for name, method in list(vars(cls).items()):
        if name.startswith("_") or not callable(method):
            continue

        def guarded(self, *args, _method=method, **kwargs):
            with self._store_errors():
                return _method(self, *args, **kwargs)

        functools.update_wrapper(guarded, method)
        setattr(cls, name, guarded)
    return cls


@_guard_store_calls
class Tracker:
    """Reads and writes the runs of mlx experiments in the MLflow store at ``uri``.

    Raises
    ------
    TrackingError
        From any method, when the store fails or cannot be reached.
    """

    def __init__(self, uri):
        from mlflow import MlflowClient

        self.uri = uri
        path = sqlite_path(uri)
        if path is not None:
            import mlflow

            # MLflow builds a new database by running every schema migration (seconds).
            with self._store_errors():
                from_template(path, f"mlflow-{mlflow.__version__}", _empty_mlflow_store)
            write_ahead_log(path)
        _check_reachable(uri)
        with self._store_errors():
            self.client = MlflowClient(tracking_uri=uri)

    @contextlib.contextmanager
    def _store_errors(self):
        # The driver's message can repeat the URL, password included: it goes through
        # redact_url. mlx's own errors pass as they are.
        try:
            yield
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(
                f"cannot use the MLflow store {redact_url(self.uri)}: {redact_url(first_line(exc))}"
            ) from None

    # --- experiments and runs ------------------------------------------------------------------
    def experiment_id(self, name):
        """Id of the MLflow experiment ``name``, created (once) if missing."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=self._artifact_location(), tags=schema.EXPERIMENT_KIND
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

    def describe_experiment(self, experiment_id, description, metric, *, models=False):
        """The experiment's description, and a runs-table view that shows the scores.

        Without the view the UI's runs table opens with no metric column at all; this one
        shows each trial's validation, training and test scores, fit time, state (and model),
        ranked by validation score, under "Views".
        """
        import json

        if description:
            self.client.set_experiment_tag(experiment_id, schema.EXPERIMENT_NOTE, description)
        columns = [
            f"metrics.`{name}`"
            for name in (
                schema.val(metric),
                schema.train(metric),
                schema.test(metric),
                schema.METRIC_FIT_TIME,
            )
        ]
        columns += ["params.`model`"] if models else []
        columns += [f"tags.`{schema.TAG_STATE}`"]
        state = {
            "orderByKey": columns[0],
            "orderByAsc": False,
            "selectedColumns": columns,
            "columnOrder": columns,
        }
        now = _ms()
        view = {"name": f"mlx: trials by validation {metric}", "createdAt": now, "updatedAt": now}
        view["state"] = json.dumps(state)
        self.client.set_experiment_tag(experiment_id, schema.SAVED_VIEW, json.dumps(view))

    def experiment_name(self, experiment_id):
        return self.client.get_experiment(experiment_id).name

    def _artifact_location(self):
        # Artifacts beside a SQLite store (not in whatever directory the run started from).
        path = sqlite_path(self.uri)
        return None if path is None else (path.parent / "mlartifacts").resolve().as_uri()

    def start_run(self, experiment_id, name, tags=None, parent_id=None, start_time=None):
        """Create a RUNNING run (one store write); a child run when ``parent_id`` is given."""
        tags = {k: _truncate(v, _MAX_TAG_LEN) for k, v in (tags or {}).items()}
        if parent_id is not None:
            tags[schema.MLFLOW_PARENT_RUN] = parent_id
        run = self.client.create_run(
            experiment_id, start_time=_ms(start_time), tags=tags, run_name=name
        )
        return run.info.run_id

    def end_run(self, run_id, status, end_time=None, name=None):
        """Terminate ``run_id`` with ``status`` (FINISHED, FAILED or KILLED), renamed ``name``.

        One store write, with or without a new name.
        """
        if name is None:
            self.client.set_terminated(run_id, status=status, end_time=_ms(end_time))
            return
        from mlflow.entities import RunStatus

        # MlflowClient has no public call that ends and renames a run at once (update_run
        # reads the whole run first and keeps its end time); its store's call does both.
        self.client._tracking_client.store.update_run_info(
            run_id, RunStatus.from_string(status), _ms(end_time), name
        )

    def reopen(self, run_id):
        """Mark a KILLED or FAILED run RUNNING again (resuming it), without its old error."""
        self.client.update_run(run_id, status="RUNNING")
        if schema.TAG_ERROR in self.client.get_run(run_id).data.tags:
            self.client.delete_tag(run_id, schema.TAG_ERROR)

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
        # Curves first: MLflow lists a run's metrics in the order they were first logged, and
        # its compare page colours by the first one (the validation score, not the fit time).
        metric_list = [
            Metric(_clean_key(key), float(v), now, step)
            for key, values in (steps or {}).items()
            for step, v in enumerate(values)
        ]
        metric_list += [Metric(_clean_key(k), float(v), now, 0) for k, v in (metrics or {}).items()]
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

    # --- finding runs --------------------------------------------------------------------------
    def search_runs(self, experiment_ids, query, *, deleted=False, order_by=None):
        """Every run of ``experiment_ids`` matching ``query`` (all pages)."""
        from mlflow.entities import ViewType

        view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
        return list(_pages(self.client.search_runs, experiment_ids, query, view, order_by=order_by))

    def experiment_ids(self, *, deleted=False):
        """Ids of every experiment in the store (also deleted ones with ``deleted``)."""
        from mlflow.entities import ViewType

        view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
        return [e.experiment_id for e in _pages(self.client.search_experiments, view)]

    def parents(self, experiment_name, query=None, *, deleted=False):
        """Parent runs of ``experiment_name`` (newest first) matching ``query`` too."""
        experiment = self.client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return []
        where = f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'"
        where += f" AND {query}" if query else ""
        order = ["attributes.start_time DESC"]
        return self.search_runs([experiment.experiment_id], where, deleted=deleted, order_by=order)

    def children(self, parent, query=None):
        """The child (trial) runs of the run ``parent`` (a Run or a run id)."""
        if isinstance(parent, str):
            parent = self.client.get_run(parent)
        where = f"tags.`{schema.MLFLOW_PARENT_RUN}` = '{parent.info.run_id}'"
        where += f" AND {query}" if query else ""
        return self.search_runs([parent.info.experiment_id], where)

    def latest_parents(self):
        """Per mlx experiment: its latest parent run and the number of parent runs."""
        out = []
        for experiment in _pages(self.client.search_experiments):
            runs = self.parents(experiment.name)
            if runs:
                out.append((experiment.name, runs[0], len(runs)))
        return out

    def trials(self, experiment_name):
        """The latest parent run of ``experiment_name`` and its child (trial) runs."""
        if self.client.get_experiment_by_name(experiment_name) is None:
            raise TrackingError(
                f"no experiment {experiment_name!r} in {redact_url(self.uri)}; `mlx list` shows "
                f"the experiments there."
            )
        parents = self.parents(experiment_name)
        if not parents:
            raise TrackingError(f"experiment {experiment_name!r} has no mlx run yet.")
        return parents[0], self.children(parents[0])

    # --- artifacts and the model ---------------------------------------------------------------
    def log_dict(self, run_id, dictionary, name):
        self.client.log_dict(run_id, dictionary, name)

    def log_text(self, run_id, text, name):
        self.client.log_text(run_id, text, name)

    def log_file(self, run_id, path, artifact_path=None):
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_bytes(self, run_id, data, name):
        """``data`` as the artifact file ``name`` (``folder/file.wav``)."""
        import tempfile

        folder, _, file = name.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / file
            path.write_bytes(data)
            self.client.log_artifact(run_id, str(path), folder or None)

    def log_datasets(self, run_id, datasets):
        """Record the data a run used (MLflow's Datasets): ``[(name, digest, context, profile)]``.

        ``digest`` is mlx's own order-independent fingerprint, so two runs on the same split
        show the same digest in the UI; ``profile`` is a dict (shape, source, ...).
        """
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(
                    name=name,
                    digest=digest[:36],
                    source_type="mlx",
                    source=json.dumps({"source": profile.get("source", "")}),
                    profile=json.dumps(profile),
                ),
                tags=[InputTag(schema.MLFLOW_DATASET_CONTEXT, context)],
            )
            for name, digest, context, profile in datasets
        ]
        self.client.log_inputs(run_id, datasets=inputs)

    def run(self, run_id):
        """The run ``run_id`` as MLflow has it now."""
        return self.client.get_run(run_id)

    def log_model(self, run_id, model, example, signature, pip_requirements, params=None):
        """Log ``model`` as the run's ``model`` with its signature and an input example.

        Returns the model's URI (``models:/<model_id>``). The LoggedModel is created here in
        the run's experiment: MLflow's fluent API would put it in the globally active one.
        """
        import mlflow
        import mlflow.sklearn

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
        with _global_tracking_uri(self.uri), _requirements_as_given():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                model_id=logged.model_id,
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements,
                run_id=run_id,
                **serialization,
            )
        return info.model_uri


def _empty_mlflow_store(path):
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()


def _serialization(model):
    """MLflow's safe default format, skops, trusting exactly the types of this model.

    skops refuses types it does not know (our estimators, scikit-learn's distance metrics)
    unless listed as trusted; the model was built here, so its own types are trusted. A model
    skops cannot serialise, or one with a type that cannot be imported by name (a class defined
    in an experiment file), falls back to cloudpickle.
    """
    try:
        skops_io = _skops_io()
        trusted = skops_io.get_untrusted_types(data=skops_io.dumps(model))
    except Exception:
        return {"serialization_format": "cloudpickle"}
    if not all(_importable(name) for name in trusted):
        return {"serialization_format": "cloudpickle"}
    return {"serialization_format": "skops", "skops_trusted_types": trusted}


def _skops_io():
    """``skops.io``, imported without recomputing its lists of trusted type names.

    When imported, skops lists the names of the types it trusts by default: every
    scikit-learn estimator (``sklearn.utils.all_estimators()`` imports every public
    scikit-learn module) and every numpy and scipy ufunc, each located by scanning every loaded
    module: one to several seconds in a process that has MLflow loaded, more than the rest of
    logging a model. The lists (``skops.io._trusted_types``: names only) are computed by the
    first import and cached per version of skops, scikit-learn, scipy and numpy; later
    processes give skops the cached module, and import it as usual if skops wants a name the
    cache lacks.
    """
    import json
    import sys
    import types
    from importlib import metadata

    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    versions = "-".join(
        f"{name}-{metadata.version(name)}" for name in ("skops", "scikit-learn", "scipy", "numpy")
    )
    cache = cache_folder() / f"trusted-types-{versions}.json"
    try:
        names = json.loads(cache.read_text())
    except (OSError, ValueError):
        names = None
    if names is not None:
        cached = types.ModuleType(_SKOPS_TRUSTED)
        cached.__dict__.update(names)
        sys.modules[_SKOPS_TRUSTED] = cached
        try:
            import skops.io

            skops.io._trusted_types = cached
            return skops.io
        except ImportError:  # another skops wants other names: import it as it is
            for name in [m for m in sys.modules if m == "skops.io" or m.startswith("skops.io.")]:
                del sys.modules[name]
    import skops.io

    names = {
        key: value
        for key, value in vars(sys.modules[_SKOPS_TRUSTED]).items()
        if key.isupper() and isinstance(value, list) and all(isinstance(v, str) for v in value)
    }
    with contextlib.suppress(OSError):  # no cache then: the next process computes them again
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        partial.write_text(json.dumps(names))
        os.replace(partial, cache)
    return skops.io


@contextlib.contextmanager
def _requirements_as_given():
    """MLflow's check of the model's requirements against the installed packages, skipped.

    mlx pins every requirement to the installed version (:func:`mlx.tracking.requirements`),
    so the check can only agree; it maps the files of every installed distribution to their
    modules first, which takes about half a second per process. Both places that run it while
    a model is logged skip it: saving the model's environment, and loading the model back to
    check that its input example can be served.
    """
    import mlflow.pyfunc
    from mlflow.utils import environment

    name = "warn_dependency_requirement_mismatches"
    modules = [m for m in (environment, mlflow.pyfunc) if hasattr(m, name)]
    checks = [getattr(m, name) for m in modules]
    for module in modules:
        setattr(module, name, lambda requirements: None)
    try:
        yield
    finally:
        for module, check in zip(modules, checks, strict=True):
            setattr(module, name, check)


def _importable(qualified_name):
    """Whether ``module.Name`` can be imported by name (as loading a skops model must)."""
    import importlib

    module, _, name = qualified_name.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), name)
    except Exception:
        return False


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
