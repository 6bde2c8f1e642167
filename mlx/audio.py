"""Machine-listening helpers: an audio-folder loader, log-mel features and synthetic instruments.

The path from a folder of recordings to a tuned classifier::

    clips, labels, groups, report = load_audio_folder("my_sounds", sr=16000, duration=1.0)
    pipe = make_pipeline(LogMelFeatures(sr=16000), StandardScaler(), MLPClassifier())

:func:`load_audio_folder` and :func:`write_audio_folder` need soundfile, :class:`LogMelFeatures`
and resampling need librosa: both come with the ``audio`` extra
(``pip install "mlx-experiments[audio]"``) and are imported on first use, so ``import mlx.audio``
and :func:`make_instrument_sounds` (numpy only) work without it.
"""

import importlib
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "AudioFolder",
    "AudioFolderReport",
    "LogMelFeatures",
    "SkippedFile",
    "load_audio_folder",
    "make_instrument_sounds",
    "write_audio_folder",
]

_INSTALL_HINT = 'pip install "mlx-experiments[audio]"'


def _import_audio_dependency(name):
    """Import soundfile or librosa, or say which extra provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"{name} is needed for mlx.audio's file and feature functions but could not be "
            f"imported ({exc}); install the audio extra: {_INSTALL_HINT}"
        ) from exc


# ---------------------------------------------------------------------------------------------
# Loading a folder of audio files
# ---------------------------------------------------------------------------------------------

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3")


class SkippedFile(NamedTuple):
    """A file :func:`load_audio_folder` left out, and why.

    ``reason`` is one of "empty", "no audio frames", "unreadable", "silent" and "not audio";
    ``detail`` says more (the decoder's error, the peak amplitude, ...).
    """

    path: Path
    reason: str
    detail: str


@dataclass
class AudioFolderReport:
    """What :func:`load_audio_folder` did with every file it found.

    Attributes
    ----------
    sr : int
        Sample rate of the returned clips.
    n_loaded : int
        Number of clips returned.
    skipped : list of SkippedFile
        Files left out (empty, unreadable, silent, not audio), each with its path and reason.
    resampled : list of pathlib.Path
        Files read at another sample rate and resampled to ``sr``.
    n_padded, n_cut : int
        Clips zero-padded, or cut, to the requested duration.
    """

    sr: int
    n_loaded: int = 0
    skipped: list = field(default_factory=list)
    resampled: list = field(default_factory=list)
    n_padded: int = 0
    n_cut: int = 0

    def __str__(self):
        lines = [
            f"{self.n_loaded} clips loaded at {self.sr} Hz ({len(self.resampled)} resampled, "
            f"{self.n_padded} padded, {self.n_cut} cut); {len(self.skipped)} files skipped"
        ]
        lines += [f"  skipped {s.path}: {s.reason} ({s.detail})" for s in self.skipped]
        return "\n".join(lines)


class AudioFolder(NamedTuple):
    """Result of :func:`load_audio_folder`; unpacks as ``clips, labels, groups, report``."""

    clips: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    report: AudioFolderReport


def _class_files(root):
    """(label, path) for every non-hidden file below each class folder, in sorted order."""
    class_dirs = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )
    if not class_dirs:
        raise ValueError(
            f"No class folders in {str(root)!r}: expected one sub-folder per class holding "
            "its audio files (root/<label>/<file>.wav)."
        )
    return [
        (class_dir.name, path)
        for class_dir in class_dirs
        for path in sorted(class_dir.rglob("*"))
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(class_dir).parts)
    ]


def _read_mono(sf, path, seconds, silence_threshold):
    """(mono float32 signal, sample rate), or a SkippedFile saying why the file is left out.

    Reads at most ``seconds`` (all when None), so long recordings cost only the part kept.
    """
    if os.path.getsize(path) == 0:
        return SkippedFile(path, "empty", "0 bytes")
    try:
        with sf.SoundFile(path) as audio:
            rate = audio.samplerate
            frames = -1 if seconds is None else math.ceil(seconds * rate) + 1
            data = audio.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports corrupt files through several exception types
        return SkippedFile(path, "unreadable", f"{type(exc).__name__}: {exc}")
    if data.shape[0] == 0:
        return SkippedFile(path, "no audio frames", "zero-length audio")
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    peak = float(np.max(np.abs(signal)))
    if not np.isfinite(peak):
        return SkippedFile(path, "unreadable", "non-finite sample values")
    if peak <= silence_threshold:
        return SkippedFile(
            path, "silent", f"peak amplitude {peak:.3g} <= silence_threshold={silence_threshold}"
        )
    return np.ascontiguousarray(signal), rate


def _fit_length(signal, n_samples, report):
    if signal.shape[0] > n_samples:
        report.n_cut += 1
        return signal[:n_samples]
    if signal.shape[0] < n_samples:
        report.n_padded += 1
        return np.pad(signal, (0, n_samples - signal.shape[0]))
    return signal


def load_audio_folder(
    root, sr=None, duration=None, *, resample=True, silence_threshold=1e-4, warn=True
):
    """Load a folder of audio clips with one sub-folder per class.

    The layout of common sound data sets: ``root/<label>/<recording>-<take>.wav``. Every file
    below a class folder (sub-folders included) is considered, in sorted order, so the result is
    deterministic. Files are read with soundfile (WAV at any bit depth, FLAC, OGG, ...), channels
    are averaged to mono and samples returned as float32 in [-1, 1].

    Parameters
    ----------
    root : str or path-like
        Folder holding one sub-folder per class. Files directly in ``root``, and folders or files
        whose names start with ``.`` (and folders starting with ``_``), are not part of the
        layout and are ignored.
    sr : int, default=None
        Sample rate of the returned clips. None takes the rate of the first readable file (in
        sorted order) and holds every other file to it.
    duration : float, default=None
        Length of the returned clips in seconds: shorter clips are zero-padded at the end,
        longer ones cut. None requires all clips to have the same length already.
    resample : bool, default=True
        What to do with a file at another sample rate: True resamples it to ``sr`` with
        ``librosa.resample`` (listed in ``report.resampled``); False raises a ``ValueError``
        naming the file.
    silence_threshold : float, default=1e-4
        A file whose peak absolute amplitude (after mixing to mono) is at most this value is
        skipped as silent. 1e-4 is -80 dBFS, about 3 steps of 16-bit PCM.
    warn : bool, default=True
        Emit a ``UserWarning`` summarising skipped files when any were skipped.

    Returns
    -------
    result : AudioFolder
        A named tuple ``(clips, labels, groups, report)``:

        - ``clips``: float32 array of shape (n_clips, n_samples);
        - ``labels``: str array of shape (n_clips,), the class folder names;
        - ``groups``: str array of shape (n_clips,), each file stem's prefix before its first
          ``-`` (the whole stem if it has none), so clips cut from one recording can be kept
          together by a grouped split;
        - ``report``: :class:`AudioFolderReport`, with every skipped file and its reason.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist or is not a folder.
    ValueError
        If ``root`` has no class folders, no file could be read, a file has another sample rate
        and ``resample=False``, or clips differ in length and ``duration`` is None.
    ImportError
        If soundfile (or librosa, when resampling) is missing.

    Notes
    -----
    Empty (0-byte) files, files libsndfile cannot decode, files with no audio frames and silent
    files are skipped, never silently: each is listed in ``report.skipped`` and a warning
    counts them by reason. Files with an extension that is not an audio one (see
    ``AUDIO_EXTENSIONS``) are listed as skipped too. With ``duration`` set, only the first
    ``duration`` seconds of each file are read, and the silence test applies to them.

    Examples
    --------
    >>> import tempfile
    >>> from mlx.audio import load_audio_folder, make_instrument_sounds, write_audio_folder
    >>> clips, labels, groups = make_instrument_sounds(4, random_state=0)
    >>> root = write_audio_folder(tempfile.mkdtemp(), clips, labels, groups, sr=16000)
    >>> clips, labels, groups, report = load_audio_folder(root, duration=0.5)
    >>> clips.shape, clips.dtype, report.sr, len(report.skipped)
    ((24, 8000), dtype('float32'), 16000, 0)
    """
    if sr is not None and (not isinstance(sr, Integral) or sr <= 0):
        raise ValueError(f"sr must be a positive integer or None, got sr={sr!r}.")
    if duration is not None and (not isinstance(duration, Real) or not duration > 0):
        raise ValueError(
            f"duration must be a positive number of seconds or None, got {duration!r}."
        )
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"Audio folder {str(root)!r} does not exist.")
    if not root.is_dir():
        raise FileNotFoundError(f"Audio folder {str(root)!r} is not a directory.")
    files = _class_files(root)
    sf = _import_audio_dependency("soundfile")

    report = AudioFolderReport(sr=sr)
    signals, paths, labels, groups = [], [], [], []
    for label, path in files:
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            detail = f"extension {path.suffix!r} not in AUDIO_EXTENSIONS"
            report.skipped.append(SkippedFile(path, "not audio", detail))
            continue
        read = _read_mono(sf, path, duration, silence_threshold)
        if isinstance(read, SkippedFile):
            report.skipped.append(read)
            continue
        signal, rate = read
        if report.sr is None:
            report.sr = rate
        if rate != report.sr:
            if not resample:
                raise ValueError(
                    f"{str(path)!r} has sample rate {rate} Hz, expected {report.sr} Hz "
                    f"({'given as sr' if sr is not None else 'the rate of the first file'}); "
                    "pass resample=True to resample it."
                )
            librosa = _import_audio_dependency("librosa")
            signal = librosa.resample(signal, orig_sr=rate, target_sr=report.sr)
            report.resampled.append(path)
        if duration is not None:
            signal = _fit_length(signal, round(duration * report.sr), report)
        signals.append(signal)
        paths.append(path)
        labels.append(label)
        groups.append(path.stem.split("-", 1)[0])

    if warn and report.skipped:
        counts = Counter(skipped.reason for skipped in report.skipped)
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
        warnings.warn(
            f"load_audio_folder skipped {len(report.skipped)} of {len(files)} files under "
            f"{str(root)!r} ({summary}); see report.skipped for each path and reason.",
            UserWarning,
            stacklevel=2,
        )
    if not signals:
        raise ValueError(
            f"No readable audio in {str(root)!r}: {len(files)} files found, all skipped.\n"
            + str(report)
        )

    lengths = np.array([signal.shape[0] for signal in signals])
    if lengths.min() != lengths.max():
        shortest, longest = int(lengths.argmin()), int(lengths.argmax())
        raise ValueError(
            f"Clips differ in length ({lengths.min()} to {lengths.max()} samples at "
            f"{report.sr} Hz; shortest {str(paths[shortest])!r}, longest "
            f"{str(paths[longest])!r}); pass duration= (seconds) to pad or cut them."
        )
    clips = np.stack(signals).astype(np.float32, copy=False)
    report.n_loaded = len(signals)
    return AudioFolder(clips, np.array(labels), np.array(groups), report)


def write_audio_folder(root, clips, labels, groups, sr, *, format="WAV", subtype=None):
    """Write clips as files in the layout :func:`load_audio_folder` reads.

    Clip ``i`` goes to ``root/{labels[i]}/{groups[i]}-{i:04d}.{ext}``.

    Parameters
    ----------
    root : str or path-like
        Folder to write into (created if missing).
    clips : array-like of shape (n_clips, n_samples)
        Mono clips with samples in [-1, 1].
    labels : array-like of shape (n_clips,)
        Class of each clip; becomes its folder name.
    groups : array-like of shape (n_clips,)
        Recording of each clip; becomes its file-name prefix, so it must not contain ``-``.
    sr : int
        Sample rate.
    format : str, default="WAV"
        A soundfile format: "WAV", "FLAC", "OGG", ...
    subtype : str, default=None
        A soundfile subtype ("PCM_16", "PCM_24", "FLOAT", "VORBIS", ...); None is the format's
        default.

    Returns
    -------
    root : pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> from mlx.audio import make_instrument_sounds, write_audio_folder
    >>> clips, labels, groups = make_instrument_sounds(2, random_state=0)
    >>> root = write_audio_folder(tempfile.mkdtemp(), clips, labels, groups, sr=16000)
    >>> sorted(p.name for p in root.iterdir())
    ['bell', 'clarinet', 'drum', 'flute', 'piano', 'violin']
    """
    sf = _import_audio_dependency("soundfile")
    clips = np.asarray(clips)
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups).astype(str)
    if clips.ndim != 2 or not (clips.shape[0] == labels.shape[0] == groups.shape[0]):
        raise ValueError(
            f"Expected clips of shape (n_clips, n_samples) with one label and group per clip, "
            f"got clips {clips.shape}, labels {labels.shape}, groups {groups.shape}."
        )
    bad = [g for g in np.unique(groups) if "-" in g or not g]
    if bad:
        raise ValueError(
            f"Groups become file-name prefixes and must be non-empty without '-': {bad[:5]}."
        )
    if subtype not in ("FLOAT", "DOUBLE") and clips.size and np.abs(clips).max() > 1:
        raise ValueError(
            f"Clip samples reach {np.abs(clips).max():.3g}, beyond [-1, 1] that {format} "
            f"{subtype or ''} can hold: scale the clips first."
        )
    root = Path(root)
    extension = {"OGG": "ogg", "WAVEX": "wav"}.get(format.upper(), format.lower())
    for label in np.unique(labels):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i, (clip, label, group) in enumerate(zip(clips, labels, groups, strict=True)):
        path = root / label / f"{group}-{i:04d}.{extension}"
        sf.write(path, clip, sr, format=format, subtype=subtype)
    return root


# ---------------------------------------------------------------------------------------------
# Synthetic instrument sounds
# ---------------------------------------------------------------------------------------------

INSTRUMENTS = ("flute", "clarinet", "violin", "piano", "drum", "bell")

# Partial frequencies of a struck bell relative to its nominal (hum, prime, tierce, quint, ...)
# and of a circular membrane's first modes: the inharmonic spectra that make them recognisable.
_BELL_RATIOS = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01, 4.1, 5.4])
_MEMBRANE_RATIOS = np.array([1.0, 1.59, 2.14, 2.3, 2.65, 2.92, 3.16, 3.5])
_N_HARMONICS = 20


@dataclass
class _Voice:
    """Synthesis parameters of a batch of clips; arrays have one row per clip."""

    f0: np.ndarray  # (n, 1) Hz
    ratios: np.ndarray  # (n, K) partial frequency / f0
    amps: np.ndarray  # (n, K)
    decays: np.ndarray  # (n, K) 1/s; 0 sustains
    attack: np.ndarray  # (n, 1) s
    noise_level: np.ndarray  # (n, 1) breath, bow or strike noise relative to the partials
    noise_band: np.ndarray  # (n, 2) Hz, pass band of that noise
    noise_decay: np.ndarray  # (n, 1) 1/s; 0 sustains (breath, bow), large for strikes
    vibrato_depth: np.ndarray = 0.0  # (n, 1) relative frequency deviation
    vibrato_rate: np.ndarray = 1.0  # (n, 1) Hz
    glide: np.ndarray = 0.0  # (n, 1) relative pitch drop at the onset (membranes)
    formants: tuple = ()  # ((n, 1) centre Hz, gain) body resonances, fixed whatever the pitch


def _per_recording(rng, recording, low, high, log=False, shape=()):
    """Draw one value per recording (uniform, or log-uniform) and spread it to its clips."""
    n_recordings = recording.max() + 1
    if log:
        values = np.exp(rng.uniform(np.log(low), np.log(high), (n_recordings, *shape)))
    else:
        values = rng.uniform(low, high, (n_recordings, *shape))
    values = values[recording]
    return values if shape else values[:, None]


def _voice(name, rng, recording):
    """Parameters of the clips of one instrument; the clips of a recording share them."""
    n = recording.shape[0]
    k = np.arange(1, _N_HARMONICS + 1, dtype=float)
    harmonics = np.broadcast_to(k, (n, _N_HARMONICS))
    sustained = np.zeros((n, _N_HARMONICS))

    def draw(low, high, log=False, shape=()):
        return _per_recording(rng, recording, low, high, log, shape)

    def band(low, high):
        return np.column_stack([draw(*low), draw(*high)])

    # Each recording gets its own timbre: partial amplitudes scattered around the instrument's.
    jitter = np.exp(draw(-0.15, 0.15, shape=(_N_HARMONICS,)))
    if name == "flute":
        return _Voice(
            f0=draw(260, 1400, log=True),
            ratios=harmonics,
            amps=jitter * np.where(k == 1, 1.0, 0.35 * k**-2.5),
            decays=sustained,
            attack=draw(0.05, 0.15),
            vibrato_depth=draw(0.003, 0.01),
            vibrato_rate=draw(4, 6),
            noise_level=draw(0.2, 0.4),
            noise_band=band((1000, 2000), (5000, 7500)),
            noise_decay=np.zeros((n, 1)),
        )
    if name == "clarinet":
        return _Voice(
            f0=draw(140, 900, log=True),
            ratios=harmonics,
            amps=jitter * np.where(k % 2 == 1, 1 / k, draw(0.0, 0.08) / k),
            decays=sustained,
            attack=draw(0.02, 0.06),
            vibrato_depth=draw(0.0, 0.002),
            vibrato_rate=draw(4, 6),
            noise_level=draw(0.01, 0.05),
            noise_band=band((300, 800), (2000, 4000)),
            noise_decay=np.zeros((n, 1)),
            formants=((draw(1100, 1600), 3.0),),
        )
    if name == "violin":
        return _Voice(
            f0=draw(190, 1300, log=True),
            ratios=harmonics,
            amps=jitter / k,
            decays=sustained,
            attack=draw(0.04, 0.12),
            vibrato_depth=draw(0.005, 0.015),
            vibrato_rate=draw(5, 7),
            noise_level=draw(0.05, 0.12),
            noise_band=band((2000, 3000), (6000, 7500)),
            noise_decay=np.zeros((n, 1)),
            formants=((draw(400, 500), 2.0), (draw(2500, 3200), 4.0)),
        )
    if name == "piano":
        stiffness = draw(1e-4, 8e-4, log=True)
        return _Voice(
            f0=draw(55, 1000, log=True),
            ratios=k * np.sqrt(1 + stiffness * k**2),
            amps=jitter * k**-1.3,
            decays=draw(4.0, 10.0) * (1 + 0.4 * k),
            attack=draw(0.002, 0.006),
            noise_level=draw(0.05, 0.15),
            noise_band=band((100, 400), (2000, 4000)),
            noise_decay=draw(60, 150),
        )
    if name == "bell":
        n_partials = _BELL_RATIOS.shape[0]
        ratios = _BELL_RATIOS * np.exp(draw(-0.02, 0.02, shape=(n_partials,)))
        return _Voice(
            f0=draw(150, 800, log=True),
            ratios=ratios,
            amps=jitter[:, :n_partials] * draw(0.3, 1.0, shape=(n_partials,)),
            decays=draw(1.0, 2.0) * ratios**1.5,
            attack=draw(0.001, 0.003),
            noise_level=draw(0.1, 0.3),
            noise_band=band((1000, 3000), (6000, 7500)),
            noise_decay=draw(80, 200),
        )
    if name == "drum":
        n_modes = _MEMBRANE_RATIOS.shape[0]
        return _Voice(
            f0=draw(50, 250, log=True),
            ratios=np.broadcast_to(_MEMBRANE_RATIOS, (n, n_modes)),
            amps=jitter[:, :n_modes] * _MEMBRANE_RATIOS**-1.5,
            decays=draw(8, 25) * _MEMBRANE_RATIOS**0.5,
            attack=draw(0.001, 0.003),
            glide=draw(0.1, 0.5),
            noise_level=draw(0.5, 1.5),
            noise_band=band((200, 500), (4000, 7500)),
            noise_decay=draw(15, 50),
        )
    raise ValueError(f"Unknown instrument {name!r}; expected one of {INSTRUMENTS}.")


def _formant_gain(frequency, formants):
    """1 plus a bump of the given gain around each resonance, one octave wide (log scale)."""
    gain = np.ones_like(frequency)
    for centre, height in formants:
        gain += height * np.exp(-0.5 * (np.log2(frequency / centre) / 0.5) ** 2)
    return gain


def _band_noise(rng, shape, band, sr):
    """White noise band-passed per clip in the frequency domain (no per-sample recursion)."""
    spectrum = np.fft.rfft(rng.standard_normal(shape), axis=1)
    freqs = np.fft.rfftfreq(shape[1], d=1 / sr)
    spectrum *= (freqs >= band[:, :1]) & (freqs <= band[:, 1:])
    noise = np.fft.irfft(spectrum, n=shape[1], axis=1)
    return noise / (noise.std(axis=1, keepdims=True) + 1e-12)


def _render(voice, rng, t, onset, sr):
    """Sum of partials with vibrato, pitch glide and attack/decay envelopes, plus band noise."""
    n = voice.f0.shape[0]
    local_t = np.maximum(t - onset, 0.0)  # (n, n_samples): time since the note's onset
    started = t >= onset
    vibrato_phase = rng.uniform(0, 2 * np.pi, (n, 1))
    rate = np.maximum(voice.vibrato_rate, 1e-9)
    glide_tau = 0.04
    # Phase of a partial at ratio r: 2 pi r f0 times this warped time, the integral of the
    # instantaneous frequency f0 (1 + glide e^{-t/tau} + depth sin(2 pi rate t + phi)).
    warped_t = (
        local_t
        + voice.glide * glide_tau * (1 - np.exp(-local_t / glide_tau))
        - voice.vibrato_depth
        / (2 * np.pi * rate)
        * (np.cos(2 * np.pi * rate * local_t + vibrato_phase) - np.cos(vibrato_phase))
    )
    attack = np.minimum(local_t / voice.attack, 1.0)
    top_frequency = voice.f0 * voice.ratios * (1 + voice.glide + voice.vibrato_depth)
    # No partial above Nyquist (no aliasing); body resonances colour the partials.
    audible = voice.amps * (top_frequency < 0.45 * sr)
    audible = audible * _formant_gain(voice.f0 * voice.ratios, voice.formants)
    partial_phase = rng.uniform(0, 2 * np.pi, voice.ratios.shape)
    # float32 phases halve the cost of the loop (which visits only the clips where a partial is
    # audible); their rounding, ~6e-8 of the phase, is 0.01 rad for a 7 kHz partial after 2 s.
    warped_t = warped_t.astype(np.float32)
    tone = np.zeros_like(warped_t)
    angular = (2 * np.pi * voice.f0 * voice.ratios).astype(np.float32)
    for j in range(voice.ratios.shape[1]):
        rows = np.flatnonzero(audible[:, j])
        if rows.size == 0:
            continue
        partial = angular[rows, j : j + 1] * warped_t[rows]
        partial += partial_phase[rows, j : j + 1].astype(np.float32)
        np.sin(partial, out=partial)
        partial *= audible[rows, j : j + 1].astype(np.float32)
        if np.any(voice.decays[rows, j]):
            partial *= np.exp(-voice.decays[rows, j : j + 1] * local_t[rows]).astype(np.float32)
        tone[rows] += partial
    tone *= attack
    tone /= np.sqrt(np.mean(tone**2, axis=1, keepdims=True)) + 1e-12
    burst = _band_noise(rng, local_t.shape, voice.noise_band, sr)
    burst *= voice.noise_level * np.exp(-voice.noise_decay * local_t) * started
    return tone + burst.astype(np.float32)


def make_instrument_sounds(
    n_per_class=100,
    *,
    sr=16000,
    duration=0.5,
    noise=0.05,
    clips_per_recording=5,
    shuffle=True,
    random_state=None,
):
    """Synthetic notes of six instruments that differ the way real ones do.

    Each class has its own spectrum and envelope: flute (nearly sinusoidal, breathy, slow
    attack, vibrato), clarinet (odd harmonics), violin (all harmonics falling as 1/k, strong
    vibrato, bow noise), piano (hammer attack, decay faster for higher partials, stretched
    partials from string stiffness), drum (membrane modes, pitch drop, noise burst) and bell
    (inharmonic bell partials, long decay). Pitch ranges overlap, so pitch alone does not tell
    the instruments apart.

    Clips come in "recordings" of ``clips_per_recording`` notes that share one instrument
    timbre (partial amplitudes, vibrato, attack, noise colour) and a base pitch, each note
    within a third of it: a grouped split by ``groups`` keeps a recording's notes on one side,
    as a real data set cut from recordings needs. Loudness and onset time vary per clip.

    Parameters
    ----------
    n_per_class : int, default=100
        Clips per instrument.
    sr : int, default=16000
        Sample rate in Hz.
    duration : float, default=0.5
        Clip length in seconds.
    noise : float, default=0.05
        Standard deviation of added white noise relative to the RMS of each clip.
    clips_per_recording : int, default=5
        Notes per recording (the last recording of a class may have fewer).
    shuffle : bool, default=True
        Shuffle the clips; otherwise they come class by class, recording by recording.
    random_state : int, RandomState instance or None, default=None
        Seed of every random choice.

    Returns
    -------
    clips : ndarray of shape (6 * n_per_class, round(sr * duration)), float32
        Peak amplitude between 0.1 and 0.9.
    labels : ndarray of shape (6 * n_per_class,), str
        Instrument names (``mlx.audio.INSTRUMENTS``).
    groups : ndarray of shape (6 * n_per_class,), int
        Recording ids, unique across instruments.

    Examples
    --------
    >>> import numpy as np
    >>> from mlx.audio import make_instrument_sounds
    >>> clips, labels, groups = make_instrument_sounds(10, random_state=0)
    >>> clips.shape, clips.dtype, np.unique(labels)[:3].tolist(), np.unique(groups).size
    ((60, 8000), dtype('float32'), ['bell', 'clarinet', 'drum'], 12)
    """
    for value, name in ((n_per_class, "n_per_class"), (clips_per_recording, "clips_per_recording")):
        if not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={value!r}.")
    if not isinstance(sr, Integral) or sr < 1000:
        raise ValueError(f"sr must be an integer >= 1000 Hz, got sr={sr!r}.")
    n_samples = round(sr * duration)
    if n_samples < 1:
        raise ValueError(f"duration={duration!r} s at sr={sr} gives no samples.")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got noise={noise!r}.")
    rng = check_random_state(random_state)

    t = np.arange(n_samples) / sr
    recording = np.arange(n_per_class) // clips_per_recording
    n_recordings = int(recording[-1]) + 1
    clips, labels, groups = [], [], []
    for class_index, name in enumerate(INSTRUMENTS):
        voice = _voice(name, rng, recording)
        # Notes of a recording: up to 4 semitones either side of its base pitch.
        voice.f0 = voice.f0 * 2.0 ** (rng.randint(-4, 5, (n_per_class, 1)) / 12)
        onset = rng.uniform(0.0, min(0.05, duration / 4), (n_per_class, 1))
        signal = _render(voice, rng, t, onset, sr)
        signal += (
            noise
            * np.sqrt(np.mean(signal**2, axis=1, keepdims=True))
            * (rng.standard_normal(signal.shape))
        )
        peak = rng.uniform(0.1, 0.9, (n_per_class, 1))
        signal *= peak / (np.abs(signal).max(axis=1, keepdims=True) + 1e-12)
        clips.append(signal.astype(np.float32))
        labels.append(np.full(n_per_class, name))
        groups.append(class_index * n_recordings + recording)
    clips, labels, groups = np.concatenate(clips), np.concatenate(labels), np.concatenate(groups)
    if shuffle:
        order = rng.permutation(clips.shape[0])
        clips, labels, groups = clips[order], labels[order], groups[order]
    return clips, labels, groups


# ---------------------------------------------------------------------------------------------
# Log-mel features
# ---------------------------------------------------------------------------------------------

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
        librosa = _import_audio_dependency("librosa")
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
