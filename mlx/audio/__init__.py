"""Machine-listening helpers: an audio-folder loader, log-mel features and synthetic sounds.

The path from a folder of recordings to a tuned classifier::

    clips, labels, groups, report = load_audio_folder("my_sounds", sr=16000, duration=1.0)
    pipe = make_pipeline(LogMelFeatures(sr=16000), StandardScaler(), MLPClassifier())

:class:`LogMelFeatures` pools each mel band over the clip (what happens, for a model on one vector
per clip); :class:`LogMelSpectrogram` keeps the frames in time order (when it happens, for a
convolutional or recurrent network told ``input_shape=frames.output_shape_``).
:func:`make_instrument_sounds` (the class is the timbre) and :func:`make_contour_sounds` (the
class is the order of the notes) make synthetic data sets for each.

:func:`load_audio_folder` and :func:`write_audio_folder` need soundfile, the features and
resampling need librosa: both come with the ``audio`` extra
(``pip install "mlx-experiments[audio]"``) and are imported on first use, so ``import mlx.audio``
and the synthetic sounds (numpy only) work without it.
"""

from mlx.audio.features import LogMelFeatures, LogMelSpectrogram
from mlx.audio.folder import (
    AUDIO_EXTENSIONS,
    AudioFolder,
    AudioFolderReport,
    SkippedFile,
    load_audio_folder,
    write_audio_folder,
)
from mlx.audio.synth import CONTOURS, INSTRUMENTS, make_contour_sounds, make_instrument_sounds

__all__ = [
    "AUDIO_EXTENSIONS",
    "CONTOURS",
    "INSTRUMENTS",
    "AudioFolder",
    "AudioFolderReport",
    "LogMelFeatures",
    "LogMelSpectrogram",
    "SkippedFile",
    "load_audio_folder",
    "make_contour_sounds",
    "make_instrument_sounds",
    "write_audio_folder",
]
