"""The runner's promises, each through the real runner and each shown to catch a deliberate bug.

Every test names, in its docstring, the bug (a small change of the source) that makes it fail;
``bench/mutations.py`` applies each of those bugs to a copy of the repository, one at a time,
runs the tests that must catch it there, and fails if one survives.

Which rows a model sees is recorded by estimators that note the row hashes
(:func:`mlx.data.row_hashes`) of every ``fit``, ``predict``, ``predict_proba`` and
``decision_function`` call, together with the phase of the run the call came from: inside a
trial (Optuna's call of the objective), inside the test evaluation (``mlx.evaluation.evaluate``)
or elsewhere (refit, intervals, model logging). The phases come from wrapping those two
functions; the wrappers call the real ones.
"""

import json
import os
import re
import subprocess
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from _servers import free_port
from mlflow import MlflowClient
from optuna.distributions import FloatDistribution
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris, make_blobs, make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.neighbors import KNeighborsClassifier

import mlx
from mlx import data as mdata
from mlx import results
from mlx.exceptions import MlxError, TestReuseError
from mlx.tracking import schema

# --- recording which rows a model sees ----------------------------------------------------------


@dataclass
class _Call:
    phase: str  # "trial <number>", "evaluation" or "other"
    method: str
    hashes: np.ndarray  # mlx.data.row_hashes of the rows passed


@dataclass
class _Log:
    calls: list = field(default_factory=list)
    phase: str = "other"
    evaluated: list = field(default_factory=list)  # the row hashes of each evaluate() call


# The log of the running test: runs are in this process (workers=1), one test at a time.
_LOG = _Log()


class _Recording:
    """Mixin: records the rows of every fit and prediction in ``_LOG`` (no ``__init__``)."""

    def _note(self, method, X):
        _LOG.calls.append(_Call(_LOG.phase, method, mdata.row_hashes(X)))

    def fit(self, X, y=None, **kwargs):
        self._note("fit", X)
        return super().fit(X, y, **kwargs)

    def predict(self, X):
        self._note("predict", X)
        return super().predict(X)

    def predict_proba(self, X):
        self._note("predict_proba", X)
        return super().predict_proba(X)

    def decision_function(self, X):
        self._note("decision_function", X)
        return super().decision_function(X)


class _RecordingRidge(_Recording, Ridge):
    pass


class _RecordingLogistic(_Recording, LogisticRegression):
    pass


@pytest.fixture
def recorded(monkeypatch):
    """``_LOG``, emptied, with the phases of a run: trial number, test evaluation or other."""
    from mlx import evaluation
    from mlx.search import objective

    global _LOG
    _LOG = _Log()
    trial_call, evaluate = objective.Objective.__call__, evaluation.evaluate

    def in_trial(self, trial):
        _LOG.phase = f"trial {trial.number}"
        try:
            return trial_call(self, trial)
        finally:
            _LOG.phase = "other"

    def in_evaluation(model, X, *args, **kwargs):
        _LOG.evaluated.append(mdata.row_hashes(X))
        _LOG.phase = "evaluation"
        try:
            return evaluate(model, X, *args, **kwargs)
        finally:
            _LOG.phase = "other"

    monkeypatch.setattr(objective.Objective, "__call__", in_trial)
    monkeypatch.setattr(evaluation, "evaluate", in_evaluation)
    return _LOG


class _Rows:
    """The rows of each split of a run, as the run's ``split.json`` names them."""

    def __init__(self, experiment, client, run_id, tmp_path):
        self.prepared = mdata.prepare(experiment)
        logged = _split_json(client, run_id, tmp_path)
        # The split computed here is the one the run logged: the same rows, by fingerprint.
        assert self.prepared.fingerprints == {
            name: entry["fingerprint"] for name, entry in logged["splits"].items()
        }
        self.logged = logged
        X = self.prepared.dataset.X
        parts = dict(self.prepared.parts.items())
        parts["train+val"] = np.concatenate([parts["train"], parts["val"]])
        self.hashes = {
            name: np.sort(mdata.row_hashes(mdata.take(X, indices)))
            for name, indices in parts.items()
        }
        # Distinct rows, so that a row's hash names its split.
        assert len(np.unique(mdata.row_hashes(X))) == len(X)

    def which(self, hashes):
        """The split whose rows ``hashes`` are exactly (any order), else ``"mixed"``."""
        hashes = np.sort(hashes)
        for name, rows in self.hashes.items():
            if np.array_equal(hashes, rows):
                return name
        return "mixed"

    def touches(self, hashes, name):
        """Whether any of the rows ``hashes`` is in the split ``name``."""
        return bool(np.isin(hashes, self.hashes[name]).any())

    def rows(self, name):
        return self.prepared.rows(name)


