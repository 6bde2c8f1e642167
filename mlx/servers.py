"""Local web UIs run as child processes: the MLflow UI (``mlx ui``) and optuna-dashboard
(``mlx dashboard``).

A :class:`Server` is a command that binds 127.0.0.1 on a given port. :func:`serve` runs either
UI the same way:

- the port is checked before anything starts (a busy port is one line and exit 1, not a banner
  followed by the server's "Address already in use");
- the command runs in a process group of its own (a new session), so that a Ctrl-C in the
  terminal reaches mlx alone and mlx stops the whole group: ``mlflow server`` forks uvicorn,
  which forks workers, and those outlive a signal sent to the first process only;
- the URL is printed once the server answers HTTP, not when it starts (MLflow takes 10-30 s);
- SIGINT and SIGTERM stop the group (SIGTERM, then SIGKILL after a grace period) and mlx exits
  0; a server that dies shows its last lines of output and mlx exits 1.

Neither UI may create a store: a missing local store is an error (:func:`require_store`).
"""

import collections
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlx.exceptions import MlxError
from mlx.stores import redact_url, sqlite_path

__all__ = [
    "DASHBOARD_EXTRA",
    "HOST",
    "Server",
    "ServerError",
    "free_port",
    "mlflow_ui",
    "optuna_dashboard",
    "require_store",
    "serve",
]

HOST = "127.0.0.1"
DASHBOARD_EXTRA = 'pip install "mlx-experiments[dashboard]"'
# Seconds a server may take to answer after it starts (MLflow takes 10-30 s on 2 busy cores).
START_TIMEOUT = 180
# Seconds the server's processes get to stop after SIGTERM before they are killed.
STOP_GRACE = 10
# Lines of the server's output kept for an error message.
_TAIL_LINES = 12


class ServerError(MlxError):
    """A UI server cannot start or stopped on its own (port in use, no store, a crash)."""

    exit_code = 1


@dataclass(frozen=True)
class Server:
    """A web UI: its name, its store, its command on a port, the path that answers once up.

    ``argv(port)`` is the command; it must bind :data:`HOST` and ``port`` only. ``env`` is added
    to this process's environment for the server; ``hint`` is printed below the URL.
    """

    name: str
    store: str
    argv: object
    probe: str = "/"
    env: dict = field(default_factory=dict)
    hint: str = ""


def mlflow_ui(uri):
    """The MLflow UI on the tracking store ``uri`` (``mlflow server``, one worker, no job runner).

    One uvicorn worker serves one local user (each worker imports MLflow, which doubles the
    start-up time on two cores). MLflow's job runner (eight more processes) serves GenAI
    features that mlx runs do not use; it stays off unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION``
    says otherwise.
    """
    if uri.startswith(("http://", "https://")):
        raise ServerError(
            f"{redact_url(uri)} is an MLflow server already: open it in a browser (`mlx ui` "
            f"serves a database store, such as sqlite:///mlflow.db)."
        )

    def argv(port):
        return [
            *(sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri),
            *("--host", HOST, "--port", str(port), "--workers", "1"),
        ]

    env = {}
    if "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" not in os.environ:
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return Server("MLflow UI", redact_url(uri), argv, "/health", env, _MODEL_TRAINING_HINT)


# MLflow 3 opens every experiment in its GenAI view (traces, an assistant) whatever the
# experiment's mlflow.experimentKind tag says: the choice is the browser's, stored per origin
# (so per port) once the user flips the switch; a ?workflowType= URL holds for one page only.
_MODEL_TRAINING_HINT = (
    'if the UI opens in its GenAI view, click "Model training" at the top left: the runs '
    "table is there (your browser remembers the choice for this port)."
)


def optuna_dashboard(storage):
    """optuna-dashboard on the Optuna storage URL ``storage``, on this interpreter.

    The command is the ``optuna-dashboard`` console script's entry point run by
    ``sys.executable``, so that the dashboard of this environment runs whatever ``PATH`` holds.
    Its single-process ``wsgiref`` server is used: gunicorn, picked when installed, leaves a
    control socket in the home directory and forks a worker.

    Raises
    ------
    ServerError
        optuna-dashboard is not installed (the message names the extra that installs it).
    """
    from importlib.metadata import entry_points

    found = entry_points(group="console_scripts", name="optuna-dashboard")
    if not found:
        raise ServerError(f"optuna-dashboard is not installed: {DASHBOARD_EXTRA}")
    entry = next(iter(found))
    code = (
        f"import sys; from {entry.module} import {entry.attr} as main; "
        f"sys.argv[0] = 'optuna-dashboard'; sys.exit(main())"
    )

    def argv(port):
        return [
            *(sys.executable, "-c", code, storage),
            *("--host", HOST, "--port", str(port), "--server", "wsgiref"),
        ]

    return Server("optuna-dashboard", redact_url(storage), argv, probe="/api/studies")


def require_store(url, *, nothing, option):
    """Raise :class:`ServerError` if ``url`` is a local store that does not exist.

    A UI server would create an empty store there and show nothing; the message says where mlx
    looked. ``nothing`` says what is missing ("no runs here"), ``option`` how to point elsewhere.
    Database servers are not checked here (the UI reports what it finds).
    """
    path = _local_path(url)
    if path is not None and not path.exists():
        raise ServerError(
            f"{nothing}: there is no {path.name} in {path.resolve().parent} (`mlx run FILE` "
            f"here creates it; or pass {option})."
        )


