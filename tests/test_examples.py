"""The example experiments: each one runs end to end, and the default budget meets its floor.

The smoke test covers every file in ``experiments/`` (a new example is picked up by the glob)
with a tiny trial budget, but the deep contour examples, which their floors run in full; the floor test runs the examples with a quality floor at their
default budget and reads the test metric back from MLflow (the examples that take a few seconds
in the default group, the others in the slow group).
"""

from pathlib import Path

import pytest
from mlflow import MlflowClient

import mlx
from mlx.tracking import schema

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
EXAMPLES = sorted(EXPERIMENTS.glob("*.py"))

# Test metric (as logged, without the ``test_`` prefix) and the least value the example's
# default run must reach.
FLOORS = {
    "iris_knn": ("accuracy", 0.9),
    "digits_mlp": ("accuracy", 0.95),
    "instruments_mlp": ("accuracy", 0.9),
    "wine_kmeans": ("adjusted_rand", 0.8),
    "diabetes_linear": ("r2", 0.4),
    "digits_autoencoder_knn": ("accuracy", 0.9),
    # Noisy moons (noise 0.3) overlap: the Bayes rate is near 0.9.
    "classifier_comparison": ("accuracy", 0.85),
    # The same moons with a model of at most 8 KiB: kNN and forests are out.
    "classifier_cost": ("accuracy", 0.85),
    # Melodic contours (chance 0.2; 160 test clips from 32 recordings): models on frames.
    "contours_cnn": ("accuracy", 0.9),
    "contours_rnn": ("accuracy", 0.9),
    # Three trials a model: the winner (a CNN or a GRU) is less tuned than in the two above.
    "contours_comparison": ("accuracy", 0.85),
}

# Tiny budgets stop MLPs before they converge, and the runner's refit lets that warning through.
quiet_convergence = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _run(path, stores, **overrides):
    uri, storage = stores
    experiment = mlx.load_experiment(path)
    result = mlx.run(
        experiment, tracking_uri=uri, storage=storage, show_progress=False, **overrides
    )
    return result, MlflowClient(uri).get_run(result.run_id)


def test_examples_are_found():
    # A wrong glob would make the parametrised smoke test collect nothing and pass.
    assert {path.stem for path in EXAMPLES} >= set(FLOORS)


# The deep examples train for a minute even on two trials: their floors (slow group) run them
# end to end at the default budget, with the same checks.
SMOKE = [
    path for path in EXAMPLES if not (path.stem in FLOORS and path.stem.startswith("contours"))
]


@quiet_convergence
@pytest.mark.parametrize("path", SMOKE, ids=[path.stem for path in SMOKE])
def test_example_runs(path, stores):
    result, logged = _run(path, stores, n_trials=2)

    assert logged.info.status == "FINISHED"
    assert sum(result.trial_counts.values()) == 2
    assert result.trial_counts["COMPLETE"] >= 1
    assert result.test_scores, "no test metrics"
    test_metrics = {
        key.removeprefix(schema.test("")): value
        for key, value in logged.data.metrics.items()
        if key.startswith(schema.test("")) and not key.endswith(schema.CI_SUFFIXES)
    }
    assert test_metrics == pytest.approx(result.test_scores)
    assert result.metric_name in test_metrics
    assert logged.data.tags[schema.TAG_MODEL_URI] == result.model_uri


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_snippet(folder):
    """The README's "Writing an experiment" example, as a file."""
    text = README.read_text()
    start = text.index("```python", text.index("## Writing an experiment")) + len("```python")
    path = folder / "readme_snippet.py"
    path.write_text(text[start : text.index("```", start)])
    return path


@pytest.mark.slow
@quiet_convergence
def test_every_example_and_the_readme_snippet_in_one_folder(stores, tmp_path):
    """One student, one folder: no two examples share a test split, every one exits 0."""
    uri, storage = stores
    for path in [*EXAMPLES, _readme_snippet(tmp_path)]:
        result = mlx.run(path, tracking_uri=uri, storage=storage, show_progress=False, n_trials=2)
        assert result.test_use_count == 1, path.name
    fingerprints = [
        run.data.tags[schema.TAG_FINGERPRINT]
        for run in MlflowClient(uri).search_runs(
            [e.experiment_id for e in MlflowClient(uri).search_experiments()],
            f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_PARENT}'",
        )
    ]
    assert len(fingerprints) == len(EXAMPLES) + 1 == len(set(fingerprints))


# Examples whose full default run takes a few seconds: their floors are in the default group.
FAST = {"iris_knn", "wine_kmeans"}


@quiet_convergence
@pytest.mark.parametrize(
    "name",
    [
        name if name in FAST else pytest.param(name, marks=pytest.mark.slow)
        for name in sorted(FLOORS)
    ],
)
def test_example_meets_its_floor(name, stores):
    metric, floor = FLOORS[name]
    result, logged = _run(EXPERIMENTS / f"{name}.py", stores)

    value = logged.data.metrics[schema.test(metric)]
    assert value == pytest.approx(result.test_scores[metric])
    assert value >= floor, f"{name}: test {metric} = {value:.4f} < {floor}"
