"""Every MLflow name that ``mlx``'s command line and the tests read comes from the schema module.

A name spelled as a literal in a reader drifts from its writer unnoticed; this test reads the
sources of ``mlx/cli.py`` and ``tests/`` and fails on any string that looks like one of mlx's
tag, param or metric names.
"""

import ast
import re
from pathlib import Path

import pytest

from mlx.tracking import _schema as schema

ROOT = Path(__file__).resolve().parent.parent
READERS = [ROOT / "mlx" / "cli.py", *sorted((ROOT / "tests").glob("*.py"))]
# mlx's tags and params ("mlx.test_evaluated", "mlx.rows.train"), alone or in a search query
# (module names such as "mlx.audio" aside), and its metrics ("val_accuracy", "best_val_r2",
# "test_f1_macro", or the prefix "test_"), and the prefix of the best configuration's params.
_MODULES = "audio|estimators|search|tracking|evaluation|exceptions|runner|workers|cli|data"
_NAME = re.compile(
    rf"`mlx\.[a-z]|^mlx\.(?!({_MODULES})\b)[a-z_]+(\.|$)|^(val|train|test|best_val)_[a-z0-9_]*$"
    r"|^best\.$"
)
# Metric names that are also plain words: flagged where a run's metrics are read with them.
_PLAIN_METRICS = {schema.METRIC_FIT_TIME, schema.METRIC_MODEL_BYTES, schema.METRIC_EPOCHS}


def _reads_metrics(parent):
    """Whether ``parent`` is ``<...>.metrics[...]`` or ``<...>.metrics.get(...)``."""
    if isinstance(parent, ast.Subscript):
        target = parent.value
    elif isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute):
        target = parent.func.value if parent.func.attr == "get" else None
    else:
        return False
    return isinstance(target, ast.Attribute) and target.attr == "metrics"


def _strings(tree):
    """String constants outside docstrings that look like mlx's names, with line numbers."""
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    docstrings = set()
    for node in ast.walk(tree):
        scope = isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        if scope and node.body and isinstance(node.body[0], ast.Expr):
            docstrings.add(id(node.body[0].value))
    for node in ast.walk(tree):
        text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if not text or id(node) in docstrings:
            continue
        plain = node.value in _PLAIN_METRICS and _reads_metrics(parents.get(id(node)))
        if plain or _NAME.search(node.value):
            yield node.lineno, node.value


def _literal_names(path):
    tree = ast.parse(path.read_text())
    return [f"{path.name}:{line}: {text!r}" for line, text in _strings(tree)]


@pytest.mark.parametrize("path", READERS, ids=lambda p: p.name)
def test_readers_take_names_from_the_schema(path):
    if path.name == Path(__file__).name:
        pytest.skip("this file spells names on purpose")
    assert _literal_names(path) == []


def test_the_check_finds_a_literal_name(tmp_path):
    """The check itself can fail: a reader spelling names out is caught."""
    reader = tmp_path / "reader.py"
    reader.write_text(
        "def f(run, client):\n"
        "    client.search_runs(['0'], \"tags.`mlx.role` = 'parent'\")\n"
        "    time = run.data.metrics.get('fit_time')\n"
        "    return run.data.metrics['val_accuracy'], run.data.tags['mlx.trial_state']\n"
    )
    assert len(_literal_names(reader)) == 4


def test_names_are_built_alike():
    assert schema.val("accuracy") == "val_accuracy"
    assert schema.best_val("r2") == "best_val_r2"
    assert schema.test("f1_macro") == "test_f1_macro"
    assert schema.trials_tag("COMPLETE") == "mlx.trials_complete"
    assert schema.rows_param("train") == "mlx.rows.train"
