"""A long search: does the cost of a trial stay flat as the study and the store fill up?

1,000 fast trials (kNN on iris) into fresh default SQLite stores, as ``mlx run`` does them. Each
trial's *overhead* is the time of its loop iteration (claim the slot, open the child run, run
the trial, log it, tell the study) minus the time of the objective itself (suggest, fit, score,
size); the script compares the median overhead of trials 900-1000 with that of trials 10-110,
and prints the whole iteration beside it (the sampler's reads of the study are in the
objective: a study that kept its whole budget as WAITING trials made the early ones slow).
Target: at most 1.3x. The objective is timed from inside mlx's own loop (``_run_trial``), the
iteration from one trial's start to the next's.

    python bench/long_search.py [--trials 1000] [--postgres]

``--postgres`` puts the Optuna study in a fresh PostgreSQL database (the tests' server on
127.0.0.1:5432, created and dropped here) instead of the default SQLite file.
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from optuna.distributions import CategoricalDistribution, IntDistribution
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

import mlx
from mlx.search import loop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _servers import pg_url, postgres_database  # noqa: E402


def _experiment(n_trials):
    return mlx.Experiment(
        "long-search",
        lambda: load_iris(return_X_y=True),
        KNeighborsClassifier(),
        {
            "n_neighbors": IntDistribution(1, 30),
            "weights": CategoricalDistribution(["uniform", "distance"]),
        },
        n_trials=n_trials,
    )


def measure(n_trials, storage=None):
    """``(iteration starts, objective seconds)`` of every trial of one long search."""
    starts, objective = [], []
    run_trial = loop._run_trial

    def timed(*args, **kwargs):
        starts.append(time.perf_counter())
        begin = time.process_time(), time.perf_counter()
        try:
            return run_trial(*args, **kwargs)
        finally:
            objective.append(time.perf_counter() - begin[1])

    loop._run_trial = timed
    try:
        with tempfile.TemporaryDirectory() as folder:
            previous = os.getcwd()
            os.chdir(folder)
            try:
                mlx.run(_experiment(n_trials), storage=storage, show_progress=False)
            finally:
                os.chdir(previous)
    finally:
        loop._run_trial = run_trial
    return starts, objective


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--postgres", action="store_true", help="the study on PostgreSQL")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    database = postgres_database("mlx_bench_long") if args.postgres else contextlib.nullcontext()
    with database as db:
        starts, objective = measure(args.trials, None if db is None else pg_url(db))
    # A trial's iteration runs from its start to the next trial's start; its overhead is that
    # minus its objective (which holds the sampler's reads of the study).
    iteration = [(starts[i + 1] - starts[i]) * 1000 for i in range(len(starts) - 1)]
    overhead = [iteration[i] - objective[i] * 1000 for i in range(len(iteration))]
    n = len(overhead)
    early = slice(10, 110)
    late = slice(max(0, n - 100), n)
    load = os.getloadavg()[0]
    total = starts[-1] - starts[0]
    print(
        f"{args.trials} kNN trials on iris, the study on "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}, MLflow on SQLite; load average {load:.1f}; "
        f"{total:.1f} s from the first trial's start to the last's"
    )
    print()
    print("| trials | median trial (ms) | median overhead (ms) | median objective (ms) |")
    print("|---|---|---|---|")
    for part in (early, late):
        print(
            f"| {part.start}-{part.stop} | {statistics.median(iteration[part]):.1f} "
            f"| {statistics.median(overhead[part]):.1f} "
            f"| {statistics.median(objective[part]) * 1000:.1f} |"
        )
    early, late = overhead[early], overhead[late]
    ratio = statistics.median(late) / statistics.median(early)
    print()
    print(f"late / early overhead: {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
