"""The Optuna storage: where it is, and opening it.

The default is a SQLite file beside the MLflow store, in write-ahead-log mode (see
:mod:`mlx.stores`); a database server URL (PostgreSQL) shares one study between a coordinator
and workers on other machines. Opening is retried while the database restarts, and an error
never shows the URL's password.
"""

import warnings
from pathlib import Path

import optuna

from mlx.exceptions import SearchError, first_line
from mlx.search.retry import retrying
from mlx.search.slots import replace_lost
from mlx.stores import from_template, is_local, redact_url, sqlite_path, write_ahead_log

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_STORAGE_FILE",
    "default_heartbeat",
    "open_storage",
    "resolve_storage",
]

DEFAULT_STORAGE_FILE = "mlx-optuna.db"
# Seconds between heartbeats where other processes may share the study.
DEFAULT_HEARTBEAT = 10


def resolve_storage(url=None):
    """The Optuna storage URL: ``url`` if given, else ``mlx-optuna.db`` in the working directory.

    A plain file path (no ``://``) means a SQLite file at that path.
    """
    if url is None:
        url = str(Path.cwd() / DEFAULT_STORAGE_FILE)
    if "://" not in url:
        url = f"sqlite:///{Path(url).resolve()}"
    return url


def default_heartbeat(heartbeat, url, workers):
    """``heartbeat`` if given; else on (every 10 s) with workers or a database server."""
    if heartbeat is not None:
        return int(heartbeat)
    return DEFAULT_HEARTBEAT if workers > 1 or not is_local(url) else None


def open_storage(url, *, heartbeat=None):
    """An Optuna RDB storage on ``url``; with a heartbeat, lost trials get replaced.

    Heartbeats are off unless ``heartbeat`` (seconds) is given; a running trial silent for
    three intervals is failed and a new slot replaces it (:func:`mlx.search.slots.replace_lost`).

    Raises
    ------
    SearchError
        The storage cannot be opened (after retrying for two minutes while it restarts).
    """
    try:
        return retrying(_rdb_storage, url, heartbeat)
    except Exception as exc:
        raise SearchError(
            f"cannot use the Optuna storage {redact_url(url)}: {redact_url(first_line(exc))}"
        ) from None


def _empty_optuna_store(path):
    optuna.storages.RDBStorage(f"sqlite:///{path}").engine.dispose()


def _rdb_storage(url, heartbeat):
    engine_kwargs = {"pool_pre_ping": True}
    path = sqlite_path(url)
    if path is not None:
        from_template(path, f"optuna-{optuna.__version__}", _empty_optuna_store)
        write_ahead_log(path)
    if url.startswith("sqlite"):
        # Wait for a lock instead of failing at once when another process writes.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        # Heartbeats are "experimental" in Optuna since 2.x; they are what mlx relies on.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat,
            grace_period=None if heartbeat is None else 3 * heartbeat,
            heartbeat_stale_trial_callback=replace_lost if heartbeat else None,
        )
