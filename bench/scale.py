"""Scale-out: one CPU-bound k-means experiment run with 1, 2 and 4 worker processes on PostgreSQL.

Each configuration is ``mlx run FILE --workers N --storage <fresh PostgreSQL database>
--tracking-uri <mlflow server>``: the coordinator plus N-1 local worker processes sharing one
Optuna study through PostgreSQL, logging to an ``mlflow server`` whose backend store is
PostgreSQL (one server for all configurations, started and stopped here; every database is
created and dropped here). The experiment (written to a temporary folder) is mlx's k-means
(``KMeans(n_init=8, max_iter=40, tol=0)``, ``n_clusters`` searched in 10-14) on 80,000 x 16
overlapping blobs (float64, 10 centres), scored by the adjusted Rand index against the blob
labels; a trial is one fit of about a second, and scoring it (a prediction on the training and
validation rows) costs a few milliseconds. Each configuration runs ``--repeats`` times (3 by
default; the order of the configurations alternates between repeats); the table shows medians
with [min-max] over the repeats.

Columns:

- ``wall s``: wall time of the whole ``mlx run`` command (start-up, imports, split, study and
  parent run, the search, refit, test evaluation and model logging).
- ``trials/min``: ``n_trials / wall * 60``.
- ``speed-up``: one worker's wall time over this one's.
- ``search s``: from the first trial's start (its claim, Optuna's ``datetime_start``) to the
  last trial's end (its child run's ``end_time``).
- ``fixed s``: ``wall - search``: what a run pays once, whatever its number of trials.
- ``last join s``: how long after the first trial the last process started its first trial
  (local workers start when the coordinator's search begins, then import and load the data).
- ``overhead ms/trial``: the coordination overhead per trial,
  ``(sum over processes p of busy_p - sum over trials of fit_time) / n_trials``, where
  ``busy_p`` runs from the start of the first trial process ``p`` claimed to the end of its
  last trial, and ``fit_time`` is the child run's ``fit_time`` metric (the estimator's own
  ``fit``). It is the time a process spends per trial on anything but fitting: claiming a slot,
  opening and logging the child run, heartbeats, telling the study the result, waiting for the
  database, and scoring the trial (measured separately: ``scoring ms``). Start-up and the end
  of the run are not in it (they are ``fixed s``), nor the idle tail of processes that found
  no slot left.
- ``fit ms/trial``: the mean of the trials' ``fit_time``. Work that a process does on
  another thread while a trial fits (its tracking writes, topping up slots) is not in the
  overhead, but it can slow the fit: a change that moves work into the fit shows here.
- ``coordination ms/trial``: ``overhead`` minus ``scoring ms`` (timed in each repeat): what
  sharing the search costs a trial beyond its own work (fitting and scoring): claiming a slot,
  Optuna's sampling and bookkeeping on PostgreSQL, the child run's writes, heartbeats.
- ``wall-based ms/trial``: the issue's literal reading, ``(wall * N - sum fit_time) /
  n_trials``: the overhead including the fixed costs spread over the trials.

Against the server each process writes its trials' child runs on a background thread (see
``mlx.tracking._writes``); ``--inline-too`` also runs every configuration with those writes
made inline (``MLX_BACKGROUND_TRACKING=0``, rows marked ``inline``), alternated with the
background ones in every repeat, so that the two are measured side by side under the same load.

BLAS runs one thread per process in every configuration (``OPENBLAS_NUM_THREADS=1``, ...), so
the worker processes are the only parallelism; ``--blas-default`` leaves the environment alone
(then one worker uses both cores inside its matrix products, while several workers are pinned
to one thread each by ``mlx run --workers``).

Run: ``python bench/scale.py [--trials 40] [--workers 1 2 4] [--repeats 3]``. Needs the
PostgreSQL server of the tests (127.0.0.1:5432, user postgres, trust auth). Targets: 2 workers
at most 0.6 x one worker's wall time; coordination under 40 ms per trial. The last lines put
the coordination beside Optuna's own loop on the same PostgreSQL in the same repeats
(``study.optimize``, same sampler, space and heartbeat, an objective that returns at once): the
part of a trial's coordination that is Optuna's storage work, which mlx cannot make cheaper.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _servers import MlflowServer, pg_url, postgres_database  # noqa: E402

from mlx.search.storage import DEFAULT_HEARTBEAT  # noqa: E402

EXPERIMENT_NAME = "bench-scale-kmeans"
EXPERIMENT = f'''"""bench/scale.py's experiment: k-means on overlapping blobs, about a second per fit."""

from optuna.distributions import IntDistribution
from sklearn.datasets import make_blobs

import mlx
from mlx.estimators import KMeans

