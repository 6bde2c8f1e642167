"""mlx.search: the objective, and one sampler and pruner policy for every process of a study."""

import types

import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState
from sklearn.datasets import load_iris
from sklearn.metrics import get_scorer
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlx import run, search
from mlx.experiment import load_experiment
from mlx.search import loop
from mlx.tracking import schema
from mlx.workers import work


def _iris():
    return load_iris(return_X_y=True)


def _policy_file(write_experiment, custom):
    sampler = "optuna.samplers.RandomSampler(seed=3)" if custom else "None"
    pruner = "optuna.pruners.SuccessiveHalvingPruner(min_resource=2)" if custom else "None"
    return write_experiment(
        f"""
        import optuna
        from sklearn.datasets import load_iris
        from sklearn.neighbors import KNeighborsClassifier

        experiment = mlx.Experiment(
            "policy",
            lambda: load_iris(return_X_y=True),
            KNeighborsClassifier(),
            {{"n_neighbors": IntDistribution(1, 9)}},
            n_trials=2,
            sampler={sampler},
            pruner={pruner},
        )
        """
    )


def _settings(policy_object):
    """A sampler's or pruner's type and plain settings (its random state aside)."""
    return type(policy_object), {
        key: value
        for key, value in vars(policy_object).items()
        if value is None or isinstance(value, bool | int | float | str)
    }


@pytest.mark.parametrize("custom", [False, True], ids=["default", "custom"])
def test_workers_and_resume_use_the_coordinators_sampler_and_pruner(
    stores, write_experiment, monkeypatch, custom
):
    uri, storage = stores
    path = _policy_file(write_experiment, custom)
    opened = {}

    originals = {"create_study": optuna.create_study, "load_study": optuna.load_study}

    def spy(name, function):
        def opening(*args, **kwargs):
            study = originals[function](*args, **kwargs)
            # The first: the study plots later build studies in memory of their own.
            opened.setdefault(name, study)
            return study

        monkeypatch.setattr(optuna, function, opening)

    spy("fresh", "create_study")
    quiet = dict(tracking_uri=uri, storage=storage, show_progress=False, no_test=True)
    result = run(path, **quiet)
    client = MlflowClient(uri)
    # The coordinator was interrupted (as after Ctrl-C): --resume loads the study.
    client.set_terminated(result.run_id, "KILLED")
    spy("resumed", "load_study")
    run(path, **quiet, resume=True)
    # A coordinator runs: a worker joins it (the budget is spent, so it runs no trial).
    client.update_run(result.run_id, "RUNNING")
    spy("worker", "load_study")
    assert work(path, tracking_uri=uri, storage=storage, worker_id="w1", wait=5) == 0

    fresh = opened["fresh"]
    for name in ("resumed", "worker"):
        assert _settings(opened[name].pruner) == _settings(fresh.pruner), name
        assert type(opened[name].sampler) is type(fresh.sampler), name
    if custom:
        assert isinstance(fresh.pruner, optuna.pruners.SuccessiveHalvingPruner)
        assert isinstance(fresh.sampler, optuna.samplers.RandomSampler)
    else:
        assert _settings(fresh.pruner) == _settings(search.default_pruner())
        assert fresh.pruner._n_warmup_steps == 3 and fresh.pruner._n_startup_trials == 5
        # A worker's default sampler is seeded apart from the coordinator's, so that it does not
        # propose the same parameters from the same history.
        seed = load_experiment(path).seed
        assert _settings(opened["resumed"].sampler) == _settings(search.default_sampler(seed))
        draws = {
            name: opened[name].sampler._rng.rng.randint(1 << 30) for name in ("resumed", "worker")
        }
        assert draws["resumed"] != draws["worker"]
    parent = client.get_run(result.run_id)
    assert parent.data.tags[schema.TAG_STUDY] == fresh.study_name


def test_a_conditional_search_space_function():
    from sklearn.metrics import get_scorer

    def space(trial):
        weights = trial.suggest_categorical("weights", ["uniform", "distance"])
        top = 5 if weights == "uniform" else 9
        return {"n_neighbors": trial.suggest_int("k", 1, top), "weights": weights}

    X, y = _iris()
    objective = search.Objective(
        {"model": (KNeighborsClassifier(), space)},
        get_scorer("accuracy"),
        (X[::2], y[::2]),
        (X[1::2], y[1::2]),
        seed=0,
    )
    seen = []
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        storage=storage, direction="maximize", sampler=optuna.samplers.TPESampler(seed=0)
    )
    search.enqueue(study, 4)
    search.optimize(study, storage, objective, on_trial=seen.append)
    assert [r.state for r in seen] == ["COMPLETE"] * 4
    for record in seen:
        # The estimator's parameters as the space built them, not Optuna's "k".
        assert set(record.params) == {"weights", "n_neighbors"}
        assert record.params["n_neighbors"] <= (5 if record.params["weights"] == "uniform" else 9)
        assert 0 <= record.value <= 1 and record.fit_time >= 0
    built = search.suggest(optuna.trial.FixedTrial(study.best_params), space)
    assert built["n_neighbors"] == study.best_params["k"]
    assert objective.configuration(study.best_params) == ("model", built)


