"""Accuracy against cost: hard limits on model size and fit time, the front, the chosen point.

Two models on noisy moons: a forest (more accurate, tens of KiB pickled) and a stump (less
accurate, about 1.5 KiB). A size limit between the two must make the stump the tested model;
the run logs every trial's score and costs (CSV and figure) and uses the test split once.
"""

import csv
import io
import json
import logging
import os
import subprocess
import sys

import optuna
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from optuna.distributions import IntDistribution
from optuna.trial import TrialState
from sklearn.datasets import make_moons
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from mlx import Experiment, evaluation, run, run_test
from mlx.cli import cli
from mlx.estimators import KNeighborsClassifier
from mlx.exceptions import ExperimentError, SearchError, TestReuseError
from mlx.experiment import definition_hash
from mlx.search import chosen_trial, pickled_size
from mlx.search.limits import COST
from mlx.tracking import schema

# Between the stump's size and the forest's (both measured in the tests that use it).
SIZE_LIMIT = 10_000


def _experiment(name="moons-cost", **limits):
    return Experiment(
        name=name,
        data=lambda: make_moons(n_samples=300, noise=0.3, random_state=0),
        estimators={
            "forest": RandomForestClassifier(n_estimators=20),
            "stump": DecisionTreeClassifier(max_depth=1),
        },
        search_space={"forest": {"max_depth": IntDistribution(3, 6)}, "stump": {}},
        model_budget="fixed",  # 3 trials each, whatever the sampler prefers
        seed=5,
        n_trials=6,
        **limits,
    )


def _artifact(client, run_id, path):
    local = client.download_artifacts(run_id, path)
    with open(local, "rb") as f:
        return f.read()


def _cost_rows(client, run_id):
    text = _artifact(client, run_id, f"{schema.ARTIFACT_SEARCH}/{schema.COST_CSV}").decode()
    return list(csv.DictReader(io.StringIO(text)))


def _study(storage, result):
    return optuna.load_study(study_name=result.study_name, storage=storage)


def test_a_size_limit_that_excludes_the_most_accurate_model_tests_a_cheaper_one(stores):
    uri, storage = stores
    result = run(_experiment(max_model_bytes=SIZE_LIMIT), **_where(stores))
    client = MlflowClient(uri)
    rows = _cost_rows(client, result.run_id)

    # The CSV: every complete trial, its costs, within the limit or not, the front, the choice.
    val = schema.val("accuracy")
    assert [int(r["trial"]) for r in rows] == list(range(6))
    best = max(rows, key=lambda r: float(r[val]))
    assert best["model"] == "forest" and best["feasible"] == "0"  # the limit bites
    assert int(best["model_bytes"]) > SIZE_LIMIT
    (chosen,) = [r for r in rows if r["chosen"] == "1"]
    assert chosen["model"] == "stump" and chosen["feasible"] == "1"
    assert int(chosen["model_bytes"]) <= SIZE_LIMIT
    assert float(chosen[val]) < float(best[val])
    assert chosen["pareto"] == "1" and best["pareto"] == "1"
    for r in rows:
        assert r["feasible"] == str(int(int(r["model_bytes"]) <= SIZE_LIMIT))

    # The run: the chosen trial is the best trial everywhere, and its model is refit and tested.
    assert result.best_params["model"] == "stump"
    assert result.best_trial == int(chosen["trial"])
    assert result.best_value == pytest.approx(float(chosen[val]))
    assert pickled_size(result.model) <= SIZE_LIMIT
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[schema.TAG_BEST_TRIAL] == chosen["trial"]
    assert parent.data.params[schema.limit_param("model_bytes")] == str(SIZE_LIMIT)
    assert parent.data.metrics[schema.best_val("accuracy")] == pytest.approx(float(chosen[val]))
    png = _artifact(client, result.run_id, f"{schema.ARTIFACT_SEARCH}/{schema.COST_PNG}")
    assert png.startswith(b"\x89PNG")

    # Optuna saw the same limit: one constraint per trial, the relative excess.
    for trial in _study(storage, result).get_trials(states=(TrialState.COMPLETE,)):
        size = trial.user_attrs[COST]["model_bytes"]
        assert trial.constraints == {"model_bytes": pytest.approx(size / SIZE_LIMIT - 1)}

    # The test split was used once, through the ledger: another definition on it is refused.
    assert parent.data.tags[schema.TAG_USE_COUNT] == "1"
    assert parent.data.tags[schema.TAG_EVALUATED] == "true"
    assert result.test_scores and schema.test("accuracy") in parent.data.metrics
    with pytest.raises(TestReuseError, match=result.run_id):
        run(_experiment(max_model_bytes=SIZE_LIMIT * 100), **_where(stores))

    # The leaderboard ranks each model type by its best trial within the limit: the forest,
    # over it in every trial, has none (its trials still counted).
    board = _artifact(client, result.run_id, schema.LEADERBOARD_CSV).decode()
    first, forest = list(csv.DictReader(io.StringIO(board)))
    assert (first["model"], first["best_trial"]) == ("stump", chosen["trial"])
    assert (forest["model"], forest["best_trial"], forest["complete"]) == ("forest", "", "3")
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_TRIAL}'"
    )
    within = {
        c.data.tags[schema.TAG_TRIAL]: c.data.tags[schema.TAG_WITHIN_LIMITS] for c in children
    }
    assert within == {r["trial"]: "true" if r["feasible"] == "1" else "false" for r in rows}

    # mlx show: the chosen trial is the tested one, listed first.
    out = CliRunner().invoke(cli, ["show", "moons-cost", "--tracking-uri", uri]).output
    prefix = schema.trial_name(0)[:-4]  # "trial-"
    trials = [line for line in out.splitlines() if line[2:].startswith(prefix)]
    assert trials[0].startswith("* " + schema.trial_name(result.best_trial)), out


