"""End-to-end runs against real MLflow and Optuna stores in a temp folder."""

import json

import mlflow
import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris, make_blobs, make_regression
from sklearn.linear_model import Ridge, SGDClassifier
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlx import Experiment, run
from mlx import data as mdata
from mlx.exceptions import SearchError, TestReuseError
from mlx.tracking import schema

KNN_SPACE = {
    "kneighborsclassifier__n_neighbors": IntDistribution(1, 15),
    "kneighborsclassifier__weights": CategoricalDistribution(["uniform", "distance"]),
}


def _iris():
    return load_iris(return_X_y=True)


def _children(client, parent_id):
    run = client.get_run(parent_id)
    return client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def _artifacts(client, run_id, path=None):
    return {a.path for a in client.list_artifacts(run_id, path)}


def _no_run_left_running(client):
    experiments = [e.experiment_id for e in client.search_experiments()]
    return not client.search_runs(experiments, "attributes.status = 'RUNNING'")


@pytest.fixture(scope="module")
def iris(tmp_path_factory, store_maker):
    """One kNN search on iris, shared by the tests that only read what it logged."""
    folder = tmp_path_factory.mktemp("iris")
    with pytest.MonkeyPatch.context() as mp:
        uri, storage = store_maker(folder, mp)
        experiment = Experiment(
            "iris-knn",
            _iris,
            make_pipeline(StandardScaler(), KNeighborsClassifier()),
            KNN_SPACE,
            n_trials=5,
        )
        result = run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
        yield result, MlflowClient(uri), uri, storage


def test_parent_run_with_one_child_per_trial(iris):
    result, client, _, _ = iris
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.name == "iris-knn"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # The runs table opens on a view that shows the scores (the UI's saved-view tag).
    view = json.loads(json.loads(experiment.tags[schema.SAVED_VIEW])["state"])
    assert view["orderByKey"] == f"metrics.`{schema.val('accuracy')}`"
    # The study names its objective (optuna-dashboard and Optuna's plots show it).
    _, storage = iris[2], iris[3]
    study = optuna.load_study(study_name=result.study_name, storage=storage)
    assert study.metric_names == [schema.val("accuracy")]
    tags = parent.data.tags
    assert tags[schema.TAG_STUDY] == result.study_name
    assert result.study_name.startswith("iris-knn-")
    # Every run is its own search: the definition hash and the run's number name its study.
    assert tags[schema.TAG_STUDY] == f"iris-knn-{tags[schema.TAG_HASH][:10]}-1"
    assert tags[schema.TAG_RUN_NUMBER] == "1"
    assert parent.info.run_name == "iris-knn #1"
    assert len(tags[schema.TAG_FINGERPRINT]) == 64
    assert tags[schema.TAG_USE_COUNT] == "1"
    assert tags[schema.TAG_EVALUATED] == "true"
    assert tags[schema.trials_tag("COMPLETE")] == "5"

    children = _children(client, result.run_id)
    assert sorted(c.info.run_name for c in children) == [schema.trial_name(i) for i in range(5)]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags[schema.TAG_STATE] == "COMPLETE"
        # Params are the trial's hyperparameters only.
        assert set(child.data.params) == set(KNN_SPACE)
        metrics = {
            schema.val("accuracy"),
            schema.train("accuracy"),
            schema.METRIC_FIT_TIME,
            schema.METRIC_MODEL_BYTES,
        }
        assert set(child.data.metrics) == metrics
        assert child.data.metrics[schema.METRIC_MODEL_BYTES] > 0
    best_child = max(children, key=lambda c: c.data.metrics[schema.val("accuracy")])
    assert parent.data.metrics[schema.best_val("accuracy")] == pytest.approx(result.best_value)
    assert best_child.data.metrics[schema.val("accuracy")] == pytest.approx(result.best_value)
    for key, value in result.best_params.items():
        assert parent.data.params[schema.best_param(key)] == str(value)