def _split_json(client, run_id, folder):
    path = client.download_artifacts(run_id, schema.ARTIFACT_SPLIT, str(folder))
    with open(path) as file:
        return json.load(file)


def _children(client, run_id):
    experiment_id = client.get_run(run_id).info.experiment_id
    return client.search_runs([experiment_id], f"tags.`{schema.MLFLOW_PARENT_RUN}` = '{run_id}'")


def _run(experiment, stores, **options):
    uri, storage = stores
    return mlx.run(experiment, tracking_uri=uri, storage=storage, show_progress=False, **options)


# --- trials are scored on the validation rows only -----------------------------------------------


def _regression():
    return make_regression(n_samples=200, n_features=6, noise=30.0, random_state=0)


def test_trials_are_scored_on_the_validation_rows_only(stores, recorded, tmp_path):
    """Each trial fits on the training rows and is scored on the validation rows only.

    Its logged validation score is recomputed with scikit-learn from the rows ``split.json``
    names. Catches: ``prepared.rows("val")`` -> ``prepared.rows("test")`` in
    ``mlx.workers.objective`` (the search scored on the test split).
    """
    n_trials = 4
    experiment = mlx.Experiment(
        "promise-val",
        _regression,
        _RecordingRidge(),
        {"alpha": FloatDistribution(1e-2, 1e3, log=True)},
        metric="r2",
        n_trials=n_trials,
    )
    result = _run(experiment, stores)
    client = MlflowClient(stores[0])
    rows = _Rows(experiment, client, result.run_id, tmp_path)

    phases = {f"trial {number}" for number in range(n_trials)}
    trial_calls = [call for call in recorded.calls if call.phase in phases]
    assert {call.phase for call in trial_calls} == phases
    for phase in sorted(phases):
        calls = [call for call in trial_calls if call.phase == phase]
        assert [rows.which(c.hashes) for c in calls if c.method == "fit"] == ["train"]
        # Predictions for the training score and for the validation score, nothing else.
        assert {rows.which(c.hashes) for c in calls if c.method != "fit"} == {"train", "val"}

    (X_train, y_train), (X_val, y_val) = rows.rows("train"), rows.rows("val")
    X_test, y_test = rows.rows("test")
    children = _children(client, result.run_id)
    assert len(children) == n_trials
    for child in children:
        alpha = float(child.data.params["alpha"])
        model = Ridge(alpha=alpha).fit(X_train, y_train)
        expected = r2_score(y_val, model.predict(X_val))
        assert child.data.metrics[schema.val("r2")] == pytest.approx(expected, rel=1e-9)
        assert child.data.metrics[schema.train("r2")] == pytest.approx(
            r2_score(y_train, model.predict(X_train)), rel=1e-9
        )
        # The check tells the two splits apart: on the test rows the score is another number.
        assert abs(r2_score(y_test, model.predict(X_test)) - expected) > 1e-6


# --- the test split is touched exactly once, by the final evaluation ---------------------------


def _binary():
    return make_classification(
        n_samples=240, n_features=5, n_informative=3, flip_y=0.1, random_state=0
    )


@pytest.mark.parametrize("validation", ["holdout", 3], ids=["holdout", "folds"])
def test_the_test_rows_are_seen_once_by_the_final_evaluation(
    validation, stores, recorded, tmp_path
):
    """No trial, fold, refit or interval sees a test row; one evaluation sees the test split.

    Holdout and cross-validation alike. Catches: the test split evaluated twice (a second
    ``evaluation.evaluate`` call in ``results.test_once``), the validation interval drawn on the
    test rows (``results.validation_interval``), the search scored on the test split
    (``mlx.workers.objective``), and the folds cut from the test rows too (``mlx.data.folds``).
    """
    n_trials = 3
    experiment = mlx.Experiment(
        "promise-test-once",
        _binary,
        _RecordingLogistic(),
        {"C": FloatDistribution(1e-2, 1e2, log=True)},
        validation=validation,
        n_trials=n_trials,
    )
    result = _run(experiment, stores)
    rows = _Rows(experiment, MlflowClient(stores[0]), result.run_id, tmp_path)

    assert [rows.which(hashes) for hashes in recorded.evaluated] == ["test"]
    seen = [call for call in recorded.calls if rows.touches(call.hashes, "test")]
    assert seen, "the evaluation made no prediction on the test rows"
    assert {(call.phase, rows.which(call.hashes)) for call in seen} == {("evaluation", "test")}
    fits = [call for call in recorded.calls if call.method == "fit"]
    if validation == "holdout":
        # The trials and the refit fitted on the training rows alone.
        assert [rows.which(call.hashes) for call in fits] == ["train"] * (n_trials + 1)
    else:
        # A fit per fold and trial, then the refit on the training and validation rows.
        assert len(fits) == n_trials * validation + 1
        assert rows.which(fits[-1].hashes) == "train+val"
    assert result.test_scores["accuracy"] == pytest.approx(
        result.model.score(*rows.rows("test")), abs=1e-12
    )


