"""Storage calls retried while the database behind an Optuna storage restarts."""

import contextlib
import contextvars
import logging
import time

from optuna.exceptions import StorageInternalError

from mlx.exceptions import first_line

__all__ = ["retried_as_a_whole", "retrying"]

logger = logging.getLogger(__name__)

# A storage that stops answering (a database server restarting) is retried this long.
_RETRY_SECONDS = 120.0
# Set within a block whose caller retries it as a whole: its calls are not retried one by one.
_AS_A_WHOLE = contextvars.ContextVar("mlx_retried_as_a_whole", default=False)


def retrying(func, *args, **kwargs):
    """Call ``func``, retrying while the storage is unreachable (up to two minutes).

    Optuna turns database errors into ``StorageInternalError``; a server that restarts for a
    moment surfaces as a few of them, after which the connection pool reconnects. Within
    :func:`retried_as_a_whole`, ``func`` is called once and its error is the block's.
    """
    if _AS_A_WHOLE.get():
        return func(*args, **kwargs)
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


@contextlib.contextmanager
def retried_as_a_whole():
    """Within the block, a storage call that fails fails the block, which its caller retries.

    For a block whose writes depend on what it read (count the trials, then add the missing
    ones): a write that waited out a server restart on its own would act on a count taken
    before the restart, while another process may have added trials since.
    """
    token = _AS_A_WHOLE.set(True)
    try:
        yield
    finally:
        _AS_A_WHOLE.reset(token)
