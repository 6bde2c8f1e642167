"""Local workers: ``mlx run --workers 2`` against one process, on the default SQLite stores.

Each configuration is ``mlx run FILE --n-trials 24 [--workers 2]`` in a fresh temporary folder
(the default stores: ``mlflow.db`` and ``mlx-optuna.db`` there), as a student runs it. The
experiment (written to the folder) is mlx's k-means (``KMeans(n_init=8, max_iter=40, tol=0)``,
``n_clusters`` searched in 10-14) on 80,000 x 16 overlapping blobs (float64): CPU-bound trials
of about a second each, the same work in every trial. One process runs with the machine's BLAS
defaults (as ``mlx run`` without ``--workers`` does); with ``--workers 2`` mlx pins BLAS to
one thread per process. The two configurations are paired and alternated (which goes first
changes with every repeat), after one untimed run that warms the caches.

Columns: ``wall s`` of the whole command (start-up to the logged model), median [min-max];
``ratio``: the wall time with 2 workers over one process's, per pair; ``last join s``: how long
after the first trial the second process started its first trial (from the child runs'
start times and ``mlx.worker`` tags); ``trials by process``: how the 24 trials were shared
(the last repeat).

Run: ``python bench/workers.py [--trials 24] [--repeats 3]``. Target: ratio <= 0.7.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import spread  # noqa: E402

EXPERIMENT = '''"""bench/workers.py's experiment: k-means on overlapping blobs, about a second per fit."""

from optuna.distributions import IntDistribution
from sklearn.datasets import make_blobs

import mlx
from mlx.estimators import KMeans

experiment = mlx.Experiment(
    name="bench-workers-kmeans",
    data=lambda: make_blobs(
        n_samples=80_000, n_features=16, centers=10, cluster_std=6.0, random_state=0
    ),
    # tol=0: every start runs its max_iter iterations (unless no label changes).
    estimator=KMeans(n_init=8, max_iter=40, tol=0.0),
    search_space={"n_clusters": IntDistribution(10, 14)},
    metric="adjusted_rand_score",
    split=(0.8, 0.1, 0.1),
    seed=0,
    n_trials=24,
)
'''


def _environment():
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}


def _one_run(root, workers, n_trials, env):
    """``(wall s, last join s, trials per process)`` of one run in a fresh folder."""
    folder = Path(tempfile.mkdtemp(dir=root))
    (folder / "experiment.py").write_text(EXPERIMENT)
    command = [sys.executable, "-m", "mlx", "run", "experiment.py", "--n-trials", str(n_trials)]
    command += ["--workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"mlx run --workers {workers} failed:\n{done.stderr[-3000:]}")
    join, shares = _joins(folder, n_trials)
    return wall, join, shares


def _joins(folder, n_trials):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name.startswith("bench-")]
    runs = client.search_runs([experiment.experiment_id], "tags.`mlx.role` = 'trial'")
    if len(runs) != n_trials:
        raise RuntimeError(f"expected {n_trials} trial runs, found {len(runs)}")
    first = {}
    counts = {}
    for run in runs:
        worker = run.data.tags["mlx.worker"]
        first[worker] = min(first.get(worker, float("inf")), run.info.start_time / 1000)
        counts[worker] = counts.get(worker, 0) + 1
    return max(first.values()) - min(first.values()), sorted(counts.values(), reverse=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = _environment()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    results = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as root:
        _one_run(root, 1, 2, env)  # warm-up: templates, caches
        for repeat in range(args.repeats):
            order = (1, 2) if repeat % 2 == 0 else (2, 1)
            pair = {n: _one_run(root, n, args.trials, env) for n in order}
            for n, result in pair.items():
                results[n].append(result)
    end_load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    ratios = [two[0] / one[0] for one, two in zip(results[1], results[2], strict=True)]
    print(
        f"mlx KMeans(n_init=8, max_iter=40) on 80,000 x 16 float64 blobs, {args.trials} trials, "
        f"default SQLite stores in a fresh folder per run, {args.repeats} pairs; "
        f"{len(os.sched_getaffinity(0))} usable cores, load average {load} (1/5/15 min) at the "
        f"start, {end_load} at the end. Median [min-max].\n"
    )
    print("| configuration | wall s | ratio to one process | last join s | trials by process |")
    print("|---|---|---|---|---|")
    one, two = results[1], results[2]
    print(f"| one process | {spread([r[0] for r in one], 1)} | 1 | - | {one[-1][2]} |")
    print(
        f"| --workers 2 | {spread([r[0] for r in two], 1)} | {spread(ratios, 2)} (target <= 0.7) "
        f"| {spread([r[1] for r in two], 1)} | {two[-1][2]} |"
    )


if __name__ == "__main__":
    main()
