"""Bad input, clear answers: `mlx run` on bad data, bad settings and unreachable stores.

Each case runs the real command on a real store and checks the exit code, a one-line message
that names the problem and the fix, and what the store holds afterwards: no run left RUNNING,
no model logged unless the run succeeded, no test metric unless the test split was evaluated.

Bad experiment *files* (missing file, syntax error, no ``experiment``, unknown search-space
parameter, a list where a distribution belongs, split fractions that do not sum to 1, a metric of
the wrong task, NaN labels) are the table of tests/test_cli.py, which checks that no store is even
created for them.
"""

import re
from dataclasses import dataclass

import pytest
from _servers import free_port
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import ViewType

from mlx.cli import cli
from mlx.tracking import schema

NAME = "bad-input"
KNN_SPACE = '{"n_neighbors": IntDistribution(1, 5)}'
TEMPLATE = """
from sklearn.cluster import KMeans
from sklearn.impute import SimpleImputer
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

rng = np.random.default_rng(0)
X = rng.normal(size=(60, 3))
y = np.repeat([0, 1], 30)
{prepare}
experiment = mlx.Experiment(
    name={name!r},
    data=lambda: {data},
    estimator={estimator},
    search_space={space},
    n_trials=2,
    {extra}
)
"""


@dataclass
class Case:
    """One bad input: the experiment, the command's extra arguments, what must come out.

    ``outcome`` is what the store holds afterwards: ``"refused"`` (no run at all),
    ``"failed"`` (a FAILED parent run without test metrics or model) or ``"ok"`` (a FINISHED
    parent run with test metrics and its model).
    """

    exit_code: int
    message: str
    outcome: str
    prepare: str = ""
    data: str = "(X, y)"
    estimator: str = "KNeighborsClassifier()"
    space: str = KNN_SPACE
    extra: str = ""
    args: tuple = ()

    def source(self):
        return TEMPLATE.format(
            name=NAME,
            prepare=self.prepare,
            data=self.data,
            estimator=self.estimator,
            space=self.space,
            extra=self.extra,
        )


def _closed_port():
    return free_port()  # bound once and released: nothing listens there


