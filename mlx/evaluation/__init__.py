"""Judging models: metrics (and which of them need labels), their intervals, figures, evidence.

Where things go: a new test metric or table in :mod:`~mlx.evaluation.metrics`; how a metric is
bootstrapped in :mod:`~mlx.evaluation.intervals`; a new figure in
:mod:`~mlx.evaluation.figures`; sounds and other examples to look at in
:mod:`~mlx.evaluation.evidence`; the comparison of model types in
:mod:`~mlx.evaluation.leaderboard`; accuracy against cost in :mod:`~mlx.evaluation.pareto`.
"""

from mlx.evaluation.evidence import audio_sample_rate, misclassified_clips
from mlx.evaluation.figures import (
    decision_boundary_figure,
    learning_curve_figure,
    optimization_history_figure,
    param_importances_figure,
)
from mlx.evaluation.intervals import (
    bootstrap_counts,
    bootstrap_interval,
    bootstrap_intervals,
    class_metric,
    interval_metrics,
    scorer_interval,
)
from mlx.evaluation.leaderboard import leaderboard, leaderboard_csv, leaderboard_figure
from mlx.evaluation.metrics import DEFAULT_METRIC, evaluate, needs_labels, resolve_metric
from mlx.evaluation.pareto import cost_csv, cost_figure, pareto_front

__all__ = [
    "DEFAULT_METRIC",
    "audio_sample_rate",
    "bootstrap_counts",
    "bootstrap_interval",
    "bootstrap_intervals",
    "class_metric",
    "cost_csv",
    "cost_figure",
    "decision_boundary_figure",
    "evaluate",
    "interval_metrics",
    "leaderboard",
    "leaderboard_csv",
    "leaderboard_figure",
    "learning_curve_figure",
    "misclassified_clips",
    "needs_labels",
    "optimization_history_figure",
    "param_importances_figure",
    "pareto_front",
    "resolve_metric",
    "scorer_interval",
]
