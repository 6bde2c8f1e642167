"""The fixed cost of a short run: ``mlx run`` with two trials against the import floor.

Two commands, each a fresh Python process, paired and alternated (which goes first changes
with every repeat, so drifts in the machine's load hit both):

- ``mlx run experiments/iris_knn.py --n-trials 2``: kNN on iris, the whole run (start-up,
  imports, data audit and split, stores, study and parent run, two trials, refit, the test
  evaluation, figures, the logged model).
- the import floor ``python -c "import sklearn.base, optuna, mlflow"``: what any run of an
  experiment with scikit-learn, Optuna and MLflow pays before it does anything.

Two rows: a fresh temporary folder per run (the stores do not exist yet: they are created,
MLflow's as a copy of the cached, already migrated empty store, :func:`mlx.stores.from_template`),
and one existing folder that already holds a finished run of the experiment (run again with
``--allow-test-reuse``: the same test split, evaluated again). One untimed run before the
repeats builds the cached templates and warms the file cache. Times are wall seconds of each
command, medians [min-max] over the repeats; the ratio is mlx / floor per pair (median
[min-max]); the CPU ratio compares the CPU time (user + system) of the child processes, the
run's figure helper included (:mod:`mlx.painter`; the run waits for it to end): it spends more
CPU than it saves wall time, on a core the run would leave idle.

Run: ``python bench/fixed_cost.py [--repeats 5]``. Target: the fresh-folder ratio <= 1.8.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import spread  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "iris_knn.py"
FLOOR = [sys.executable, "-c", "import sklearn.base, optuna, mlflow"]
MLX = [sys.executable, "-m", "mlx", "run", str(EXPERIMENT), "--n-trials", "2"]


def _environment():
    # The user's own stores and settings must not leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}


def _timed(command, cwd, env):
    """``(wall s, CPU s of the child)`` of one command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = _environment()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = {"fresh folder": [], "existing folder": []}
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        existing = root / "existing"
        existing.mkdir()
        _timed(MLX, existing, env)  # warm-up: templates, file cache; the existing run
        _timed(FLOOR, root, env)
        for repeat in range(args.repeats):
            for row, extra in (("fresh folder", []), ("existing folder", ["--allow-test-reuse"])):
                fresh = row == "fresh folder"
                folder = Path(tempfile.mkdtemp(dir=root)) if fresh else existing
                pair = [("mlx", MLX + extra, folder), ("floor", FLOOR, folder)]
                if repeat % 2:
                    pair.reverse()
                times = {name: _timed(command, cwd, env) for name, command, cwd in pair}
                rows[row].append(times)
    end_load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"`mlx run experiments/iris_knn.py --n-trials 2` against the import floor `python -c "
        f'"import sklearn.base, optuna, mlflow"`, paired and alternated, {args.repeats} '
        f"repeats; {len(os.sched_getaffinity(0))} usable cores, load average {load} (1/5/15 "
        f"min) at the start, {end_load} at the end. Wall seconds, median [min-max].\n"
    )
    print("| case | mlx run s | import floor s | ratio | CPU ratio | target |")
    print("|---|---|---|---|---|---|")
    for row, pairs in rows.items():
        mlx_wall = [p["mlx"][0] for p in pairs]
        floor_wall = [p["floor"][0] for p in pairs]
        ratios = [p["mlx"][0] / p["floor"][0] for p in pairs]
        cpu = statistics.median(p["mlx"][1] / p["floor"][1] for p in pairs)
        target = "<= 1.8" if row == "fresh folder" else "-"
        print(
            f"| {row} | {spread(mlx_wall, 2)} | {spread(floor_wall, 2)} | {spread(ratios, 2)} "
            f"| {cpu:.2f} | {target} |"
        )


if __name__ == "__main__":
    main()