def test_parent_run_holds_settings_metrics_and_artifacts(iris):
    result, client, _, _ = iris
    parent = client.get_run(result.run_id)
    params = parent.data.params
    assert params[schema.PARAM_SEED] == "0"
    assert params[schema.split_param("train")] == "0.8"
    assert params[schema.PARAM_DATA_ROWS] == "150"
    assert params[schema.PARAM_DATA_FEATURES] == "4"
    assert [params[schema.rows_param(k)] for k in ("train", "val", "test")] == ["120", "15", "15"]
    # Params are what the experiment sets or searches; a default such as the metric
    # ("minkowski") is in the full list of the estimator's parameters instead.
    assert "kneighborsclassifier__metric" not in params
    assert "kneighborsclassifier__n_neighbors" not in params
    every = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/{schema.ARTIFACT_PARAMS}")
    assert every["model"]["kneighborsclassifier__metric"] == "minkowski"
    assert not any(key.endswith(("__memory", "__verbose", "__copy")) for key in params)
    tags = parent.data.tags
    assert tags[schema.version_tag("scikit-learn")]
    assert tags[schema.version_tag("mlflow")] == mlflow.__version__
    metrics = parent.data.metrics
    for name in ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro"]:
        assert metrics[schema.test(name)] == pytest.approx(result.test_scores[name])
    # scikit-learn's accuracy of the best configuration refit on the run's training rows.
    prepared = mdata.prepare(Experiment("iris-knn", _iris, KNeighborsClassifier(), {}))
    assert prepared.fingerprints["test"] == parent.data.tags[schema.TAG_FINGERPRINT]
    reference = make_pipeline(StandardScaler(), KNeighborsClassifier())
    reference.set_params(**result.best_params).fit(*prepared.rows("train"))
    assert metrics[schema.test("accuracy")] == reference.score(*prepared.rows("test"))
    assert {"audit.json", "split.json", "test", "search"} <= _artifacts(client, result.run_id)
    assert _artifacts(client, result.run_id, "test") == {
        "test/classification_report.csv",
        "test/confusion_matrix.csv",
        "test/confusion_matrix.png",
        "test/confusion_matrix_normalized.png",
        schema.NO_INTERVAL,  # why support counts have no interval
    }
    # Every score has its bootstrap interval, and the summary quotes it.
    for name in ["accuracy", "balanced_accuracy", "f1_macro"]:
        low, high = (metrics[f(schema.test(name))] for f in (schema.ci_low, schema.ci_high))
        assert low <= metrics[schema.test(name)] <= high
        assert result.test_intervals[name] == pytest.approx((low, high))
    summary = result.summary()
    low, high = result.test_intervals["accuracy"]
    assert f"accuracy = {metrics[schema.test('accuracy')]:.4f} [{low:.4f}, {high:.4f}]" in summary
    assert "**Result:** test accuracy" in parent.data.tags[schema.MLFLOW_NOTE]
    assert "search/optimization_history.png" in _artifacts(client, result.run_id, "search")
    audit = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/audit.json")
    assert audit["rows"] == 150
    assert audit["class_counts"] == {"0": 50, "1": 50, "2": 50}
    split = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/split.json")
    assert [split["splits"][k]["rows"] for k in ("train", "val", "test")] == [120, 15, 15]
    assert split["splits"]["test"]["fingerprint"] == tags[schema.TAG_FINGERPRINT]


def test_test_metrics_are_logged_once_and_the_model_predicts(iris):
    result, client, _, _ = iris
    history = client.get_metric_history(result.run_id, schema.test("accuracy"))
    assert len(history) == 1
    model = mlflow.sklearn.load_model(result.model_uri)
    X, _ = _iris()
    np.testing.assert_array_equal(model.predict(X), result.model.predict(X))
    assert client.get_run(result.run_id).data.tags[schema.TAG_MODEL_URI] == result.model_uri


