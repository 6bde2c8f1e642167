"""Loading a folder of recordings (one sub-folder per class), and writing one."""

import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mlx.audio._deps import require

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
    sf = require("soundfile")

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
            librosa = require("librosa")
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
    sf = require("soundfile")
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
