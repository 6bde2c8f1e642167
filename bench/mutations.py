"""Deliberate bugs, one at a time, in a copy of the repository: does a named test catch each?

Each mutation below breaks one promise of the product with a small text replacement in one
source file (the bug someone could plausibly write). The script copies the repository (the
working tree by default, or a commit with ``--git REF``) to a temporary folder, checks that the
copy's ``mlx`` is the one Python imports there (``PYTHONPATH`` points at the copy), runs every
named test once on the unchanged copy (the baseline: they must pass, none may skip), then for
each mutation: changes the file, runs ``python -m pytest -x -q <its tests>`` in the copy,
restores the file. A mutation is *caught* when a test fails; it *survives* when its tests pass;
it is *broken* when pytest could not run (a syntax error, a collection error) and *stale* when
its text is not in the file any more (the source changed: update the mutation).

Prints one table (mutation, promise, file, verdict, the tests that failed) and exits 1 unless
every mutation was caught. The tests that need PostgreSQL (the stored-password check) need the
server of the test suite; set ``MLX_REQUIRE_POSTGRES=1`` to make its absence a failure of the
baseline rather than a skip.

Run: ``python bench/mutations.py [--only NAME ...] [--list] [--git REF] [--keep] [--no-stop]``
(about 30 s a mutation on 2 cores; ``tox -e mutations``).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMISES = "tests/test_promises.py"


@dataclass
class Mutation:
    name: str
    promise: str
    file: str
    old: str  # must occur exactly once in ``file``
    new: str
    tests: tuple


def _promise(test):
    return f"{PROMISES}::{test}"


_GROUPS = {
    (task, validation): _promise(f"test_every_split_keeps_groups_apart[{task}-{validation}]")
    for task in ("classification", "regression", "clustering")
    for validation in ("holdout", "folds")
}
_VAL_ONLY = _promise("test_trials_are_scored_on_the_validation_rows_only")
_TEST_ONCE = _promise("test_the_test_rows_are_seen_once_by_the_final_evaluation[holdout]")
_TEST_ONCE_FOLDS = _promise("test_the_test_rows_are_seen_once_by_the_final_evaluation[folds]")
_CV = "tests/test_cross_validation.py::"
_LEDGER = _promise("test_the_ledger_counts_deleted_runs_and_deleted_experiments")
_LEDGER_RERUN = "tests/test_runner.py::test_the_test_ledger_refuses_a_second_evaluation"
_SECRET = "test_run_errors_never_carry_a_password"

MUTATIONS = [
    Mutation(
        "search scored on the test split",
        "trials are scored on the validation rows only",
        "mlx/workers.py",
        'prepared.rows("val"),',
        'prepared.rows("test"),',
        (_VAL_ONLY, _TEST_ONCE),
    ),
    Mutation(
        "folds cut from the test rows too",
        "the test split is never seen by the search (cross-validation)",
        "mlx/data.py",
        "np.concatenate([parts.train, parts.val])",
        "np.concatenate([parts.train, parts.val, parts.test])",
        (_TEST_ONCE_FOLDS, _CV + "test_folds_cover_train_and_val_once_and_never_a_test_row"),
    ),
    Mutation(
        "ledger: active runs only",
        "the ledger counts deleted runs",
        "mlx/tracking/ledger.py",
        "query, deleted=True",
        "query, deleted=False",
        (_LEDGER,),
    ),
    Mutation(
        "ledger: active experiments only",
        "the ledger counts deleted experiments",
        "mlx/tracking/ledger.py",
        "experiment_ids(deleted=True)",
        "experiment_ids(deleted=False)",
        (_LEDGER,),
    ),
    Mutation(
        "ledger: evaluation not recorded (claim_test bypassed)",
        "a test split evaluated once is refused afterwards",
        "mlx/tracking/ledger.py",
        'tags={schema.TAG_EVALUATED: "true", schema.TAG_USE_COUNT: str(count)}',
        "tags={schema.TAG_USE_COUNT: str(count)}",
        (_LEDGER, _LEDGER_RERUN),
    ),
    Mutation(
        "test split evaluated twice",
        "the test split is evaluated once",
        "mlx/results.py",
        "    evaluated = evaluation.evaluate(\n",
        "    evaluation.evaluate(model, X_test, y_test, task=experiment.task,"
        " metric_name=experiment.metric_name, scorer=experiment.scorer)\n"
        "    evaluated = evaluation.evaluate(\n",
        (_TEST_ONCE,),
    ),
    Mutation(
        "validation interval drawn on the test rows",
        "the test split is touched only by the final evaluation",
        "mlx/results.py",
        'X_val, y_val = prepared.rows("val")\n    stratify',
        'X_val, y_val = prepared.rows("test")\n    stratify',
        (_TEST_ONCE,),
    ),
    Mutation(
        "grouped classification split as an ungrouped one",
        "groups kept apart (classification)",
        "mlx/data.py",
        "groups = dataset.groups\n",
        "groups = None if stratify else dataset.groups\n",
        (_GROUPS["classification", "holdout"],),
    ),
    Mutation(
        "grouped regression split as an ungrouped one",
        "groups kept apart (regression)",
        "mlx/data.py",
        "groups = dataset.groups\n",
        "groups = dataset.groups if stratify or dataset.y is None else None\n",
        (_GROUPS["regression", "holdout"],),
    ),
    Mutation(
        "grouped clustering split as an ungrouped one",
        "groups kept apart (clustering)",
        "mlx/data.py",
        "groups = dataset.groups\n",
        "groups = dataset.groups if dataset.y is not None else None\n",
        (_GROUPS["clustering", "holdout"],),
    ),
    Mutation(
        "stratified grouped path ignores the groups",
        "groups kept apart (classification)",
        "mlx/data.py",
        "splitter = StratifiedGroupKFold(",
        'splitter = __import__("sklearn.model_selection").model_selection.StratifiedKFold(',
        (_GROUPS["classification", "holdout"],),
    ),
    Mutation(
        "grouped fallback ignores the groups",
        "groups kept apart (regression, clustering)",
        "mlx/data.py",
        "splitter = GroupShuffleSplit(",
        'splitter = __import__("sklearn.model_selection").model_selection.ShuffleSplit(',
        (_GROUPS["regression", "holdout"], _GROUPS["clustering", "holdout"]),
    ),
    Mutation(
        "train/validation split ignores the groups",
        "groups kept apart (every task)",
        "mlx/data.py",
        "groups[rest], val_share",
        "np.arange(len(rest)), val_share",
        tuple(_GROUPS[task, "holdout"] for task in ("classification", "regression", "clustering")),
    ),
    Mutation(
        "stratified grouped folds ignore the groups",
        "groups kept apart in the folds (classification)",
        "mlx/data.py",
        "StratifiedGroupKFold(k, shuffle=True, random_state=seed)",
        "StratifiedKFold(k, shuffle=True, random_state=seed)",
        (_GROUPS["classification", "folds"], _CV + "test_folds_keep_groups_together"),
    ),
    Mutation(
        "grouped folds ignore the groups",
        "groups kept apart in the folds (regression, clustering)",
        "mlx/data.py",
        "else GroupKFold(k, shuffle=True, random_state=seed)",
        "else KFold(k, shuffle=True, random_state=seed)",
        (_GROUPS["regression", "folds"], _GROUPS["clustering", "folds"]),
    ),
    Mutation(
        "classification split not stratified",
        "README: split once, stratified for classification",
        "mlx/data.py",
        'stratify=task == "classification"',
        "stratify=False",
        (_promise("test_classification_splits_are_stratified"),),
    ),
    Mutation(
        "storage error shows the password",
        "mlx.run's exceptions never carry a secret (storage)",
        "mlx/search/storage.py",
        "cannot use the Optuna storage {redact_url(url)}",
        "cannot use the Optuna storage {url}",
        (_promise(f"{_SECRET}[storage]"),),
    ),
    Mutation(
        "tracking store error shows the password",
        "mlx.run's exceptions never carry a secret (tracking)",
        "mlx/tracking/store.py",
        "cannot reach the MLflow {what} {redact_url(uri)}",
        "cannot reach the MLflow {what} {uri}",
        (_promise(f"{_SECRET}[tracking database]"), _promise(f"{_SECRET}[tracking server]")),
    ),
    Mutation(
        "driver's error kept as the hidden context",
        "mlx.run's exceptions never carry a secret, even in __context__",
        "mlx/tracking/store.py",
        "        cause = redact_url(_root_cause(exc))\n",
        "        cause = redact_url(_root_cause(exc))\n"
        "        raise TrackingError(f'cannot reach {redact_url(uri)}: {cause}') from None\n",
        (
            _promise(
                "test_run_errors_hold_no_password_even_in_a_suppressed_context[tracking server]"
            ),
        ),
    ),
    Mutation(
        "parent run left RUNNING on failure",
        "README: the parent run always ends (FINISHED, FAILED or KILLED)",
        "mlx/coordinator.py",
        '_try(tracker.end_run, run_id, "KILLED" if interrupted else "FAILED")',
        "pass",
        (
            "tests/test_runner.py::test_a_search_where_every_trial_fails_ends_cleanly",
            "tests/test_runner.py::test_an_interrupt_ends_the_parent_run_killed",
        ),
    ),
    Mutation(
        "storage URL stored with its password",
        "README: a password in either URL is never printed or logged",
        "mlx/coordinator.py",
        "schema.TAG_OPTUNA_STORAGE: redact_url(stores.storage_url)",
        "schema.TAG_OPTUNA_STORAGE: stores.storage_url",
        ("tests/test_secrets.py::test_a_password_in_a_working_storage_url_is_never_stored",),
    ),
    Mutation(
        "skip guard off",
        "CI fails when a test that needs PostgreSQL or the audio extra would skip",
        "tests/conftest.py",
        "if variable is None or _ALLOWED.search(reason):",
        "if True:",
        (_promise("test_under_ci_a_skip_fails_unless_its_reason_is_allowed"),),
    ),
    Mutation(
        "fingerprint depends on the row order",
        "README: the ledger recognises a test split reshuffled",
        "mlx/data.py",
        'hashlib.sha256(np.sort(hashes).astype("<u8")',
        'hashlib.sha256(hashes.astype("<u8")',
        ("tests/test_data.py::test_fingerprint_ignores_row_order_but_not_content_or_labels",),
    ),
]

# Tests that fail (pytest's -rfE summary lines).
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
_SKIPPED = re.compile(r"^SKIPPED \[\d+\] (.*)$", re.MULTILINE)


def _copy(destination, ref):
    """The working tree (files git tracks or would track) or the commit ``ref`` at ``destination``.

    Git's own list leaves out what .gitignore names: virtual environments, stores, caches.
    """
    destination.mkdir()
    if ref is not None:
        archive = _git("archive", ref, text=False)
        subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
        return
    for name in _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        source = ROOT / name
        if name and source.is_file():  # a tracked file deleted in the working tree is gone
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def _git(*args, text=True):
    command = ["git", "-C", str(ROOT), *args]
    return subprocess.run(command, check=True, capture_output=True, text=text).stdout


def _environment(copy):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _check_import(copy, env):
    """Fail unless ``import mlx`` in the copy loads the copy's package (not the editable one)."""
    out = subprocess.run(
        [sys.executable, "-c", "import mlx; print(mlx.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"the copy's tests would import {out}, not the copy's mlx under {copy}")
    return out


def _pytest(copy, env, tests, stop):
    command = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"]
    command += ["-x"] if stop else []
    start = time.perf_counter()
    done = subprocess.run(
        [*command, *tests], cwd=copy, env=env, capture_output=True, text=True, timeout=1800
    )
    output = done.stdout + done.stderr
    return done.returncode, output, time.perf_counter() - start


def _verdict(returncode, output):
    """``(verdict, failed tests)`` of one pytest run on a mutated copy."""
    failed = list(dict.fromkeys(_FAILED.findall(output)))
    if returncode == 1 and failed:
        return "caught", failed
    if returncode == 0:
        return "SURVIVED", []
    return f"BROKEN (pytest exit {returncode})", failed


def _baseline(copy, env, mutations, stop):
    tests = list(dict.fromkeys(t for m in mutations for t in m.tests))
    code, output, seconds = _pytest(copy, env, tests, stop=False)
    skipped = _SKIPPED.findall(output)
    print(f"baseline: {len(tests)} tests on the unchanged copy, exit {code}, {seconds:.0f} s")
    if code != 0 or skipped:
        print(output[-6000:])
        reason = "failed" if code else f"skipped {len(skipped)} (a skipped test catches nothing)"
        sys.exit(f"the baseline {reason}: fix that before judging mutations")


def _run(mutation, copy, env, stop):
    path = copy / mutation.file
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        return f"STALE (text found {count} times)", [], 0.0, ""
    path.write_text(original.replace(mutation.old, mutation.new))
    try:
        code, output, seconds = _pytest(copy, env, list(mutation.tests), stop)
    finally:
        path.write_text(original)
    verdict, failed = _verdict(code, output)
    return verdict, failed, seconds, output


def _short(test):
    return test.removeprefix("tests/").replace(".py::", "::")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="mutations whose name has NAME")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--git", metavar="REF", help="copy this commit, not the working tree")
    parser.add_argument("--keep", action="store_true", help="keep the copy (its path is printed)")
    parser.add_argument("--no-stop", action="store_true", help="run every named test (no -x)")
    args = parser.parse_args()
    mutations = [m for m in MUTATIONS if not args.only or any(word in m.name for word in args.only)]
    if args.list or not mutations:
        for m in MUTATIONS:
            print(f"{m.name}: {m.file}: {m.old!r} -> {m.new!r}; tests {', '.join(m.tests)}")
        return 0 if mutations else 2

    folder = Path(tempfile.mkdtemp(prefix="mlx-mutations-"))
    copy = folder / "repository"
    try:
        _copy(copy, args.git)
        env = _environment(copy)
        print(
            f"copy of {args.git or 'the working tree'} in {copy}; mlx from {_check_import(copy, env)}"
        )
        _baseline(copy, env, mutations, stop=not args.no_stop)
        rows = []
        for mutation in mutations:
            verdict, failed, seconds, output = _run(mutation, copy, env, stop=not args.no_stop)
            print(f"{mutation.name}: {verdict} in {seconds:.0f} s", flush=True)
            if verdict.startswith("BROKEN"):
                print(output[-3000:])
            rows.append((mutation, verdict, failed))
    finally:
        if args.keep:
            print(f"kept {copy}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    print()
    print("| mutation | promise | file | verdict | failed tests |")
    print("|---|---|---|---|---|")
    for mutation, verdict, failed in rows:
        caught = ", ".join(_short(t) for t in failed) or "-"
        print(f"| {mutation.name} | {mutation.promise} | {mutation.file} | {verdict} | {caught} |")
    escaped = [m.name for m, verdict, _ in rows if verdict != "caught"]
    print()
    if escaped:
        print(f"{len(escaped)} of {len(rows)} mutations not caught: {'; '.join(escaped)}")
        return 1
    print(f"all {len(rows)} mutations caught" if len(rows) > 1 else "the mutation was caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
