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