def test_the_test_ledger_refuses_a_second_evaluation(iris):
    result, client, uri, storage = iris
    # Same data under another experiment name: still the same test split.
    again = Experiment("iris-again", _iris, KNeighborsClassifier(), {}, n_trials=2)
    studies_before = len(optuna.get_all_study_names(storage))
    with pytest.raises(TestReuseError, match=result.run_id) as info:
        run(again, tracking_uri=uri, storage=storage, show_progress=False)
    assert "--no-test" in str(info.value) and "--allow-test-reuse" in str(info.value)
    assert "iris-knn" in str(info.value)
    assert client.get_experiment_by_name("iris-again") is None
    assert len(optuna.get_all_study_names(storage)) == studies_before

    reused = run(
        again, tracking_uri=uri, storage=storage, allow_test_reuse=True, show_progress=False
    )
    tags = client.get_run(reused.run_id).data.tags
    assert tags[schema.TAG_USE_COUNT] == "2"
    assert tags[schema.TAG_EVALUATED] == "true"

    untested = run(again, tracking_uri=uri, storage=storage, no_test=True, show_progress=False)
    assert untested.test_scores is None
    parent = client.get_run(untested.run_id)
    assert parent.data.tags[schema.TAG_EVALUATED] == "false"
    assert not any(key.startswith(schema.test("")) for key in parent.data.metrics)
    assert _no_run_left_running(client)


def test_epochs_pruning_and_a_failing_trial(stores):
    uri, storage = stores
    space = {
        "sgdclassifier__alpha": CategoricalDistribution([1e-4, 100.0]),
        "sgdclassifier__loss": CategoricalDistribution(["hinge", "bogus"]),
    }
    # The grid visits every combination: a good one, a hopeless one (alpha=100, pruned below
    # the threshold) and two with an invalid loss (failed trials that must not stop the search).
    experiment = Experiment(
        "sgd-epochs",
        lambda: make_blobs(200, centers=3, random_state=0),
        make_pipeline(StandardScaler(), SGDClassifier(max_iter=6)),
        space,
        sampler=optuna.samplers.GridSampler({k: d.choices for k, d in space.items()}, seed=0),
        pruner=optuna.pruners.ThresholdPruner(lower=0.7, n_warmup_steps=1),
        n_trials=4,
    )
    result = run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    assert result.trial_counts == {"COMPLETE": 1, "PRUNED": 1, "FAIL": 2}
    client = MlflowClient(uri)
    children = {c.data.tags[schema.TAG_STATE]: c for c in _children(client, result.run_id)}
    assert len(_children(client, result.run_id)) == 4

    complete = children["COMPLETE"]
    val = client.get_metric_history(complete.info.run_id, schema.val("accuracy"))
    train = client.get_metric_history(complete.info.run_id, schema.train("accuracy"))
    assert sorted(m.step for m in val) == list(range(6))
    assert sorted(m.step for m in train) == list(range(6))
    assert complete.data.metrics[schema.METRIC_EPOCHS] == 6

    pruned = children["PRUNED"]
    assert pruned.info.status == "FINISHED"
    # MLflow has no "pruned" status: the name says it, the complete trial's does not.
    assert pruned.info.run_name.endswith(" pruned")
    assert not children["COMPLETE"].info.run_name.endswith(" pruned")
    assert pruned.data.params["sgdclassifier__alpha"] == "100.0"
    assert len(client.get_metric_history(pruned.info.run_id, schema.val("accuracy"))) < 6

    failed = children["FAIL"]
    assert failed.info.status == "FAILED"
    assert "bogus" in failed.data.tags[schema.TAG_ERROR]
    assert failed.data.params["sgdclassifier__loss"] == "bogus"

    assert result.best_params == {"sgdclassifier__alpha": 1e-4, "sgdclassifier__loss": "hinge"}
    assert "search/learning_curve.png" in _artifacts(client, result.run_id, "search")
    assert _no_run_left_running(client)


