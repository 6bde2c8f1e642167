"""Per-trial tracking overhead: mlx's runner against optuna-integration's MLflowCallback.

100 trials of kNN on iris (same split, same space, TPE with the same seed) in three ways, each
in fresh temporary SQLite stores (Optuna and MLflow):

  (a) a bare Optuna loop, no logging;
  (b) the same loop with optuna-integration's ``MLflowCallback`` (deprecated upstream, still
      what users reach for: the baseline);
  (c) ``mlx.run``: one child run per trial (params, validation and training scores, fit time,
      state), three store writes a trial. mlx puts its SQLite tracking store in write-ahead-log
      mode (part of its design, see mlx.stores); (b) runs on MLflow's default journal mode,
      as a user of the callback would. The Optuna study file, which is not what is compared,
      is in write-ahead-log mode in all three.

For (c) only the trial loop is timed (``mlx.search.loop.optimize``, which includes writing each
trial's child run, is wrapped): the fixed end of a
run (refit, test evaluation, figures, model logging) happens once per experiment, not per trial,
and is reported separately. Fresh stores are copies of empty, already migrated SQLite files:
creating an MLflow store runs its migrations (5-10 s), which no trial pays.

Run: ``python bench/tracking.py [--trials 100] [--repeats 3]``. Target: (c)/(b) overhead <= 0.6.
"""

import argparse
import shutil
import statistics
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
from mlx import data as mdata
from mlx import search
from mlx.search import loop
from mlx.stores import sqlite_path, write_ahead_log

SPACE = {
    "kneighborsclassifier__n_neighbors": IntDistribution(1, 30),
    "kneighborsclassifier__weights": CategoricalDistribution(["uniform", "distance"]),
    "kneighborsclassifier__metric": CategoricalDistribution(["euclidean", "manhattan", "cosine"]),
}


def _estimator():
    return make_pipeline(StandardScaler(), KNeighborsClassifier())


def _experiment(n_trials):
    return mlx.Experiment(
        "bench-iris-knn",
        lambda: load_iris(return_X_y=True),
        _estimator(),
        SPACE,
        n_trials=n_trials,
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
    """Wall-clock and CPU time of this process (CPU time is immune to other processes' load)."""
    return np.array([time.perf_counter(), time.process_time()])


def _optuna_loop(n_trials, storage, callbacks=()):
    # The study's store is common ground, not what is compared: it gets the same
    # write-ahead-log setting that mlx gives its own Optuna file.
    write_ahead_log(sqlite_path(storage))
    study = optuna.create_study(
        storage=storage, direction="maximize", sampler=optuna.samplers.TPESampler(seed=0)
    )
    start = _now()
    study.optimize(_bare_objective(_split()), n_trials=n_trials, callbacks=list(callbacks))
    return _now() - start


def run_bare(n_trials, stores):
    return _optuna_loop(n_trials, stores[1]), None


def run_callback(n_trials, stores):
    from optuna_integration.mlflow import MLflowCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation and experimental notices
        callback = MLflowCallback(tracking_uri=stores[0], metric_name="val_accuracy")
        return _optuna_loop(n_trials, stores[1], [callback]), None


def run_mlx(n_trials, stores):
    timed = {}
    optimize = loop.optimize

    def timed_optimize(*args, **kwargs):
        start = _now()
        try:
            return optimize(*args, **kwargs)
        finally:
            timed["loop"] = _now() - start

    loop.optimize = timed_optimize
    try:
        start = _now()
        mlx.run(
            _experiment(n_trials),
            tracking_uri=stores[0],
            storage=stores[1],
            show_progress=False,
        )
        total = _now() - start
    finally:
        loop.optimize = optimize
    return timed["loop"], (total - timed["loop"])[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    runners = {"a": run_bare, "b": run_callback, "c": run_mlx}
    times = {key: [] for key in runners}
    fixed = []
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        templates = _templates(Path(tempfile.mkdtemp(dir=root)))
        # Warm-up: imports and first-call costs out of the measurements.
        for func in runners.values():
            func(5, _fresh(templates, root))
        for repeat in range(args.repeats):
            # Rotate the order so that drifts in machine load hit all three alike.
            order = list(runners)[repeat % 3 :] + list(runners)[: repeat % 3]
            for key in order:
                loop, rest = runners[key](args.trials, _fresh(templates, root))
                times[key].append(loop)
                if rest is not None:
                    fixed.append(rest)

    n = args.trials
    names = {
        "a": "(a) bare Optuna loop",
        "b": "(b) + MLflowCallback",
        "c": "(c) mlx.run (trial loop)",
    }
    print(f"{n} trials of kNN on iris, median of {args.repeats} repeats, fresh SQLite stores each")
    for column, clock in ((0, "wall-clock"), (1, "CPU (this process)")):
        # Overheads and their ratio per repeat (the three runs of a repeat share the machine's
        # load of the moment), then the median over repeats.
        loops = {key: [t[column] for t in values] for key, values in times.items()}
        overhead = {
            key: [(t - a) / n * 1000 for t, a in zip(loops[key], loops["a"], strict=True)]
            for key in ("b", "c")
        }
        ratios = [c / b for b, c in zip(overhead["b"], overhead["c"], strict=True) if b > 0]
        print()
        print(f"{clock} time")
        print()
        print("| setup | loop time (s) | trials/s | overhead per trial over (a) (ms) |")
        print("|---|---|---|---|")
        for key in runners:
            loop = statistics.median(loops[key])
            extra = "-" if key == "a" else f"{statistics.median(overhead[key]):.1f}"
            print(f"| {names[key]} | {loop:.2f} | {n / loop:.1f} | {extra} |")
        print()
        ratio = statistics.median(ratios) if ratios else float("nan")
        print(
            f"overhead ratio (c)/(b), median of per-repeat ratios = {ratio:.2f} (target <= 0.6); "
            f"per repeat: {', '.join(f'{r:.2f}' for r in ratios)}"
        )
    print()
    print(
        f"mlx's fixed end of a run (refit, test evaluation, figures, model), once per "
        f"experiment: {np.median(fixed):.2f} s (wall-clock)"
    )


if __name__ == "__main__":
    main()