def test_the_work_deferred_to_the_fit_comes_after_the_sampling_and_before_the_fit():
    """``on_fit`` (the tracking writes held between trials) runs once a trial is sampled.

    Sampling is Python work on the storage that a writer thread would slow; the fit leaves the
    interpreter to it. A trial that fails before its fit still gets it, when it ends.
    """
    events = []

    class Knn(KNeighborsClassifier):
        def fit(self, X, y):
            events.append("fit")
            return super().fit(X, y)

    def space(trial):
        events.append("sample")
        if trial.number == 1:
            raise ValueError("a space that fails")
        return {"n_neighbors": trial.suggest_int("n_neighbors", 1, 9)}

    X, y = _iris()
    objective = search.Objective(
        {"model": (Knn(), space)}, get_scorer("accuracy"), (X, y), (X, y), seed=0
    )
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    search.enqueue(study, 3)
    search.optimize(
        study,
        storage,
        objective,
        on_start=lambda number: events.append(f"start {number}"),
        on_fit=lambda number: events.append(f"on_fit {number}"),
        on_trial=lambda record: events.append(f"end {record.number}"),
    )
    assert events == [
        *["start 0", "sample", "on_fit 0", "fit", "end 0"],
        *["start 1", "sample", "on_fit 1", "end 1"],
        *["start 2", "sample", "on_fit 2", "fit", "end 2"],
    ]
    search.fit_begins()  # outside a trial: nothing to do, no error


class _CountingScaler(StandardScaler):
    """A scaler that counts its fits (across clones: the count is the class's)."""

    fits = 0

    def fit(self, X, y=None, **params):
        type(self).fits += 1
        return super().fit(X, y, **params)


def _search_pipeline(space, n_trials, cache_size=None):
    X, y = _iris()
    objective = search.Objective(
        {"model": (make_pipeline(_CountingScaler(), KNeighborsClassifier()), space)},
        get_scorer("accuracy"),
        (X[::2], y[::2]),
        (X[1::2], y[1::2]),
        seed=0,
    )
    if cache_size is not None:
        objective.feature_cache_size = cache_size
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        storage=storage, direction="maximize", sampler=optuna.samplers.TPESampler(seed=0)
    )
    search.enqueue(study, n_trials)
    search.optimize(study, storage, objective)
    return study


def test_the_steps_before_the_model_are_fitted_once_per_setting():
    """Features that the search does not change are computed once a run, not once a trial."""
    model_only = {"kneighborsclassifier__n_neighbors": IntDistribution(1, 15)}
    _CountingScaler.fits = 0
    _search_pipeline(model_only, 6)
    assert _CountingScaler.fits == 1
    # A searched parameter of the scaler: once per setting (two settings here).
    both = {**model_only, "_countingscaler__with_mean": CategoricalDistribution([True, False])}
    _CountingScaler.fits = 0
    study = _search_pipeline(both, 8)
    settings = {t.params["_countingscaler__with_mean"] for t in study.trials}
    assert _CountingScaler.fits == len(settings) == 2


def test_the_feature_cache_changes_no_result():
    space = {
        "kneighborsclassifier__n_neighbors": IntDistribution(1, 15),
        "_countingscaler__with_std": CategoricalDistribution([True, False]),
    }
    cached = _search_pipeline(space, 8)
    uncached = _search_pipeline(space, 8, cache_size=0)
    assert [t.params for t in cached.trials] == [t.params for t in uncached.trials]
    assert [t.value for t in cached.trials] == [t.value for t in uncached.trials]


def test_ctrl_c_while_the_study_is_told_a_result_takes_effect_once_it_is_told(monkeypatch):
    """A tell cut short left a finished trial RUNNING (a resume then called it lost)."""
    import os
    import signal
    import time

    X, y = _iris()
    objective = search.Objective(
        {"model": (KNeighborsClassifier(), {"n_neighbors": IntDistribution(1, 9)})},
        get_scorer("accuracy"),
        (X[::2], y[::2]),
        (X[1::2], y[1::2]),
        seed=0,
    )
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    search.enqueue(study, 3)
    tell = loop._tell

    def interrupted_tell(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while the result is being told
        time.sleep(0.05)
        return tell(*args, **kwargs)

    monkeypatch.setattr(loop, "_tell", interrupted_tell)
    # Python's own Ctrl-C handler, also where the tests run with SIGINT ignored.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            search.optimize(study, storage, objective)
    finally:
        signal.signal(signal.SIGINT, before)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.COMPLETE, TrialState.WAITING, TrialState.WAITING]


class _Scripted:
    """An objective whose trials complete, are pruned after a report, or fail, by number."""

    def __call__(self, trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number % 3 == 1:
            trial.report(x / 2, step=3)
            raise optuna.TrialPruned()
        if trial.number % 3 == 2:
            raise ValueError("a failing trial")
        return x

    def fail(self, number, error):
        pass

    def finish(self, trial, state, value):
        return types.SimpleNamespace(number=trial.number, value=value, interrupted=False)


def _told(tmp_path, name):
    storage = search.open_storage(f"sqlite:///{tmp_path / name}.db")
    study = optuna.create_study(
        storage=storage, direction="maximize", sampler=optuna.samplers.TPESampler(seed=0)
    )
    search.enqueue(study, 6)
    search.optimize(study, storage, _Scripted())
    return [(t.state, t.value, t.params) for t in study.get_trials()]


def test_the_loop_tells_results_as_study_tell_does(tmp_path, monkeypatch):
    """The loop records a result without Study.tell's read-back; the study ends up the same.

    A pruned trial takes its last reported value, as Study.tell gives it, a failed one none.
    """
    told = _told(tmp_path, "beneath")
    monkeypatch.setattr(loop, "_tell_beneath", None)  # as with an Optuna that lacks it
    assert told == _told(tmp_path, "study-tell")
    states = [state for state, _, _ in told]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL] * 2
    assert told[1][1] == told[1][2]["x"] / 2 and told[2][1] is None
