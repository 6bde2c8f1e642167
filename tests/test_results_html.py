"""RunResult in a notebook: its HTML table, and mlx.run from Python without MLflow's INFO lines."""

import logging
from html.parser import HTMLParser

import pytest
from mlflow import MlflowClient
from optuna.distributions import IntDistribution
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

from mlx import Experiment, run
from mlx.results import RunResult


class _Table(HTMLParser):
    """The table's rows as {header: cell text}, its links, and every tag seen."""

    def __init__(self, markup):
        super().__init__()
        self.rows, self.links, self.tags = {}, [], []
        self._cell, self._key, self._text = None, None, []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("th", "td"):
            self._cell, self._text = tag, []
        elif tag == "a":
            self.links.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag == "th":
            self._key = "".join(self._text).strip()
        elif tag == "td":
            self.rows[self._key] = "".join(self._text).strip()
        if tag in ("th", "td"):
            self._cell = None

    def handle_data(self, data):
        if self._cell:
            self._text.append(data)


def _result(**changes):
    fields = dict(
        experiment_name="iris-knn",
        study_name="iris-knn-6808ff0544-1",
        run_id="0123456789abcdef",
        metric_name="accuracy",
        best_params={"kneighborsclassifier__n_neighbors": 14, "weights": "distance"},
        best_value=1.0,
        test_scores={"accuracy": 0.9667, "balanced_accuracy": 0.9667, "f1_macro": 0.96659},
        model=None,
        model_uri="runs:/0123456789abcdef/model",
        trial_counts={"COMPLETE": 30, "PRUNED": 0, "FAIL": 0},
        test_use_count=1,
        tracking_uri="http://127.0.0.1:5000",
        run_name="iris-knn #1",
        best_trial=1,
        validation_interval=(1.0, 1.0),
        test_intervals={"accuracy": (0.9, 1.0), "balanced_accuracy": (0.9, 1.0)},
        experiment_id="3",
    )
    return RunResult(**{**fields, **changes})


def test_scores_with_intervals_params_and_the_run_link():
    table = _Table(_result()._repr_html_())
    assert table.rows["experiment"] == "iris-knn #1"
    assert table.rows["trials"] == "complete 30, pruned 0, fail 0"
    assert table.rows["test accuracy"] == "0.9667 [0.9000, 1.0000] (use 1 of this test set)"
    assert table.rows["test balanced_accuracy"] == "0.9667 [0.9000, 1.0000]"
    assert table.rows["test f1_macro"] == "0.9666"  # no interval: the value alone
    assert table.rows["validation accuracy"] == "1.0000 [1.0000, 1.0000] (trial 1)"
    assert table.rows["best params"] == (
        "kneighborsclassifier__n_neighbors = 14weights = 'distance'"
    )
    assert table.links == [
        {
            "href": "http://127.0.0.1:5000/#/experiments/3/runs/0123456789abcdef",
            "target": "_blank",
        }
    ]


def test_every_value_is_escaped():
    evil = "<script>alert('x')</script>&"
    result = _result(
        experiment_name=evil,
        run_name="",
        metric_name="<b>m</b>",
        test_scores={"<b>m</b>": 0.5},
        test_intervals={},
        best_params={"<i>key</i>": evil},
        run_id='"><img src=x>',
        registered="models:/<x>/1",
    )
    markup = result._repr_html_()
    table = _Table(markup)
    assert set(table.tags) <= {"table", "tr", "th", "td", "small", "code", "br", "a"}
    assert table.rows["experiment"] == evil
    assert table.rows["test <b>m</b>"].startswith("0.5000")
    assert table.rows["best params"] == f"<i>key</i> = {evil!r}"
    assert table.rows["registered"] == "models:/<x>/1"
    assert table.links[0]["href"].endswith("/runs/%22%3E%3Cimg%20src%3Dx%3E")


def test_server_link_leaves_the_credentials_out():
    result = _result(tracking_uri="https://alice:s3cret@mlflow.example.org:8443/mlflow/?token=t0k")
    markup = result._repr_html_()
    assert "s3cret" not in markup and "t0k" not in markup and "alice" not in markup
    (link,) = _Table(markup).links
    assert link["href"] == (
        "https://mlflow.example.org:8443/mlflow/#/experiments/3/runs/0123456789abcdef"
    )


def test_local_store_shows_the_run_id_and_how_to_open_the_ui():
    table = _Table(_result(tracking_uri="sqlite:////data/mlflow.db")._repr_html_())
    assert table.links == []
    assert table.rows["MLflow run"].startswith("0123456789abcdef")
    assert "mlx ui --tracking-uri 'sqlite:////data/mlflow.db'" in table.rows["MLflow run"]


def test_no_test_run():
    table = _Table(_result(test_scores=None, test_intervals={})._repr_html_())
    assert table.rows["test"] == "not evaluated (no_test)"
    assert not any(key.startswith("test ") for key in table.rows)


def test_run_from_python_prints_no_mlflow_info(tmp_path, monkeypatch, capfd):
    """A new store (its schema migrated in this run, as on a user's first run) and a search:
    MLflow, Alembic and Optuna would each log INFO lines; none reaches the notebook."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached empty store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    names = ("mlflow", "alembic", "optuna")
    before = {name: logging.getLogger(name).level for name in names}
    # MLflow's own level when imported (other tests in this process may have changed it).
    logging.getLogger("mlflow").setLevel(logging.INFO)
    try:
        result, out, err, after = _run_iris(tmp_path, uri, capfd, names)
    finally:
        logging.getLogger("mlflow").setLevel(before["mlflow"])
    assert "INFO" not in out + err, out + err
    assert after == {**before, "mlflow": logging.INFO}  # the levels restored

    run_info = MlflowClient(uri).get_run(result.run_id).info
    assert result.experiment_id == run_info.experiment_id
    table = _Table(result._repr_html_())
    assert table.rows["MLflow run"].startswith(result.run_id)
    assert table.rows["test accuracy"].startswith(f"{result.test_scores['accuracy']:.4f} [")


def _run_iris(tmp_path, uri, capfd, names):
    experiment = Experiment(
        "iris-notebook",
        lambda: load_iris(return_X_y=True),
        KNeighborsClassifier(),
        {"n_neighbors": IntDistribution(1, 10)},
        n_trials=2,
    )
    result = run(
        experiment,
        tracking_uri=uri,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        show_progress=False,
    )
    out, err = capfd.readouterr()
    return result, out, err, {name: logging.getLogger(name).level for name in names}


@pytest.mark.parametrize(
    "uri", ["sqlite:///mlflow.db", "file:///tmp/mlruns", "postgresql://u:p@db/mlflow", ""]
)
def test_no_link_without_a_tracking_server(uri):
    from mlx.results import run_page_url

    assert run_page_url(uri, "3", "abc") is None
