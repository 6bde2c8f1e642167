"""Real servers for the tests: an `mlflow server` process and throw-away PostgreSQL databases.

Nothing here is mocked: the MLflow server is the `mlflow server` command on 127.0.0.1 and a free
port; PostgreSQL is the machine's server on 127.0.0.1:5432 (user ``postgres``, trust auth), in
which each test creates its own database and drops it afterwards.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

PG_HOST = os.environ.get("MLX_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MLX_TEST_PG_PORT", "5432"))
PG_ADMIN = os.environ.get("MLX_TEST_PG_USER", "postgres")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _admin_connection():
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN, dbname="postgres")
    conn.autocommit = True
    return conn


def require_postgres():
    """Skip when no PostgreSQL server answers, unless CI demands one (then fail loudly)."""
    try:
        _admin_connection().close()
    except Exception as exc:
        if os.environ.get("MLX_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL on {PG_HOST}:{PG_PORT} is required but unreachable: {exc}")
        pytest.skip(f"no PostgreSQL server on {PG_HOST}:{PG_PORT}: {exc}")


def pg_url(dbname, user=PG_ADMIN, password=None, driver="psycopg2"):
    auth = user if password is None else f"{user}:{password}"
    return f"postgresql+{driver}://{auth}@{PG_HOST}:{PG_PORT}/{dbname}"


# Tests that use the PostgreSQL server hold a shared lock on this file; the test that restarts
# the server holds it exclusively, so that it never restarts under another test process's feet
# (seen: a test of the other pytest-xdist worker failed, "the database system is shutting down").
_SERVER_LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / f"mlx-tests-postgres-{PG_PORT}.lock"
_server_lock = {"file": None, "users": 0}


@contextlib.contextmanager
def _using_postgres():
    """Within the block, no other test process restarts the PostgreSQL server."""
    import fcntl

    if _server_lock["users"] == 0:
        _server_lock["file"] = open(_SERVER_LOCK, "a")  # noqa: SIM115 (held across the block)
        fcntl.flock(_server_lock["file"], fcntl.LOCK_SH)
    _server_lock["users"] += 1
    try:
        yield
    finally:
        _server_lock["users"] -= 1
        if _server_lock["users"] == 0:
            _server_lock["file"].close()  # closing releases the lock
            _server_lock["file"] = None


@contextlib.contextmanager
def postgres_to_itself():
    """Within the block, no other test process uses the PostgreSQL server (to restart it).

    Waits for the other processes' tests on it to end; this process's own shared hold (its
    databases) is turned exclusive on the same file, then shared again.
    """
    import fcntl

    with _using_postgres():
        fcntl.flock(_server_lock["file"], fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(_server_lock["file"], fcntl.LOCK_SH)


@contextlib.contextmanager
def postgres_database(prefix="mlx_test", owner=None):
    """Create a fresh database, yield its name, drop it (and its connections) afterwards."""
    with _using_postgres():
        yield from _postgres_database(prefix, owner)


def _postgres_database(prefix, owner):
    require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with contextlib.closing(_admin_connection()) as conn, conn.cursor() as cur:
        owner_sql = f" OWNER {owner}" if owner else ""
        cur.execute(f"CREATE DATABASE {name}{owner_sql}")
    try:
        yield name
    finally:
        # A new connection: the server may have restarted meanwhile (a test restarts it).
        with contextlib.closing(_admin_connection()) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def postgres_role(password):
    """A password-protected login role (for the secrets tests), dropped afterwards."""
    require_postgres()
    name = f"mlx_role_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(_admin_connection()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {name} LOGIN PASSWORD %s CREATEDB", (password,))
    try:
        yield name
    finally:
        # A new connection, as in postgres_database.
        with contextlib.closing(_admin_connection()) as conn, conn.cursor() as cur:
            cur.execute(f"DROP OWNED BY {name}")
            cur.execute(f"DROP ROLE IF EXISTS {name}")


class MlflowServer:
    """An `mlflow server` process on 127.0.0.1 with served artifacts."""

    def __init__(self, backend_store_uri, artifacts_dir, cwd, port=None):
        self.backend_store_uri = backend_store_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.cwd = Path(cwd)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.cwd / f"mlflow-server-{self.port}.log"
        self.process = None

    def start(self, timeout=120):
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        cmd = [
            str(mlflow_cli),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (lives as long as the server)
        self.process = subprocess.Popen(
            cmd, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer in {timeout} s:\n{self.log_text()}")

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            # The server forks workers: end the whole process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
