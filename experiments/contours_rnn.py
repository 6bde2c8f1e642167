"""Melodic contours with a recurrent network (GRU or LSTM) reading log-mel frames in order.

The five classes of :func:`~mlx.audio.make_contour_sounds` play the same five notes in different
orders, so only a model that sees the order of the frames can tell them apart. A recurrent
network reads the 32 frames of a clip one after the other (each frame a vector of 32 mel bands),
updates its internal state at each step and classifies the clip from its last state
(many-to-one).

What it teaches:

- The cell is a hyperparameter like any other: ``rnnclassifier__cell`` is one categorical
  parameter, "gru" or "lstm", searched together with the hidden size, the number of stacked
  layers, the learning rate and L2. MLflow's parallel-coordinates view shows whether one cell
  wins, and at which sizes.
- Gated cells against vanishing gradients: the gates let the gradient of the last state reach
  the first frames, so the first notes (which tell "rising" from "valley") are remembered.
  ``clip_norm`` rescales exploding gradients, the other failure of plain recurrent nets.
- Same frame layout as the CNN: ``LogMelSpectrogram`` rows are the flattened
  ``(n_mels, n_frames)`` array, and ``input_shape=(32, 32)`` folds them back; the recurrent
  net reads it as 32 channels (its input at each step) over 32 steps.
- Pruning on the learning curve, and a grouped split by recording, as in ``contours_cnn.py``.

Run it with ``mlx run experiments/contours_rnn.py`` (about a minute on two cores).
"""

import optuna
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.audio import LogMelSpectrogram, make_contour_sounds
from mlx.estimators import RNNClassifier

SR = 16000


def contour_sounds():
    # 160 melodies per contour in recordings of 5: 160 recordings, 800 clips of 1 s.
    return make_contour_sounds(n_per_class=160, sr=SR, random_state=2)


def rnn_space(trial):
    return {
        "rnnclassifier__cell": trial.suggest_categorical("cell", ["gru", "lstm"]),
        "rnnclassifier__hidden_size": trial.suggest_int("hidden_size", 16, 64, log=True),
        "rnnclassifier__num_layers": trial.suggest_int("num_layers", 1, 2),
        "rnnclassifier__learning_rate_init": trial.suggest_float(
            "learning_rate_init", 1e-3, 2e-2, log=True
        ),
        "rnnclassifier__alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
    }


experiment = mlx.Experiment(
    name="contours-rnn",
    data=contour_sounds,
    estimator=make_pipeline(
        LogMelSpectrogram(sr=SR, n_fft=1024, hop_length=512, n_mels=32),
        StandardScaler(),
        # max_iter is the epoch budget of each trial; small batches give many steps per epoch.
        RNNClassifier(input_shape=(32, 32), batch_size=16, clip_norm=5.0, max_iter=15),
    ),
    search_space=rnn_space,
    metric="accuracy",
    split=(0.6, 0.2, 0.2),
    seed=2,
    n_trials=12,
    pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
)
