"""mlx.stores: store URLs, passwords hidden."""

import contextlib
import sqlite3

import pytest

from mlx.stores import is_local, redact_url


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql+psycopg2://u:p%40ss@h/db", "postgresql+psycopg2://u:***@h/db"),
        ("http://user:secret@host:5000", "http://user:***@host:5000"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("http://host:5000/path", "http://host:5000/path"),
        ("postgresql://u:se@cret@h/db", "postgresql://u:***@h/db"),
        ("sqlite:////tmp/a@b:c.db", "sqlite:////tmp/a@b:c.db"),
        (
            "see postgresql://u:secret@h/db and http://v:secret@g",
            "see postgresql://u:***@h/db and http://v:***@g",
        ),
        ("postgresql://mlx@h/db?password=secret", "postgresql://mlx@h/db?password=***"),
        (
            "postgresql://mlx@h/db?sslmode=require&sslpassword=secret&application_name=a",
            "postgresql://mlx@h/db?sslmode=require&sslpassword=***&application_name=a",
        ),
        ("https://h/api?token=secret", "https://h/api?token=***"),
        ("https://h/x?a=1&access_token=secret#frag", "https://h/x?a=1&access_token=***#frag"),
        ("https://h/x?SECRET=secret&key=secret", "https://h/x?SECRET=***&key=***"),
        (
            "error near 'postgresql://u@h/db?password=secret'",
            "error near 'postgresql://u@h/db?password=***'",
        ),
        # A parameter that merely contains a secret word is not a credential.
        ("postgresql://u@h/db?keepalives=1", "postgresql://u@h/db?keepalives=1"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert "secret" not in redact_url(url) and "cret" not in redact_url(url)


@pytest.mark.parametrize(
    "url, local",
    [
        ("sqlite:////tmp/x.db", True),
        ("/tmp/optuna.db", True),
        ("postgresql://u@h/db", False),
        ("http://127.0.0.1:5000", False),
    ],
)
def test_is_local(url, local):
    assert is_local(url) is local


def test_a_new_store_is_a_copy_of_one_template_made_once(tmp_path, monkeypatch):
    """Stores are created from a cached empty one: the slow migrations run once per version."""
    from mlx.stores import from_template

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made = []

    def make(path):
        made.append(path)
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE schema_version (v TEXT)")
            db.execute("INSERT INTO schema_version VALUES ('1.0')")
            db.commit()

    for name in ("a", "b"):
        from_template(tmp_path / name / "store.db", "kind-1.0", make)
        with contextlib.closing(sqlite3.connect(tmp_path / name / "store.db")) as db:
            assert db.execute("SELECT v FROM schema_version").fetchall() == [("1.0",)]
    assert len(made) == 1  # the template, once
    existing = tmp_path / "c.db"
    existing.write_bytes(b"data")
    from_template(existing, "kind-1.0", make)
    assert existing.read_bytes() == b"data"  # an existing store is never replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c.db", "cache"]


def test_the_mlflow_and_optuna_templates_are_real_stores(tmp_path, monkeypatch):
    import optuna
    from mlflow import MlflowClient

    from mlx.search.storage import open_storage
    from mlx.tracking import Tracker

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for folder in ("first", "second"):  # made, then copied
        tracker = Tracker(f"sqlite:///{tmp_path / folder / 'mlflow.db'}")
        run_id = tracker.start_run(tracker.experiment_id("e"), "r")
        assert MlflowClient(tracker.uri).get_run(run_id).info.run_name == "r"
        storage = open_storage(f"sqlite:///{tmp_path / folder / 'optuna.db'}")
        optuna.create_study(storage=storage, study_name="s")
        assert optuna.get_all_study_names(storage) == ["s"]
    assert len(list((tmp_path / "cache" / "mlx").glob("empty-*.db"))) == 2
