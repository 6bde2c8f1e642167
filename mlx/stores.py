"""Store URLs, shared by the Optuna storage and the MLflow store.

One place answers "is this store a local SQLite file?" (:func:`sqlite_path`, :func:`is_local`)
and hides passwords before a URL is shown or logged (:func:`redact_url`). Local SQLite stores
run in write-ahead-log mode (:func:`write_ahead_log`): both stores commit several times per
trial, and in SQLite's default rollback-journal mode each commit waits for the disk, which made
the stores, not the trials, the bottleneck of a search.
"""

import contextlib
import os
import re
import shutil
from pathlib import Path

__all__ = [
    "cache_folder",
    "from_template",
    "is_local",
    "redact_url",
    "sqlite_path",
    "write_ahead_log",
]

# user:password@ right after the scheme; the password may hold an unescaped "@".
_USERINFO = re.compile(r"(?<=://)([^/@:\s]*):([^/\s]*)@")
# Credentials passed as query parameters (libpq takes ?password=..., HTTP APIs ?token=...).
_SECRET_PARAMS = (
    "password|passwd|pwd|sslpassword|token|access_token|refresh_token|id_token|auth|"
    "authorization|secret|client_secret|key|api_key|apikey|access_key|secret_key|sslkey|"
    "private_key|signature|sig"
)
_QUERY_SECRET = re.compile(rf"(?i)([?&;](?:{_SECRET_PARAMS})=)[^&;#\s'\"]*")


def redact_url(url):
    """``url`` with its credentials replaced by ``***``.

    A password in the user part (``scheme://user:***@host/...``) and the values of credential
    query parameters (``?password=***``, ``&token=***``, ``sslpassword``, ``access_token``,
    ``secret``, ``key``, ...) are hidden. Also applies to any text that contains URLs, such as a
    driver's error message.
    """
    if url is None:
        return None
    text = _USERINFO.sub(r"\1:***@", str(url))
    return _QUERY_SECRET.sub(r"\1***", text)


def sqlite_path(url):
    """The file of a ``sqlite:///`` URL, or None for any other store."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def is_local(url):
    """Whether the store is a file on this machine, so that no other machine can share it.

    A plain path (no scheme) counts as a SQLite file, as the storage options take it.
    """
    return url.startswith("sqlite") or "://" not in url


# Resolved paths of the SQLite stores put in write-ahead-log mode by this process.
_WAL_STORES: set[str] = set()


def write_ahead_log(path):
    """Put a SQLite store in write-ahead-log mode, synchronised at checkpoints only.

    In WAL mode a commit appends to one log instead of writing a rollback journal and the
    database; with ``synchronous=NORMAL`` it does not wait for the disk either. SQLite
    documents this pair as safe from corruption; a power cut (not a crash of the process) may
    lose the last commits. Commits no longer wait for the disk, which is what a search's many
    small commits spent most of their time on (``bench/tracking.py`` measures it), and
    ``mlflow ui`` can read while a search writes. The journal mode is a persistent
    setting of the file; ``synchronous`` is set on each new connection to this store (and to
    no other database). Where WAL cannot be set (read-only or network file systems), the store
    stays as it is.
    """
    import sqlite3

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL").fetchone()
    except sqlite3.Error:
        return
    if not _WAL_STORES:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "connect", _relax_sync)
    _WAL_STORES.add(str(path.resolve()))


def _relax_sync(dbapi_connection, connection_record):
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        main = dbapi_connection.execute("PRAGMA database_list").fetchone()
        if main is not None and main[2] in _WAL_STORES:
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def cache_folder():
    """mlx's folder in the user's cache (``$XDG_CACHE_HOME/mlx``, else ``~/.cache/mlx``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlx"


def from_template(path, kind, make):
    """Create the missing SQLite store ``path`` as a copy of an empty one of ``kind``.

    ``make(path)`` creates an empty store (running a library's schema migrations, which takes
    seconds for MLflow); the result is the same file every time for one library version, so it
    is made once per ``kind`` (name and version) in the user's cache and copied for every new
    store. The template is written under a temporary name and renamed, and the copy is linked
    into place, so that two processes never see half a file and an existing store is kept.
    """
    if path.exists():
        return
    cache = cache_folder()
    template = cache / f"empty-{kind}.db"
    if not template.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fresh = cache / f".{template.name}.{os.getpid()}"
        make(fresh)
        _checkpoint(fresh)
        os.replace(fresh, template)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    shutil.copyfile(template, temporary)
    try:
        os.link(temporary, path)
    except FileExistsError:  # another process created the store meanwhile: theirs is kept
        pass
    finally:
        temporary.unlink()


def _checkpoint(path):
    """Fold a SQLite file's write-ahead log into it, so that the file alone is the database."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=DELETE").fetchone()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
