"""Cross-validation inside the search, for small data: folds, scores, the test split untouched."""

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import IntDistribution
from sklearn.datasets import load_iris, make_classification
from sklearn.metrics import get_scorer
from sklearn.neighbors import KNeighborsClassifier

import mlx
from mlx import data as mdata
from mlx import search
from mlx.exceptions import ExperimentError
from mlx.tracking import schema


def _iris():
    return load_iris(return_X_y=True)


def _prepared(validation, groups=None, seed=0):
    X, y = _iris()
    data = (lambda: (X, y)) if groups is None else (lambda: (X, y, groups))
    experiment = mlx.Experiment(
        "cv", data, KNeighborsClassifier(), {}, validation=validation, seed=seed
    )
    return experiment, mdata.prepare(experiment)


def test_folds_cover_train_and_val_once_and_never_a_test_row():
    _, prepared = _prepared(5)
    parts = prepared.parts
    held = np.concatenate([h for _, h in prepared.folds])
    assert sorted(held) == sorted(np.concatenate([parts.train, parts.val]))
    for fit, out in prepared.folds:
        assert not set(fit) & set(out)
        assert not (set(fit) | set(out)) & set(parts.test)
    # Stratified: every fold holds each class about equally.
    _, y = _iris()
    counts = [np.bincount(y[h], minlength=3) for _, h in prepared.folds]
    assert max(c.max() - c.min() for c in counts) <= 1
    assert len(prepared.summary["folds"]) == 5


def test_folds_keep_groups_together():
    groups = np.repeat(np.arange(30), 5)
    _, prepared = _prepared(3, groups=groups)
    assert len(prepared.folds) == 3
    for fit, out in prepared.folds:
        assert not set(groups[fit]) & set(groups[out])


def test_cross_validation_refits_on_train_and_val_and_refuses_refit_train():
    experiment, _ = _prepared(5)
    assert experiment.refit == "train+val"
    with pytest.raises(ExperimentError, match='refit="train" does not fit validation=5'):
        mlx.Experiment("cv", _iris, KNeighborsClassifier(), {}, validation=5, refit="train")
    with pytest.raises(ExperimentError, match="at least 2 folds"):
        mlx.Experiment("cv", _iris, KNeighborsClassifier(), {}, validation=1)


def test_a_run_with_folds_logs_each_fold_and_the_mean(stores):
    uri, storage = stores
    experiment = mlx.Experiment(
        "iris-cv",
        _iris,
        KNeighborsClassifier(),
        {"n_neighbors": IntDistribution(1, 15)},
        validation=5,
        n_trials=3,
    )
    result = mlx.run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    client = MlflowClient(uri)
    children = client.search_runs(
        [client.get_experiment_by_name("iris-cv").experiment_id],
        f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_TRIAL}'",
    )
    assert len(children) == 3
    name = schema.val("accuracy")
    for child in children:
        folds = client.get_metric_history(child.info.run_id, schema.fold(name))
        scores = [m.value for m in sorted(folds, key=lambda m: m.step)]
        assert len(scores) == 5
        assert child.data.metrics[name] == pytest.approx(np.mean(scores))
        assert child.data.metrics[schema.spread(name)] == pytest.approx(np.std(scores))
    parent = client.get_run(result.run_id)
    assert parent.data.params[schema.PARAM_VALIDATION] == "5"
    assert parent.data.params[schema.PARAM_REFIT] == "train+val"


def _chosen(validation, seed):
    """The n_neighbors a grid search picks on small noisy data, for a split seed."""
    X, y = make_classification(
        n_samples=150, n_features=6, n_informative=3, flip_y=0.15, random_state=0
    )
    experiment = mlx.Experiment(
        "stability", lambda: (X, y), KNeighborsClassifier(), {}, validation=validation, seed=seed
    )
    prepared = mdata.prepare(experiment)
    grid = [1, 5, 15, 45]
    objective = search.Objective(
        {
            "model": (
                KNeighborsClassifier(),
                {"n_neighbors": optuna.distributions.CategoricalDistribution(grid)},
            )
        },
        get_scorer("accuracy"),
        prepared.rows("train"),
        prepared.rows("val"),
        seed=seed,
        folds=prepared.fold_rows(),
    )
    storage = optuna.storages.InMemoryStorage()
    sampler = optuna.samplers.GridSampler({"n_neighbors": grid}, seed=seed)
    study = optuna.create_study(storage=storage, direction="maximize", sampler=sampler)
    search.enqueue(study, len(grid))
    search.optimize(study, storage, objective)
    return study.best_params["n_neighbors"]


def test_on_small_data_cross_validation_chooses_more_consistently_than_one_holdout():
    """Two split seeds agree on the configuration more often with 5 folds than with holdout.

    150 noisy rows (15% of labels flipped), k of kNN from a small grid: 30 validation rows
    rank the configurations by chance more often than 5 folds over 120 rows do.
    """
    seeds = range(16)
    holdout = [_chosen("holdout", seed) for seed in seeds]
    folds = [_chosen(5, seed) for seed in seeds]

    def agreement(choices):  # the chance that two seeds chose alike
        counts = [choices.count(c) for c in set(choices)]
        return sum(c * (c - 1) for c in counts) / (len(choices) * (len(choices) - 1))

    assert agreement(folds) > agreement(holdout) + 0.05, (holdout, folds)
