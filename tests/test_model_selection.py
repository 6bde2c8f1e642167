"""One search over several model types: the space, the budget, the leaderboard, the test once."""

import csv
import io

import mlflow
import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.datasets import make_classification, make_moons
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlx import Experiment, evaluation, run
from mlx.cli import cli
from mlx.estimators import KNeighborsClassifier, MLPClassifier
from mlx.exceptions import ExperimentError
from mlx.experiment import definition_hash
from mlx.search import candidates as _candidates
from mlx.search import suggest
from mlx.tracking import schema

# Five epochs stop the MLP before it converges; the refit lets that warning through.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# The tree and the forest share parameter names with other ranges: Optuna sees them apart only
# through the per-model prefix. The MLP learns epoch by epoch and has a define-by-run space.
SPACES = {
    "knn": {
        "kneighborsclassifier__n_neighbors": IntDistribution(1, 15),
        "kneighborsclassifier__weights": CategoricalDistribution(["uniform", "distance"]),
    },
    "tree": {"max_depth": IntDistribution(1, 8), "min_samples_leaf": IntDistribution(1, 5)},
    "forest": {"max_depth": IntDistribution(2, 4)},
    "mlp": lambda trial: {
        "mlpclassifier__hidden_layer_sizes": (trial.suggest_int("width", 4, 16),),
        "mlpclassifier__learning_rate_init": trial.suggest_float("lr", 1e-3, 1e-1, log=True),
    },
}
# Each model's own estimator parameters, unprefixed (for the MLP, what its define-by-run space
# builds, not the numbers Optuna suggests them from).
OWN_PARAMS = {name: set(space) for name, space in SPACES.items() if isinstance(space, dict)}
OWN_PARAMS["mlp"] = {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__learning_rate_init"}
# The names Optuna knows them by, unprefixed.
OPTUNA_PARAMS = {**OWN_PARAMS, "mlp": {"width", "lr"}}


def _estimators():
    return {
        "knn": make_pipeline(StandardScaler(), KNeighborsClassifier()),
        "tree": DecisionTreeClassifier(),
        "forest": RandomForestClassifier(n_estimators=5),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier(max_iter=5)),
    }


def _moons():
    return make_moons(n_samples=150, noise=0.3, random_state=0)


def _three_features():
    return make_classification(
        n_samples=120, n_features=3, n_informative=2, n_redundant=0, random_state=0
    )


