"""Melodic contours with a convolutional network on log-mel frames, searched by Optuna.

The five classes of :func:`~mlx.audio.make_contour_sounds` play the same five notes in different
orders (rising, falling, arch, valley, zigzag), so per-clip statistics of the log-mel bands are
the same for every class (``contours_comparison.py`` shows an MLP on them at chance). Here
:class:`~mlx.audio.LogMelSpectrogram` keeps the frames in time order and a 1-D CNN slides its
kernels along time, the 32 mel bands being its input channels.

What it teaches:

- The frame layout: the spectrogram step outputs one row per clip, the flattened
  ``(n_mels, n_frames)`` array, and the network is told ``input_shape=(32, 32)`` to fold it back
  (32 bands; 1 + 16000 // 512 = 32 frames of a one-second clip). ``StandardScaler`` between them
  scales each band at each time, one column each.
- A structured search space, in Optuna's define-by-run style: the number of blocks and the
  first block's filters are suggested numbers, and the filters double from block to block
  (``(16, 32, 64)``), the usual shape of a CNN. Kernel length, pooling, learning rate, L2 and
  dropout (before the dense output layer) complete the space.
- Receptive field: each block of kernel ``k`` and pooling 2 lets the next block see twice as
  far back; telling "up then down" from "down then up" needs a view across note boundaries.
  Global average pooling then asks *which moves* a melody makes, not *where*.
- Pruning on the learning curve: the CNN learns with ``partial_fit``, so the runner trains it
  one epoch at a time and the median pruner stops trials whose validation curve lags.
- A grouped split: the five melodies of a recording share its instrument and register, and
  stay on one side of each split.

Run it with ``mlx run experiments/contours_cnn.py`` (about a minute on two cores).
"""

import optuna
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.audio import LogMelSpectrogram, make_contour_sounds
from mlx.estimators import CNNClassifier

SR = 16000


def contour_sounds():
    # 160 melodies per contour in recordings of 5: 160 recordings, 800 clips of 1 s.
    return make_contour_sounds(n_per_class=160, sr=SR, random_state=1)


def cnn_space(trial):
    blocks = trial.suggest_int("blocks", 1, 3)
    filters = trial.suggest_int("filters", 8, 32, log=True)
    return {
        "cnnclassifier__filters": tuple(filters * 2**block for block in range(blocks)),
        "cnnclassifier__kernel_size": trial.suggest_int("kernel_size", 3, 7, step=2),
        "cnnclassifier__pool": trial.suggest_categorical("pool", ["max", "avg"]),
        "cnnclassifier__learning_rate_init": trial.suggest_float(
            "learning_rate_init", 1e-3, 1e-2, log=True
        ),
        "cnnclassifier__alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
        "cnnclassifier__dropout": trial.suggest_float("dropout", 0.0, 0.5),
    }


experiment = mlx.Experiment(
    name="contours-cnn",
    data=contour_sounds,
    estimator=make_pipeline(
        # 64 ms frames resolve fundamentals a major third apart; a 32 ms hop gives each note
        # about five frames.
        LogMelSpectrogram(sr=SR, n_fft=1024, hop_length=512, n_mels=32),
        StandardScaler(),
        # max_iter is the epoch budget of each trial; small batches give many steps per epoch.
        CNNClassifier(input_shape=(32, 32), batch_size=16, max_iter=10),
    ),
    search_space=cnn_space,
    metric="accuracy",
    split=(0.6, 0.2, 0.2),
    seed=1,
    n_trials=8,
    pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
)
