"""Per-trial tracking overhead: mlx's runner against optuna-integration's MLflowCallback.

100 trials of kNN on iris (float64 data; same split, same space, TPE with the same seed) in
five ways, each in fresh temporary SQLite stores (Optuna and MLflow), all in this process with
the same BLAS threads:

  (a)  a bare Optuna loop, no logging;
  (b)  the same loop with optuna-integration's ``MLflowCallback`` (deprecated upstream, still
       what users reach for: the baseline), its MLflow store with mlx's SQLite settings;
  (c)  ``mlx.run``: one child run per trial (params, validation and training scores, fit time,
       model size, state), plus a parent run with the run's inputs;
  (c') ``mlx.run`` with ``train_score=False``: the same work per trial as the baselines'
       objective (fit, score the validation rows), no prediction on the training rows;
  (b0) as (b) on SQLite's defaults, as a user of the callback gets them: not like for like,
       it shows what the write-ahead log alone gives a user.

Same settings: mlx puts its SQLite stores in write-ahead-log mode with ``synchronous=NORMAL``
(:func:`mlx.stores.write_ahead_log`); (b) gets the same on its MLflow store, and every setup
on its Optuna study file. Only (b0)'s MLflow store keeps SQLite's rollback journal with
``synchronous=FULL``.

Same span: each side is timed from the creation of its study to the result of its last trial.
Both open their stores before it (the Optuna storage; the MLflow store, which mlx's tracker
checks when it opens and the callback would open at its first trial). For the baselines the
span is ``optuna.create_study`` plus ``study.optimize`` (which creates each trial); for mlx it
runs from the entry of ``mlx.coordinator.start`` (the MLflow experiment, the study, the trial
budget enqueued as slots, the parent run), through logging the run's inputs (settings, audit,
split, parameters, datasets), to the return of the trial loop. The ``setup`` column is the
part before the first trial. What a run does once after its trials (refit, test evaluation,
figures, model) is outside the span and reported on its own line. Fresh stores are copies of
empty, already migrated SQLite files: creating an MLflow store runs its migrations (5-10 s),
which no trial pays.

Overhead per trial over (a) = (span - span of (a) in the same repeat) / trials. Repeats rotate
the order of the setups; medians with [min-max] over the repeats, and the ratio (c)/(b) per
repeat. Wall-clock and CPU time (this process, every thread) are reported separately: CPU time
is what a busy machine distorts less.

Run: ``python bench/tracking.py [--trials 100] [--repeats 7]``. Target: (c')/(b) <= 0.7, like for
like (issue 18); (c)/(b) is printed beside it: the difference is the training score's prediction.
"""

import argparse
import functools
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx import coordinator, search
from mlx import data as mdata
from mlx.search import loop
from mlx.stores import sqlite_path, write_ahead_log

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import spread, thread_counts  # noqa: E402

SPACE = {
    "kneighborsclassifier__n_neighbors": IntDistribution(1, 30),
    "kneighborsclassifier__weights": CategoricalDistribution(["uniform", "distance"]),
    "kneighborsclassifier__metric": CategoricalDistribution(["euclidean", "manhattan", "cosine"]),
}
NAMES = {
    "a": "(a) bare Optuna loop",
    "b": "(b) + MLflowCallback, mlx's SQLite settings",
    "c": "(c) mlx.run",
    "c1": "(c') mlx.run, train_score=False (the baselines' work per trial)",
    "b0": "(b0) + MLflowCallback, SQLite defaults (what WAL gives a user; not like for like)",
}


def _estimator():
    return make_pipeline(StandardScaler(), KNeighborsClassifier())


def _experiment(n_trials, train_score):
    return mlx.Experiment(
        "bench-iris-knn",
        lambda: load_iris(return_X_y=True),
        _estimator(),
        SPACE,
        n_trials=n_trials,
        train_score=train_score,
    )


def _templates(folder):
    from mlflow import MlflowClient

    mlflow_db, optuna_db = folder / "mlflow.db", folder / "optuna.db"
    MlflowClient(f"sqlite:///{mlflow_db}").search_experiments()
    optuna.storages.RDBStorage(f"sqlite:///{optuna_db}").engine.dispose()
    return mlflow_db, optuna_db


def _fresh(templates, root):
    folder = Path(tempfile.mkdtemp(dir=root))
    shutil.copy(templates[0], folder / "mlflow.db")
    shutil.copy(templates[1], folder / "optuna.db")
    return f"sqlite:///{folder / 'mlflow.db'}", f"sqlite:///{folder / 'optuna.db'}"


