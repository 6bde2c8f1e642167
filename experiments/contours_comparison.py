"""Why deep models on frames: an MLP on pooled statistics against a CNN and a GRU on frames.

One experiment, three candidate models on the melodic contours of
:func:`~mlx.audio.make_contour_sounds`, where the class is the order of five notes and not the
notes themselves:

- ``mlp_statistics``: :class:`~mlx.audio.LogMelFeatures` pools each mel band over the clip
  (mean, spread, minimum, maximum), an MLP classifies the pooled vector. This is the recipe that
  recognises instruments (``instruments_mlp.py``); here every class has the same statistics.
- ``cnn``: :class:`~mlx.audio.LogMelSpectrogram` keeps the 32 frames in order, a 1-D CNN
  detects the moves from note to note (global average pooling: which moves, not where).
- ``gru``: the same frames read one by one by a GRU, classified from its last state.

What it teaches:

- The leaderboard (``leaderboard.csv`` / ``leaderboard.png`` in the parent run) shows the point
  of the deep models: the MLP stays near chance (1 in 5) however it is tuned, because pooling
  threw away *when*; both models that see time reach near-perfect validation accuracy. It also
  lists each model's fit time and pickled size: the price of seeing time.
- ``model_budget="fixed"`` gives every model the same number of trials, so the MLP's failure is
  not for lack of trials (the default, "shared", would let the sampler starve it).
- Model choice is one search: each trial picks a model (the ``model`` parameter), then only that
  model's hyperparameters; the overall winner is refit and tested once.
- All three models train epoch by epoch (``partial_fit``), so every trial has a learning curve
  in MLflow. Pruning is off here: Optuna's median pruner compares a trial with the others at
  the same epoch, whatever their model, and would stop a slow-starting GRU against the CNN's
  curves (or every MLP trial after the first); with three trials a model, each runs to the end.

Run it with ``mlx run experiments/contours_comparison.py`` (about a minute on two cores).
"""

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.audio import LogMelFeatures, LogMelSpectrogram, make_contour_sounds
from mlx.estimators import CNNClassifier, MLPClassifier, RNNClassifier

SR = 16000
# 64 ms frames every 32 ms, 32 mel bands: 32 x 32 frames per one-second clip, for all models.
FRAMES = dict(sr=SR, n_fft=1024, hop_length=512, n_mels=32)


def contour_sounds():
    # 160 melodies per contour in recordings of 5: 160 recordings, 800 clips of 1 s.
    return make_contour_sounds(n_per_class=160, sr=SR, random_state=3)


def mlp_space(trial):
    width = trial.suggest_int("width", 16, 128, log=True)
    return {
        "mlpclassifier__hidden_layer_sizes": (width,) * trial.suggest_int("depth", 1, 2),
        "mlpclassifier__learning_rate_init": trial.suggest_float(
            "learning_rate_init", 1e-4, 1e-2, log=True
        ),
        "mlpclassifier__alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
    }


def cnn_space(trial):
    filters = trial.suggest_int("filters", 8, 32, log=True)
    return {
        "cnnclassifier__filters": (filters, 2 * filters),
        "cnnclassifier__learning_rate_init": trial.suggest_float(
            "learning_rate_init", 1e-3, 1e-2, log=True
        ),
        "cnnclassifier__dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }


experiment = mlx.Experiment(
    name="contours-comparison",
    data=contour_sounds,
    estimators={
        "mlp_statistics": make_pipeline(
            LogMelFeatures(**FRAMES, stats=("mean", "std", "min", "max")),
            StandardScaler(),
            MLPClassifier(max_iter=40),
        ),
        "cnn": make_pipeline(
            LogMelSpectrogram(**FRAMES),
            StandardScaler(),
            CNNClassifier(input_shape=(32, 32), batch_size=16, max_iter=12),
        ),
        "gru": make_pipeline(
            LogMelSpectrogram(**FRAMES),
            StandardScaler(),
            RNNClassifier("gru", input_shape=(32, 32), batch_size=16, clip_norm=5.0, max_iter=15),
        ),
    },
    search_space={
        "mlp_statistics": mlp_space,
        "cnn": cnn_space,
        "gru": {
            "rnnclassifier__hidden_size": IntDistribution(16, 64, log=True),
            "rnnclassifier__learning_rate_init": FloatDistribution(1e-3, 2e-2, log=True),
        },
    },
    model_budget="fixed",
    metric="accuracy",
    split=(0.6, 0.2, 0.2),
    seed=3,
    n_trials=9,
    pruner=optuna.pruners.NopPruner(),
)
