"""``mlx ui`` and ``mlx dashboard`` through the real command, on real stores in a temp folder.

Each test starts ``python -m mlx ui|dashboard`` in its own session, as a terminal would, and
checks what a user sees: the URL only once the server answers, on 127.0.0.1 only, on this
folder's store; a busy port or a missing store as one line and exit 1 (nothing created); and
after SIGTERM or SIGINT, exit 0 with no process of the server left. The MLflow UI takes 10-30 s
to start on two busy cores, so its serving tests are slow; optuna-dashboard starts in seconds.
"""

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

# Seconds a server may take to print its URL here (MLflow on two busy cores: 10-30 s).
START = 180
# Seconds every process of a stopped server has to be gone in (mlx waits up to 10, then kills).
GONE = 20


def _needs_dashboard():
    # CI installs the extra (.ci/run), so these tests run there.
    pytest.importorskip("optuna_dashboard", reason='needs pip install -e ".[dashboard]"')


def _env():
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def _run(folder, *args):
    return subprocess.run(
        [sys.executable, "-m", "mlx", *map(str, args)],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


class _Command:
    """``mlx ARGS`` running in its own session, its stdout read line by line in a thread."""

    def __init__(self, folder, *args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlx", *map(str, args)],
            cwd=folder,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a signal for the test's process group must not reach it
        )
        self.lines = queue.Queue()
        self.out = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.out.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def first_line(self, timeout=START):
        line = self.lines.get(timeout=timeout)
        assert line is not None, self.process.stderr.read()
        return line

    def finish(self, timeout=60):
        code = self.process.wait(timeout=timeout)
        return code, "".join(self.out), self.process.stderr.read()


def _parent_and_group(pid):
    """``(ppid, pgid)`` of process ``pid`` from /proc, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: the fields follow its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2])


def _pgid(pid):
    found = _parent_and_group(pid)
    return None if found is None else found[1]


def _descendants(pid):
    """Every live process below ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _parent_and_group(int(entry.name))
            if found is not None:
                parents.setdefault(found[0], []).append(int(entry.name))
    below, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        below += children
        todo += children
    return below


def _alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _get(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read()


def _listening_addresses(port):
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    return [
        line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")
    ]


def _serve_then_stop(folder, command, stop, check):
    """Start ``mlx COMMAND --port 0``; when its URL line appears, ``check(url)`` at once; send
    ``stop``; assert exit 0 and every process of the server gone. Returns mlx's stderr."""
    mlx = _Command(folder, *command, "--port", 0)
    groups = set()
    try:
        line = mlx.first_line()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group()
        check(url)
        port = int(url.rsplit(":", 1)[1])
        addresses = _listening_addresses(port)
        assert addresses and all(a.startswith("127.0.0.1:") for a in addresses), addresses
        external = socket.gethostbyname(socket.gethostname())
        if not external.startswith("127."):
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((external, port)) != 0, f"reachable on {external}"
        server = _descendants(mlx.process.pid)
        groups = {_pgid(p) for p in server} - {None}
        assert groups and mlx.process.pid not in groups, "the server has a group of its own"
        os.kill(mlx.process.pid, stop)
        code, out, err = mlx.finish()
        assert code == 0, err
        assert out.count("http://") == 1, out
        deadline = time.monotonic() + GONE
        while any(map(_alive, groups)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in server if _parent_and_group(p) is not None]
        assert not left, f"{len(left)} of the server's {len(server)} processes left running"
        return err
    finally:
        # Whatever failed above, leave nothing running.
        running = {mlx.process.pid} if mlx.process.poll() is None else set()
        for pgid in running | {g for g in groups if _alive(g)}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        mlx.process.wait(timeout=30)


@pytest.fixture
def mlflow_store(stores):
    """This folder's MLflow store, holding one experiment the server must show."""
    from mlflow import MlflowClient

    tracking_uri, _ = stores
    MlflowClient(tracking_uri).create_experiment("served-here")
    return Path(tracking_uri.removeprefix("sqlite:///")).parent


@pytest.fixture
def optuna_store(stores):
    """This folder's default Optuna storage, holding one small study."""
    import optuna

    _, storage = stores
    study = optuna.create_study(study_name="tiny-study", storage=storage, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    return Path(storage.removeprefix("sqlite:///")).parent


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_mlx_ui_prints_its_url_once_it_answers_and_stops_its_whole_group(mlflow_store, stop):
    def check(url):
        # At once: the URL is printed after the server answered, not when it started.
        status, page = _get(url + "/")
        assert status == 200 and b"<html" in page.lower()
        status, body = _get(
            url + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=served-here"
        )
        assert status == 200 and json.loads(body)["experiment"]["name"] == "served-here"

    err = _serve_then_stop(mlflow_store, ["ui"], stop, check)
    assert "port 0: using the free port" in err
    assert "MLflow UI stopped" in err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_mlx_dashboard_serves_this_folders_studies_and_stops_its_whole_group(optuna_store, stop):
    _needs_dashboard()

    def check(url):
        status, body = _get(url + "/api/studies")
        assert status == 200
        names = [s["study_name"] for s in json.loads(body)["study_summaries"]]
        assert names == ["tiny-study"]

    err = _serve_then_stop(optuna_store, ["dashboard"], stop, check)
    assert "optuna-dashboard stopped" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["ui", "dashboard"])
def test_a_busy_port_is_one_line_and_exit_1(stores, tmp_path, command):
    if command == "dashboard":
        _needs_dashboard()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(tmp_path, command, "--port", port)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert "--port 0" in result.stderr


@pytest.mark.parametrize(
    ("command", "message"),
    [("ui", "no runs here: there is no mlflow.db in"), ("dashboard", "no studies here")],
)
def test_no_store_is_created_in_an_empty_folder(tmp_path, command, message):
    if command == "dashboard":
        _needs_dashboard()
    result = _run(tmp_path, command)
    assert result.returncode == 1
    assert result.stderr.startswith(f"mlx: error: {message}"), result.stderr
    assert str(tmp_path) in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_server_dying_while_starting_shows_its_last_lines(tmp_path):
    _needs_dashboard()
    (tmp_path / "mlx-optuna.db").write_text("not a database\n" * 100)
    result = _run(tmp_path, "dashboard", "--port", 0)
    assert result.returncode == 1
    assert "mlx: error: optuna-dashboard exited while starting (exit code 1)" in result.stderr
    # The server's own last line (the error of its traceback) is shown, indented.
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("  ") and "Error" in last, result.stderr
    assert result.stdout == ""
