"""MLflow only: the store, the parent run and its children, the test ledger, and the schema.

Every name written to MLflow is spelled in :mod:`mlx.tracking._schema`. Nothing here knows
Optuna: trials arrive as plain records.
"""

from mlx.stores import redact_url
from mlx.tracking import _schema as schema
from mlx.tracking.children import ChildRuns, add_unwritten, end_orphans, trial_summaries
from mlx.tracking.ledger import (
    claim_test,
    ledger_tags,
    mark_evaluated,
    test_use_count,
    test_uses,
)
from mlx.tracking.parent import (
    ParentRun,
    all_params,
    coordinator_alive,
    coordinator_tag,
    find_parent,
    fixed_params,
    next_run_number,
    other_definitions,
    provenance,
    requirements,
    settings,
)
from mlx.tracking.registry import register_model
from mlx.tracking.store import DEFAULT_TRACKING_FILE, Tracker, resolve_tracking_uri, ui_command

__all__ = [
    "DEFAULT_TRACKING_FILE",
    "ChildRuns",
    "ParentRun",
    "add_unwritten",
    "all_params",
    "Tracker",
    "claim_test",
    "coordinator_alive",
    "coordinator_tag",
    "end_orphans",
    "find_parent",
    "fixed_params",
    "ledger_tags",
    "mark_evaluated",
    "next_run_number",
    "other_definitions",
    "provenance",
    "redact_url",
    "register_model",
    "requirements",
    "resolve_tracking_uri",
    "schema",
    "settings",
    "test_use_count",
    "test_uses",
    "trial_summaries",
    "ui_command",
]
