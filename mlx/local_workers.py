"""This machine's worker processes (``mlx run --workers N``): started, released, stopped.

A local worker is ``mlx.workers.serve`` in a child process. It is started first of all, before
its coordinator imports scikit-learn or loads the experiment file, so that it imports and loads
the data meanwhile; it opens the stores and joins once the coordinator releases it, when the
study and the parent run exist. This module stays light for that reason: the ``mlx`` command
starts the workers with it before it imports anything heavy, and :func:`local_workers` then
takes over the processes already started.
"""

import contextlib
import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys

__all__ = ["LocalWorkers", "WorkerSpec", "local_workers", "started_early"]

SPEC_VARIABLE = "MLX_WORKER_SPEC"
# What the coordinator writes to a local worker's stdin to release it.
GO = "go\n"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Seconds a stopping local worker gets to end its trial before it is killed.
_STOP_GRACE = 30
# How a local worker stops on SIGINT. A Ctrl-C at the terminal reaches it and its coordinator,
# which then stops it with SIGINT too: the first SIGINT stops it, and the later ones must not cut
# its stop short (its trial recorded as interrupted, its child run ended). Python ignores an
# exception raised in a callback (it prints "Exception ignored in ..." and goes on), and a SIGINT
# during an import can land in one, importlib's module-lock cleanup: that stop is raised again
# once the callback has returned. Stopped while it still imports, the worker ends quietly, as it
# does later (see mlx.workers.serve): its coordinator says so.
_STOP_ON_SIGINT = """
import _thread
import signal
import sys
import threading


def _stop(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _unraisable(unraisable):
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        signal.signal(signal.SIGINT, _stop)
        threading.Timer(0.01, _thread.interrupt_main).start()
    else:
        sys.__unraisablehook__(unraisable)


signal.signal(signal.SIGINT, _stop)
sys.unraisablehook = _unraisable
"""
# A local worker's program.
_BOOTSTRAP = (
    _STOP_ON_SIGINT
    + """
try:
    from mlx.workers import serve
    serve()
except KeyboardInterrupt:
    sys.exit(130)
"""
)

# Workers that `started_early` started, until `local_workers` takes them over.
_early: list[tuple["WorkerSpec", list[subprocess.Popen]]] = []


@dataclasses.dataclass
class WorkerSpec:
    """Everything a local worker process needs to join the search (sent as JSON).

    The stores are as the coordinator was given them (None for the defaults) and the
    overrides as ``--set`` texts: the worker, in the same working directory and environment,
    resolves and applies them as its coordinator does.
    """

    path: str
    overrides: list[str]
    tracking_uri: str | None
    storage: str | None
    heartbeat: int | None
    parent_pid: int
    worker_id: str = ""


class LocalWorkers:
    """The worker processes :func:`local_workers` started, waiting to be released."""

    def __init__(self, processes, limits=None):
        self.processes = processes
        self._limits = limits  # this process's share of the BLAS threads, while workers run

    def release(self):
        """Let the workers open the stores and join: the coordinator's run exists now.

        Until then they import, load the data and open local SQLite stores (copies of an
        empty store, safe to make at once): a worker that opened a database server's fresh store
        while the coordinator creates it would run the store's migrations twice at once.
        """
        for process in self.processes:
            with contextlib.suppress(OSError):  # a worker that already ended
                process.stdin.write(GO)
                process.stdin.flush()

    def claimed_all(self):
        """This process claims no more trials: its refit gets all the BLAS threads back.

        The workers run their last trials meanwhile, on their own share of the cores.
        """
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None


def _spec(path, overrides, tracking_uri, storage, heartbeat):
    return WorkerSpec(
        path=str(os.path.abspath(path)),
        overrides=list(overrides),
        tracking_uri=tracking_uri,
        storage=storage,
        heartbeat=heartbeat,
        parent_pid=os.getpid(),
    )


def _threads(n):
    """BLAS threads of each of the ``n + 1`` processes: one share of the cores."""
    return max(1, (os.cpu_count() or 1) // (n + 1))


def _start(spec, n):
    threads = str(_threads(n))
    processes = []
    for i in range(n):
        mine = dataclasses.replace(spec, worker_id=f"{platform.node()}-local{i + 1}")
        # The spec goes through the environment, not the command line, where `ps` would show
        # a password.
        env = {
            **os.environ,
            SPEC_VARIABLE: json.dumps(dataclasses.asdict(mine)),
            **dict.fromkeys(_THREAD_VARIABLES, threads),
        }
        command = [sys.executable, "-c", _BOOTSTRAP]
        processes.append(subprocess.Popen(command, env=env, stdin=subprocess.PIPE, text=True))
    return processes


def _stop(processes, interrupt):
    """Wait for the workers to end (SIGINT first if ``interrupt``); kill those that hang."""
    if interrupt:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
    for process in processes:
        with contextlib.suppress(OSError):
            process.stdin.close()  # a worker never released reads EOF and ends
        try:
            process.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def started_early(path, n, overrides=(), *, tracking_uri=None, storage=None, heartbeat=None):
    """Start ``n`` local workers now, for a :func:`local_workers` of this block to take over.

    The ``mlx`` command calls it first, so that the workers import while it loads the
    experiment. Workers that no :func:`local_workers` took over (the run failed before it
    started them, say) are stopped when the block ends; never released, they end quietly.
    """
    spec = _spec(path, overrides, tracking_uri, storage, heartbeat)
    entry = (spec, _start(spec, n))
    _early.append(entry)
    interrupted = False
    try:
        yield
    except BaseException:
        interrupted = True
        raise
    finally:
        if entry in _early:  # not taken over
            _early.remove(entry)
            _stop(entry[1], interrupt=interrupted)


def _taken_over(spec, n):
    """The processes :func:`started_early` started for this ``spec``, if any."""
    for entry in _early:
        if entry[0] == spec and len(entry[1]) == n:
            _early.remove(entry)
            return entry[1]
    return None


@contextlib.contextmanager
def local_workers(path, n, overrides=(), *, tracking_uri=None, storage=None, heartbeat=None):
    """``n`` worker processes on this machine, for the duration of the block.

    Yields a :class:`LocalWorkers` to release once the coordinator's run exists. The workers
    :func:`started_early` started for the same file, overrides and stores are taken over;
    else they start now. BLAS gets one share of the cores per process so that the processes do
    not fight over them.
    """
    if n < 1:
        yield LocalWorkers([])
        return
    spec = _spec(path, overrides, tracking_uri, storage, heartbeat)
    processes = _taken_over(spec, n) or _start(spec, n)
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(_threads(n))
    interrupted = False
    try:
        yield LocalWorkers(processes, limits)
    except BaseException:
        interrupted = True
        raise
    finally:
        limits.restore_original_limits()
        _stop(processes, interrupt=interrupted)
