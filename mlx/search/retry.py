"""Storage calls retried while the database behind an Optuna storage restarts."""

import logging
import time

from optuna.exceptions import StorageInternalError

from mlx.exceptions import first_line

__all__ = ["retrying"]

logger = logging.getLogger(__name__)

# A storage that stops answering (a database server restarting) is retried this long.
_RETRY_SECONDS = 120.0


def retrying(func, *args, **kwargs):
    """Call ``func``, retrying while the storage is unreachable (up to two minutes).

    Optuna turns database errors into ``StorageInternalError``; a server that restarts for a
    moment surfaces as a few of them, after which the connection pool reconnects.
    """
    delay, deadline = 0.5, time.monotonic() + _RETRY_SECONDS
    while True:
        try:
            return func(*args, **kwargs)
        except StorageInternalError as exc:
            if time.monotonic() > deadline:
                raise
            logger.warning("storage unavailable (%s); retrying in %.1f s", first_line(exc), delay)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)
