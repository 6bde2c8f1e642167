"""Machine-listening helpers: an audio-folder loader, log-mel features and synthetic instruments.

The path from a folder of recordings to a tuned classifier::

    clips, labels, groups, report = load_audio_folder("my_sounds", sr=16000, duration=1.0)
    pipe = make_pipeline(LogMelFeatures(sr=16000), StandardScaler(), MLPClassifier())

:func:`load_audio_folder` and :func:`write_audio_folder` need soundfile, :class:`LogMelFeatures`
and resampling need librosa: both come with the ``audio`` extra
(``pip install "mlx-experiments[audio]"``) and are imported on first use, so ``import mlx.audio``
and :func:`make_instrument_sounds` (numpy only) work without it.
"""

from mlx.audio.features import LogMelFeatures
from mlx.audio.folder import (
    AUDIO_EXTENSIONS,
    AudioFolder,
    AudioFolderReport,
    SkippedFile,
    load_audio_folder,
    write_audio_folder,
)
from mlx.audio.synth import INSTRUMENTS, make_instrument_sounds

__all__ = [
    "AUDIO_EXTENSIONS",
    "INSTRUMENTS",
    "AudioFolder",
    "AudioFolderReport",
    "LogMelFeatures",
    "SkippedFile",
    "load_audio_folder",
    "make_instrument_sounds",
    "write_audio_folder",
]
