"""mlx.stores: store URLs, passwords hidden."""

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