# --- the ledger counts deleted runs and deleted experiments ---------------------------------


def _iris():
    return load_iris(return_X_y=True)


def test_the_ledger_counts_deleted_runs_and_deleted_experiments(stores):
    """Deleting the run that evaluated a test split, then its experiment, keeps it used.

    Catches: ``deleted=True`` -> ``deleted=False`` in ``mlx/tracking/ledger.py``, for the runs
    (``search_runs``) and for the experiments (``experiment_ids``) separately.
    """
    first = _run(mlx.Experiment("ledger-first", _iris, KNeighborsClassifier(), {}), stores)
    client = MlflowClient(stores[0])
    again = mlx.Experiment("ledger-again", _iris, KNeighborsClassifier(), {})

    client.delete_run(first.run_id)
    with pytest.raises(TestReuseError, match=first.run_id):
        _run(again, stores)
    experiment_id = client.get_run(first.run_id).info.experiment_id
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    with pytest.raises(TestReuseError, match=first.run_id):
        _run(again, stores)
    # Nothing of the refused runs was created.
    assert client.get_experiment_by_name("ledger-again") is None


# --- every split path keeps groups apart -----------------------------------------------------

_N_GROUPS, _GROUP_SIZE = 30, 5


def _grouped(task):
    """``(X, y, groups)``: 30 groups of 5 rows (each group of one class for classification)."""
    n = _N_GROUPS * _GROUP_SIZE
    if task == "classification":
        X, y = make_classification(
            n_samples=n, n_features=4, n_informative=3, n_redundant=0, n_classes=3,
            random_state=0,
        )  # fmt: skip
        order = np.argsort(y, kind="stable")
        X, y = X[order], y[order]
        # Whole groups of one class, 10 per class: the stratified grouped path applies.
        y = np.repeat(y[::_GROUP_SIZE], _GROUP_SIZE)
    elif task == "regression":
        X, y = make_regression(n_samples=n, n_features=4, noise=5.0, random_state=0)
    else:
        X, y = make_blobs(n_samples=n, centers=3, random_state=0)[0], None
    return X, y, np.repeat(np.arange(_N_GROUPS), _GROUP_SIZE)


_GROUPED = {
    "classification": (KNeighborsClassifier(), "accuracy"),
    "regression": (Ridge(), "r2"),
    "clustering": (KMeans(n_clusters=3, n_init=1), "silhouette"),
}


@pytest.mark.parametrize("validation", ["holdout", 3], ids=["holdout", "folds"])
@pytest.mark.parametrize("task", sorted(_GROUPED))
def test_every_split_keeps_groups_apart(task, validation, stores, tmp_path):
    """Each group lands in one split, and in one fold, on each task's path through the split.

    Classification takes ``StratifiedGroupKFold``, regression and clustering the
    ``GroupShuffleSplit`` fallback of ``mlx.data._group_split``; the folds of cross-validation
    ``StratifiedGroupKFold`` or ``GroupKFold``. Catches: grouped data of any one task split as
    ungrouped, the stratified path ignoring the groups (``StratifiedKFold``), the fallback
    ignoring them (``ShuffleSplit``), the train/validation split ignoring them, and the folds
    ignoring them (``StratifiedKFold`` or ``KFold`` in ``mlx.data.folds``).
    """
    estimator, metric = _GROUPED[task]
    experiment = mlx.Experiment(
        f"promise-groups-{task}",
        lambda: _grouped(task),
        estimator,
        {},
        metric=metric,
        validation=validation,
    )
    assert experiment.task == task
    result = _run(experiment, stores, n_trials=1)
    rows = _Rows(experiment, MlflowClient(stores[0]), result.run_id, tmp_path)

    groups = {name: set(rows.prepared.groups(name)) for name in ("train", "val", "test")}
    assert all(groups.values())
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    # What split.json says: the groups of the three splits add up to the groups there are.
    logged = [rows.logged["splits"][name]["groups"] for name in ("train", "val", "test")]
    assert sum(logged) == _N_GROUPS
    if task == "classification":
        for name in ("val", "test"):
            assert set(rows.logged["splits"][name]["class_counts"]) == {"0", "1", "2"}
    if validation == "holdout":
        assert rows.prepared.folds is None
        return
    all_groups = rows.prepared.dataset.groups
    assert len(rows.prepared.folds) == validation
    for fit, held in rows.prepared.folds:
        assert not set(all_groups[fit]) & set(all_groups[held])
        assert not set(all_groups[np.concatenate([fit, held])]) & groups["test"]


