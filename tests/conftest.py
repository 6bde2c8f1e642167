"""Shared fixtures of the runner's tests, and the rule that CI runs every test it can.

Creating an MLflow SQLite store runs all of MLflow's migrations (5-10 s here); the session
builds one empty store per kind and each test copies the file, which is the same real store.

Skips that CI cannot miss: where ``MLX_REQUIRE_POSTGRES`` or ``CI`` is set (``.ci/run`` sets
the first), a test that skips fails instead, unless its reason is one of ``ALLOWED_SKIPS``. A
missing PostgreSQL server, audio extra (``librosa``, ``soundfile``), dashboard extra or any other
``importorskip`` then shows up as a failure, not as an ``s`` among two thousand dots.
"""

import functools
import os
import re
import shutil
import textwrap

import pytest

# Skip reasons that stay skips under CI, and why each may.
ALLOWED_SKIPS = {
    r"could not import 'torch'": (
        "the PyTorch parity tests: torch is installed in the benchmark environment only"
    ),
    r"this file spells names on purpose": "test_schema: the schema module spells every name",
    r"does not have a \w+ method": (
        "scikit-learn's estimator checks of a method the estimator does not have"
    ),
    r"SCIPY_ARRAY_API is not set": "scikit-learn's array-API checks (no promise of mlx)",
}
_ALLOWED = re.compile("|".join(f"(?:{reason})" for reason in ALLOWED_SKIPS))
_STRICT_VARIABLES = ("MLX_REQUIRE_POSTGRES", "CI")

# Runs draw their figures themselves: every `mlx run` process of the suite would otherwise start
# a figure helper (two seconds of imports each) on cores the other tests need. tests/test_painter.py
# turns it on, and checks that a run with it logs the same figures.
os.environ["MLX_FIGURE_HELPER"] = "0"


def _strict():
    """The variable that forbids skips here (CI), or None on a developer's machine."""
    for name in _STRICT_VARIABLES:
        if os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no"):
            return name
    return None


def _skip_reason(report):
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_forbidden_skip(report):
    """Turn ``report`` (a skip, not an xfail) into a failure when CI forbids that skip."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    variable = _strict()
    reason = _skip_reason(report)
    if variable is None or _ALLOWED.search(reason):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped ({reason}), but {variable} is set: here every test must run. Install what "
        f'it needs (pip install -e ".[test,audio,postgres,dashboard]", a PostgreSQL server), '
        f"or add its reason to ALLOWED_SKIPS in tests/conftest.py with why it may skip."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_forbidden_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module-level importorskip skips the whole module at collection.
    outcome = yield
    _fail_forbidden_skip(outcome.get_result())


# MLflow refuses to deserialise models (pickle or skops) unless this is set; the tests load the
# models they logged themselves.
_LOAD_MODELS = {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}


@pytest.fixture(scope="session")
def _empty_stores(tmp_path_factory):
    import optuna
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("template-stores")
    mlflow_db, optuna_db = folder / "mlflow.db", folder / "optuna.db"
    MlflowClient(f"sqlite:///{mlflow_db}").search_experiments()
    optuna.storages.RDBStorage(f"sqlite:///{optuna_db}").engine.dispose()
    return mlflow_db, optuna_db


@pytest.fixture(scope="session")
def store_maker(_empty_stores):
    """``make(folder, monkeypatch) -> (tracking_uri, storage_url)``, for any fixture scope."""
    return functools.partial(make_stores, empty_stores=_empty_stores)


@pytest.fixture
def stores(tmp_path, monkeypatch, _empty_stores):
    """Fresh MLflow and Optuna SQLite stores in ``tmp_path`` (also the working directory).

    Returns ``(tracking_uri, storage_url)``. The working directory is ``tmp_path`` so that
    default stores would land there too, and ``MLFLOW_TRACKING_URI`` is unset.
    """
    return make_stores(tmp_path, monkeypatch, _empty_stores)


def make_stores(folder, monkeypatch, empty_stores):
    mlflow_db, optuna_db = empty_stores
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_db, folder / "mlflow.db")
    shutil.copy(optuna_db, folder / "mlx-optuna.db")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value in _LOAD_MODELS.items():
        monkeypatch.setenv(key, value)
    return f"sqlite:///{folder / 'mlflow.db'}", f"sqlite:///{folder / 'mlx-optuna.db'}"


@pytest.fixture
def write_experiment(tmp_path):
    """Write an experiment file from a snippet; returns its path.

    The snippet is dedented and prefixed with common imports.
    """

    def write(body, name="exp.py"):
        header = (
            "import numpy as np\n"
            "import mlx\n"
            "from optuna.distributions import (\n"
            "    CategoricalDistribution, FloatDistribution, IntDistribution)\n"
        )
        path = tmp_path / name
        path.write_text(header + textwrap.dedent(body))
        return path

    return write
