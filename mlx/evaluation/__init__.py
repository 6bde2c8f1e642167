"""Judging models: metrics (and which of them need labels), figures, and the leaderboard.

Where things go: a new test metric or table in :mod:`~mlx.evaluation.metrics`; a new figure in
:mod:`~mlx.evaluation.figures`; the comparison of model types in
:mod:`~mlx.evaluation.leaderboard`.
"""

from mlx.evaluation.figures import (
    close,
    decision_boundary_figure,
    learning_curve_figure,
    study_figures,
)
from mlx.evaluation.leaderboard import leaderboard, leaderboard_csv, leaderboard_figure
from mlx.evaluation.metrics import DEFAULT_METRIC, evaluate, needs_labels, resolve_metric

__all__ = [
    "DEFAULT_METRIC",
    "close",
    "decision_boundary_figure",
    "evaluate",
    "leaderboard",
    "leaderboard_csv",
    "leaderboard_figure",
    "learning_curve_figure",
    "needs_labels",
    "resolve_metric",
    "study_figures",
]