def _split():
    X, y = load_iris(return_X_y=True)
    dataset = mdata.load(lambda: (X, y), "classification")
    parts = mdata.split(dataset, (0.8, 0.1, 0.1), 0, stratify=True)
    return X[parts.train], y[parts.train], X[parts.val], y[parts.val]


def _bare_objective(split):
    X_train, y_train, X_val, y_val = split

    def objective(trial):
        params = search.suggest(trial, SPACE)
        model = _estimator().set_params(**params).fit(X_train, y_train)
        return model.score(X_val, y_val)

    return objective


def _now():
    """Wall-clock and CPU time of this process (every thread)."""
    return np.array([time.perf_counter(), time.process_time()])


def _optuna_loop(n_trials, stores, callback=None):
    """``(setup, span)`` of a plain Optuna loop, each as ``[wall, cpu]`` seconds."""
    # The same Optuna store settings as mlx's, opened before the span as mlx opens its own.
    write_ahead_log(sqlite_path(stores[1]))
    storage = search.open_storage(stores[1])
    objective = _bare_objective(_split())
    start = _now()
    study = optuna.create_study(
        storage=storage, direction="maximize", sampler=optuna.samplers.TPESampler(seed=0)
    )
    callbacks = [] if callback is None else [callback()]
    setup = _now() - start
    study.optimize(objective, n_trials=n_trials, callbacks=callbacks)
    return setup, _now() - start


def run_bare(n_trials, stores):
    return (*_optuna_loop(n_trials, stores), None)


def _callback(n_trials, stores, *, wal):
    from mlflow import MlflowClient
    from optuna_integration.mlflow import MLflowCallback

    if wal:
        write_ahead_log(sqlite_path(stores[0]))
    # Opened before the span, as mlx's tracker opens (and checks) its store before its span.
    MlflowClient(stores[0]).search_experiments()

    def make():
        return MLflowCallback(tracking_uri=stores[0], metric_name="val_accuracy")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation and experimental notices
        return (*_optuna_loop(n_trials, stores, make), None)


def run_callback(n_trials, stores):
    return _callback(n_trials, stores, wal=True)


def run_callback_defaults(n_trials, stores):
    return _callback(n_trials, stores, wal=False)


def run_mlx(n_trials, stores, train_score=True):
    marks = {}
    start_run, optimize = coordinator.start, loop.optimize

    def timed_start(*args, **kwargs):
        marks.setdefault("start", _now())
        return start_run(*args, **kwargs)

    def timed_optimize(*args, **kwargs):
        marks.setdefault("loop", _now())
        try:
            return optimize(*args, **kwargs)
        finally:
            marks["end"] = _now()

    coordinator.start, loop.optimize = timed_start, timed_optimize
    try:
        begin = _now()
        mlx.run(
            _experiment(n_trials, train_score),
            tracking_uri=stores[0],
            storage=stores[1],
            show_progress=False,
        )
        finish = _now()
    finally:
        coordinator.start, loop.optimize = start_run, optimize
    outside = ((marks["start"] - begin)[0], (finish - marks["end"])[0])
    return marks["loop"] - marks["start"], marks["end"] - marks["start"], outside


# Where a trial's time goes, per side: (label, owner, attribute) of the calls timed by
# _attribute. MLflow's store calls are what both sides pay to record a trial; the claim (mlx) and
# ``ask`` (Optuna's loop, in the callback's row) each add the trial to the study.
_MLFLOW_CALLS = ("create_run", "log_batch", "update_run_info", "get_experiment_by_name")


def _timed_calls(side):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from mlx.search import slots

    calls = [(f"MLflow {name}", SqlAlchemyStore, name) for name in _MLFLOW_CALLS]
    if side == "c":
        calls.append(("claim (count the study, add the trial)", slots.Slots, "claim"))
    else:
        calls.append(("ask (add the trial)", optuna.Study, "ask"))
    return calls


