"""Features computed once: a search on raw clips against the same search on precomputed features.

The case of issue 18: 2,400 one-second clips at 16 kHz (:func:`mlx.audio.make_instrument_sounds`,
six instruments), a Pipeline ``LogMelFeatures`` + ``StandardScaler`` + ``MLPClassifier``, only the
MLP's ``alpha`` searched, no pruning (``NopPruner``), every trial training the same number of
epochs. Two searches through ``mlx.run``, same seed, same split, same sampler:

- raw: the data are the clips; the Pipeline holds the feature step. mlx fits the leading steps
  once per setting of their parameters (here one setting: none of theirs is searched) and trains
  only the MLP in each trial.
- precomputed: the data are the log-mel features, computed before the run (each clip's features
  depend on that clip alone, so computing them on all clips at once gives the same rows); the
  Pipeline is ``StandardScaler`` + ``MLPClassifier``.

A trial's cost is the time from its start to its result in the Optuna study (the trial's
``datetime_start`` to ``datetime_complete``), so the raw search's first trial carries the
feature computation: the mean over trials includes it once, the median does not. The
precomputed side's feature computation is set-up outside its run: its own column, and a last
ratio charges it to that side (spread over its trials) for the like-for-like total. Each repeat
runs both searches in fresh temporary stores, alternating which goes first; medians [min-max]
over the repeats. Both sides also report the best ``alpha`` and validation score, which must be
equal (the same configuration trained on the same feature values).

Run: ``python bench/features.py [--repeats 3] [--trials 8]``. Target: raw mean per trial <= 1.5x
the precomputed one.
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import spread  # noqa: E402

SR = 16000


def _clips():
    from mlx.audio import make_instrument_sounds

    # 400 clips per instrument, 1 s each: 2,400 clips.
    return make_instrument_sounds(n_per_class=400, sr=SR, duration=1.0, random_state=0)


def _features():
    from mlx.audio import LogMelFeatures

    return LogMelFeatures(sr=SR, n_fft=512, hop_length=256, n_mels=40)


def _experiment(name, data, steps, n_trials):
    import optuna
    from optuna.distributions import FloatDistribution
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import mlx
    from mlx.estimators import MLPClassifier

    return mlx.Experiment(
        name=name,
        data=lambda: data,
        estimator=make_pipeline(*steps, StandardScaler(), MLPClassifier((64,), max_iter=30)),
        search_space={"mlpclassifier__alpha": FloatDistribution(1e-6, 1e-1, log=True)},
        metric="accuracy",
        split=(0.6, 0.2, 0.2),
        seed=0,
        n_trials=n_trials,
        pruner=optuna.pruners.NopPruner(),
    )


def _search(experiment):
    """``(per-trial seconds, best alpha, best validation score)`` of one run in fresh stores."""
    import optuna

    import mlx

    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{Path(folder) / 'optuna.db'}"
        result = mlx.run(
            experiment,
            tracking_uri=f"sqlite:///{Path(folder) / 'mlflow.db'}",
            storage=storage,
            no_test=True,
            show_progress=False,
        )
        study = optuna.load_study(study_name=result.study_name, storage=storage)
        seconds = [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE
        ]
    alpha = result.best_params["mlpclassifier__alpha"]
    return seconds, alpha, result.best_value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("mlx").setLevel(logging.WARNING)

    from threadpoolctl import threadpool_info

    X, y, groups = _clips()
    print(f"# features computed once: {len(X)} clips of {X.shape[1] / SR:.1f} s at {SR} Hz")
    blas = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
    print(
        f"# {args.trials} trials a search, {args.repeats} repeats, BLAS threads {blas}, "
        f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}"
    )

    rows = {"raw": [], "precomputed": []}
    setups = []
    best = {}
    for repeat in range(args.repeats):
        start = time.perf_counter()
        F = _features().fit_transform(X)
        setups.append(time.perf_counter() - start)
        runs = {
            "raw": lambda: _search(
                _experiment("bench-raw", (X, y, groups), [_features()], args.trials)
            ),
            "precomputed": lambda F=F: _search(
                _experiment("bench-precomputed", (F, y, groups), [], args.trials)
            ),
        }
        order = list(runs) if repeat % 2 == 0 else list(runs)[::-1]
        for side in order:
            seconds, alpha, score = runs[side]()
            rows[side].append(seconds)
            best[side] = (alpha, score)

    mean = {side: [statistics.mean(s) for s in runs] for side, runs in rows.items()}
    median = {side: [statistics.median(s) for s in runs] for side, runs in rows.items()}
    ratio = [r / p for r, p in zip(mean["raw"], mean["precomputed"], strict=True)]
    charged = [
        r / (p + setup / args.trials)
        for r, p, setup in zip(mean["raw"], mean["precomputed"], setups, strict=True)
    ]
    print()
    print(
        "| search | data | mean s/trial | median s/trial | feature set-up s | best alpha | "
        "best val accuracy |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| raw clips, features in the Pipeline | {X.shape[0]} x {X.shape[1]} | "
        f"{spread(mean['raw'], 3)} | {spread(median['raw'], 3)} | inside the first trial | "
        f"{best['raw'][0]:.3g} | {best['raw'][1]:.4f} |"
    )
    print(
        f"| precomputed features | {F.shape[0]} x {F.shape[1]} | "
        f"{spread(mean['precomputed'], 3)} | {spread(median['precomputed'], 3)} | {spread(setups, 3)} | "
        f"{best['precomputed'][0]:.3g} | {best['precomputed'][1]:.4f} |"
    )
    print()
    print(f"raw / precomputed, mean per trial: {spread(ratio, 2)} (target <= 1.5)")
    print(
        f"raw / (precomputed + its feature set-up spread over {args.trials} trials): "
        f"{spread(charged, 2)}"
    )
    same = best["raw"] == best["precomputed"]
    print(
        f"same best configuration and score: {'yes' if same else 'NO'}; "
        f"load after {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
