"""Log-mel features of fixed-length clips, as a scikit-learn transformer."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from mlx.audio._deps import require

_STATS = {
    "mean": np.mean,
    "std": np.std,
    "min": np.min,
    "max": np.max,
    "median": np.median,
}

# Bound on the STFT held at once (complex64 bytes) when featurising a batch of clips.
_STFT_CHUNK_BYTES = 64 * 2**20


class LogMelFeatures(TransformerMixin, BaseEstimator):
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

    See Also
    --------
    load_audio_folder : clips of equal length from a folder of audio files.
    make_instrument_sounds : synthetic clips to try the features on.

    Notes
    -----
    Energies are converted to dB with ``librosa.power_to_db(S, ref=1.0, top_db=None)``: the
    default ``top_db=80`` clips against the maximum of the whole array, which on a batch would
    make one clip's features depend on the others in the batch. Energies below 1e-10 (-100 dB)
    are floored there. Frames are centred (``center=True``), so a clip of ``n`` samples has
    ``1 + n // hop_length`` frames. The transformer learns nothing from the data: :meth:`fit`
    only checks the input and records the clip length.

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
        "sr": [Interval(Integral, 1, None, closed="left")],
        "n_fft": [Interval(Integral, 2, None, closed="left")],
        "hop_length": [Interval(Integral, 1, None, closed="left")],
        "n_mels": [Interval(Integral, 1, None, closed="left")],
        "n_mfcc": [Interval(Integral, 1, None, closed="left"), None],
        "stats": [list, tuple],
        "fmin": [Interval(Real, 0, None, closed="left")],
        "fmax": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        sr=16000,
        *,
        n_fft=1024,
        hop_length=512,
        n_mels=40,
        n_mfcc=None,
        stats=("mean", "std"),
        fmin=0.0,
        fmax=None,
    ):
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

    def _validate_clips(self, X, reset):
        # Named shape errors first: scikit-learn's generic ones talk about samples and
        # features, which here would be clips and audio samples.
        ndim = np.ndim(X)
        if ndim == 1:
            raise ValueError(
                f"LogMelFeatures expects clips of shape (n_clips, n_samples), got a 1-D array of "
                f"shape {np.shape(X)}: pass one clip as clip[np.newaxis, :]."
            )
        if ndim != 2:
            raise ValueError(
                f"LogMelFeatures expects mono clips of shape (n_clips, n_samples), got an array "
                f"of shape {np.shape(X)}: mix channels to mono first (e.g. X.mean(axis=1))."
            )
        X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        if X.shape[1] < self.n_fft:
            raise ValueError(
                f"Clips of {X.shape[1]} samples are shorter than one frame, n_fft={self.n_fft}: "
                "lower n_fft or use longer clips."
            )
        return X

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the settings and the clips, and record the clip length.

        Parameters
        ----------
        X : array-like of shape (n_clips, n_samples)
            Mono clips of equal length.
        y : None
            Ignored.

        Returns
        -------
        self : LogMelFeatures
        """
        self._check_settings()
        self._validate_clips(X, reset=True)
        return self

    def transform(self, X):
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
        check_is_fitted(self)
        X = self._validate_clips(X, reset=False)
        librosa = require("librosa")
        n_frames = 1 + X.shape[1] // self.hop_length
        chunk = max(1, _STFT_CHUNK_BYTES // ((self.n_fft // 2 + 1) * n_frames * 8))
        n_coefficients = self.n_mels if self.n_mfcc is None else self.n_mfcc
        out = np.empty((X.shape[0], n_coefficients * len(self.stats)), dtype=X.dtype)
        for start in range(0, X.shape[0], chunk):
            out[start : start + chunk] = self._pool(librosa, X[start : start + chunk])
        return out

    def _pool(self, librosa, clips):
        power = librosa.feature.melspectrogram(
            y=clips,
            sr=self.sr,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
        )
        frames = librosa.power_to_db(power, ref=1.0, top_db=None)
        if self.n_mfcc is not None:
            frames = librosa.feature.mfcc(S=frames, n_mfcc=self.n_mfcc)
        return np.concatenate([_STATS[stat](frames, axis=-1) for stat in self.stats], axis=1)

    def get_feature_names_out(self, input_features=None):
        """Feature names such as ``mel07_mean`` or ``mfcc03_std``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored apart from its length: the inputs are audio samples, not named features.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise ValueError(
                f"input_features has {len(input_features)} names, expected "
                f"n_features_in_={self.n_features_in_}."
            )
        prefix, n = ("mel", self.n_mels) if self.n_mfcc is None else ("mfcc", self.n_mfcc)
        width = max(2, len(str(n - 1)))
        return np.asarray(
            [f"{prefix}{i:0{width}d}_{stat}" for stat in self.stats for i in range(n)],
            dtype=object,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
