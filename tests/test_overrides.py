"""Overrides: ``mlx run FILE --set KEY=VALUE`` and ``mlx.run(..., overrides=...)`` (issue 16).

The values a user types, the checks an override meets (those of the file itself), and what a
run with overrides leaves in the real stores: its own definition hash and study, the overrides
on the parent run, the overridden estimator in the trials and the model, and ``mlx test`` and
``--resume`` that find the run only with the same overrides.
"""

import json
import re

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from optuna.distributions import IntDistribution
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.cli import cli
from mlx.exceptions import ExperimentError
from mlx.experiment import definition_hash
from mlx.overrides import assignments, command_words, parse, parse_value
from mlx.tracking import schema

PIPELINE = """
import os

from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def space(trial):
    # A test makes every trial fail to leave an unfinished (FAILED) run behind.
    if os.environ.get("MLX_TEST_FAIL_TRIALS"):
        raise RuntimeError("failing on purpose")
    return {{"kneighborsclassifier__n_neighbors": trial.suggest_int("n_neighbors", 1, 10)}}


experiment = mlx.Experiment(
    name="over-iris",
    data=lambda: load_iris(return_X_y=True),
    estimator=make_pipeline(StandardScaler(), KNeighborsClassifier()),
    search_space={space},
    n_trials=3,
)
"""
DICT_SPACE = '{"kneighborsclassifier__n_neighbors": IntDistribution(1, 10)}'