def test_no_trial_within_the_limits_fails_clearly_and_leaves_the_test_unused(
    stores, write_experiment
):
    uri, _ = stores
    path = write_experiment(
        """
        from sklearn.datasets import make_moons
        from sklearn.tree import DecisionTreeClassifier

        experiment = mlx.Experiment(
            name="moons-tiny",
            data=lambda: make_moons(n_samples=300, noise=0.3, random_state=0),
            estimator=DecisionTreeClassifier(),
            search_space={"max_depth": IntDistribution(1, 4)},
            max_model_bytes=100,
            seed=5,
            n_trials=3,
        )
        """
    )
    result = CliRunner().invoke(cli, ["run", str(path), "--tracking-uri", uri])

    assert result.exit_code == SearchError.exit_code != 0
    message = result.output.strip().splitlines()[-1]
    assert "none of the 3 complete trials" in message
    assert "max_model_bytes=100" in message and "Raise the limit" in message
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("moons-tiny").experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
    )
    assert parent.info.status == "FAILED"
    assert "none of the 3 complete trials" in parent.data.tags[schema.TAG_ERROR]
    assert not [k for k in parent.data.metrics if k.startswith(schema.test(""))]
    assert parent.data.tags[schema.TAG_EVALUATED] == "false"
    # mlx show names no best trial so far: every trial is over the limit.
    shown = CliRunner().invoke(cli, ["show", "moons-tiny", "--json", "--tracking-uri", uri])
    view = json.loads(shown.output)
    assert view["best_trial"] is None and view["best_val"] is None, view
    # The test split is still unused: the same data with a limit that fits is tested at once.
    fitting = path.read_text().replace("max_model_bytes=100", "max_model_bytes=10**6")
    path.write_text(fitting)
    again = CliRunner().invoke(cli, ["run", str(path), "--tracking-uri", uri])
    assert again.exit_code == 0, again.output
    assert "(use 1 of this test set)" in again.output


def test_mlx_test_later_tests_the_same_chosen_trial(stores):
    """A --no-test run with limits, tested later by `mlx test`: the study reloaded, same choice."""
    uri, _ = stores
    experiment = _experiment(max_model_bytes=SIZE_LIMIT)
    searched = run(experiment, no_test=True, **_where(stores))
    assert searched.test_scores is None and searched.best_params["model"] == "stump"

    tested = run_test(experiment, tracking_uri=uri, storage=stores[1])
    assert tested.run_id == searched.run_id
    assert tested.best_trial == searched.best_trial
    assert tested.best_params == searched.best_params
    assert pickled_size(tested.model) <= SIZE_LIMIT
    parent = MlflowClient(uri).get_run(searched.run_id)
    assert parent.data.tags[schema.TAG_USE_COUNT] == "1"
    (chosen,) = [r for r in _cost_rows(MlflowClient(uri), searched.run_id) if r["chosen"] == "1"]
    assert int(chosen["trial"]) == searched.best_trial