def _attribute(side, runner, n_trials, stores):
    """Milliseconds per trial spent inside each of :func:`_timed_calls`, over one run."""
    totals, originals = {}, []

    def timing(label, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - start

        return timed

    for label, owner, name in _timed_calls(side):
        originals.append((owner, name, getattr(owner, name)))
        setattr(owner, name, timing(label, getattr(owner, name)))
    try:
        runner(n_trials, stores)
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)
    return {label: 1000 * total / n_trials for label, total in totals.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import mlflow  # noqa: F401  (MLflow sets its loggers' levels when imported)

    # The callback's "creating a new experiment" and mlx's data audit, once per run each.
    for name in ("mlflow", "mlx"):
        logging.getLogger(name).setLevel(logging.ERROR)

    runners = {
        "a": run_bare,
        "b": run_callback,
        "c": run_mlx,
        "c1": functools.partial(run_mlx, train_score=False),
        "b0": run_callback_defaults,
    }
    setups = {key: [] for key in runners}
    spans = {key: [] for key in runners}
    fixed = []
    blas, openmp = thread_counts()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        templates = _templates(Path(tempfile.mkdtemp(dir=root)))
        # Warm-up: imports and first-call costs out of the measurements.
        for func in runners.values():
            func(5, _fresh(templates, root))
        for repeat in range(args.repeats):
            # Rotate the order so that drifts in machine load hit every setup alike.
            keys = list(runners)
            order = keys[repeat % len(keys) :] + keys[: repeat % len(keys)]
            for key in order:
                setup, span, rest = runners[key](args.trials, _fresh(templates, root))
                setups[key].append(setup)
                spans[key].append(span)
                if rest is not None:
                    fixed.append(rest)

    n = args.trials
    print(
        f"{n} trials of kNN on iris (float64), {args.repeats} repeats, fresh SQLite stores each; "
        f"{len(os.sched_getaffinity(0))} usable cores, load average {load} (1/5/15 min) at the "
        f"start; BLAS {blas} threads, OpenMP {openmp}, the same for every setup (one process). "
        f"Medians [min-max] over the repeats."
    )
    for column, clock in ((0, "wall-clock"), (1, "CPU (this process)")):
        span = {key: [t[column] for t in values] for key, values in spans.items()}
        setup = {key: [t[column] for t in values] for key, values in setups.items()}
        # Overheads per repeat (the setups of a repeat share the machine's load of the moment).
        overhead = {
            key: [(t - a) / n * 1000 for t, a in zip(span[key], span["a"], strict=True)]
            for key in runners
            if key != "a"
        }
        if column == 0:
            callback_ms = statistics.median(overhead["b"])
        print()
        print(f"{clock} time")
        print()
        print("| setup | setup (s) | span (s) | trials/s | overhead per trial over (a) (ms) |")
        print("|---|---|---|---|---|")
        for key in runners:
            extra = "-" if key == "a" else spread(overhead[key], 1)
            rate = n / statistics.median(span[key])
            print(
                f"| {NAMES[key]} | {spread(setup[key], 3)} | {spread(span[key], 2)} "
                f"| {rate:.1f} | {extra} |"
            )
        print()
        for key, label in (("c1", "like for like"), ("c", "mlx's default, with training scores")):
            ratios = [c / b for b, c in zip(overhead["b"], overhead[key], strict=True) if b > 0]
            ratio = statistics.median(ratios) if ratios else float("nan")
            print(
                f"overhead ratio {NAMES[key].split()[0]}/(b), {label}, median of per-repeat "
                f"ratios = {ratio:.2f} [{min(ratios):.2f}-{max(ratios):.2f}] (target <= 0.7); "
                f"per repeat: {', '.join(f'{r:.2f}' for r in ratios)}"
            )
    # Three more runs of each side with the calls above timed (not in the spans above).
    runs = {"b": [], "c": []}
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        templates = _templates(Path(tempfile.mkdtemp(dir=root)))
        for _ in range(3):
            for key in runs:
                runs[key].append(_attribute(key, runners[key], n, _fresh(templates, root)))
    parts = {
        key: {label: statistics.median(run[label] for run in done) for label in done[0]}
        for key, done in runs.items()
    }
    print()
    print(
        f"Inside that overhead: milliseconds a trial in these calls (median of 3 more runs of {n}"
    )
    print("trials each, the calls timed; MLflow's store calls are made in the trial's own thread)")
    print()
    print(f"| call | {NAMES['b']} | {NAMES['c']} |")
    print("|---|---|---|")
    for label in dict.fromkeys([*parts["b"], *parts["c"]]):
        cells = [f"{parts[key][label]:.2f}" if label in parts[key] else "-" for key in "bc"]
        print(f"| {label} | {' | '.join(cells)} |")
    mlflow_ms = {
        key: sum(v for k, v in parts[key].items() if k.startswith("MLflow")) for key in "bc"
    }
    print(f"| all MLflow store calls | {mlflow_ms['b']:.2f} | {mlflow_ms['c']:.2f} |")
    print()
    print(
        f"(c)'s MLflow store calls alone / (b)'s whole overhead per trial (wall-clock): "
        f"{mlflow_ms['c'] / callback_ms:.2f}"
    )
    print()
    print(
        f"mlx.run outside the span, once per experiment (wall-clock s): before it (data, audit, "
        f"split, stores, ledger) {spread([f[0] for f in fixed], 2)}; after it (refit, test "
        f"evaluation, figures, model) {spread([f[1] for f in fixed], 2)}"
    )


if __name__ == "__main__":
    main()