def test_a_search_where_every_trial_fails_ends_cleanly(stores):
    uri, storage = stores
    experiment = Experiment(
        "all-fail",
        _iris,
        KNeighborsClassifier(),
        # More neighbours than training rows: every trial raises.
        {"n_neighbors": IntDistribution(500, 600)},
        n_trials=3,
    )
    with pytest.raises(SearchError, match="none of the 3 trials"):
        run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("all-fail").experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
    )
    assert parent.info.status == "FAILED"
    assert parent.data.tags[schema.TAG_EVALUATED] == "false"
    assert "SearchError" in parent.data.tags[schema.TAG_ERROR]
    assert not any(key.startswith(schema.test("")) for key in parent.data.metrics)
    assert schema.TAG_MODEL_URI not in parent.data.tags
    assert len(_children(client, parent.info.run_id)) == 3
    assert _no_run_left_running(client)


def _regression_experiment():
    return Experiment(
        "ridge",
        lambda: make_regression(120, 5, noise=10.0, random_state=0),
        make_pipeline(StandardScaler(), Ridge()),
        {"ridge__alpha": FloatDistribution(1e-3, 1e3, log=True)},
        metric="neg_root_mean_squared_error",
        n_trials=4,
    )


def test_regression_is_reproducible_across_fresh_stores(tmp_path, monkeypatch, store_maker):
    results = []
    for name in ("first", "second"):
        uri, storage = store_maker(tmp_path / name, monkeypatch)
        results.append(
            run(_regression_experiment(), tracking_uri=uri, storage=storage, show_progress=False)
        )
    first, second = results
    assert first.study_name == second.study_name
    assert first.best_params == second.best_params
    assert first.best_value == second.best_value
    assert first.test_scores == second.test_scores
    assert set(first.test_scores) >= {"rmse", "mae", "r2", "neg_root_mean_squared_error"}
    assert first.test_scores["rmse"] == pytest.approx(
        -first.test_scores["neg_root_mean_squared_error"]
    )
    client = MlflowClient(uri)
    metrics = client.get_run(second.run_id).data.metrics
    assert metrics[schema.test("r2")] == pytest.approx(second.test_scores["r2"])
    assert "test/residuals.png" in _artifacts(client, second.run_id, "test")


def test_clustering_with_labels(stores):
    uri, storage = stores
    experiment = Experiment(
        "blobs-kmeans",
        lambda: make_blobs(150, centers=3, random_state=1),
        KMeans(n_init=2),
        {"n_clusters": IntDistribution(2, 5)},
        n_trials=3,
    )
    assert experiment.task == "clustering" and experiment.metric_name == "silhouette"
    result = run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    metrics = MlflowClient(uri).get_run(result.run_id).data.metrics
    for name in ("silhouette", "inertia", "adjusted_rand", "normalized_mutual_info"):
        assert metrics[schema.test(name)] == pytest.approx(result.test_scores[name])
    # scikit-learn's metrics of the refit model's clusters of the test rows.
    X_test, y_test = mdata.prepare(experiment).rows("test")
    labels = result.model.predict(X_test)
    assert result.test_scores["inertia"] == pytest.approx(-result.model.score(X_test), rel=1e-9)
    assert result.test_scores["silhouette"] == pytest.approx(silhouette_score(X_test, labels))
    assert result.test_scores["adjusted_rand"] == pytest.approx(adjusted_rand_score(y_test, labels))


def test_an_mlx_estimator_runs_end_to_end(stores):
    from mlx.estimators import KNeighborsClassifier as MlxKNN

    uri, storage = stores
    experiment = Experiment(
        "iris-mlx-knn",
        _iris,
        make_pipeline(StandardScaler(), MlxKNN()),
        {
            "kneighborsclassifier__n_neighbors": IntDistribution(1, 15),
            "kneighborsclassifier__metric": CategoricalDistribution(["euclidean", "cosine"]),
        },
        n_trials=3,
        seed=1,
    )
    result = run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    model = mlflow.sklearn.load_model(result.model_uri)
    X, y = _iris()
    np.testing.assert_array_equal(model.predict(X), result.model.predict(X))
    # scikit-learn's kNN with the same parameters predicts the same on these rows.
    prepared = mdata.prepare(experiment)
    reference = make_pipeline(StandardScaler(), KNeighborsClassifier(algorithm="brute"))
    reference.set_params(**result.best_params).fit(*prepared.rows("train"))
    assert result.test_scores["accuracy"] == reference.score(*prepared.rows("test"))


