"""Reading back what a run logged to MLflow, for the tests."""

from mlflow import MlflowClient

from mlx.tracking import schema


def runs(uri, name):
    """``(client, parent runs, child runs)`` of experiment ``name`` in the store at ``uri``."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in found if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_PARENT]
    children = [r for r in found if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_TRIAL]
    return client, parents, children
