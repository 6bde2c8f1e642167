"""How mlx's processes talk to a terminal: log format, quiet libraries, one-line errors.

Used by the ``mlx`` command and by the local worker processes it starts, so that both print
the same way.
"""

import contextlib
import functools
import logging
import signal
import sys
import threading

__all__ = ["one_line_errors", "quiet_libraries", "sigterm_interrupts"]


def quiet_libraries():
    """mlx's own warnings on stderr; library chatter (migrations, per-trial INFO) turned down.

    The chatter would drown the progress bar. Figures are drawn off screen.
    """
    logging.basicConfig(format="mlx: %(message)s", level=logging.WARNING)
    # MLflow sets its loggers' levels when imported: import it first, then turn them down.
    import mlflow  # noqa: F401

    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow logs a database error with its whole traceback before raising it; mlx reports the
    # raised error in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    import matplotlib

    matplotlib.use("Agg")


def one_line_errors(func):
    """Turn mlx's own errors into ``mlx: error: ...`` on stderr and their exit code.

    Ctrl-C exits 130 with one line; any other exception keeps its traceback (a bug).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from mlx.exceptions import MlxError
        from mlx.stores import redact_url

        try:
            return func(*args, **kwargs)
        except MlxError as exc:
            print(f"mlx: error: {redact_url(str(exc))}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            message = str(exc) or "interrupted"
            print(f"mlx: {redact_url(message)}", file=sys.stderr)
            sys.exit(getattr(exc, "exit_code", 130))

    return wrapper


@contextlib.contextmanager
def sigterm_interrupts():
    """Within the block, SIGTERM stops this process as Ctrl-C does (an ``Interrupted``).

    Cluster schedulers, ``timeout``, systemd and ``docker stop`` send SIGTERM: the running
    trial and the runs then end KILLED, with the finished trials kept, instead of staying
    RUNNING. A second SIGTERM while stopping is ignored, so that the stop can finish. Only the
    main thread can install a handler; elsewhere the block runs unchanged.
    """
    from mlx.exceptions import Interrupted

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted("terminated (SIGTERM)", signum=signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