class _Interrupting(KNeighborsClassifier):
    def fit(self, X, y):
        raise KeyboardInterrupt


def test_an_interrupt_ends_the_parent_run_killed(stores):
    uri, storage = stores
    experiment = Experiment("interrupted", _iris, _Interrupting(), {}, n_trials=3)
    with pytest.raises(KeyboardInterrupt):
        run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("interrupted").experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
    )
    assert parent.info.status == "KILLED"
    assert _no_run_left_running(client)


def test_an_mlx_mlp_trains_epoch_by_epoch(stores):
    from mlx.estimators import MLPClassifier

    uri, storage = stores
    experiment = Experiment(
        "iris-mlx-mlp",
        _iris,
        make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=4)),
        {"mlpclassifier__learning_rate_init": FloatDistribution(1e-3, 1e-1, log=True)},
        n_trials=2,
    )
    result = run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    client = MlflowClient(uri)
    children = _children(client, result.run_id)
    assert len(children) == 2
    for child in children:
        history = client.get_metric_history(child.info.run_id, schema.val("accuracy"))
        assert sorted(m.step for m in history) == [0, 1, 2, 3]
    model = mlflow.sklearn.load_model(result.model_uri)
    X, _ = _iris()
    np.testing.assert_array_equal(model.predict(X), result.model.predict(X))


@pytest.mark.parametrize("validation", ["holdout", 3])
def test_train_score_false_skips_the_training_rows_and_changes_nothing_else(stores, validation):
    """Without the training score: no train metric or curve, the same search and result."""
    from mlx.estimators import MLPClassifier

    uri, storage = stores
    client = MlflowClient(uri)
    runs = {}
    for train_score in (True, False):
        experiment = Experiment(
            f"iris-train-score-{train_score}",
            _iris,
            make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=4)),
            {"mlpclassifier__learning_rate_init": FloatDistribution(1e-3, 1e-1, log=True)},
            n_trials=3,
            validation=validation,
            train_score=train_score,
        )
        # The same test split twice, on purpose: both runs must test alike.
        result = run(
            experiment,
            tracking_uri=uri,
            storage=storage,
            show_progress=False,
            allow_test_reuse=not train_score,
        )
        children = sorted(_children(client, result.run_id), key=lambda c: c.info.run_name)
        runs[train_score] = result, children
    (kept, with_train), (skipped, without) = runs[True], runs[False]
    assert skipped.best_params == kept.best_params
    assert skipped.best_value == kept.best_value
    assert skipped.test_scores == kept.test_scores
    for a, b in zip(with_train, without, strict=True):
        assert schema.train("accuracy") in a.data.metrics
        assert schema.train("accuracy") not in b.data.metrics
        assert b.data.metrics[schema.val("accuracy")] == a.data.metrics[schema.val("accuracy")]
        assert not client.get_metric_history(b.info.run_id, schema.train("accuracy"))


def test_train_score_must_be_a_bool():
    with pytest.raises(Exception, match="train_score must be True or False"):
        Experiment("x", _iris, KNeighborsClassifier(), {}, train_score="no")


def test_the_splits_are_logged_as_datasets(iris):
    result, client, _, _ = iris
    parent = client.get_run(result.run_id)
    split = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/{schema.ARTIFACT_SPLIT}")
    inputs = {dataset.tags[0].value: dataset.dataset for dataset in parent.inputs.dataset_inputs}
    assert set(inputs) == set(schema.DATASET_CONTEXTS.values())
    for name, context in schema.DATASET_CONTEXTS.items():
        # mlx's own order-independent fingerprint: two runs on one split show one digest.
        assert split["splits"][name]["fingerprint"].startswith(inputs[context].digest)
        profile = json.loads(inputs[context].profile)
        assert profile["rows"] == split["splits"][name]["rows"]
