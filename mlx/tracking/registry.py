"""The model registry: a run's refit and tested model as a new version of a registered model.

After the single test evaluation, :func:`register_model` makes the model the run logged
(``models:/<model_id>``) version N of the registered model ``name``, with the test metrics and
their confidence intervals in the version's description and tags, and moves the alias
``candidate`` to it. ``mlflow.sklearn.load_model("models:/<name>@candidate")`` (or
``mlflow.pyfunc.load_model``) then loads the latest tested model. Promoting a candidate (an
alias such as ``champion``) stays a person's decision, made in the MLflow UI or with
``MlflowClient.set_registered_model_alias``.
"""

from mlx.exceptions import TrackingError, first_line
from mlx.stores import redact_url
from mlx.tracking import _schema as schema

__all__ = ["register_model"]


def register_model(
    parent, name, model_uri, *, metric, scores, intervals, validation, experiment_name
):
    """Register the run's logged model as a new version of ``name``; returns its URI.

    ``parent`` is the run (:class:`~mlx.tracking.ParentRun`), ``model_uri`` the model it logged,
    ``metric`` the experiment's metric, ``scores`` and ``intervals`` the test evaluation,
    ``validation`` the best validation score. A run that registered already (a resumed one
    that stopped after registering) gets its version back, with the alias moved to it again.
    The parent run is tagged with the version's ``models:/<name>/<version>``.

    Raises
    ------
    TrackingError
        The registry refused or could not be reached.
    """
    from mlflow.exceptions import MlflowException

    client, run_id = parent.tracker.client, parent.run_id
    try:
        version = _registered(client, name, run_id)
        if version is None:
            _create_registered_model(client, name, MlflowException)
            version = client.create_model_version(
                name,
                source=model_uri,
                run_id=run_id,
                tags=_tags(metric, scores, intervals, validation, experiment_name, parent.name),
                description=_description(metric, scores, intervals, validation, parent),
                model_id=_model_id(model_uri),
            ).version
            _link(client, _model_id(model_uri), name, version)
        client.set_registered_model_alias(name, schema.REGISTRY_ALIAS, str(version))
    except MlflowException as exc:
        raise TrackingError(
            f"cannot register the model as {name!r} in {redact_url(parent.tracker.uri)}: "
            f"{redact_url(first_line(exc))}"
        ) from None
    uri = f"models:/{name}/{version}"
    parent.log(tags={schema.TAG_REGISTERED: uri})
    return uri


def _registered(client, name, run_id):
    """The version of ``name`` that run ``run_id`` registered before, or None."""
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        if version.name == name:
            return version.version
    return None


def _create_registered_model(client, name, error):
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        client.create_registered_model(name)
    except error as exc:
        # Another run registered it first: it is a new version of the same model.
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise


def _link(client, model_id, name, version):
    """List the version on the logged model, as ``mlflow.register_model`` does (the UI shows it)."""
    import json

    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    if model_id is None:
        return
    listed = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
    versions = [*json.loads(listed or "[]"), {"name": name, "version": int(version)}]
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(versions)})


def _model_id(model_uri):
    """The logged model's id in ``models:/<model_id>``, or None for another kind of URI."""
    rest = model_uri.removeprefix("models:/")
    return rest if rest != model_uri and "/" not in rest and "@" not in rest else None


def _tags(metric, scores, intervals, validation, experiment_name, run_name):
    tags = {
        schema.TAG_EXPERIMENT: experiment_name,
        schema.TAG_RUN_NAME: run_name,
        schema.PARAM_METRIC: metric,
        schema.best_val(metric): repr(float(validation)),
    }
    for name, value in scores.items():
        tags[schema.test(name)] = repr(float(value))
        if name in intervals:
            low, high = intervals[name]
            tags[schema.ci_low(schema.test(name))] = repr(float(low))
            tags[schema.ci_high(schema.test(name))] = repr(float(high))
    return tags


def _description(metric, scores, intervals, validation, parent):
    """Markdown: where the model comes from, and its test metrics with their intervals."""
    lines = [
        f"Refit and tested by the mlx run **{parent.name}** ({parent.run_id}); the test split "
        f"was evaluated once. Best validation {metric} = {validation:.4f}.",
        "",
        "| test metric | value | 95% interval |",
        "|---|---|---|",
    ]
    # The metric, then those with an interval (counts such as support have none: in the tags).
    ordered = [metric, *sorted(name for name in intervals if name != metric)]
    for name in (n for n in ordered if n in scores):
        interval = intervals.get(name)
        shown = "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"
        lines.append(f"| {name} | {scores[name]:.4f} | {shown} |")
    return "\n".join(lines)