def test_a_refit_on_more_rows_over_the_size_limit_is_reported(stores, caplog):
    """kNN keeps its training rows: refit on train+val it outgrows a limit its trials kept."""
    X, y = make_moons(n_samples=300, noise=0.3, random_state=0)
    n_train = 240  # split (0.8, 0.1, 0.1) of 300 rows
    trial_size = pickled_size(KNeighborsClassifier().fit(X[:n_train], y[:n_train]))
    experiment = Experiment(
        name="knn-refit",
        data=lambda: (X, y),
        estimator=KNeighborsClassifier(),
        refit="train+val",
        max_model_bytes=trial_size + 100,  # 30 more rows take more than 100 bytes
        seed=5,
        n_trials=1,
    )
    with caplog.at_level(logging.WARNING, logger="mlx.runner"):
        result = run(experiment, **_where(stores))

    size = pickled_size(result.model)
    assert size > trial_size + 100
    (message,) = [r.getMessage() for r in caplog.records if "refit model" in r.getMessage()]
    assert f"the refit model has {size} bytes, over max_model_bytes={trial_size + 100}" in message
    assert f"its trial's model had {trial_size}" in message and "train+val" in message


def test_a_generous_time_limit_records_fit_times_and_keeps_the_best(stores):
    # Timings vary with the load: only a limit no trial can break is asserted on.
    uri, storage = stores
    result = run(_experiment(max_fit_seconds=1e6), **_where(stores))
    study = _study(storage, result)
    # The fit time a trial's child run shows (one fit on the training split, no folds here).
    logged = {
        int(child.data.tags[schema.TAG_TRIAL]): child.data.metrics[schema.METRIC_FIT_TIME]
        for child in MlflowClient(uri).search_runs(
            [MlflowClient(uri).get_experiment_by_name("moons-cost").experiment_id],
            f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_TRIAL}'",
        )
    }

    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6
    for trial in complete:
        seconds = trial.user_attrs[COST]["fit_seconds"]
        assert seconds == pytest.approx(logged[trial.number]) and seconds > 0
        assert trial.constraints == {"fit_seconds": pytest.approx(seconds / 1e6 - 1)}
    top = max(t.value for t in complete)
    assert result.best_value == top
    # Ties on the score go to the faster fit (the limited cost), then to the earlier trial.
    fastest = min(
        (t for t in complete if t.value == top),
        key=lambda t: (t.user_attrs[COST]["fit_seconds"], t.number),
    )
    assert result.best_trial == fastest.number


def test_limits_are_part_of_the_definition():
    fingerprints = {"train": "a", "val": "b", "test": "c"}
    plain = _experiment()
    assert "limits" not in plain.definition()  # studies of experiments without limits keep theirs
    hashes = {
        definition_hash(e, fingerprints)
        for e in (
            plain,
            _experiment(max_model_bytes=SIZE_LIMIT),
            _experiment(max_model_bytes=SIZE_LIMIT + 1),
            _experiment(max_fit_seconds=1.0),
            _experiment(max_model_bytes=SIZE_LIMIT, max_fit_seconds=1.0),
        )
    }
    assert len(hashes) == 5
    assert _experiment(max_model_bytes=SIZE_LIMIT, max_fit_seconds=2).limits == {
        "model_bytes": SIZE_LIMIT,
        "fit_seconds": 2.0,
    }


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_model_bytes": 0}, "max_model_bytes must be a whole number of bytes > 0"),
        ({"max_model_bytes": 1.5e6}, "max_model_bytes must be a whole number of bytes > 0"),
        ({"max_model_bytes": True}, "max_model_bytes must be a whole number of bytes > 0"),
        ({"max_fit_seconds": -1}, "max_fit_seconds must be a number of seconds > 0"),
        ({"max_fit_seconds": "1s"}, "max_fit_seconds must be a number of seconds > 0"),
        ({"max_fit_seconds": float("nan")}, "max_fit_seconds must be a number of seconds > 0"),
    ],
)
def test_bad_limits_are_refused_with_the_value(limits, message):
    with pytest.raises(ExperimentError, match=message) as info:
        _experiment(**limits)
    assert repr(next(iter(limits.values()))) in str(info.value)


