"""Load held: a long search keeps exact counts (its per-trial cost: ``bench/long_search.py``)."""

import pytest
from mlflow import MlflowClient
from optuna.distributions import IntDistribution
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

import mlx
from mlx.tracking import schema


@pytest.mark.slow
def test_a_thousand_trials_give_a_thousand_child_runs_under_one_parent(stores):
    uri, storage = stores
    experiment = mlx.Experiment(
        "long-search",
        lambda: load_iris(return_X_y=True),
        KNeighborsClassifier(),
        {"n_neighbors": IntDistribution(1, 30)},
        n_trials=1000,
    )
    result = mlx.run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    assert result.trial_counts == {"COMPLETE": 1000, "PRUNED": 0, "FAIL": 0}
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("long-search").experiment_id
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=500, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    parents = [r for r in runs if r.data.tags[schema.TAG_ROLE] == schema.ROLE_PARENT]
    children = [r for r in runs if r.data.tags[schema.TAG_ROLE] == schema.ROLE_TRIAL]
    assert len(parents) == 1 and len(children) == 1000
    numbers = sorted(int(c.data.tags[schema.TAG_TRIAL]) for c in children)
    assert numbers == list(range(1000))
    assert {c.info.status for c in children} == {"FINISHED"}
