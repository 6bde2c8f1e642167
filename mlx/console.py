"""How mlx's processes talk to a terminal: log format, quiet libraries, one-line errors.

Used by the ``mlx`` command and by the local worker processes it starts, so that both print
the same way.
"""

import contextlib
import functools
import logging
import os
import signal
import sys
import threading

__all__ = ["one_line_errors", "quiet_libraries", "quiet_library_logs", "sigterm_interrupts"]

# Library loggers and the level mlx sets them to: their INFO chatter (schema migrations,
# per-trial lines) would drown the progress bar and mlx's own summary.
_QUIET_LEVELS = {
    "mlflow": logging.WARNING,
    "alembic": logging.WARNING,
    "optuna": logging.WARNING,
    # MLflow logs a database error with its whole traceback before raising it; mlx reports the
    # raised error in one line.
    "mlflow.store.db.utils": logging.CRITICAL,
    # SQLAlchemy logs, with its traceback, a cursor or connection that failed to close: a
    # Ctrl-C landing inside that clean-up printed one after "mlx: interrupted" (seen once in a
    # worker). What matters is raised, and reported in one line.
    "sqlalchemy": logging.CRITICAL,
}


def _turn_down_libraries():
    """Set the chatty libraries' loggers to ``_QUIET_LEVELS``; their previous levels."""
    # MLflow sets its loggers' levels when imported: import it first, then turn them down.
    import mlflow  # noqa: F401

    previous = {name: logging.getLogger(name).level for name in _QUIET_LEVELS}
    for name, level in _QUIET_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    return previous


def quiet_libraries():
    """mlx's own warnings on stderr; library chatter (migrations, per-trial INFO) turned down.

    For the ``mlx`` command and its worker processes, for the whole process. Figures are drawn
    off screen.
    """
    logging.basicConfig(format="mlx: %(message)s", level=logging.WARNING)
    _turn_down_libraries()
    # matplotlib is imported when a figure is drawn (a worker never draws one): it picks its
    # backend from MPLBACKEND then; switched here if something imported it already.
    if "matplotlib" in sys.modules:
        # An import statement, not sys.modules: it waits for an import still under way on
        # another thread (a run's warm-up, earlier in the same process).
        import matplotlib

        matplotlib.use("Agg")
    else:
        os.environ["MPLBACKEND"] = "Agg"


@contextlib.contextmanager
def quiet_library_logs():
    """Within the block (or the decorated function), the libraries' chatter turned down as the
    ``mlx`` command does; their loggers' levels restored afterwards.

    For :func:`mlx.run` called from Python or a notebook, whose user did not ask for MLflow's
    INFO lines and may set those loggers for their own code: the levels are theirs again once
    the run returns or raises.
    """
    previous = _turn_down_libraries()
    try:
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


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