# --- classification splits are stratified ----------------------------------------------------


def test_classification_splits_are_stratified(stores, tmp_path):
    """Iris (50 rows a class) splits 0.8/0.1/0.1 into 5 rows of each class in val and in test.

    Catches: ``stratify=task == "classification"`` -> ``stratify=False`` in
    ``mlx.data.prepare`` (the README's "stratified for classification").
    """
    experiment = mlx.Experiment("promise-strata", _iris, KNeighborsClassifier(), {}, seed=3)
    result = _run(experiment, stores, n_trials=1, no_test=True)
    logged = _split_json(MlflowClient(stores[0]), result.run_id, tmp_path)["splits"]
    assert logged["train"]["class_counts"] == {"0": 40, "1": 40, "2": 40}
    for name in ("val", "test"):
        assert logged[name]["class_counts"] == {"0": 5, "1": 5, "2": 5}


# --- mlx.run's exceptions never carry a secret -------------------------------------------------


def _texts(exc, *, hidden):
    """Every text an exception carries: message, args, repr, and those of its chained causes.

    ``hidden`` also follows a ``__context__`` that ``raise ... from None`` suppressed: a
    traceback does not show it, but it stays on the exception for any code that walks it.
    """
    texts = ["".join(traceback.format_exception(exc))]
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts += [str(exc), repr(exc), repr(exc.args)]
        texts += [str(note) for note in getattr(exc, "__notes__", ())]
        shown = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        exc = exc.__context__ if hidden and shown is None else shown
    return texts


_UNREACHABLE = {
    "storage": lambda secret, port: {"storage": f"postgresql://user:{secret}@127.0.0.1:{port}/db"},
    "tracking database": lambda secret, port: {
        "tracking_uri": f"postgresql+psycopg2://user:{secret}@127.0.0.1:{port}/mlflow"
    },
    "tracking server": lambda secret, port: {
        "tracking_uri": f"http://user:{secret}@127.0.0.1:{port}/?token={secret}x"
    },
}


def _unreachable_run(store, stores):
    """``(secret, exception)`` of ``mlx.run`` on the unreachable ``store`` with a password."""
    secret = f"Pw{uuid.uuid4().hex[:12]}"
    options = {"tracking_uri": stores[0], "storage": stores[1]}
    options.update(_UNREACHABLE[store](secret, free_port()))
    experiment = mlx.Experiment("promise-secret", _iris, KNeighborsClassifier(), {}, n_trials=1)
    with pytest.raises(MlxError) as info:
        mlx.run(experiment, show_progress=False, **options)
    return secret, info.value


@pytest.mark.parametrize("store", sorted(_UNREACHABLE))
def test_run_errors_never_carry_a_password(store, stores, caplog, capsys):
    """An unreachable store whose URL holds a password: ``mlx.run`` raises without it.

    The message, its chained causes, the formatted traceback, the log and the output are
    searched. Catches: ``redact_url`` removed from the storage error (``open_storage`` in
    ``mlx/search/storage.py``) and from the tracking store's (``_check_reachable`` in
    ``mlx/tracking/store.py``).
    """
    secret, exc = _unreachable_run(store, stores)
    texts = _texts(exc, hidden=False)
    assert "***" in str(exc), str(exc)  # the URL is named, redacted
    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    assert not [text for text in texts if secret in text]


