"""Instrument recognition: synthetic notes -> log-mel features -> MLP, split by recording.

The machine-listening recipe in one Pipeline: :class:`~mlx.audio.LogMelFeatures` turns each clip
into the mean and spread of its log-mel energies, ``StandardScaler`` puts them on one scale and
an MLP classifies the six instruments of :func:`~mlx.audio.make_instrument_sounds`. To use your
own recordings, replace ``data`` with :func:`mlx.audio.load_audio_folder` (it returns clips,
labels and groups the same way; keep its report to see which files it skipped).

What it teaches:

- A grouped split: notes cut from one recording share its timbre and pitch, so ``data`` returns
  ``(X, y, groups)`` with the recording ids and the runner keeps each recording inside one split.
  A split by clip would put a recording's notes on both sides and overstate the test accuracy.
- Feature settings are parameters like any other: the search tries log-mel energies against
  MFCCs (``logmelfeatures__n_mfcc``: None or a number of coefficients) alongside the MLP's
  width, learning rate and L2. Frames of 32 ms (512 samples) follow the fast attacks.
- The runner fits the feature steps once per setting of their parameters (three here, kept for
  the run), then trains the MLP epoch by epoch on the features, with pruning on the validation
  curve.

Run it with ``mlx run experiments/instruments_mlp.py`` (about 30 s on two cores).
"""

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx
from mlx.audio import LogMelFeatures, make_instrument_sounds
from mlx.estimators import MLPClassifier

SR = 16000


def instrument_sounds():
    # 150 notes per instrument in recordings of 5: 180 recordings, 900 clips of 0.5 s.
    return make_instrument_sounds(n_per_class=150, sr=SR, duration=0.5, random_state=0)


experiment = mlx.Experiment(
    name="instruments-mlp",
    data=instrument_sounds,
    estimator=make_pipeline(
        LogMelFeatures(sr=SR, n_fft=512, hop_length=256, n_mels=40),
        StandardScaler(),
        MLPClassifier(max_iter=60),
    ),
    search_space={
        "logmelfeatures__n_mfcc": CategoricalDistribution([None, 13, 20]),
        "mlpclassifier__hidden_layer_sizes": IntDistribution(16, 128, log=True),
        "mlpclassifier__learning_rate_init": FloatDistribution(1e-4, 3e-2, log=True),
        "mlpclassifier__alpha": FloatDistribution(1e-6, 1e-1, log=True),
    },
    metric="accuracy",
    split=(0.6, 0.2, 0.2),
    seed=0,
    n_trials=25,
)