def _children(client, parent_id):
    run_ = client.get_run(parent_id)
    return client.search_runs(
        [run_.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def _number(child):
    return int(child.data.tags[schema.TAG_TRIAL])


def _artifacts(client, run_id):
    return {a.path for a in client.list_artifacts(run_id)}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, store_maker):
    """A shared-budget search over four model types on the moons (two features)."""
    folder = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as mp:
        uri, storage = store_maker(folder, mp)
        experiment = Experiment(
            "moons-models",
            _moons,
            estimators=_estimators(),
            search_space=SPACES,
            split=(0.6, 0.2, 0.2),
            n_trials=14,
        )
        result = run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
        client = MlflowClient(uri)
        yield result, client, _children(client, result.run_id), uri


def test_child_runs_carry_the_chosen_model_and_only_its_params(shared):
    result, _, children, _ = shared
    assert len(children) == 14
    for child in children:
        params, tags = child.data.params, child.data.tags
        model = params["model"]
        assert tags[schema.TAG_MODEL] == model
        number = int(tags[schema.TAG_TRIAL])
        assert child.info.run_name == schema.trial_name(number, model, tags[schema.TAG_STATE])
        assert tags[schema.MLFLOW_RUN_NAME] == child.info.run_name  # what the UI shows
        # No foreign params and no Optuna prefixes on a child run.
        assert set(params) == {"model"} | OWN_PARAMS[model], (model, params)
    chosen = {child.data.params["model"] for child in children}
    assert chosen == set(SPACES)


def test_only_the_winner_is_refit_and_tested_once(shared):
    result, client, children, _ = shared
    parent = client.get_run(result.run_id)
    complete = [c for c in children if c.data.tags[schema.TAG_STATE] == "COMPLETE"]
    best = max(complete, key=lambda c: c.data.metrics[schema.val("accuracy")])
    assert result.best_value == pytest.approx(best.data.metrics[schema.val("accuracy")])
    assert parent.data.params["best.model"] == best.data.params["model"]
    assert result.best_params["model"] == best.data.params["model"]
    assert parent.data.tags[schema.TAG_EVALUATED] == "true"
    assert len(client.get_metric_history(result.run_id, schema.test("accuracy"))) == 1
    # The refit model is of the winning type, and it is the logged one.
    winner = _estimators()[best.data.params["model"]]
    assert type(result.model) is type(winner)
    X, _ = _moons()
    logged = mlflow.sklearn.load_model(result.model_uri)
    np.testing.assert_array_equal(logged.predict(X), result.model.predict(X))


def test_the_leaderboard_agrees_with_the_child_runs(shared):
    result, client, children, _ = shared
    assert {"leaderboard.csv", "leaderboard.png", "decision_boundaries.png"} <= _artifacts(
        client, result.run_id
    )
    text = mlflow.artifacts.load_text(f"runs:/{result.run_id}/leaderboard.csv")
    rows = {row["model"]: row for row in csv.DictReader(io.StringIO(text))}
    assert set(rows) == set(SPACES)
    values = [float(row[schema.best_val("accuracy")]) for row in csv.DictReader(io.StringIO(text))]
    assert values == sorted(values, reverse=True)
    # The first row is the overall winner, the model that was refit and tested.
    assert next(iter(rows)) == result.best_params["model"]
    for model, row in rows.items():
        mine = [c for c in children if c.data.params["model"] == model]
        complete = [c for c in mine if c.data.tags[schema.TAG_STATE] == "COMPLETE"]
        # Ties go to the earlier trial.
        best = max(complete, key=lambda c: (c.data.metrics[schema.val("accuracy")], -_number(c)))
        assert float(row[schema.best_val("accuracy")]) == pytest.approx(
            best.data.metrics[schema.val("accuracy")]
        )
        assert int(row["best_trial"]) == _number(best)
        assert float(row["fit_time_s"]) == pytest.approx(best.data.metrics[schema.METRIC_FIT_TIME])
        assert int(row["size_bytes"]) == best.data.metrics[schema.METRIC_MODEL_BYTES] > 0
        states = [c.data.tags[schema.TAG_STATE] for c in mine]
        for state in ("COMPLETE", "PRUNED", "FAIL"):
            assert int(row[state.lower()]) == states.count(state)


def test_mlx_show_prints_the_model_leaderboard(shared):
    result, _, _, uri = shared
    out = CliRunner().invoke(cli, ["show", "moons-models", "--tracking-uri", uri]).output
    assert "complete/pruned/fail" in out
    for model in SPACES:
        assert f"\n{model} " in out


def test_fixed_shares_and_no_boundaries_beyond_two_features(stores):
    uri, storage = stores
    experiment = Experiment(
        "three-features",
        _three_features,
        estimators={
            "knn": make_pipeline(StandardScaler(), KNeighborsClassifier()),
            "tree": DecisionTreeClassifier(),
            "forest": RandomForestClassifier(n_estimators=5),
        },
        search_space={"knn": SPACES["knn"], "tree": SPACES["tree"], "forest": {}},
        model_budget="fixed",
        n_trials=8,
    )
    result = run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    client = MlflowClient(uri)
    models = [c.data.params["model"] for c in _children(client, result.run_id)]
    # 8 // 3 each, the remainder to the first ones in declaration order.
    assert {name: models.count(name) for name in set(models)} == {"knn": 3, "tree": 3, "forest": 2}
    artifacts = _artifacts(client, result.run_id)
    assert {"leaderboard.csv", "leaderboard.png"} <= artifacts
    assert "decision_boundaries.png" not in artifacts


def test_a_single_model_on_two_features_gets_its_decision_boundary(stores):
    uri, storage = stores
    experiment = Experiment(
        "moons-tree", _moons, DecisionTreeClassifier(), {"max_depth": IntDistribution(1, 5)}
    )
    result = run(experiment, tracking_uri=uri, storage=storage, n_trials=2, show_progress=False)
    client = MlflowClient(uri)
    artifacts = _artifacts(client, result.run_id)
    assert "decision_boundaries.png" in artifacts
    assert "leaderboard.csv" not in artifacts
    children = _children(client, result.run_id)
    assert len(children) == 2
    for child in children:
        assert set(child.data.params) == {"max_depth"}
        assert schema.TAG_MODEL not in child.data.tags


# --- the pieces ---------------------------------------------------------------------------------


def test_the_choice_of_model_and_the_translation_back():
    candidates = {name: (None, space) for name, space in SPACES.items()}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        name, trial_like = _candidates.choose(trial, candidates)
        params = suggest(trial_like, candidates[name][1])
        study.tell(trial, 0.0)
        assert all(key == "model" or key.startswith(f"{name}:") for key in trial.params)
        model, own = _candidates.split_params(trial.params, candidates)
        assert model == name and set(own) == OPTUNA_PARAMS[name]
        # Replaying the trial's parameters rebuilds the same estimator parameters (the refit).
        again_name, again = _candidates.choose(optuna.trial.FixedTrial(trial.params), candidates)
        assert (again_name, suggest(again, candidates[again_name][1])) == (name, params)
        seen.add(name)
    assert seen == set(SPACES)


def test_a_single_model_keeps_plain_names():
    candidates = {"model": (None, {"alpha": FloatDistribution(0.1, 1.0)})}
    trial = optuna.trial.FixedTrial({"alpha": 0.5})
    name, same = _candidates.choose(trial, candidates)
    assert (name, same) == ("model", trial)
    assert _candidates.split_params({"alpha": 0.5}, candidates) == ("model", {"alpha": 0.5})


def test_leaderboard_ties_go_to_the_earlier_trial_as_in_optuna():
    def trial(number, model, value, state="COMPLETE"):
        return {"number": number, "model": model, "state": state, "value": value}

    trials = [
        trial(0, "b", 0.8),
        trial(1, "a", 0.9, "PRUNED"),
        trial(2, "b", 0.9),
        trial(3, "a", 0.9),
        trial(4, "c", None, "FAIL"),
    ]
    rows = evaluation.leaderboard(trials, ["a", "b", "c", "d"])
    assert [(r["model"], r["best_trial"]) for r in rows] == [
        ("b", 2),
        ("a", 3),
        ("c", None),
        ("d", None),
    ]
    assert (rows[1]["complete"], rows[1]["pruned"], rows[2]["fail"]) == (1, 1, 1)
    text = evaluation.leaderboard_csv(rows, "accuracy")
    assert text.splitlines()[0].startswith("model,best_trial,best_val_accuracy,")
    assert text.splitlines()[3] == "c,,,,,0,0,1"


@pytest.mark.parametrize(
    "names, n_trials, expected",
    [
        ("abc", 8, list("abcabcab")),
        ("abc", 2, list("ab")),
        ("ab", 4, list("abab")),
        ("a", 3, list("aaa")),
    ],
)
def test_fixed_shares(names, n_trials, expected):
    assert _candidates.fixed_shares(names, n_trials) == expected


def _experiment(**kwargs):
    arguments = {"name": "m", "data": _moons, "estimators": _estimators(), "search_space": SPACES}
    arguments.update(kwargs)
    return Experiment(**arguments)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"estimator": DecisionTreeClassifier()}, "either estimator .* or estimators"),
        ({"estimators": {}}, "estimators must be a non-empty dict"),
        ({"estimators": {"a b": DecisionTreeClassifier()}}, "model name 'a b'"),
        ({"estimators": {"model": DecisionTreeClassifier()}}, "'model' is reserved"),
        ({"estimators": {"tree": DecisionTreeClassifier}}, r"estimators\['tree'\] must be an"),
        (
            {"search_space": {**SPACES, "tre": {}}},
            "entry for 'tre', which is not a model .* Did you mean 'tree'",
        ),
        (
            {"search_space": {k: v for k, v in SPACES.items() if k != "forest"}},
            "no entry for model 'forest'",
        ),
        (
            {"search_space": {**SPACES, "forest": {"n_neighbors": IntDistribution(1, 3)}}},
            r"search_space\['forest'\] parameter 'n_neighbors' is not a parameter of "
            "RandomForestClassifier",
        ),
        (
            {"search_space": {"kneighborsclassifier__n_neighbors": IntDistribution(1, 3)}},
            "keyed by model name",
        ),
        ({"search_space": [1]}, "search_space must be a dict from model names"),
        (
            {"estimators": {"tree": DecisionTreeClassifier(), "ridge": Ridge()}},
            r"share one task, got tree \(classification\), ridge \(regression\)",
        ),
        ({"model_budget": "equal"}, "model_budget must be one of"),
    ],
)
def test_invalid_model_selection_definitions(kwargs, message):
    if "estimators" in kwargs and "search_space" not in kwargs:
        kwargs["search_space"] = None
    with pytest.raises(ExperimentError, match=message):
        _experiment(**kwargs)


def test_the_definition_hash_covers_the_candidates_and_the_budget_mode():
    fingerprints = {"test": "x"}
    base = definition_hash(_experiment(), fingerprints)
    assert definition_hash(_experiment(), fingerprints) == base
    assert definition_hash(_experiment(model_budget="fixed"), fingerprints) != base
    wider = {**SPACES, "forest": {"max_depth": IntDistribution(2, 5)}}
    assert definition_hash(_experiment(search_space=wider), fingerprints) != base
    fewer = {k: v for k, v in _estimators().items() if k != "mlp"}
    spaces = {k: v for k, v in SPACES.items() if k != "mlp"}
    assert definition_hash(_experiment(estimators=fewer, search_space=spaces), fingerprints) != base
