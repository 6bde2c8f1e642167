"""The test ledger: which test splits were evaluated, in any experiment of the store.

The ledger lives in the parent runs' tags: every parent run carries ``mlx.test_fingerprint``
and ``mlx.test_use_count``, and ``mlx.test_evaluated = true`` once its test split was
evaluated (set *before* the evaluation, so that even a crash during it counts as a use).
Deleted runs and experiments still count: deleting a run must not make a test split fresh.
"""

from mlx.exceptions import TestReuseError, plural
from mlx.tracking import _schema as schema

__all__ = ["claim_test", "ledger_tags", "mark_evaluated", "test_use_count", "test_uses"]


def test_uses(tracker, fingerprint):
    """Runs (in any experiment, also deleted ones) that evaluated the test split ``fingerprint``."""
    ids = tracker.experiment_ids(deleted=True)
    if not ids:
        return []
    query = (
        f"tags.`{schema.TAG_FINGERPRINT}` = '{fingerprint}' "
        f"AND tags.`{schema.TAG_EVALUATED}` = 'true'"
    )
    return tracker.search_runs(ids, query, deleted=True, order_by=["attributes.start_time ASC"])


def test_use_count(tracker, fingerprint, *, no_test, allow_test_reuse, run_id=None):
    """Uses of this test split including this run; refuses a reuse that was not allowed.

    ``run_id`` is the run being resumed: its own earlier use (it evaluated, then died) is not
    another run's.

    Raises
    ------
    TestReuseError
        The split was evaluated before and neither ``no_test`` nor ``allow_test_reuse``.
    """
    earlier = [run for run in test_uses(tracker, fingerprint) if run.info.run_id != run_id]
    if earlier and not (no_test or allow_test_reuse):
        first = earlier[0]
        raise TestReuseError(
            f"this test split (fingerprint {fingerprint[:12]}) was already evaluated "
            f"{plural(len(earlier), 'time')}, first in run {first.info.run_id} of experiment "
            f"{tracker.experiment_name(first.info.experiment_id)!r}. Use --no-test "
            f"(no_test=True) to search and validate only, or --allow-test-reuse "
            f"(allow_test_reuse=True) to evaluate it again (the run records the count)."
        )
    return len(earlier) + (0 if no_test else 1)


# pytest collects functions named test*: these are the ledger's, not tests.
test_uses.__test__ = test_use_count.__test__ = False  # type: ignore[attr-defined]


def ledger_tags(fingerprint, use_count):
    """The ledger's tags of a new parent run (not yet evaluated)."""
    return {
        schema.TAG_FINGERPRINT: fingerprint,
        schema.TAG_USE_COUNT: str(use_count),
        schema.TAG_EVALUATED: "false",
    }


def claim_test(tracker, run_id, fingerprint, *, allow_reuse):
    """Record that ``run_id`` evaluates its test split now; return the uses, this one included.

    The ledger is read once more: another run may have evaluated the same split since this one
    started (two experiments on the same data and seed, run side by side).

    Raises
    ------
    TestReuseError
        Another run evaluated the split meanwhile and ``allow_reuse`` is False.
    """
    others = [run for run in test_uses(tracker, fingerprint) if run.info.run_id != run_id]
    if others and not allow_reuse:
        raise TestReuseError(
            f"this test split (fingerprint {fingerprint[:12]}) was evaluated by run "
            f"{others[-1].info.run_id} while this run searched; its trials are kept. Evaluate it "
            f"anyway with --resume {run_id} --allow-test-reuse (the run records the count)."
        )
    count = len(others) + 1
    tracker.log(run_id, tags={schema.TAG_EVALUATED: "true", schema.TAG_USE_COUNT: str(count)})
    return count


def mark_evaluated(tracker, run_id):
    """Record that ``run_id`` evaluates its test split (call before evaluating)."""
    tracker.log(run_id, tags={schema.TAG_EVALUATED: "true"})