def test_the_chosen_trial_ties_go_to_the_cheaper_then_the_earlier():
    study = optuna.create_study(direction="maximize")

    def add(value, size, seconds, limit_bytes=1000):
        system = {"constraints:model_bytes": size / limit_bytes - 1}
        cost = {"model_bytes": size, "fit_seconds": seconds}
        study.add_trial(
            optuna.trial.create_trial(value=value, user_attrs={COST: cost}, system_attrs=system)
        )

    add(0.95, 5000, 0.1)  # 0: most accurate, over the limit
    add(0.90, 900, 0.3)  # 1
    add(0.90, 700, 0.9)  # 2: as accurate as 1, smaller
    add(0.90, 700, 0.2)  # 3: as 2, faster, later: time is not limited, the earlier wins
    add(0.80, 100, 0.1)  # 4
    limits = {"model_bytes": 1000}
    assert chosen_trial(study, limits).number == 2
    # Without limits, Optuna's best trial: within its constraints too, but ties to the earlier.
    assert chosen_trial(study, {}).number == 1


def test_pareto_front_by_hand():
    rows = [
        {"number": 0, "value": 0.9, "model_bytes": 100},
        {"number": 1, "value": 0.8, "model_bytes": 50},
        {"number": 2, "value": 0.8, "model_bytes": 80},  # dominated by 1
        {"number": 3, "value": 0.95, "model_bytes": 1000},
        {"number": 4, "value": 0.9, "model_bytes": 100},  # equal to 0: neither dominates
        {"number": 5, "value": 0.99, "model_bytes": None},  # unknown size: off the front
    ]
    assert evaluation.pareto_front(rows, ["model_bytes"]) == {0, 1, 3, 4}


@pytest.mark.slow
def test_workers_record_the_constraints_of_their_trials(tmp_path):
    """Every process of a search, a local worker included, records its trials' constraints."""
    path = tmp_path / "sleepy.py"
    path.write_text(SLEEPY.format(limit=SIZE_LIMIT, pids=str(tmp_path / "pids.txt")))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "mlx", "run", str(path), "--workers", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sleepy-cost").experiment_id])
    parent = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_PARENT][0]
    children = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_TRIAL]
    assert len({c.data.tags[schema.TAG_WORKER] for c in children}) == 2
    study = optuna.load_study(
        study_name=parent.data.tags[schema.TAG_STUDY],
        storage=f"sqlite:///{tmp_path / 'mlx-optuna.db'}",
    )
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6
    for trial in complete:
        size = trial.user_attrs[COST]["model_bytes"]
        assert trial.constraints == {"model_bytes": pytest.approx(size / SIZE_LIMIT - 1)}
    rows = _cost_rows(client, parent.info.run_id)
    assert len(rows) == 6
    (chosen,) = [r for r in rows if r["chosen"] == "1"]
    assert chosen["feasible"] == "1" and chosen["trial"] == parent.data.tags[schema.TAG_BEST_TRIAL]


SLEEPY = """
import os
import time

from optuna.distributions import IntDistribution
from sklearn.datasets import make_moons
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

import mlx

PIDS = {pids!r}


def slow(space):
    def suggest(trial):
        # Every trial waits until two processes have started one: both take trials, however
        # slowly the worker starts on a loaded machine.
        with open(PIDS, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        deadline = time.monotonic() + 120
        while len(set(open(PIDS).read().split())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return {{k: trial.suggest_int(k, d.low, d.high) for k, d in space.items()}}

    return suggest


experiment = mlx.Experiment(
    name="sleepy-cost",
    data=lambda: make_moons(n_samples=300, noise=0.3, random_state=0),
    estimators={{
        "forest": RandomForestClassifier(n_estimators=20),
        "stump": DecisionTreeClassifier(max_depth=1),
    }},
    search_space={{"forest": slow({{"max_depth": IntDistribution(3, 6)}}), "stump": slow({{}})}},
    model_budget="fixed",
    max_model_bytes={limit},
    seed=5,
    n_trials=6,
)
"""


def _where(stores):
    uri, storage = stores
    return {"tracking_uri": uri, "storage": storage, "show_progress": False}
