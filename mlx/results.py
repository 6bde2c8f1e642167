"""What a run delivers once its search has ended.

On the parent MLflow run: the single test evaluation, the study's figures, the comparison of
model types, and the refit model; to the caller, a :class:`RunResult`.
"""

import html
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlx import evaluation, painter, search, tracking
from mlx.data import Prepared, take
from mlx.experiment import Experiment
from mlx.tracking import ParentRun, schema

if TYPE_CHECKING:
    from optuna.study import Study

# A confidence interval: (low, high).
Interval = tuple[float, float]

__all__ = [
    "RunResult",
    "compare_models",
    "description",
    "log_figures",
    "log_model",
    "search_figures",
    "test_once",
    "validation_interval",
]


# Test metrics the run summary shows (after the experiment's own), when the task has them.
_HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "roc_auc",
    "r2",
    "rmse",
    "mae",
    "silhouette",
    "adjusted_rand",
)
_SHOWN = 4


@dataclass
class RunResult:
    """What :func:`mlx.run` returns.

    ``best_value`` is the best validation score and ``validation_interval`` its confidence
    interval (None where none could be drawn); ``test_scores`` the test metrics (None with
    ``no_test``) and ``test_intervals`` their intervals; ``model`` the best configuration refit
    as the experiment's ``refit`` says; ``registered`` the model-registry version the run made
    (``models:/<name>/<version>``, "" without ``register``). In Jupyter it shows as a small
    table with a link to the MLflow run.
    """

    experiment_name: str
    study_name: str
    run_id: str
    metric_name: str
    best_params: dict[str, Any]
    best_value: float
    test_scores: dict[str, float] | None
    model: Any
    model_uri: str = ""
    trial_counts: dict[str, int] = field(default_factory=dict)
    test_use_count: int = 0
    tracking_uri: str = ""
    run_name: str = ""
    best_trial: int | None = None
    validation_interval: Interval | None = None
    test_intervals: dict[str, Interval] = field(default_factory=dict)
    registered: str = ""
    experiment_id: str = ""

    def summary(self) -> str:
        """A short human-readable summary (URLs redacted)."""
        trial = "" if self.best_trial is None else f"   (trial {self.best_trial})"
        validation = _with_interval(self.best_value, self.validation_interval)
        lines = [
            f"experiment  {self.run_name or self.experiment_name}   (study {self.study_name})",
            "trials      " + ", ".join(f"{k.lower()} {v}" for k, v in self.trial_counts.items()),
            "best params "
            + ", ".join(f"{k}={_short(v)}" for k, v in self.best_params.items())
            + trial,
            f"validation  {self.metric_name} = {validation}",
        ]
        if self.test_scores is None:
            lines.append("test        not evaluated (--no-test)")
        else:
            scores = ", ".join(f"{m} = {text}" for m, text in self._test_lines())
            lines.append(f"test        {scores}   (use {self.test_use_count} of this test set)")
        lines.append(f"MLflow run  {self.run_id}   (model {self.model_uri})")
        if self.registered:
            name = self.registered.removeprefix("models:/").rpartition("/")[0]
            lines.append(
                f"registered  {self.registered}   (models:/{name}@{tracking.schema.REGISTRY_ALIAS})"
            )
        lines.append(f"open the UI {tracking.ui_command(self.tracking_uri)}")
        return "\n".join(lines)

    def _test_lines(self) -> list[tuple[str, str]]:
        """The headline test metrics (the experiment's first) with their intervals, as text."""
        scores = self.test_scores or {}
        shown = [self.metric_name, *(m for m in _HEADLINE if m != self.metric_name)]
        return [
            (m, _with_interval(scores[m], self.test_intervals.get(m)))
            for m in [m for m in shown if m in scores][:_SHOWN]
        ]

    def _repr_html_(self) -> str:
        """A compact table for Jupyter: scores with intervals, best parameters, the MLflow run.

        Every value is HTML-escaped. A tracking server's run page is a link (without the URL's
        credentials); for a local store, the run id and the command that opens the UI.
        """
        rows = [
            ("experiment", _html(self.run_name or self.experiment_name)),
            ("study", _html(self.study_name)),
            ("trials", _html(", ".join(f"{k.lower()} {v}" for k, v in self.trial_counts.items()))),
        ]
        if self.test_scores is None:
            rows.append(("test", "not evaluated (no_test)"))
        else:
            uses = f" <small>(use {self.test_use_count} of this test set)</small>"
            for i, (metric, text) in enumerate(self._test_lines()):
                rows.append((f"test {_html(metric)}", _html(text) + (uses if i == 0 else "")))
        trial = "" if self.best_trial is None else f" <small>(trial {self.best_trial})</small>"
        validation = _with_interval(self.best_value, self.validation_interval)
        rows.append((f"validation {_html(self.metric_name)}", _html(validation) + trial))
        rows.append(
            (
                "best params",
                "<br>".join(
                    f"<code>{_html(k)}</code> = {_html(_short(v))}"
                    for k, v in self.best_params.items()
                ),
            )
        )
        rows.append(("MLflow run", self._run_html()))
        if self.model_uri:
            rows.append(("model", f"<code>{_html(self.model_uri)}</code>"))
        if self.registered:
            rows.append(("registered", f"<code>{_html(self.registered)}</code>"))
        body = "".join(
            f'<tr><th style="text-align:left">{key}</th><td style="text-align:left">{value}</td></tr>'
            for key, value in rows
        )
        return f'<table class="mlx-run-result">{body}</table>'

    def _run_html(self) -> str:
        """A link to the run's page on a tracking server, or the run id and how to open the UI."""
        page = run_page_url(self.tracking_uri, self.experiment_id, self.run_id)
        if page:
            return f'<a href="{_html(page)}" target="_blank">{_html(self.run_id)}</a>'
        hint = tracking.ui_command(self.tracking_uri) if self.tracking_uri else "mlx ui"
        return f"<code>{_html(self.run_id)}</code><br><small>open the UI: <code>{_html(hint)}</code></small>"


