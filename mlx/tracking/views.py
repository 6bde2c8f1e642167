"""What ``mlx list`` and ``mlx show`` read back from the store, as plain JSON-ready data.

:func:`experiments` gives each mlx experiment with its latest run; :func:`run_view` one run with
its trials ranked: the trial that was refit and tested first, then complete trials by validation
score (ties: the earlier trial), then pruned, then failed. A run that did not finish (Ctrl-C,
a crash) shows the best of the trials it finished.
"""

from mlx.exceptions import TrackingError
from mlx.stores import redact_url
from mlx.tracking import _schema as schema
from mlx.tracking.children import trial_summaries

__all__ = ["experiments", "run_view"]

_STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}


def experiments(tracker):
    """One dict per mlx experiment: its latest run, the number of runs and their scores."""
    rows = []
    for name, parent, n_runs in tracker.latest_parents():
        metric = parent.data.params.get(schema.PARAM_METRIC, "")
        # A run that did not finish names no best trial: its finished trials tell.
        finished = parent.data.tags.get(schema.TAG_BEST_TRIAL) is not None
        best, _ = _best(parent, None if finished else tracker.children(parent), metric)
        rows.append(
            {
                "experiment": name,
                "runs": n_runs,
                "latest": parent.info.run_name,
                "run_id": parent.info.run_id,
                "status": parent.info.status,
                "metric": metric,
                "best_val": best,
                "test": _scored(parent, schema.test(metric)),
            }
        )
    return rows


def run_view(tracker, experiment_name, run_id=None):
    """A run of ``experiment_name`` (its latest, or ``run_id``) and its trials, ranked."""
    parents = tracker.parents(experiment_name)
    if run_id is not None:
        parents = [p for p in parents if p.info.run_id == run_id]
    if not parents:
        raise TrackingError(
            f"no mlx run of experiment {experiment_name!r}"
            + ("" if run_id is None else f" with id {run_id}")
            + f" in {redact_url(tracker.uri)}; `mlx list` shows the experiments there."
        )
    parent = parents[0]
    children = tracker.children(parent)
    metric = parent.data.params.get(schema.PARAM_METRIC, "")
    best, best_trial = _best(parent, children, metric)
    test = _scored(parent, schema.test(metric))
    trials = sorted(
        (_trial(run, metric, best_trial, test is not None) for run in children), key=_rank
    )
    return {
        "experiment": experiment_name,
        "run": parent.info.run_name,
        "run_id": parent.info.run_id,
        "status": parent.info.status,
        "metric": metric,
        "best_val": best,
        "best_trial": best_trial,
        "test": test,
        "trials": trials,
        "models": trial_summaries(children, metric),
    }


def _trial(run, metric, chosen, tested):
    """One trial; ``chosen`` is the best trial's number (the one refit, when the run finished)."""
    tags, metrics = run.data.tags, run.data.metrics
    number = int(tags.get(schema.TAG_TRIAL, -1))
    return {
        "trial": number,
        "name": run.info.run_name,
        "state": tags.get(schema.TAG_STATE, run.info.status),
        "chosen": number == chosen,
        "tested": number == chosen and tested,
        "value": metrics.get(schema.val(metric)),
        "train": metrics.get(schema.train(metric)),
        "fit_time": metrics.get(schema.METRIC_FIT_TIME),
        "params": dict(run.data.params),
    }


def _rank(trial):
    value = trial["value"]
    return (
        not trial["chosen"],
        _STATE_ORDER.get(trial["state"], 3),
        value is None,
        -(value or 0.0),
        trial["trial"],
    )


def _best(parent, children, metric):
    """``(best validation score, its trial number)``; from the trials if the run did not say."""
    tagged = parent.data.tags.get(schema.TAG_BEST_TRIAL)
    if tagged is not None:
        return _scored(parent, schema.best_val(metric)), int(tagged)
    if children is None:
        return None, None
    complete = [
        (run.data.metrics[schema.val(metric)], int(run.data.tags[schema.TAG_TRIAL]))
        for run in children
        if run.data.tags.get(schema.TAG_STATE) == "COMPLETE"
        and schema.val(metric) in run.data.metrics
        # A trial over the experiment's limits on cost is no candidate, however good.
        and run.data.tags.get(schema.TAG_WITHIN_LIMITS) != "false"
    ]
    if not complete:
        return None, None
    value, number = max(complete, key=lambda pair: (pair[0], -pair[1]))
    return {"value": value, "ci": None}, number


def _scored(run, name):
    """``{"value", "ci"}`` of metric ``name`` on ``run``, or None."""
    metrics = run.data.metrics
    if name not in metrics:
        return None
    low, high = metrics.get(schema.ci_low(name)), metrics.get(schema.ci_high(name))
    return {"value": metrics[name], "ci": None if low is None else [low, high]}
