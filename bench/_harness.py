"""Timing harness shared by the benchmark scripts: ours against a reference, same data, same run.

Each repeat times the reference and ours back to back (alternating which goes first), so drifts
in machine load hit both; the table reports the median of the per-pair ratios.
"""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Case:
    """One benchmark row.

    ``ours`` and ``reference`` are zero-argument callables that do the timed work (fit and
    predict) and return whatever ``quality`` needs; ``quality`` maps that result to a number
    where higher is better (accuracy, R^2, -inertia, ...).
    """

    name: str
    ours: Callable[[], object]
    reference: Callable[[], object]
    quality: Callable[[object], float]
    quality_name: str
    reference_name: str = "scikit-learn"
    repeats: int = 5


@dataclass
class Row:
    name: str
    reference_name: str
    ours_s: float
    reference_s: float
    ratio: float
    quality_name: str
    ours_quality: float
    reference_quality: float


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(case: Case) -> Row:
    ratios, ours_times, ref_times = [], [], []
    ours_out = ref_out = None
    for repeat in range(case.repeats):
        if repeat % 2 == 0:
            t_ref, ref_out = _timed(case.reference)
            t_ours, ours_out = _timed(case.ours)
        else:
            t_ours, ours_out = _timed(case.ours)
            t_ref, ref_out = _timed(case.reference)
        ours_times.append(t_ours)
        ref_times.append(t_ref)
        ratios.append(t_ours / t_ref)
    return Row(
        name=case.name,
        reference_name=case.reference_name,
        ours_s=statistics.median(ours_times),
        reference_s=statistics.median(ref_times),
        ratio=statistics.median(ratios),
        quality_name=case.quality_name,
        ours_quality=case.quality(ours_out),
        reference_quality=case.quality(ref_out),
    )


HEADER = (
    "| case | reference | ours (s) | reference (s) | time ratio | quality | ours | reference "
    "| delta |\n|" + "---|" * 9
)


def format_row(r: Row) -> str:
    delta = r.ours_quality - r.reference_quality
    return (
        f"| {r.name} | {r.reference_name} | {r.ours_s:.4f} | {r.reference_s:.4f} "
        f"| {r.ratio:.2f} | {r.quality_name} | {r.ours_quality:.4f} "
        f"| {r.reference_quality:.4f} | {delta:+.4f} |"
    )