experiment = mlx.Experiment(
    name="{EXPERIMENT_NAME}",
    data=lambda: make_blobs(
        n_samples=80_000, n_features=16, centers=10, cluster_std=6.0, random_state=0
    ),
    # tol=0: every start runs its max_iter iterations (unless no label changes).
    estimator=KMeans(n_init=8, max_iter=40, tol=0.0),
    search_space={{"n_clusters": IntDistribution(10, 14)}},
    metric="adjusted_rand_score",
    split=(0.8, 0.1, 0.1),
    seed=0,
    n_trials=16,
)
'''
_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _environment(blas_default):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLX_"))}
    if not blas_default:
        env.update(dict.fromkeys(_THREADS, "1"))
    return env


def _one_run(folder, server, n_workers, n_trials, env, inline=False):
    """Run the experiment with ``n_workers``; return the measurements of one table row."""
    env = {**env, "MLX_BACKGROUND_TRACKING": "0" if inline else "1"}
    with postgres_database("mlx_bench_optuna") as db:
        storage = pg_url(db)
        folder.mkdir()
        (folder / "experiment.py").write_text(EXPERIMENT)
        command = [sys.executable, "-m", "mlx", "run", "experiment.py"]
        command += ["--workers", str(n_workers), "--n-trials", str(n_trials)]
        command += ["--storage", storage, "--tracking-uri", server.url, "--allow-test-reuse"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"mlx run --workers {n_workers} failed:\n{done.stderr[-3000:]}")
        return _measure(server, storage, wall, n_trials)


def _measure(server, storage, wall, n_trials):
    import optuna
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    (parent,) = client.search_runs(
        [experiment.experiment_id],
        f"tags.`mlx.role` = 'parent' AND tags.`mlx.optuna_storage` = '{storage}'",
    )
    children = client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    rdb = optuna.storages.RDBStorage(storage)
    try:
        study = optuna.load_study(study_name=parent.data.tags["mlx.study_name"], storage=rdb)
        started = {t.number: t.datetime_start.timestamp() for t in study.trials}
    finally:
        rdb.engine.dispose()
    if len(children) != n_trials or len(started) != n_trials:
        raise RuntimeError(f"expected {n_trials} trials, got {len(started)} ({len(children)} runs)")

    by_process = {}
    for child in children:
        number = int(child.data.tags["mlx.trial_number"])
        span = (started[number], child.info.end_time / 1000)
        by_process.setdefault(child.data.tags["mlx.worker"], []).append(span)
    busy = sum(max(e for _, e in s) - min(b for b, _ in s) for s in by_process.values())
    fit = sum(child.data.metrics["fit_time"] for child in children)
    first = min(started.values())
    last = max(child.info.end_time / 1000 for child in children)
    return {
        "wall": wall,
        "search": last - first,
        "join": max(min(b for b, _ in s) for s in by_process.values()) - first,
        "overhead": (busy - fit) / n_trials,
        "wall_based": (wall * len(by_process) - fit) / n_trials,
        "processes": len(by_process),
        "fit": fit / n_trials,
    }


def _optuna_floor(n_trials):
    """Seconds a trial of Optuna's own loop takes on a fresh PostgreSQL study, fit excluded.

    What mlx's coordination is compared with: ``study.optimize`` with the same sampler and
    seed, the same one-parameter space, the heartbeat mlx turns on for a database server, and
    an objective that returns at once (the fit and scoring are outside the coordination).
    """
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line a trial, as mlx's are quiet
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    with postgres_database("mlx_bench_floor") as db:
        storage = optuna.storages.RDBStorage(
            pg_url(db), heartbeat_interval=DEFAULT_HEARTBEAT, grace_period=3 * DEFAULT_HEARTBEAT
        )
        try:
            study = optuna.create_study(
                storage=storage, direction="maximize", sampler=optuna.samplers.TPESampler(seed=0)
            )
            start = time.perf_counter()
            study.optimize(lambda trial: trial.suggest_int("n_clusters", 10, 14) / 14, n_trials)
            return (time.perf_counter() - start) / n_trials
        finally:
            storage.engine.dispose()


def _scoring_timer():
    """A function that times scoring one fitted trial model as a trial does (train and val rows).

    Called once per repeat, beside the runs of that repeat, so that the scoring subtracted from
    a run's overhead was measured under the same load (it moved by 5 ms between two prints).
    """
    from mlx.data import prepare
    from mlx.experiment import load_experiment

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "experiment.py"
        path.write_text(EXPERIMENT)
        experiment = load_experiment(path)
    prepared = prepare(experiment)
    dataset, parts = prepared.dataset, prepared.parts
    X, y = np.asarray(dataset.X), np.asarray(dataset.y)
    model = experiment.estimator.set_params(n_clusters=12, random_state=0).fit(X[parts.train])

    def seconds():
        times = []
        for _ in range(9):
            start = time.perf_counter()
            experiment.scorer(model, X[parts.train], y[parts.train])
            experiment.scorer(model, X[parts.val], y[parts.val])
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3, help="median over repeats")
    parser.add_argument("--blas-default", action="store_true", help="leave BLAS threads alone")
    parser.add_argument(
        "--inline-too", action="store_true", help="also with the child-run writes made inline"
    )
    args = parser.parse_args()
    env = _environment(args.blas_default)
    if not args.blas_default:
        os.environ.update(dict.fromkeys(_THREADS, "1"))  # for the scoring time measured here
    scoring_seconds = _scoring_timer()

    modes = [False, True] if args.inline_too else [False]
    configs = [(n, inline) for n in args.workers for inline in modes]
    rows = {config: [] for config in configs}
    floor = []  # Optuna's own loop, seconds a trial, once per repeat
    scoring = []  # seconds to score a trial, once per repeat
    with tempfile.TemporaryDirectory() as tmp, postgres_database("mlx_bench_mlflow") as db:
        tmp = Path(tmp)
        (tmp / "server").mkdir()
        with MlflowServer(pg_url(db), tmp / "server" / "artifacts", tmp / "server") as server:
            for repeat in range(args.repeats):
                order = configs if repeat % 2 == 0 else configs[::-1]
                for n, inline in order:
                    folder = tmp / f"workers-{n}-{'inline' if inline else 'bg'}-{repeat}"
                    rows[n, inline].append(_one_run(folder, server, n, args.trials, env, inline))
                    shutil.rmtree(folder, ignore_errors=True)
                floor.append(_optuna_floor(args.trials))
                scoring.append(scoring_seconds())

    def median(n, key):
        return statistics.median(r[key] for r in rows[n])

    def spread(n, key, scale=1.0, digits=1):
        values = [scale * r[key] for r in rows[n]]
        low, mid, high = min(values), statistics.median(values), max(values)
        return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"

    for n in configs:
        for r, scored in zip(rows[n], scoring, strict=True):
            r["fixed"] = r["wall"] - r["search"]
            r["coordination"] = r["overhead"] - scored
    base = median(configs[0], "wall")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"mlx KMeans(n_init=8, max_iter=40) on 80,000 x 16 float64 blobs, {args.trials} trials, "
        f"mean fit {1000 * median(configs[0], 'fit'):.0f} ms, scoring "
        f"{1000 * statistics.median(scoring):.1f} [{1000 * min(scoring):.1f}-"
        f"{1000 * max(scoring):.1f}] ms per trial; {os.cpu_count()} cores, load average {load} (1/5/15 "
        f"min) at the end; BLAS threads: {'default' if args.blas_default else '1 per process'}; "
        f"Optuna on PostgreSQL, MLflow server on PostgreSQL; median [min-max] of "
        f"{args.repeats} repeat{'s' if args.repeats > 1 else ''}\n"
    )
    print(
        "| workers | wall s | trials/min | speed-up | search s | fixed s "
        "| last join s | fit ms/trial | overhead ms/trial | coordination ms/trial "
        "| wall-based ms/trial |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in configs:
        wall = median(n, "wall")
        label = f"{n[0]} inline" if n[1] else f"{n[0]}"
        print(
            f"| {label} | {spread(n, 'wall')} | {60 * args.trials / wall:.1f} | {base / wall:.2f} "
            f"| {spread(n, 'search')} | {spread(n, 'fixed')} | {spread(n, 'join')} "
            f"| {spread(n, 'fit', 1000, 0)} | {spread(n, 'overhead', 1000, 0)} | {spread(n, 'coordination', 1000, 0)} "
            f"| {spread(n, 'wall_based', 1000, 0)} |"
        )
    print()
    ratios = [r["coordination"] / f for r, f in zip(rows[configs[0]], floor, strict=True) if f > 0]
    print(
        f"Optuna's own loop on the same PostgreSQL (TPE, seed 0, heartbeat every "
        f"{DEFAULT_HEARTBEAT} s, the same space, an objective that returns at once, no MLflow; "
        "unlike mlx it also looks for stale trials before every trial, mlx once per interval): "
        f"{1000 * statistics.median(floor):.0f} [{1000 * min(floor):.0f}-{1000 * max(floor):.0f}]"
        f" ms a trial; {configs[0][0]} worker's coordination / Optuna's own loop, per repeat: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}"
    )
    if args.inline_too:
        print()
        for n in args.workers:
            # Paired by repeat: the two runs of a repeat ran one after the other.
            ratios = [
                bg["overhead"] / inline["overhead"]
                for bg, inline in zip(rows[n, False], rows[n, True], strict=True)
            ]
            print(
                f"{n} worker{'s' if n > 1 else ''}: overhead background / inline, per repeat: "
                f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}"
            )


if __name__ == "__main__":
    main()