def _local_path(url):
    path = sqlite_path(url)
    if path is not None:
        return Path(unquote(path.as_posix().split("?", 1)[0]))
    if url.startswith("file:"):
        return Path(unquote(urlparse(url).path))
    if "://" not in url:
        return Path(url)
    return None


def free_port():
    """A TCP port free on :data:`HOST` right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _check_port(port):
    """Raise :class:`ServerError` if ``port`` cannot be bound on :data:`HOST`.

    Bound with ``SO_REUSEADDR``, as uvicorn and wsgiref bind: only a listening socket counts
    as busy, not the closed connections of a server stopped a moment ago.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServerError(
                    f"port {port} on {HOST} is in use (perhaps by a UI started earlier, on "
                    f"another store); pick another with --port N, or --port 0 for a free one."
                ) from None
            raise ServerError(f"cannot use port {port} on {HOST}: {exc.strerror}.") from None


class _Stop(Exception):
    """SIGINT or SIGTERM arrived: stop the server and exit 0."""


def serve(server, port, *, start_timeout=START_TIMEOUT, stop_grace=STOP_GRACE):
    """Run ``server`` on ``port`` (0: any free port) until SIGINT or SIGTERM, then stop it.

    Prints progress on stderr and, once the server answers HTTP, ``<name> on <store>: <URL>``
    on stdout. Returns normally after a signal (the server's whole process group stopped).
    Must run in the main thread (it handles SIGINT and SIGTERM).

    Raises
    ------
    ServerError
        The port is in use; the server exited or did not answer within ``start_timeout``
        seconds while starting; the server exited while serving. The message ends with the
        server's last lines of output.
    """
    if port == 0:
        port = free_port()
        _say(f"port 0: using the free port {port}")
    else:
        _check_port(port)
    url = f"http://{HOST}:{port}"
    process = None
    with _stop_on_signals():
        try:
            with contextlib.suppress(_Stop):
                process = subprocess.Popen(
                    server.argv(port),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **server.env},
                    start_new_session=True,
                )
                tail = _keep_tail(process.stdout)
                _wait_until_ready(server, process, url, tail, start_timeout)
                print(f"{server.name} on {server.store}: {url}  (Ctrl-C stops it)", flush=True)
                if server.hint:
                    _say(server.hint)
                code = process.wait()
                raise ServerError(_ended(server, f"stopped on its own (exit code {code})", tail))
        finally:
            if process is not None:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                _stop_group(process, stop_grace)
    _say(f"{server.name} stopped.")


@contextlib.contextmanager
def _stop_on_signals():
    def stop(signum, frame):
        raise _Stop(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _keep_tail(stream):
    """The last lines the server writes, read in a thread (a full pipe would block it)."""
    tail = collections.deque(maxlen=_TAIL_LINES)

    def read():
        with stream:
            for line in stream:
                tail.append(line.decode(errors="replace").rstrip())

    threading.Thread(target=read, name="server-output", daemon=True).start()
    return tail


def _wait_until_ready(server, process, url, tail, timeout):
    """Return once ``url + server.probe`` answers 200; raise if the server exits or is late."""
    # No proxy: http_proxy would send a request for 127.0.0.1 elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    tty = sys.stderr.isatty()
    _say(f"starting {server.name} on {server.store} ...", end="" if tty else "\n")
    start = time.monotonic()
    last_dot = start
    while True:
        code = process.poll()
        if code is not None:
            if tty:
                print(file=sys.stderr)
            raise ServerError(_ended(server, f"exited while starting (exit code {code})", tail))
        if _answers(opener, url + server.probe):
            if tty:
                print(f" ready in {time.monotonic() - start:.0f} s", file=sys.stderr)
            return
        now = time.monotonic()
        if now - start > timeout:
            if tty:
                print(file=sys.stderr)
            raise ServerError(_ended(server, f"did not answer at {url} in {timeout} s", tail))
        if tty and now - last_dot >= 2:
            print(".", end="", file=sys.stderr, flush=True)
            last_dot = now
        time.sleep(0.25)


def _answers(opener, url):
    try:
        with opener.open(url, timeout=5) as response:
            return response.status == 200
    except OSError:  # refused while starting, or an HTTP error status (HTTPError)
        return False


def _ended(server, what, tail):
    # The reader thread may still be appending the last lines of a process that just exited.
    time.sleep(0.2)
    lines = "\n".join(f"  {line}" for line in list(tail) if line.strip())
    return f"{server.name} {what}; its last lines:\n{lines}" if lines else f"{server.name} {what}."


def _stop_group(process, grace):
    """SIGTERM to the process group of ``process``, SIGKILL to what is left after ``grace`` s.

    ``process`` leads its own session, so the group id is its pid. The leader is reaped here;
    its descendants, reparented on exit, are reaped by init.
    """
    pgid = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()
        if not _group_alive(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _say(message, end="\n"):
    print(f"mlx: {message}", end=end, file=sys.stderr, flush=True)
