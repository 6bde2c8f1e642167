"""Timing harness shared by the benchmark scripts: ours against a reference, same data, same run.

Each repeat times the reference and ours back to back (alternating which goes first), so drifts
in machine load hit both; the table reports the median of the per-pair ratios and, beside every
median, the smallest and largest value over the repeats (the spread), and the median ratio of
CPU times (process time: every thread), which a busy machine distorts less than wall time
when each side runs one thread. Setup that one side does
inside its timed call (validation, dtype conversion, centring) is timed for the other side too:
both callables get the same inputs and do the same kind of work.
"""

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Case:
    """One benchmark row.

    ``ours`` and ``reference`` are zero-argument callables that do the timed work (fit and
    predict) and return whatever ``quality`` needs; ``quality`` maps that result to a number
    where higher is better (accuracy, R^2, -inertia, ...). ``dtypes`` and ``threads`` say, for
    ours and the reference, the precision each computes in and the threads each may use;
    ``notes`` maps the two results of the last repeat to a short text (iteration counts, ...).
    """

    name: str
    ours: Callable[[], object]
    reference: Callable[[], object]
    quality: Callable[[object], float]
    quality_name: str
    reference_name: str = "scikit-learn"
    repeats: int = 5
    dtypes: tuple[str, str] = ("", "")
    threads: tuple[str, str] = ("", "")
    notes: Callable[[object, object], str] | None = None


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
    ours_times: list[float] = field(default_factory=list)
    reference_times: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    dtypes: tuple[str, str] = ("", "")
    threads: tuple[str, str] = ("", "")
    notes: str = ""


def _timed(fn):
    """Wall and CPU seconds (every thread of the process) of one call, and its result."""
    cpu, start = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out


def measure(case: Case) -> Row:
    ratios, cpu_ratios, ours_times, ref_times = [], [], [], []
    ours_out = ref_out = None
    for repeat in range(case.repeats):
        if repeat % 2 == 0:
            t_ref, cpu_ref, ref_out = _timed(case.reference)
            t_ours, cpu_ours, ours_out = _timed(case.ours)
        else:
            t_ours, cpu_ours, ours_out = _timed(case.ours)
            t_ref, cpu_ref, ref_out = _timed(case.reference)
        ours_times.append(t_ours)
        ref_times.append(t_ref)
        ratios.append(t_ours / t_ref)
        cpu_ratios.append(cpu_ours / cpu_ref if cpu_ref > 0 else float("nan"))
    return Row(
        name=case.name,
        reference_name=case.reference_name,
        ours_s=statistics.median(ours_times),
        reference_s=statistics.median(ref_times),
        ratio=statistics.median(ratios),
        quality_name=case.quality_name,
        ours_quality=case.quality(ours_out),
        reference_quality=case.quality(ref_out),
        ours_times=ours_times,
        reference_times=ref_times,
        ratios=ratios,
        cpu_ratios=cpu_ratios,
        dtypes=case.dtypes,
        threads=case.threads,
        notes=case.notes(ours_out, ref_out) if case.notes else "",
    )


def thread_counts():
    """The BLAS and OpenMP thread counts this process starts with (threadpoolctl's view)."""
    from threadpoolctl import threadpool_info

    info = threadpool_info()

    def most(api):
        return max((lib["num_threads"] for lib in info if lib["user_api"] == api), default=0)

    return most("blas"), most("openmp")


def preamble(repeats_note):
    """Lines that say where and how the table was measured, printed above it."""
    import numpy
    import sklearn

    blas, openmp = thread_counts()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{platform.processor() or platform.machine()}, {cores} usable cores, load average "
        f"{load} (1/5/15 min) at the start; numpy {numpy.__version__}, scikit-learn "
        f"{sklearn.__version__}; BLAS {blas} threads and OpenMP {openmp} by default. "
        f"{repeats_note} Times are wall seconds, medians [min-max] over the repeats; the "
        f"time ratio is ours / reference per pair (below 1: ours is faster), median [min-max]; "
        f"the CPU ratio (median) compares the CPU time of every thread of the process, the "
        f"work each side did whatever share of the cores it got (threads that spin count)."
    )


HEADER = (
    "| case | reference | dtype ours / ref | threads ours / ref | ours s | reference s "
    "| time ratio | CPU ratio | quality | ours | reference | delta | notes |\n|" + "---|" * 13
)


def spread(values, digits=2, median=None):
    """``median [min-max]`` of ``values`` (the given ``median`` if the caller has it)."""
    median = statistics.median(values) if median is None else median
    return f"{median:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def format_row(r: Row) -> str:
    delta = r.ours_quality - r.reference_quality
    dtypes = " / ".join(r.dtypes) if any(r.dtypes) else "-"
    threads = " / ".join(r.threads) if any(r.threads) else "-"
    return (
        f"| {r.name} | {r.reference_name} | {dtypes} | {threads} "
        f"| {spread(r.ours_times or [r.ours_s], 4, r.ours_s)} "
        f"| {spread(r.reference_times or [r.reference_s], 4, r.reference_s)} "
        f"| {spread(r.ratios or [r.ratio], 2, r.ratio)} "
        f"| {statistics.median(r.cpu_ratios) if r.cpu_ratios else float('nan'):.2f} "
        f"| {r.quality_name} "
        f"| {r.ours_quality:.4f} | {r.reference_quality:.4f} | {delta:+.4f} | {r.notes or '-'} |"
    )