def run_page_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI's page of a run on the tracking server ``tracking_uri``, or None.

    None for a local store (the UI then runs on request, ``mlx ui``) or an unknown experiment.
    The user part and the query of the URI are left out: they may hold credentials.
    """
    parts = urllib.parse.urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname or not experiment_id:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    quote = urllib.parse.quote
    return f"{base}/#/experiments/{quote(experiment_id, safe='')}/runs/{quote(run_id, safe='')}"


def _html(value: object) -> str:
    return html.escape(str(value), quote=True)


def description(experiment: Experiment, result: RunResult) -> str:
    """The parent run's description: the experiment file's docstring and a one-line result."""
    if result.test_scores is None:
        outcome = "test not evaluated"
    else:
        metric = result.metric_name
        test = _with_interval(result.test_scores[metric], result.test_intervals.get(metric))
        outcome = f"test {metric} = {test}"
    validation = _with_interval(result.best_value, result.validation_interval)
    line = (
        f"**Result:** {outcome}; best validation {result.metric_name} = {validation} "
        f"(trial {result.best_trial} of {sum(result.trial_counts.values())})."
    )
    return f"{experiment.description}\n\n{line}".strip()


def _with_interval(value: float, interval: Interval | None) -> str:
    """``0.9667 [0.9000, 1.0000]``, or the value alone."""
    if interval is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def validation_interval(experiment: Experiment, prepared: Prepared, model: Any) -> Interval | None:
    """The confidence interval of the best configuration's validation score, or None.

    Drawn from the refit model's predictions on the validation rows, so only when the refit
    saw the training rows alone (``refit="train"``); None also where the scorer needs more than
    predictions.
    """
    if experiment.refit != "train" or not experiment.needs_labels:
        return None
    X_val, y_val = prepared.rows("val")
    stratify = y_val if experiment.task == "classification" else None
    try:
        return evaluation.scorer_interval(
            experiment.scorer,
            model,
            X_val,
            y_val,
            metric_name=experiment.metric_name,
            groups=prepared.groups("val"),
            stratify=stratify,
            random_state=experiment.seed,
        )
    except ValueError:  # a scorer that needs probabilities, or a plain callable
        return None


def test_once(
    experiment: Experiment,
    prepared: Prepared,
    model: Any,
    parent: ParentRun,
    meanwhile: Callable[[], Any] = lambda: None,
) -> tuple[dict[str, float], dict[str, Interval], Any]:
    """The single evaluation of the test split, logged on the parent.

    Metrics with their bootstrap intervals (whole groups resampled when the data has groups),
    tables, figures, and misclassified clips as sounds for audio models. The run must have
    claimed the test split in the ledger first (:func:`mlx.tracking.claim_test`): even a crash
    mid-evaluation counts as a use. A resumed run whose evaluation was logged already (it died
    later) reads it back instead of evaluating again.

    ``meanwhile()`` is called once, while the painter draws the test's figures (work that need
    not wait for them, such as logging the model); before the figures and the metrics are
    logged, so that a crash in it leaves the evaluation incomplete, to be made again on resume.
    Returns ``(scores, intervals, what meanwhile returned)``.
    """
    logged = _logged_test(parent)
    if logged is not None:
        return *logged, meanwhile()
    X_test, y_test = prepared.rows("test")
    evaluated = evaluation.evaluate(
        model,
        X_test,
        y_test,
        task=experiment.task,
        metric_name=experiment.metric_name,
        scorer=experiment.scorer,
        groups=prepared.groups("test"),
        random_state=experiment.seed,
    )
    tracker, run_id = parent.tracker, parent.run_id
    folder = schema.ARTIFACT_TEST
    # Handed to the helper process first: drawn while the tables and files are logged.
    figures = painter.paint({f"{folder}/{k}": v for k, v in evaluated["figures"].items()})
    for file, text in evaluated["tables"].items():
        tracker.log_text(run_id, text, f"{folder}/{file}")
    for file, data in evaluated["files"].items():
        tracker.log_bytes(run_id, data, f"{folder}/{file}")
    if evaluated["no_interval"]:
        tracker.log_dict(run_id, evaluated["no_interval"], schema.NO_INTERVAL)
    done = meanwhile()
    log_figures(parent, figures)
    scores, intervals = evaluated["metrics"], evaluated["intervals"]
    # The metrics last: once they are logged, the evaluation is complete.
    parent.log(metrics=_test_metrics(scores, intervals))
    return scores, intervals, done


def _test_metrics(scores, intervals):
    metrics = {schema.test(k): v for k, v in scores.items()}
    for name, (low, high) in intervals.items():
        metrics[schema.ci_low(schema.test(name))] = low
        metrics[schema.ci_high(schema.test(name))] = high
    return metrics


def _logged_test(parent):
    """``(scores, intervals)`` of a test evaluation this run logged already, or None."""
    logged = parent.tracker.run(parent.run_id).data.metrics
    prefix = schema.test("")
    names = [
        k[len(prefix) :]
        for k in logged
        if k.startswith(prefix) and not k.endswith(schema.CI_SUFFIXES)
    ]
    if not names:
        return None
    scores = {name: logged[schema.test(name)] for name in names}
    intervals = {
        name: (logged[schema.ci_low(schema.test(name))], logged[schema.ci_high(schema.test(name))])
        for name in names
        if schema.ci_low(schema.test(name)) in logged
    }
    return scores, intervals


def search_figures(
    experiment: Experiment, study: "Study", records: Mapping[int, search.TrialRecord], best: Any
) -> Iterator[tuple[str, bytes]]:
    """The study's figures and the best trial's learning curve, handed to the painter now;
    ``(artifact path, PNG)`` of each as drawn (see :func:`log_figures`)."""
    # Read from the storage, which may be a database server restarting for a moment.
    complete = search.retrying(
        study.get_trials, deepcopy=False, states=(search.TrialState.COMPLETE,)
    )
    directions = search.retrying(lambda: study.directions)
    record = records.get(best.trial.number)
    title = f"Learning curve, trial {best.trial.number}"
    sketches = {
        schema.OPTIMIZATION_HISTORY: painter.Sketch(
            evaluation.optimization_history_figure, (complete, directions)
        ),
        schema.PARAM_IMPORTANCES: painter.Sketch(
            evaluation.param_importances_figure, (complete, directions)
        ),
        schema.LEARNING_CURVE: painter.Sketch(
            evaluation.learning_curve_figure,
            (record.curves if record else None, experiment.metric_name, title),
        ),
    }
    return painter.paint({f"{schema.ARTIFACT_SEARCH}/{k}": v for k, v in sketches.items()})


def log_figures(parent: ParentRun, figures: Iterable[tuple[str, bytes]]) -> None:
    """Figures as PNG artifacts of the parent run: ``(artifact path, PNG)`` from the painter."""
    for name, png in figures:
        parent.tracker.log_bytes(parent.run_id, png, name)


def compare_models(
    experiment: Experiment,
    prepared: Prepared,
    study: "Study",
    trial_objective: search.Objective,
    parent: ParentRun,
    best: Any,
    model: Any,
    no_test: bool,
) -> None:
    """The parent's view across model types: leaderboard, and decision boundaries in 2-D.

    The leaderboard (several models) is read back from the child runs, so it holds the trials
    of every process. Decision boundaries (classification on two features) show the best
    configuration of each model type fitted on the training split; test points are drawn only
    when the test split is evaluated anyway.
    """
    tracker, metric, names = parent.tracker, experiment.metric_name, list(experiment.candidates)
    if not search.is_single(experiment.candidates):
        trials = tracking.trial_summaries(tracker.children(parent.run_id), metric)
        rows = evaluation.leaderboard(trials, names)
        csv = evaluation.leaderboard_csv(rows, metric)
        tracker.log_text(parent.run_id, csv, schema.LEADERBOARD_CSV)
        sketch = painter.Sketch(evaluation.leaderboard_figure, (rows, metric))
        log_figures(parent, painter.paint({schema.LEADERBOARD_PNG: sketch}))
    X_train, y_train = prepared.rows("train")
    if experiment.task != "classification" or np.shape(X_train)[1] != 2:
        return
    winners = _best_per_model(experiment, study)
    winners[best.model] = best.trial  # the chosen trial, which limits may make another one
    models, titles = {}, {}
    for name in [n for n in names if n in winners]:
        trial = winners[name]
        if name == best.model and experiment.refit == "train":
            models[name] = model  # already fitted on the training split
        else:
            params = trial_objective.configuration(trial.params)[1]
            estimator = trial_objective.build(params, name)
            epochs = search.n_epochs(experiment.candidates[name][0], experiment.max_epochs)
            models[name] = search.fit_model(estimator, X_train, y_train, epochs=epochs)
        mark = " (winner)" if name == best.model and len(winners) > 1 else ""
        titles[name] = f"val {metric} {trial.value:.3f}, trial {trial.number}{mark}"
    test = None if no_test else prepared.rows("test")
    sketch = painter.Sketch(
        evaluation.decision_boundary_figure, (models, (X_train, y_train), test, titles)
    )
    log_figures(parent, painter.paint({schema.DECISION_BOUNDARIES: sketch}))


def _best_per_model(experiment, study):
    """The best complete trial of each model type."""
    best: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False, states=(search.TrialState.COMPLETE,)):
        model = search.split_params(trial.params, experiment.candidates)[0]
        if model not in best or trial.value > best[model].value:
            best[model] = trial
    return best


def log_model(
    model: Any, X_fit: np.ndarray | pd.DataFrame, params: Mapping[str, Any], parent: ParentRun
) -> str:
    """The refit model with its signature and an input example; returns its URI.

    ``X_fit`` is the data it was fitted on (the example is its first rows); ``params`` its
    configuration, recorded on the logged model.
    """
    from mlflow.models import infer_signature

    logged = parent.tracker.run(parent.run_id).data.tags.get(schema.TAG_MODEL_URI)
    if logged is not None:  # the same refit, logged by this run before (``mlx test``, resume)
        return logged
    example = take(X_fit, np.arange(min(5, len(X_fit))))
    signature = infer_signature(example, model.predict(example))
    requirements = tracking.requirements(model, X_fit)
    uri = parent.tracker.log_model(
        parent.run_id, model, example, signature, requirements, params=params
    )
    parent.log(tags={schema.TAG_MODEL_URI: uri})
    return uri
