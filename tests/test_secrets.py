"""Secrets stay secret: a password in --storage or --tracking-uri never reaches the output or
the MLflow store (params, tags, metric names, artifacts, the SQLite file itself).

The successful run uses the machine's PostgreSQL as the Optuna storage, through a role with a
password (the server trusts 127.0.0.1, so the password is accepted whatever it is: what matters
is that it is in the URL). Without a server the test is skipped, unless MLX_REQUIRE_POSTGRES is
set (CI), where it fails.
"""

import uuid

import optuna
import pytest
from _servers import free_port, pg_url, postgres_database, postgres_role
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import ViewType

from mlx.cli import cli
from mlx.tracking import schema

IRIS = """
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

experiment = mlx.Experiment(
    name="secrets",
    data=lambda: load_iris(return_X_y=True),
    estimator=KNeighborsClassifier(),
    search_space={"n_neighbors": IntDistribution(1, 9)},
    n_trials=2,
)
"""


def _secret():
    return f"Pw{uuid.uuid4().hex[:12]}"


def _run(path, *args):
    result = CliRunner().invoke(cli, ["run", str(path), *args], catch_exceptions=False)
    return result, result.stdout + result.stderr


def _assert_nowhere(secret, uri, folder, output):
    """The secret is in neither the output, nor anything MLflow holds, nor any file in folder."""
    assert secret not in output
    client = MlflowClient(uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    ids = [e.experiment_id for e in experiments]
    texts = [repr((e.name, e.tags, e.artifact_location)) for e in experiments]
    for run in client.search_runs(ids, run_view_type=ViewType.ALL) if ids else []:
        texts.append(repr((run.info.run_name, run.data.params, run.data.tags)))
        texts.append(repr(sorted(run.data.metrics)))
    for model in client.search_logged_models(ids) if ids else []:
        texts.append(repr((model.name, model.params, model.tags)))
    assert not [text for text in texts if secret in text]
    # Everything on disk: the SQLite store with its write-ahead log, the artifacts (audit,
    # split, figures, the model and its requirements), the Optuna file.
    leaks = [
        str(path)
        for path in folder.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    assert not leaks
    return client


def test_unreachable_stores_with_passwords_are_named_redacted(stores, write_experiment, tmp_path):
    uri, _ = stores
    path = write_experiment(IRIS)
    secret = _secret()
    closed = f"user:{secret}@127.0.0.1:{free_port()}"
    # The Optuna storage is unreachable; the MLflow store is the local one, which the runner
    # writes to before it opens the storage.
    result, output = _run(path, "--tracking-uri", uri, "--storage", f"postgresql://{closed}/db")
    assert result.exit_code == 1
    assert "cannot use the Optuna storage postgresql://user:***@127.0.0.1:" in result.stderr
    # Both unreachable: the tracking database is the first to be named.
    tracking = f"postgresql+psycopg2://{closed}/mlflow"
    second, second_output = _run(
        path, "--tracking-uri", tracking, "--storage", f"postgresql://{closed}/db"
    )
    assert second.exit_code == 1
    assert "cannot reach the MLflow tracking database postgresql+psycopg2://user:***@" in (
        second.stderr
    )
    _assert_nowhere(secret, uri, tmp_path, output + second_output)


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_a_password_in_a_working_storage_url_is_never_stored(
    stores, write_experiment, tmp_path, form
):
    """Fails if redact_url misses either form: ``user:pw@host`` or libpq's ``?password=pw``."""
    uri, _ = stores
    path = write_experiment(IRIS)
    secret = _secret()
    with postgres_role(secret) as role, postgres_database(owner=role) as database:
        if form == "userinfo":
            storage = pg_url(database, user=role, password=secret)
        else:
            storage = pg_url(database, user=role) + f"?password={secret}"
        result, output = _run(path, "--tracking-uri", uri, "--storage", storage)
        assert result.exit_code == 0, output
        client = _assert_nowhere(secret, uri, tmp_path, output)
        # The run did happen and did record where its study lives, without the password.
        (parent,) = client.search_runs(
            [client.get_experiment_by_name("secrets").experiment_id],
            f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
        )
        assert parent.info.status == "FINISHED"
        assert parent.data.tags[schema.TAG_OPTUNA_STORAGE] == storage.replace(secret, "***")
        assert schema.TAG_MODEL_URI in parent.data.tags
        # Nor does the study keep the URL in its attributes.
        loaded = optuna.storages.RDBStorage(storage)
        try:
            for study in loaded.get_all_studies():
                attrs = repr((study.user_attrs, study.system_attrs))
                assert secret not in attrs
                assert len(loaded.get_all_trials(study._study_id)) == 2
        finally:
            loaded.engine.dispose()


@pytest.mark.parametrize("option", ["--tracking-uri", "--storage"])
def test_the_password_is_not_in_the_redacted_form(option, stores, write_experiment):
    # The redaction must not keep a prefix or suffix of the password either.
    path = write_experiment(IRIS)
    secret = "ab" + _secret() + "yz"
    url = f"postgresql://user:{secret}@127.0.0.1:{free_port()}/db"
    result, output = _run(path, option, url)
    assert result.exit_code == 1
    assert secret[:6] not in output and secret[-6:] not in output
    assert "user:***@127.0.0.1" in result.stderr
