"""Log-mel features of fixed-length clips, as scikit-learn transformers.

Two views of the same frames: :class:`LogMelSpectrogram` keeps them in time order (the input of a
convolutional or recurrent network), :class:`LogMelFeatures` pools each band over time (the input
of a model that sees one vector per clip). Both share the signal processing of
:class:`_LogMelFrames`.
"""

from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from mlx.audio._deps import require

__all__ = ["LogMelFeatures", "LogMelSpectrogram"]

_STATS: dict[str, Callable[..., Any]] = {
    "mean": np.mean,
    "std": np.std,
    "min": np.min,
    "max": np.max,
    "median": np.median,
}

# Bound on the STFT held at once (complex64 bytes) when featurising a batch of clips.
_STFT_CHUNK_BYTES = 64 * 2**20


class _LogMelFrames(TransformerMixin, BaseEstimator):
    """Log-mel (or MFCC) frames of a batch of clips; subclasses decide what a row becomes.

    Holds what the two transformers share: the parameters of the frames, their checks, the
    validation of the clips, and the batched librosa computation in chunks of bounded memory.
    A subclass sets ``_n_outputs`` (values per clip) and ``_from_frames`` (frames of a chunk of
    clips, shape (n_clips, n_coefficients, n_frames), to its rows).
    """

    _parameter_constraints: dict = {
        "sr": [Interval(Integral, 1, None, closed="left")],
        "n_fft": [Interval(Integral, 2, None, closed="left")],
        "hop_length": [Interval(Integral, 1, None, closed="left")],
        "n_mels": [Interval(Integral, 1, None, closed="left")],
        "n_mfcc": [Interval(Integral, 1, None, closed="left"), None],
        "fmin": [Interval(Real, 0, None, closed="left")],
        "fmax": [Interval(Real, 0, None, closed="neither"), None],
    }

    @property
    def _n_coefficients(self):
        return self.n_mels if self.n_mfcc is None else self.n_mfcc

    @property
    def _coefficient_names(self):
        prefix, n = ("mel", self.n_mels) if self.n_mfcc is None else ("mfcc", self.n_mfcc)
        width = max(2, len(str(n - 1)))
        return [f"{prefix}{i:0{width}d}" for i in range(n)]

    def _check_settings(self):
        if self.n_mfcc is not None and self.n_mfcc > self.n_mels:
            raise ValueError(
                f"n_mfcc={self.n_mfcc} should be <= n_mels={self.n_mels}: MFCCs are computed "
                "from the mel bands."
            )
        fmax = self.sr / 2 if self.fmax is None else self.fmax
        if not self.fmin < fmax <= self.sr / 2:
            raise ValueError(
                f"fmin < fmax <= sr / 2 must hold, got fmin={self.fmin}, fmax={self.fmax}, "
                f"sr={self.sr}."
            )

    def _validate_clips(self, X, reset) -> NDArray[Any]:
        # Named shape errors first: scikit-learn's generic ones talk about samples and
        # features, which here would be clips and audio samples.
        name = type(self).__name__
        shape = np.shape(X)
        if len(shape) == 1:
            raise ValueError(
                f"{name} expects clips of shape (n_clips, n_samples), got a 1-D array of "
                f"shape {shape}: pass one clip as clip[np.newaxis, :]."
            )
        if len(shape) != 2:
            raise ValueError(
                f"{name} expects mono clips of shape (n_clips, n_samples), got an array "
                f"of shape {shape}: mix channels to mono first (e.g. X.mean(axis=1))."
            )
        if not reset and shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} was fitted on clips of {self.n_features_in_} samples, got clips of "
                f"{shape[1]} samples: cut or pad every clip to {self.n_features_in_} samples "
                "(load_audio_folder's duration does it)."
            )
        X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        if X.shape[1] < self.n_fft:
            raise ValueError(
                f"Clips of {X.shape[1]} samples are shorter than one frame, n_fft={self.n_fft}: "
                "lower n_fft or use longer clips."
            )
        return X

    def _count_frames(self, n_samples):
        # librosa's centred STFT pads n_fft // 2 samples on each side.
        return 1 + (n_samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: object = None) -> Self:
        """Check the settings and the clips, and record the clip length.

        Parameters
        ----------
        X : array-like of shape (n_clips, n_samples)
            Mono clips of equal length.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        self._check_settings()
        X = self._validate_clips(X, reset=True)
        self.n_frames_ = self._count_frames(X.shape[1])
        return self

    def transform(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        check_is_fitted(self)
        X = self._validate_clips(X, reset=False)
        librosa = require("librosa")
        chunk = max(1, _STFT_CHUNK_BYTES // ((self.n_fft // 2 + 1) * self.n_frames_ * 8))
        out = np.empty((X.shape[0], self._n_outputs), dtype=X.dtype)
        for start in range(0, X.shape[0], chunk):
            frames = self._frames(librosa, X[start : start + chunk])
            out[start : start + chunk] = self._from_frames(frames)
        return out

    def _frames(self, librosa, clips):
        """Frames of shape (n_clips, n_coefficients, n_frames), each clip on its own."""
        power = librosa.feature.melspectrogram(
            y=clips,
            sr=self.sr,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
        )
        # top_db=None: the default clips against the maximum of the whole batch.
        frames = librosa.power_to_db(power, ref=1.0, top_db=None)
        if self.n_mfcc is not None:
            frames = librosa.feature.mfcc(S=frames, n_mfcc=self.n_mfcc)
        return frames

    def _check_input_features(self, input_features):
        check_is_fitted(self)
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise ValueError(
                f"input_features has {len(input_features)} names, expected "
                f"n_features_in_={self.n_features_in_}."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class LogMelFeatures(_LogMelFrames):
    """Per-clip statistics of log-mel (or MFCC) frames: fixed-length clips -> feature vectors.

    Each clip is cut into frames of ``n_fft`` samples every ``hop_length`` samples; each frame
    becomes ``n_mels`` log-mel energies (in dB), or their first ``n_mfcc`` cepstral coefficients;
    each coefficient is then pooled over the frames by the statistics in ``stats``. librosa does
    the signal processing on a whole batch of clips at once.

    Parameters
    ----------
    sr : int, default=16000
        Sample rate of the clips in Hz.
    n_fft : int, default=1024
        Frame (FFT window) length in samples.
    hop_length : int, default=512
        Samples between frame starts.
    n_mels : int, default=40
        Mel bands.
    n_mfcc : int, default=None
        If set, MFCCs (DCT-II of the log-mel frames) with this many coefficients replace the
        log-mel energies; at most ``n_mels``.
    stats : tuple of str, default=("mean", "std")
        Statistics pooled over frames, among "mean", "std", "min", "max", "median".
    fmin : float, default=0.0
        Lowest frequency of the mel filters in Hz.
    fmax : float, default=None
        Highest frequency of the mel filters in Hz; None is ``sr / 2``.

    Attributes
    ----------
    n_features_in_ : int
        Samples per clip seen in :meth:`fit`; :meth:`transform` requires the same.
    n_frames_ : int
        Frames per clip that the statistics pool over.

    See Also
    --------
    LogMelSpectrogram : the frames themselves, in time order, for models that see time.
    load_audio_folder : clips of equal length from a folder of audio files.
    make_instrument_sounds : synthetic clips to try the features on.

    Notes
    -----
    Energies are converted to dB with ``librosa.power_to_db(S, ref=1.0, top_db=None)``: the
    default ``top_db=80`` clips against the maximum of the whole array, which on a batch would
    make one clip's features depend on the others in the batch. Energies below 1e-10 (-100 dB)
    are floored there. Frames are centred (``center=True``), so a clip of ``n`` samples has
    ``1 + n // hop_length`` frames (for an even ``n_fft``). Pooling forgets the order of the
    frames: clips that differ only in when things happen (see :func:`make_contour_sounds`) get
    nearly the same features. The transformer learns nothing from the data: :meth:`fit` only
    checks the input and records the clip length.

    Examples
    --------
    >>> from mlx.audio import LogMelFeatures, make_instrument_sounds
    >>> clips, labels, groups = make_instrument_sounds(5, random_state=0)
    >>> features = LogMelFeatures(sr=16000, n_mels=20).fit(clips)
    >>> features.transform(clips).shape
    (30, 40)
    >>> features.get_feature_names_out()[[0, 19, 20]].tolist()
    ['mel00_mean', 'mel19_mean', 'mel00_std']
    """

    _parameter_constraints: dict = {
        **_LogMelFrames._parameter_constraints,
        "stats": [list, tuple],
    }

    def __init__(
        self,
        sr: int = 16000,
        *,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 40,
        n_mfcc: int | None = None,
        stats: Sequence[str] = ("mean", "std"),
        fmin: float = 0.0,
        fmax: float | None = None,
    ) -> None:
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.stats = stats
        self.fmin = fmin
        self.fmax = fmax

    def _check_settings(self):
        unknown = [s for s in self.stats if s not in _STATS]
        if unknown or not self.stats or len(set(self.stats)) != len(self.stats):
            raise ValueError(
                f"stats must be distinct names among {sorted(_STATS)}, got stats={self.stats!r}."
            )
        super()._check_settings()

    @property
    def _n_outputs(self):
        return self._n_coefficients * len(self.stats)

    def transform(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Pool the log-mel (or MFCC) frames of each clip.

        Parameters
        ----------
        X : array-like of shape (n_clips, n_samples)
            Clips of the length seen in :meth:`fit`.

        Returns
        -------
        features : ndarray of shape (n_clips, n_coefficients * len(stats))
            Grouped by statistic: all coefficients' first statistic, then the second, ...
            (see :meth:`get_feature_names_out`); float32 for float32 clips.
        """
        return super().transform(X)

    def _from_frames(self, frames):
        return np.concatenate([_STATS[stat](frames, axis=-1) for stat in self.stats], axis=1)

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """Feature names such as ``mel07_mean`` or ``mfcc03_std``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored apart from its length: the inputs are audio samples, not named features.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        self._check_input_features(input_features)
        names = self._coefficient_names
        return np.asarray([f"{name}_{stat}" for stat in self.stats for name in names], dtype=object)


class LogMelSpectrogram(_LogMelFrames):
    """Log-mel (or MFCC) frames in time order: fixed-length clips -> flattened spectrograms.

    Each clip is cut into ``n_frames_`` frames of ``n_fft`` samples every ``hop_length``
    samples; each frame becomes ``n_mels`` log-mel energies (in dB), or their first ``n_mfcc``
    cepstral coefficients. Unlike :class:`LogMelFeatures`, nothing is pooled: the time axis is
    kept, so a convolutional or recurrent network after this step can see *when* things happen.
    Rows stay 2-D for scikit-learn; :attr:`output_shape_` says how to fold them back.

    Parameters
    ----------
    sr : int, default=16000
        Sample rate of the clips in Hz.
    n_fft : int, default=1024
        Frame (FFT window) length in samples.
    hop_length : int, default=512
        Samples between frame starts.
    n_mels : int, default=40
        Mel bands.
    n_mfcc : int, default=None
        If set, MFCCs (DCT-II of the log-mel frames) with this many coefficients replace the
        log-mel energies; at most ``n_mels``.
    fmin : float, default=0.0
        Lowest frequency of the mel filters in Hz.
    fmax : float, default=None
        Highest frequency of the mel filters in Hz; None is ``sr / 2``.

    Attributes
    ----------
    n_features_in_ : int
        Samples per clip seen in :meth:`fit`; :meth:`transform` requires the same.
    n_frames_ : int
        Frames per clip (the length of the time axis).
    output_shape_ : tuple of int
        ``(n_coefficients, n_frames_)``, with ``n_coefficients`` the ``n_mfcc`` if set, else
        ``n_mels``: the shape of one output row folded back, to give a network after this step
        as its ``input_shape``.

    See Also
    --------
    LogMelFeatures : the same frames pooled into per-clip statistics.
    make_contour_sounds : clips that only a model seeing time can tell apart.

    Notes
    -----
    Layout: row ``i`` of the output is the C-order flattening of the clip's
    ``(n_coefficients, n_frames_)`` array, band-major: all frames of band 0, then all frames of
    band 1, and so on. Value ``[b, t]`` sits in column ``b * n_frames_ + t``, named
    ``mel{b:02d}_t{t:03d}`` (``mfcc...`` for MFCCs), and ``Xt.reshape(n_clips, *output_shape_)``
    is PyTorch's (batch, channels, time) layout with the bands as channels.

    Frames are centred (``center=True``: librosa pads ``n_fft // 2`` samples on each side), so a
    clip of :math:`n` samples has

    .. math:: n_\\text{frames} = 1 + \\left\\lfloor \\frac{n + 2 \\lfloor n_\\text{fft} / 2
              \\rfloor - n_\\text{fft}}{\\text{hop\\_length}} \\right\\rfloor,

    which is ``1 + n // hop_length`` for an even ``n_fft``; frame :math:`t` is centred on sample
    :math:`t \\cdot \\text{hop\\_length}`.

    Energies are converted to dB with ``librosa.power_to_db(S, ref=1.0, top_db=None)`` (floored
    at -100 dB): no reference or floor taken from the batch, so a clip's frames are the same
    alone or in any batch. Per-band standardisation is left to a ``StandardScaler`` after this
    step (it scales each column, one band at one time). The transformer learns nothing from the
    data: :meth:`fit` only checks the input and records the clip length.

    Examples
    --------
    >>> from mlx.audio import LogMelSpectrogram, make_contour_sounds
    >>> clips, labels, groups = make_contour_sounds(2, duration=0.5, random_state=0)
    >>> frames = LogMelSpectrogram(sr=16000, n_mels=20, hop_length=256).fit(clips)
    >>> frames.n_frames_, frames.output_shape_
    (32, (20, 32))
    >>> Xt = frames.transform(clips)
    >>> Xt.shape, Xt.reshape(-1, *frames.output_shape_).shape
    ((10, 640), (10, 20, 32))
    >>> frames.get_feature_names_out()[[0, 1, 32]].tolist()
    ['mel00_t000', 'mel00_t001', 'mel01_t000']
    """

    def __init__(
        self,
        sr: int = 16000,
        *,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 40,
        n_mfcc: int | None = None,
        fmin: float = 0.0,
        fmax: float | None = None,
    ) -> None:
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.fmin = fmin
        self.fmax = fmax

    def fit(self, X: ArrayLike, y: object = None) -> Self:
        """Check the settings and the clips; record the clip length and the output shape.

        Parameters
        ----------
        X : array-like of shape (n_clips, n_samples)
            Mono clips of equal length.
        y : None
            Ignored.

        Returns
        -------
        self : LogMelSpectrogram
        """
        super().fit(X, y)
        self.output_shape_ = (self._n_coefficients, self.n_frames_)
        return self

    @property
    def _n_outputs(self):
        return self._n_coefficients * self.n_frames_

    def transform(self, X: ArrayLike) -> NDArray[np.floating[Any]]:
        """Log-mel (or MFCC) frames of each clip, flattened band-major.

        Parameters
        ----------
        X : array-like of shape (n_clips, n_samples)
            Clips of the length seen in :meth:`fit`.

        Returns
        -------
        frames : ndarray of shape (n_clips, n_coefficients * n_frames_)
            Row ``i`` is clip ``i``'s ``(n_coefficients, n_frames_)`` array in C order (see
            Notes); float32 for float32 clips.
        """
        return super().transform(X)

    def _from_frames(self, frames):
        return frames.reshape(frames.shape[0], -1)

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> NDArray[np.object_]:
        """Feature names such as ``mel07_t012`` (band 7, frame 12), in column order.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored apart from its length: the inputs are audio samples, not named features.

        Returns
        -------
        feature_names_out : ndarray of str objects
            ``n_coefficients * n_frames_`` names, band-major like the columns.
        """
        self._check_input_features(input_features)
        width = max(3, len(str(self.n_frames_ - 1)))
        frames = [f"_t{t:0{width}d}" for t in range(self.n_frames_)]
        return np.asarray(
            [band + t for band in self._coefficient_names for t in frames], dtype=object
        )