CASES = {
    "inf-in-X": Case(
        1, "none of the 2 trials.*Input X contains infinity", "failed", prepare="X[3, 1] = np.inf"
    ),
    # The fix to name: an imputer in the Pipeline (the next case), or dropping the rows.
    "nan-in-X": Case(
        1, "none of the 2 trials.*Input X contains NaN.*imputer", "failed", "X[3, 1] = np.nan"
    ),
    "nan-in-X-imputed-by-the-pipeline": Case(
        0,
        "",
        "ok",
        prepare="X[3, 1] = np.nan",
        estimator="make_pipeline(SimpleImputer(), KNeighborsClassifier())",
        space='{"kneighborsclassifier__n_neighbors": IntDistribution(1, 5)}',
    ),
    "string-labels": Case(0, "", "ok", data="(X, np.array(['cat', 'dog'])[y])"),
    "single-class": Case(
        2, r"y has a single class \(0\.0\); need two or more", "refused", data="(X, np.zeros(60))"
    ),
    "empty-data-set": Case(
        2, r"the data set is empty \(X has 0 rows\)", "refused", data="(X[:0], y[:0])"
    ),
    "class-too-small-for-the-split": Case(
        2,
        r"too few rows of class 1 \(2 rows\).*at least 3 rows.*Add rows of that class",
        "refused",
        prepare="y = np.r_[np.zeros(58), [1, 1]].astype(int)",
    ),
    "more-classes-than-test-rows": Case(
        2,
        "6 validation and 6 test rows are too few for one row of each of the 12 classes; use "
        "larger validation and test fractions",
        "refused",
        prepare="y = np.repeat(np.arange(12), 5)",
    ),
    "classification-metric-for-clustering": Case(
        2,
        "'accuracy' is a classification metric but the task is clustering",
        "refused",
        estimator="KMeans(n_init=1)",
        space='{"n_clusters": IntDistribution(2, 4)}',
        extra='metric="accuracy",',
    ),
    "label-metric-without-labels": Case(
        2,
        r"'adjusted_rand_score' compares with labels, but data\(\) returned y=None",
        "refused",
        data="(X, None)",
        estimator="KMeans(n_init=1)",
        space='{"n_clusters": IntDistribution(2, 4)}',
        extra='metric="adjusted_rand_score",',
    ),
    "float-distribution-for-an-int-parameter": Case(
        2,
        r"search_space\['n_neighbors'\] = FloatDistribution\(1\.5, 5\.5\) does not fit the "
        r"parameter: The 'n_neighbors' parameter of KNeighborsClassifier must be an int.*Got 1\.5 "
        r"instead\. Use IntDistribution\.",
        "refused",
        space='{"n_neighbors": FloatDistribution(1.5, 5.5)}',
    ),
    "range-past-a-bound": Case(
        2,
        r"IntDistribution\(0, 5\) does not fit the parameter: .*Got 0 instead\. Keep the range "
        r"within those values\.",
        "refused",
        space='{"n_neighbors": IntDistribution(0, 5)}',
    ),
    "every-trial-fails": Case(
        1,
        "none of the 2 trials.*no model to test.*n_neighbors",
        "failed",
        space='{"n_neighbors": IntDistribution(500, 600)}',
    ),
    "unreachable-tracking-server": Case(
        1,
        r"cannot reach the MLflow tracking server http://127\.0\.0\.1:\d+: .*refused",
        "refused",
        args=("--tracking-uri", lambda: f"http://127.0.0.1:{_closed_port()}"),
    ),
    "unreachable-tracking-database": Case(
        1,
        r"cannot reach the MLflow tracking database postgresql://mlx@127\.0\.0\.1:\d+/mlflow: "
        r".*refused",
        "refused",
        args=("--tracking-uri", lambda: f"postgresql://mlx@127.0.0.1:{_closed_port()}/mlflow"),
    ),
    "unreachable-optuna-storage": Case(
        1,
        r"cannot use the Optuna storage postgresql://mlx@127\.0\.0\.1:\d+/optuna",
        "refused",
        args=("--storage", lambda: f"postgresql://mlx@127.0.0.1:{_closed_port()}/optuna"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_a_clear_answer_and_a_clean_store(name, stores, write_experiment):
    uri, storage = stores
    case = CASES[name]
    path = write_experiment(case.source())
    args = [value() if callable(value) else value for value in case.args]
    if "--storage" not in args:
        args += ["--storage", storage]
    result = CliRunner().invoke(cli, ["run", str(path), *args], catch_exceptions=False)

    assert result.exit_code == case.exit_code, result.output
    assert "Traceback" not in result.output
    _check_store(MlflowClient(uri), case.outcome)
    if case.exit_code == 0:
        assert "test        accuracy = " in result.stdout
        return
    # The error is the last thing printed: one line, after the progress bar and trial lines.
    error = result.stderr[result.stderr.index("mlx: error: ") :].strip()
    assert re.search(case.message, error), error
    assert "\n" not in error, error


def _check_store(client, outcome):
    experiments = client.search_experiments(view_type=ViewType.ALL)
    ids = [e.experiment_id for e in experiments]
    runs = client.search_runs(ids, run_view_type=ViewType.ALL)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_PARENT]
    models = client.search_logged_models(ids)
    if outcome == "refused":
        assert not parents and not models
        return
    (parent,) = parents
    test_metrics = {k for k in parent.data.metrics if k.startswith(schema.test(""))}
    if outcome == "failed":
        assert parent.info.status == "FAILED"
        assert parent.data.tags[schema.TAG_EVALUATED] == "false"
        assert schema.TAG_MODEL_URI not in parent.data.tags
        assert not test_metrics and not models
        assert not client.list_artifacts(parent.info.run_id, "model")
        return
    assert parent.info.status == "FINISHED"
    assert schema.test("accuracy") in test_metrics
    (model,) = models
    assert model.source_run_id == parent.info.run_id
    assert parent.data.tags[schema.TAG_MODEL_URI] == f"models:/{model.model_id}"
