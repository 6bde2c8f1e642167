"""What a run delivers once its search has ended.

On the parent MLflow run: the single test evaluation, the study's figures, the comparison of
model types, and the refit model; to the caller, a :class:`RunResult`.
"""

from dataclasses import dataclass, field

import numpy as np

from mlx import evaluation, search, tracking
from mlx.data import take
from mlx.tracking import schema

__all__ = ["RunResult", "compare_models", "log_model", "log_search", "test_once"]


@dataclass
class RunResult:
    """What :func:`run` returns.

    ``best_value`` is the best validation score; ``test_scores`` the test metrics (None with
    ``no_test``); ``model`` the best configuration refit as the experiment's ``refit`` says.
    """

    experiment_name: str
    study_name: str
    run_id: str
    metric_name: str
    best_params: dict
    best_value: float
    test_scores: dict | None
    model: object
    model_uri: str = ""
    trial_counts: dict = field(default_factory=dict)
    test_use_count: int = 0
    tracking_uri: str = ""

    def summary(self):
        """A short human-readable summary (URLs redacted)."""
        lines = [
            f"experiment  {self.experiment_name}   (study {self.study_name})",
            "trials      " + ", ".join(f"{k.lower()} {v}" for k, v in self.trial_counts.items()),
            "best params " + ", ".join(f"{k}={_short(v)}" for k, v in self.best_params.items()),
            f"validation  {self.metric_name} = {self.best_value:.4f}",
        ]
        if self.test_scores is None:
            lines.append("test        not evaluated (--no-test)")
        else:
            scores = ", ".join(
                f"{k} = {v:.4f}" for k, v in self.test_scores.items() if isinstance(v, float)
            )
            lines.append(f"test        {scores}   (use {self.test_use_count} of this test set)")
        lines.append(f"MLflow run  {self.run_id}   (model {self.model_uri})")
        lines.append(f"open the UI {tracking.ui_command(self.tracking_uri)}")
        return "\n".join(lines)


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def test_once(experiment, prepared, model, parent):
    """The single evaluation of the test split: metrics, tables and figures on the parent.

    The run must have claimed the test split in the ledger first
    (:func:`mlx.tracking.claim_test`): even a crash mid-evaluation counts as a use.
    """
    tracker, parent_id = parent.tracker, parent.run_id
    X_test, y_test = prepared.rows("test")
    evaluated = evaluation.evaluate(
        model,
        X_test,
        y_test,
        task=experiment.task,
        metric_name=experiment.metric_name,
        scorer=experiment.scorer,
    )
    scores = evaluated["metrics"]
    parent.log(metrics={schema.test(k): v for k, v in scores.items()})
    for file, text in evaluated["tables"].items():
        tracker.log_text(parent_id, text, f"{schema.ARTIFACT_TEST}/{file}")
    try:
        for file, fig in evaluated["figures"].items():
            tracker.log_figure(parent_id, fig, f"{schema.ARTIFACT_TEST}/{file}")
    finally:
        evaluation.close(evaluated["figures"])
    return scores


def log_search(experiment, study, records, best, parent):
    """The study's figures and the best trial's learning curve."""
    # Read from the storage, which may be a database server restarting for a moment.
    figures = search.retrying(evaluation.study_figures, study)
    try:
        record = records.get(best.trial.number)
        curve = evaluation.learning_curve_figure(
            record.curves if record else None,
            experiment.metric_name,
            f"Learning curve, trial {best.trial.number}",
        )
        if curve is not None:
            figures[schema.LEARNING_CURVE] = curve
        for file, fig in figures.items():
            parent.tracker.log_figure(parent.run_id, fig, f"{schema.ARTIFACT_SEARCH}/{file}")
    finally:
        evaluation.close(figures)


def compare_models(experiment, prepared, study, trial_objective, parent, best, model, no_test):
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
        figure = evaluation.leaderboard_figure(rows, metric)
        tracker.log_figure(parent.run_id, figure, schema.LEADERBOARD_PNG)
    X_train, y_train = prepared.rows("train")
    if experiment.task != "classification" or np.shape(X_train)[1] != 2:
        return
    winners = _best_per_model(experiment, study)
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
    figure = evaluation.decision_boundary_figure(models, (X_train, y_train), test, titles)
    if figure is not None:
        tracker.log_figure(parent.run_id, figure, schema.DECISION_BOUNDARIES)


def _best_per_model(experiment, study):
    """The best complete trial of each model type."""
    best = {}
    for trial in study.get_trials(deepcopy=False, states=(search.TrialState.COMPLETE,)):
        model = search.split_params(trial.params, experiment.candidates)[0]
        if model not in best or trial.value > best[model].value:
            best[model] = trial
    return best


def log_model(model, X_fit, params, parent):
    """The refit model with its signature and an input example; returns its URI.

    ``X_fit`` is the data it was fitted on (the example is its first rows); ``params`` its
    configuration, recorded on the logged model.
    """
    from mlflow.models import infer_signature

    example = take(X_fit, np.arange(min(5, len(X_fit))))
    signature = infer_signature(example, model.predict(example))
    requirements = tracking.requirements(model, X_fit)
    uri = parent.tracker.log_model(
        parent.run_id, model, example, signature, requirements, params=params
    )
    parent.log(tags={schema.TAG_MODEL_URI: uri})
    return uri