@pytest.mark.parametrize(
    "store",
    [
        "storage",
        "tracking database",
        "tracking server",
    ],
)
def test_run_errors_hold_no_password_even_in_a_suppressed_context(store, stores):
    """As above, following ``__context__`` too where ``from None`` hid it from tracebacks.

    Code that walks an exception's chain (error reporters, ``exc.__context__``) reads it.
    Red when ``_check_reachable`` raises inside its ``except`` block (``from None`` only hides
    requests' error, whose text holds the URL's ``?token=``).
    """
    secret, exc = _unreachable_run(store, stores)
    assert not [text for text in _texts(exc, hidden=True) if secret in text]


# --- under CI, a test that would skip fails ----------------------------------------------------

_SKIPPING = {
    "test_skips.py": """
import pytest

def test_without_postgres():
    pytest.skip("no PostgreSQL server on 127.0.0.1:5432: connection refused")

def test_torch_parity():
    pytest.skip("could not import 'torch': No module named 'torch'")

def test_runs():
    pass
""",
    "test_audio_extra.py": """
import pytest

librosa = pytest.importorskip("mlx_no_such_audio_module")

def test_features():
    pass
""",
}


def _pytest_with_the_guard(folder, **env):
    """Run pytest on ``folder`` with tests/conftest.py as a plugin; ``(exit code, -rA lines)``."""
    tests = Path(__file__).resolve().parent
    environment = {k: v for k, v in os.environ.items() if k not in ("MLX_REQUIRE_POSTGRES", "CI")}
    environment.update(env, PYTHONPATH=str(tests))
    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q"]
    command += ["-rA", "--continue-on-collection-errors", str(folder)]
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
    return done.returncode, done.stdout


def test_under_ci_a_skip_fails_unless_its_reason_is_allowed(tmp_path):
    """With ``MLX_REQUIRE_POSTGRES`` (or ``CI``) set, a skip without an allowed reason fails.

    A missing PostgreSQL server or a module-level ``importorskip`` of the audio extra fails;
    the torch parity tests (an allowed reason) still skip; without the variables all skip.
    Catches: the guard in tests/conftest.py disabled.
    """
    for name, text in _SKIPPING.items():
        (tmp_path / name).write_text(text)

    code, output = _pytest_with_the_guard(tmp_path)
    assert code == 0, output
    assert "1 passed, 3 skipped" in output

    for variable in ("MLX_REQUIRE_POSTGRES", "CI"):
        code, output = _pytest_with_the_guard(tmp_path, **{variable: "1"})
        assert code == 1, output
        assert "FAILED test_skips.py::test_without_postgres" in output
        assert "ERROR test_audio_extra.py" in output  # a collection error: the module is lost
        assert f"but {variable} is set" in output
        assert re.search(r"SKIPPED \[1\] test_skips.py:\d+: could not import 'torch'", output)
        assert "PASSED test_skips.py::test_runs" in output


# --- a run that fails after its test evaluation began is resumed to one use ---------------------


def test_a_run_that_failed_logging_its_model_resumes_to_one_test_use_and_one_model(stores):
    """The model is logged while the test's figures are drawn, before the test metrics.

    The fault: logging the model fails. The evaluation is then incomplete (no test metric, the
    mark of a complete one); the resumed run evaluates it again as the same use of the split
    (the count stays 1), and logs the model once. Red with the metrics logged before the model.
    """
    experiment = mlx.Experiment(
        "promise-model-fails", _iris, KNeighborsClassifier(), {}, n_trials=2
    )
    log_model = results.log_model

    def full_store(*args, **kwargs):
        raise OSError("no space left on device")

    results.log_model = full_store
    try:
        with pytest.raises(OSError, match="no space left"):
            _run(experiment, stores)
    finally:
        results.log_model = log_model
    client = MlflowClient(stores[0])
    (failed,) = client.search_runs(
        [client.get_experiment_by_name("promise-model-fails").experiment_id],
        f"tags.`{schema.TAG_ROLE}` = 'parent'",
    )
    assert failed.info.status == "FAILED"
    assert not [k for k in failed.data.metrics if k.startswith(schema.test(""))]

    result = _run(experiment, stores, resume=True)
    assert result.run_id == failed.info.run_id and result.test_use_count == 1
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics[schema.test("accuracy")] == result.test_scores["accuracy"]
    models = client.search_logged_models([run.info.experiment_id])
    assert [m.source_run_id for m in models] == [result.run_id]
    figures = {a.path for a in client.list_artifacts(result.run_id, schema.ARTIFACT_TEST)}
    assert f"{schema.ARTIFACT_TEST}/confusion_matrix.png" in figures
