"""Building, validating and loading experiments; the definition hash."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlx import Experiment, load_experiment
from mlx.exceptions import ExperimentError
from mlx.experiment import definition_hash


def _data():
    return load_iris(return_X_y=True)


def _knn(**kwargs):
    space = {"kneighborsclassifier__n_neighbors": IntDistribution(1, 9)}
    return Experiment(
        "knn", _data, make_pipeline(StandardScaler(), KNeighborsClassifier()), space, **kwargs
    )


def test_task_and_metric_are_inferred_through_pipelines():
    assert _knn().task == "classification" and _knn().metric_name == "accuracy"
    ridge = Experiment("r", _data, make_pipeline(StandardScaler(), Ridge()))
    assert ridge.task == "regression" and ridge.metric_name == "r2"
    kmeans = Experiment("k", _data, KMeans())
    assert kmeans.task == "clustering" and kmeans.metric_name == "silhouette"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"data": [1, 2]}, "data must be a callable"),
        ({"estimator": None}, "estimator is missing"),
        ({"estimator": KNeighborsClassifier}, "instance, got the class"),
        ({"search_space": {"n_neighbours": IntDistribution(1, 3)}}, "Did you mean 'n_neighbors'"),
        ({"search_space": {"n_neighbors": (1, 3)}}, "must be an Optuna distribution"),
        ({"search_space": [1]}, "search_space must be a dict"),
        ({"split": (0.5, 0.5)}, "three fractions"),
        ({"split": (0.7, 0.2, 0.2)}, "must sum to 1"),
        ({"split": (1.0, 0.0, 0.0)}, "must be > 0"),
        ({"metric": "r2"}, "regression metric but the task is classification"),
        ({"metric": "silhouette"}, "clustering metric"),
        ({"metric": "nope"}, "unknown metric 'nope'"),
        ({"n_trials": 0}, "n_trials must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"timeout": 0}, "timeout must be"),
        ({"refit": "all"}, "refit must be one of"),
        ({"task": "ranking"}, "task must be one of"),
        ({"sampler": "tpe"}, "sampler must be an optuna.samplers.BaseSampler"),
    ],
)
def test_invalid_definitions(kwargs, message):
    arguments = {"name": "x", "data": _data, "estimator": KNeighborsClassifier()}
    arguments.update(kwargs)
    with pytest.raises(ExperimentError, match=message):
        Experiment(**arguments)


def test_clustering_needs_predict():
    from sklearn.cluster import AgglomerativeClustering

    with pytest.raises(ExperimentError, match="no predict"):
        Experiment("c", _data, AgglomerativeClustering())


def test_definition_hash_ignores_budget_but_not_the_definition():
    fingerprints = {"train": "a", "val": "b", "test": "c"}
    base = definition_hash(_knn(), fingerprints)
    assert definition_hash(_knn(n_trials=99, timeout=5), fingerprints) == base
    assert definition_hash(_knn().replace(n_trials=7), fingerprints) == base
    assert definition_hash(_knn(seed=1), fingerprints) != base
    assert definition_hash(_knn(metric="f1_macro"), fingerprints) != base
    assert definition_hash(_knn(), {**fingerprints, "test": "d"}) != base
    wider = Experiment(
        "knn",
        _data,
        make_pipeline(StandardScaler(), KNeighborsClassifier()),
        {"kneighborsclassifier__n_neighbors": IntDistribution(1, 10)},
    )
    assert definition_hash(wider, fingerprints) != base
    changed = Experiment(
        "knn",
        _data,
        make_pipeline(StandardScaler(), KNeighborsClassifier(p=1)),
        {"kneighborsclassifier__n_neighbors": IntDistribution(1, 9)},
    )
    assert definition_hash(changed, fingerprints) != base


def test_callable_spaces_are_hashed_by_their_code():
    def space_a(trial):
        return {"n_neighbors": trial.suggest_int("k", 1, 5)}

    def space_b(trial):
        return {"n_neighbors": trial.suggest_int("k", 1, 7)}

    a = Experiment("c", _data, KNeighborsClassifier(), space_a)
    b = Experiment("c", _data, KNeighborsClassifier(), space_b)
    fingerprints = {"test": "x"}
    assert definition_hash(a, fingerprints) != definition_hash(b, fingerprints)
    assert definition_hash(a, fingerprints) == definition_hash(
        Experiment("c", _data, KNeighborsClassifier(), space_a), fingerprints
    )


def test_replace_validates_and_copies():
    experiment = _knn()
    changed = experiment.replace(n_trials=3, seed=5)
    assert (changed.n_trials, changed.seed) == (3, 5)
    assert (experiment.n_trials, experiment.seed) == (20, 0)
    with pytest.raises(ExperimentError, match="n_trials"):
        experiment.replace(n_trials=-1)


def test_load_experiment(tmp_path):
    path = tmp_path / "good.py"
    path.write_text(
        "import mlx\n"
        "from optuna.distributions import CategoricalDistribution\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.neighbors import KNeighborsClassifier\n"
        "experiment = mlx.Experiment('good', lambda: load_iris(return_X_y=True),\n"
        "    KNeighborsClassifier(), {'weights': CategoricalDistribution(['uniform'])})\n"
    )
    experiment = load_experiment(path)
    assert experiment.name == "good" and experiment.path == path.resolve()
    assert isinstance(experiment.search_space["weights"], CategoricalDistribution)


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = (\n", r"syntax error in .*bad\.py:1"),
        ("x = 1\n", "defines no `experiment`"),
        ("experiment = 'x'\n", "is a str, not an mlx.Experiment"),
        ("\n\nraise RuntimeError('boom')\n", r"bad\.py:3: importing .* RuntimeError: boom"),
        (
            "import mlx\nfrom sklearn.linear_model import Ridge\n"
            "experiment = mlx.Experiment('r', lambda: 0, Ridge(), split=(1, 1, 1))\n",
            "must sum to 1",
        ),
    ],
)
def test_load_experiment_errors(tmp_path, source, message):
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(ExperimentError, match=message):
        load_experiment(path)
    with pytest.raises(ExperimentError, match="not found"):
        load_experiment(tmp_path / "missing.py")


def test_float_and_categorical_spaces_accepted():
    experiment = Experiment(
        "r",
        _data,
        Ridge(),
        {
            "alpha": FloatDistribution(1e-3, 1.0, log=True),
            "fit_intercept": CategoricalDistribution([True, False]),
        },
    )
    assert set(experiment.candidates["model"][1]) == {"alpha", "fit_intercept"}


def test_definition_hash_is_stable_for_objects_with_default_reprs():
    import optuna
    from sklearn.preprocessing import FunctionTransformer

    def build():
        return Experiment(
            "f",
            _data,
            make_pipeline(FunctionTransformer(lambda X: X), KNeighborsClassifier()),
            sampler=optuna.samplers.TPESampler(seed=1),
        )

    assert definition_hash(build(), {}) == definition_hash(build(), {})
