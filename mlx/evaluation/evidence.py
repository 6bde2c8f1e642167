"""Sounds as evidence: misclassified test clips as WAV files with their log-mel images.

A number says how often a classifier of sounds is wrong; listening to the clips it got wrong
says how (a flute heard as a violin, a drum lost in noise). :func:`audio_sample_rate` tells
whether a model takes audio clips and at which rate; :func:`misclassified_clips` picks a few
wrongly classified clips and renders each as a 16-bit WAV, which the MLflow UI plays, and as a
PNG of its log-mel spectrogram.
"""

import io
import re
from numbers import Integral

import numpy as np
from sklearn.pipeline import Pipeline

from mlx.audio._deps import require
from mlx.evaluation.figures import log_mel_figure
from mlx.painter import Sketch, render

__all__ = ["MISCLASSIFIED_FOLDER", "audio_sample_rate", "misclassified_clips"]

MISCLASSIFIED_FOLDER = "misclassified"
# Pictures of a clip: a frame of 1024 samples (64 ms at 16 kHz) every quarter frame.
_N_FFT = 1024
_N_MELS = 64
_MIN_IMAGE_SAMPLES = 256


def audio_sample_rate(estimator):
    """Sample rate of the clips ``estimator`` takes, or None when it does not take clips.

    A model takes audio clips when its first step (the estimator itself, or the first step
    of a Pipeline, looking into nested Pipelines) has an integer ``sr`` parameter, as
    :class:`~mlx.audio.LogMelFeatures` and :class:`~mlx.audio.LogMelSpectrogram` have: the
    rows of ``X`` are then clips of samples at that rate.

    Parameters
    ----------
    estimator : estimator
        A fitted or unfitted estimator or Pipeline.

    Returns
    -------
    sample_rate : int or None

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from mlx.audio import LogMelFeatures
    >>> audio_sample_rate(make_pipeline(LogMelFeatures(sr=22050), StandardScaler()))
    22050
    >>> audio_sample_rate(StandardScaler()) is None
    True
    """
    first = estimator
    while isinstance(first, Pipeline):
        steps = [step for _, step in first.steps if step not in (None, "passthrough")]
        if not steps:
            return None
        first = steps[0]
    get_params = getattr(first, "get_params", None)
    rate = get_params(deep=False).get("sr") if callable(get_params) else None
    if isinstance(rate, Integral) and not isinstance(rate, bool) and rate > 0:
        return int(rate)
    return None


def _file_part(label):
    """``label`` as part of a file name: ASCII letters, digits, ``_``, ``-`` and ``.``."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", str(label)) or "_"


def _choose(y_true, y_pred, max_clips, rng):
    """Up to ``max_clips`` misclassified rows, spread over the true classes in turn.

    Rows are shuffled within each class and the classes take turns in a random order, so a
    class with many errors does not crowd out the others.
    """
    wrong = rng.permutation(np.flatnonzero(y_true != y_pred))
    if wrong.size == 0:
        return wrong
    classes, cls = np.unique(y_true[wrong], return_inverse=True)
    priority = rng.permutation(len(classes))[cls]
    order = np.argsort(cls, kind="stable")
    sorted_cls = cls[order]
    rank = np.empty(len(wrong), dtype=np.intp)
    rank[order] = np.arange(len(wrong)) - np.searchsorted(sorted_cls, sorted_cls)
    chosen = wrong[np.lexsort((priority, rank))[:max_clips]]
    return np.sort(chosen)


def _wav_bytes(soundfile, clip, sample_rate):
    buf = io.BytesIO()
    soundfile.write(buf, clip, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def misclassified_clips(
    clips, y_true, y_pred, sample_rate, *, max_clips=6, images=True, random_state=0
):
    """A few misclassified clips as WAV files and log-mel PNGs, ready to log as artifacts.

    Parameters
    ----------
    clips : array-like of shape (n_clips, n_samples)
        Mono clips, one per row, at ``sample_rate``.
    y_true, y_pred : array-like of shape (n_clips,)
        True and predicted labels.
    sample_rate : int
        Sample rate in Hz.
    max_clips : int, default=6
        At most this many clips, spread over the true classes.
    images : bool, default=True
        Also draw each clip's log-mel spectrogram (needs librosa).
    random_state : int, numpy Generator or None, default=0
        Seed of the choice of clips.

    Returns
    -------
    files : dict
        File name -> bytes: ``misclassified/true-<label>_pred-<label>_row-<i>.wav`` (16-bit
        PCM) and the same name ending in ``.png``; ``i`` is the clip's row in ``clips``. Empty
        when every clip is classified correctly.

    Notes
    -----
    Samples are written as they are when they lie within [-1, 1]; a clip that peaks above 1
    is divided by its peak first (16-bit PCM would clip it).

    Examples
    --------
    >>> import numpy as np
    >>> clips = np.zeros((3, 1600))
    >>> files = misclassified_clips(clips, ["a", "b", "b"], ["a", "a", "b"], 16000, images=False)
    >>> list(files)
    ['misclassified/true-b_pred-a_row-1.wav']
    """
    if not isinstance(max_clips, Integral) or max_clips < 0:
        raise ValueError(f"max_clips must be a non-negative integer, got {max_clips!r}.")
    clips = np.asarray(clips, dtype=float)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if clips.ndim != 2:
        raise ValueError(
            f"clips must have shape (n_clips, n_samples), got an array of shape {clips.shape}."
        )
    if not len(clips) == len(y_true) == len(y_pred):
        raise ValueError(
            f"clips, y_true and y_pred must have one entry per clip, got {len(clips)}, "
            f"{len(y_true)} and {len(y_pred)}."
        )
    chosen = _choose(y_true, y_pred, max_clips, np.random.default_rng(random_state))
    if chosen.size == 0:
        return {}
    soundfile = require("soundfile")
    selected = clips[chosen]
    peaks = np.abs(selected).max(axis=1, keepdims=True)
    selected = selected / np.maximum(peaks, 1.0)
    # Frames shorter than this say little about a sound: such clips get no picture.
    frames, hop = (
        _log_mel(selected, sample_rate)
        if images and clips.shape[1] >= _MIN_IMAGE_SAMPLES
        else (None, None)
    )
    files = {}
    for k, row in enumerate(chosen):
        true, pred = y_true[row], y_pred[row]
        stem = f"{MISCLASSIFIED_FOLDER}/true-{_file_part(true)}_pred-{_file_part(pred)}_row-{row}"
        files[f"{stem}.wav"] = _wav_bytes(soundfile, selected[k], sample_rate)
        if frames is not None:
            files[f"{stem}.png"] = render(
                Sketch(
                    log_mel_figure,
                    (frames[k],),
                    {
                        "sample_rate": sample_rate,
                        "hop_length": hop,
                        "title": f"test row {row}: true {true}, predicted {pred}",
                    },
                )
            )
    return files


def _log_mel(clips, sample_rate):
    """Log-mel frames (n_clips, n_mels, n_frames) of the clips and their hop length."""
    from mlx.audio import LogMelSpectrogram

    # Short clips get shorter frames (a power of two that fits) and fewer bands to match.
    n_fft = min(_N_FFT, 1 << (int(clips.shape[1]).bit_length() - 1))
    hop = max(1, n_fft // 4)
    n_mels = max(1, min(_N_MELS, n_fft // 16))
    spectrogram = LogMelSpectrogram(sr=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    frames = spectrogram.fit_transform(clips).reshape(len(clips), *spectrogram.output_shape_)
    return frames, hop