def _file(write_experiment, space=DICT_SPACE):
    return write_experiment(PIPELINE.format(space=space))


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _parents(uri, name="over-iris"):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return client.search_runs(
        [experiment.experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
        order_by=["attributes.start_time ASC"],
    )


def _experiment(**kwargs):
    return mlx.Experiment(
        name="over-unit",
        data=lambda: load_iris(return_X_y=True),
        estimator=make_pipeline(StandardScaler(), KNeighborsClassifier()),
        search_space={"kneighborsclassifier__n_neighbors": IntDistribution(1, 10)},
        **kwargs,
    )


# --- what a typed value means ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("0.25", 0.25),
        ("(0.7, 0.15, 0.15)", (0.7, 0.15, 0.15)),
        ("None", None),
        ("True", True),
        ("'3'", "3"),  # quoted: the string
        ("f1_macro", "f1_macro"),  # no literal: the plain string, as Hydra and DVC read it
        ("train+val", "train+val"),
        (" distance ", "distance"),
        ("(64, 32", "(64, 32"),  # malformed: a string, which the setting's check then refuses
    ],
)
def test_values_are_python_literals_else_plain_strings(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_assignments_round_trip_for_other_processes():
    overrides = {
        "split": (0.7, 0.15, 0.15),  # a tuple must stay a tuple (JSON would make it a list)
        "metric": "f1_macro",
        "name": "3",  # a string that looks like a number keeps its quotes
        "timeout": None,
        "kneighborsclassifier__weights": "distance",
    }
    assert parse(assignments(overrides)) == overrides
    assert [type(v) for v in parse(assignments(overrides)).values()] == [
        type(v) for v in overrides.values()
    ]
    # A value that is no literal cannot be carried as text: refused, not mangled.
    with pytest.raises(ExperimentError, match="no Python literal"):
        assignments({"metric": len})
    assert command_words({"split": (0.7, 0.15, 0.15)}) == ["--set", "'split=(0.7, 0.15, 0.15)'"]


@pytest.mark.parametrize(
    "texts, message",
    [
        (["seed"], "--set takes KEY=VALUE, got 'seed'"),
        (["=3"], "--set takes KEY=VALUE"),
        (["seed=1", "seed=2"], "given twice"),
    ],
)
def test_malformed_assignments(texts, message):
    with pytest.raises(ExperimentError, match=re.escape(message)):
        parse(texts)


# --- the experiment, overridden ------------------------------------------------------------


def test_with_overrides_builds_a_checked_copy_and_leaves_the_original_alone():
    original = _experiment(seed=1)
    original.description = "the file's docstring"
    new = original.with_overrides(
        {"kneighborsclassifier__weights": "distance", "validation": 5, "metric": "f1_macro"}
    )
    assert new.estimator.get_params()["kneighborsclassifier__weights"] == "distance"
    assert original.estimator.get_params()["kneighborsclassifier__weights"] == "uniform"
    # Built again from the file's arguments: refit's default follows the new validation.
    assert (original.refit, new.refit) == ("train", "train+val")
    assert (new.metric_name, new.seed, new.validation) == ("f1_macro", 1, 5)
    assert new.description == "the file's docstring" and original.overrides == {}
    assert new.overrides == {
        "kneighborsclassifier__weights": "distance",
        "validation": 5,
        "metric": "f1_macro",
    }
    # Overrides on an overridden experiment add up.
    assert new.with_overrides({"seed": 4}).overrides == {**new.overrides, "seed": 4}
    # After replace (the runner's resume) the arguments stay in step.
    assert original.replace(seed=9).with_overrides({"n_trials": 2}).seed == 9


@pytest.mark.parametrize(
    "overrides, changes",
    [
        ({"seed": 1}, True),
        ({"split": (0.7, 0.15, 0.15)}, True),
        ({"metric": "f1_macro"}, True),
        ({"validation": 3}, True),
        ({"refit": "train+val"}, True),
        ({"kneighborsclassifier__weights": "distance"}, True),
        ({"seed": 0}, False),  # the file's own value: the same experiment
        ({"n_trials": 50, "timeout": 60.0}, False),  # the budget, not the definition
        ({"register": "iris"}, False),  # what happens after the search
    ],
)
def test_the_definition_hash_follows_what_the_search_depends_on(overrides, changes):
    fingerprints = {"train": "a", "val": "b", "test": "c"}
    plain = definition_hash(_experiment(), fingerprints)
    overridden = definition_hash(_experiment().with_overrides(overrides), fingerprints)
    assert (overridden != plain) is changes


# --- through the command: checked like the file (exit 2, one line, no store) -------------------

BAD = {
    "unknown setting": (["--set", "sed=3"], r"unknown override 'sed'.*Did you mean 'seed'\?"),
    "unknown parameter": (
        ["--set", "kneighborsclassifier__weigths=distance"],
        r"unknown override .*Did you mean 'kneighborsclassifier__weights'\?",
    ),
    "searched parameter": (
        ["--set", "kneighborsclassifier__n_neighbors=3"],
        r"is searched \(search_space\['kneighborsclassifier__n_neighbors'\]\)",
    ),
    "a step": (["--set", "standardscaler=None"], r"'standardscaler' is a step"),
    "bad parameter value": (
        ["--set", "kneighborsclassifier__weights=heavy"],
        r"kneighborsclassifier__weights='heavy': The 'weights' parameter of KNeighborsClassifier",
    ),
    "bad setting value": (["--set", "split=(0.5, 0.1, 0.1)"], r"split fractions must sum to 1"),
    "not a literal setting": (["--set", "n_trials=1O"], r"n_trials must be an integer >= 1"),
    "an object": (["--set", "estimator=None"], r"estimator cannot be overridden"),
    "settings that clash": (
        ["--set", "validation=5", "--set", "refit=train"],
        r'refit="train" does not fit validation=5',
    ),
    "no equals sign": (["--set", "seed"], r"--set takes KEY=VALUE"),
    "flag and --set": (["--seed", "3", "--set", "seed=4"], r"seed is given twice"),
    "register without test": (["--register", "iris", "--no-test"], r"--no-test tests nothing"),
    "bad registered name": (["--register", "a/b"], r"register must be the name"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_overrides_exit_2_in_one_line_without_touching_a_store(
    case, write_experiment, tmp_path, monkeypatch
):
    args, message = BAD[case]
    path = _file(write_experiment)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _invoke("run", path, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlx: error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlx-optuna.db").exists()


def test_mlx_run_python_api_checks_overrides_too(write_experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExperimentError, match="Did you mean 'seed'"):
        mlx.run(_file(write_experiment), overrides={"sede": 1})
    assert not (tmp_path / "mlflow.db").exists()


# --- through the command: a run with overrides is another experiment ----------------------------


def test_an_override_is_another_definition_recorded_and_found_again(stores, write_experiment):
    uri, storage = stores
    path = _file(write_experiment)
    weights = "kneighborsclassifier__weights=distance"
    plain = _invoke("run", path, "--no-test")
    assert plain.exit_code == 0, plain.output
    overridden = _invoke("run", path, "--no-test", "--set", weights, "--set", "n_trials=2")
    assert overridden.exit_code == 0, overridden.output

    first, second = _parents(uri)
    # Another definition: another hash, and it names the run's study.
    assert first.data.tags[schema.TAG_HASH] != second.data.tags[schema.TAG_HASH]
    assert second.data.tags[schema.TAG_HASH][:10] in second.data.tags[schema.TAG_STUDY]
    # Recorded on the parent run: the overrides as typed, and the values they set.
    assert schema.TAG_OVERRIDES not in first.data.tags
    recorded = json.loads(second.data.tags[schema.TAG_OVERRIDES])
    assert recorded == {"kneighborsclassifier__weights": "distance", "n_trials": "2"}
    assert second.data.params["kneighborsclassifier__weights"] == "distance"
    assert second.data.params[schema.PARAM_N_TRIALS] == "2"
    client = MlflowClient(uri)
    children = client.search_runs(
        [second.info.experiment_id], f"tags.`{schema.MLFLOW_PARENT_RUN}` = '{second.info.run_id}'"
    )
    assert len(children) == 2

    # `mlx test` finds the run of its definition: with the same --set, the overridden one.
    tested = _invoke("test", path, "--set", weights)
    assert tested.exit_code == 0, tested.output
    assert second.info.run_id in tested.stdout
    assert client.get_run(second.info.run_id).data.tags[schema.TAG_EVALUATED] == "true"
    assert client.get_run(first.info.run_id).data.tags[schema.TAG_EVALUATED] == "false"
    import mlflow.sklearn

    model = mlflow.sklearn.load_model(second.data.tags[schema.TAG_MODEL_URI])
    assert model.get_params()["kneighborsclassifier__weights"] == "distance"


def test_flags_are_short_for_set(stores, write_experiment):
    uri, _ = stores
    path = _file(write_experiment)
    assert _invoke("run", path, "--no-test", "--seed", 3, "--n-trials", 2).exit_code == 0
    assert (
        _invoke("run", path, "--no-test", "--set", "seed=3", "--set", "n_trials=2").exit_code == 0
    )
    first, second = _parents(uri)
    assert first.data.tags[schema.TAG_HASH] == second.data.tags[schema.TAG_HASH]
    recorded = [json.loads(run.data.tags[schema.TAG_OVERRIDES]) for run in (first, second)]
    assert recorded[0] == recorded[1] == {"seed": "3", "n_trials": "2"}


def test_resume_needs_the_same_overrides(stores, write_experiment, monkeypatch):
    uri, _ = stores
    path = _file(write_experiment, space="space")
    weights = "kneighborsclassifier__weights=distance"
    monkeypatch.setenv("MLX_TEST_FAIL_TRIALS", "1")
    failed = _invoke("run", path, "--set", weights)
    assert failed.exit_code == 1 and "none of the 3 trials" in failed.stderr
    (parent,) = _parents(uri)
    assert parent.info.status == "FAILED"
    monkeypatch.delenv("MLX_TEST_FAIL_TRIALS")

    # Without the overrides it is another definition: nothing to resume, and the run is named.
    refused = _invoke("run", path, "--resume")
    assert refused.exit_code == 1
    assert "nothing to resume" in refused.stderr
    assert parent.info.run_id in refused.stderr and f"--set {weights}" in refused.stderr
    other = _invoke("run", path, "--resume", "--set", "kneighborsclassifier__weights=uniform")
    assert other.exit_code == 1 and f"--set {weights}" in other.stderr

    # With them, the same run continues (two more trials that now complete).
    resumed = _invoke("run", path, "--resume", "--set", weights, "--n-trials", 5)
    assert resumed.exit_code == 0, resumed.output
    (after,) = _parents(uri)
    assert after.info.run_id == parent.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags[schema.trials_tag("COMPLETE")] == "2"


WORKERS = """
import os
import time
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MARKER = Path({marker!r})
WAITED = []


def space(trial):
    # The coordinator (the test's process) waits for a trial of the local worker, so that the
    # worker has joined the search whatever the machine's load; it gives up after 180 s, once.
    if os.getpid() == {coordinator}:
        deadline = time.monotonic() + 180
        while not (MARKER.exists() or WAITED) and time.monotonic() < deadline:
            time.sleep(0.2)
        WAITED.append(True)
    else:
        MARKER.touch()
    return {{"kneighborsclassifier__n_neighbors": trial.suggest_int("n_neighbors", 1, 10)}}


experiment = mlx.Experiment(
    name="over-iris",
    data=lambda: load_iris(return_X_y=True),
    estimator=make_pipeline(StandardScaler(), KNeighborsClassifier()),
    search_space=space,
    n_trials=4,
)
"""


def test_local_workers_join_with_the_coordinators_overrides(stores, write_experiment, tmp_path):
    import os

    uri, _ = stores
    marker = tmp_path / "a-worker-ran-a-trial"
    path = write_experiment(WORKERS.format(marker=str(marker), coordinator=os.getpid()))
    # A tuple and a string: the worker must rebuild the same definition from their text.
    overrides = [
        "--set",
        "split=(0.7, 0.15, 0.15)",
        "--set",
        "kneighborsclassifier__weights=distance",
    ]
    result = _invoke("run", path, "--no-test", "--workers", 2, *overrides)
    assert result.exit_code == 0, result.output
    (parent,) = _parents(uri)
    children = MlflowClient(uri).search_runs(
        [parent.info.experiment_id], f"tags.`{schema.MLFLOW_PARENT_RUN}` = '{parent.info.run_id}'"
    )
    workers = {child.data.tags[schema.TAG_WORKER] for child in children}
    assert marker.exists() and any(w.endswith("-local1") for w in workers), workers
    assert len(children) == 4
