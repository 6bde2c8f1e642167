"""The ``mlx`` command: validation errors, a full run, the ledger, list and show."""

import json
import re
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from mlx.cli import cli
from mlx.tracking import schema

IRIS = """
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

experiment = mlx.Experiment(
    name={name!r},
    data=lambda: load_iris(return_X_y=True),
    estimator=KNeighborsClassifier(),
    search_space={space},
    {extra}
)
"""
GOOD_SPACE = '{"n_neighbors": IntDistribution(1, 10)}'


def _iris_file(write_experiment, name="cli-iris", space=GOOD_SPACE, extra=""):
    return write_experiment(IRIS.format(name=name, space=space, extra=extra))


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


BAD_FILES = {
    "syntax": ("experiment = mlx.Experiment(\n", r"syntax error in .*exp\.py:5"),
    "no experiment": ("x = 1\n", "defines no `experiment`"),
    "wrong type": ("experiment = 42\n", "is a int, not an mlx.Experiment"),
    "unknown parameter": (
        IRIS.format(name="e", space='{"n_neighbours": IntDistribution(1, 5)}', extra=""),
        "'n_neighbours' is not a parameter of KNeighborsClassifier.*'n_neighbors'",
    ),
    "not a distribution": (
        IRIS.format(name="e", space='{"n_neighbors": [1, 3, 5]}', extra=""),
        "must be an Optuna distribution",
    ),
    "split sum": (
        IRIS.format(name="e", space=GOOD_SPACE, extra="split=(0.8, 0.1, 0.2),"),
        "split fractions must sum to 1",
    ),
    "split negative": (
        IRIS.format(name="e", space=GOOD_SPACE, extra="split=(1.1, -0.2, 0.1),"),
        "each split fraction must be > 0",
    ),
    "metric task": (
        IRIS.format(name="e", space=GOOD_SPACE, extra='metric="r2",'),
        "'r2' is a regression metric but the task is classification",
    ),
    "unknown metric": (
        IRIS.format(name="e", space=GOOD_SPACE, extra='metric="acuracy",'),
        "unknown metric 'acuracy'",
    ),
    "nan labels": (
        IRIS.replace(
            "data=lambda: load_iris(return_X_y=True)",
            "data=lambda: (np.ones((30, 2)), np.r_[np.zeros(15), np.full(15, np.nan)])",
        ).format(name="e", space=GOOD_SPACE, extra=""),
        "y has 15 missing",
    ),
    "too small": (
        IRIS.replace(
            "data=lambda: load_iris(return_X_y=True)",
            "data=lambda: (np.arange(8.0).reshape(4, 2), np.array([0, 1, 0, 1]))",
        ).format(name="e", space=GOOD_SPACE, extra=""),
        "cannot split 4 rows",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_validation_errors_exit_2_without_touching_any_store(
    case, write_experiment, tmp_path, monkeypatch
):
    body, message = BAD_FILES[case]
    path = write_experiment(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _invoke("run", path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlx: error: "), result.stderr

    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.output
    # Neither store was created (they would land in the working directory).
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlx-optuna.db").exists()


def test_missing_file_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("run", tmp_path / "nope.py")
    assert result.exit_code == 2
    assert "nope.py' not found" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_run_refuse_reuse_no_test_list_and_show(stores, write_experiment):
    uri, _ = stores  # the default locations in the working directory
    path = _iris_file(write_experiment, extra="n_trials=3,")
    first = _invoke("run", path)
    assert first.exit_code == 0, first.output
    assert "best params" in first.stdout and "n_neighbors=" in first.stdout
    assert "mlx ui" in first.stdout
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("cli-iris").experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
    )
    assert parent.info.run_id in first.stdout
    assert parent.data.tags[schema.TAG_EXPERIMENT_FILE] == str(path)
    assert client.list_artifacts(parent.info.run_id, "experiment")[0].path == "experiment/exp.py"

    refused = _invoke("run", path)
    assert refused.exit_code == 3
    assert parent.info.run_id in refused.stderr
    assert "--no-test" in refused.stderr and "--allow-test-reuse" in refused.stderr

    untested = _invoke("run", path, "--no-test", "--n-trials", 2)
    assert untested.exit_code == 0, untested.output
    assert "not evaluated" in untested.stdout

    listed = _invoke("list")
    assert listed.exit_code == 0
    assert "cli-iris" in listed.stdout and "accuracy" in listed.stdout

    shown = _invoke("show", "cli-iris")
    assert shown.exit_code == 0
    # The latest run (the --no-test one) is a search of its own, of two trials.
    assert shown.stdout.count("trial-") == 2 and "cli-iris #2" in shown.stdout
    assert "* refit (not tested yet" in shown.stdout and "refit and tested" not in shown.stdout
    assert _invoke("show", path).stdout == shown.stdout  # the experiment's file names it too
    assert _invoke("show", "no-such-experiment").exit_code == 1


def test_show_ranks_the_tested_trial_first_then_complete_then_pruned(stores, write_experiment):
    # Ties everywhere (iris is easy): the order must still be stable and the tested trial first.
    path = _iris_file(write_experiment, extra="n_trials=8,")
    assert _invoke("run", path).exit_code == 0
    view = json.loads(_invoke("show", "cli-iris", "--json").stdout)
    trials = view["trials"]
    assert len(trials) == 8 and trials[0]["tested"] and trials[0]["trial"] == view["best_trial"]
    rest = trials[1:]
    keys = [(-t["value"], t["trial"]) for t in rest]
    assert keys == sorted(keys)  # by score, ties to the earlier trial
    assert view["test"]["ci"][0] <= view["test"]["value"] <= view["test"]["ci"][1]
    shown = _invoke("show", "cli-iris").stdout
    first = next(line for line in shown.splitlines() if "trial-" in line)
    assert first.startswith("* ") and f"trial-{view['best_trial']:04d}" in first
    # Four significant digits unless asked for all.
    assert re.search(r"\b0\.\d{4}\b", shown) and not re.search(r"\b0\.\d{6,}", shown)
    listed = json.loads(_invoke("list", "--json").stdout)
    assert [row["experiment"] for row in listed] == ["cli-iris"]


def test_list_and_show_create_no_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    listed = _invoke("list")
    assert listed.exit_code == 0 and "no mlx experiments" in listed.stdout
    shown = _invoke("show", "anything")
    assert shown.exit_code == 1 and "no MLflow store" in shown.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_trial_failing_is_a_one_line_error(stores, write_experiment):
    path = _iris_file(
        write_experiment, space='{"n_neighbors": IntDistribution(500, 600)}', extra="n_trials=2,"
    )
    result = _invoke("run", path)
    assert result.exit_code == 1
    assert "mlx: error: none of the 2 trials" in result.stderr


def test_passwords_in_urls_are_not_printed(stores, write_experiment, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    path = _iris_file(write_experiment, extra="n_trials=1,")
    # Nothing listens on port 9: each store is unreachable in turn and the error names it,
    # redacted.
    bad = "://user:s3cr3t@127.0.0.1:9"
    for args in (
        ["--tracking-uri", f"http{bad}", "--storage", f"postgresql{bad}/db"],
        ["--storage", f"postgresql{bad}/db"],
    ):
        result = _invoke("run", path, *args)
        assert result.exit_code == 1
        assert "s3cr3t" not in result.output
        assert "user:***@127.0.0.1:9" in result.stderr


def test_help_does_not_import_the_heavy_libraries():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from mlx.cli import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "heavy = {'mlflow', 'optuna', 'sklearn', 'matplotlib'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mlx_test_evaluates_a_no_test_run_once_through_the_ledger(stores, write_experiment):
    uri, _ = stores
    path = _iris_file(write_experiment, extra="n_trials=3,")
    searched = _invoke("run", path, "--no-test")
    assert searched.exit_code == 0, searched.output
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("cli-iris").experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
    )
    model_uri = parent.data.tags[schema.TAG_MODEL_URI]

    tested = _invoke("test", path)
    assert tested.exit_code == 0, tested.output
    assert "(use 1 of this test set)" in tested.stdout
    after = client.get_run(parent.info.run_id)
    assert after.data.tags[schema.TAG_EVALUATED] == "true"
    assert after.info.status == "FINISHED"
    assert len(client.get_metric_history(parent.info.run_id, schema.test("accuracy"))) == 1
    assert after.data.tags[schema.TAG_MODEL_URI] == model_uri  # the model the search refit
    # No trial ran: the run still has its three.
    assert after.data.tags[schema.trials_tag("COMPLETE")] == "3"

    again = _invoke("test", path)
    assert again.exit_code == 1 and "nothing to test" in again.stderr
    # Another run searched without the test; the split was used by the first: the ledger says no.
    assert _invoke("run", path, "--no-test").exit_code == 0
    refused = _invoke("test", path)
    assert refused.exit_code == 3 and "--allow-test-reuse" in refused.stderr


def test_the_backend_is_set_once_a_matplotlib_import_under_way_on_a_thread_ends():
    """In one process (a test session, a notebook), a run's warm-up thread may still be
    importing matplotlib when a command sets the backend: the module is then in sys.modules,
    half made, without its ``use`` yet."""
    script = textwrap.dedent(
        """
        import importlib.abc, sys, threading, time
        import mlflow  # what quiet_libraries imports first, imported already
        from mlx.console import quiet_libraries

        class SlowRcsetup(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "matplotlib.rcsetup":  # imported early in matplotlib's __init__
                    inside.set()
                    time.sleep(2)
                return None  # then found as usual

        inside = threading.Event()
        sys.meta_path.insert(0, SlowRcsetup())
        threading.Thread(target=__import__, args=("matplotlib",)).start()
        assert inside.wait(60)
        quiet_libraries()
        import matplotlib
        print(matplotlib.get_backend())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1].lower() == "agg"
