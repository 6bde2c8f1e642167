"""Loading a folder of recordings (one sub-folder per class), and writing one."""

import functools
import itertools
import math
import os
import warnings
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from mlx.audio._deps import require
from mlx.audio._wav import read_wav

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

    sr: int | None  # None until a file could be read (with sr=None)
    n_loaded: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    resampled: list[Path] = field(default_factory=list)
    n_padded: int = 0
    n_cut: int = 0

    def __str__(self) -> str:
        lines = [
            f"{self.n_loaded} clips loaded at {self.sr} Hz ({len(self.resampled)} resampled, "
            f"{self.n_padded} padded, {self.n_cut} cut); {len(self.skipped)} files skipped"
        ]
        lines += [f"  skipped {s.path}: {s.reason} ({s.detail})" for s in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report in JSON types (paths as strings), for ``json.dump`` or a run artifact.

        Examples
        --------
        >>> import json
        >>> from pathlib import Path
        >>> report = AudioFolderReport(sr=16000, n_loaded=2, resampled=[Path("a/x-0.wav")])
        >>> json.dumps(report.to_dict()["resampled"])
        '["a/x-0.wav"]'
        """
        return {
            "sr": None if self.sr is None else int(self.sr),
            "n_loaded": int(self.n_loaded),
            "n_padded": int(self.n_padded),
            "n_cut": int(self.n_cut),
            "resampled": [str(path) for path in self.resampled],
            "skipped": [
                {"path": str(s.path), "reason": s.reason, "detail": s.detail} for s in self.skipped
            ],
        }


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


def _n_workers(n_jobs):
    """Threads for ``n_jobs`` (None and -1: every available core; -2: all but one; ...)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    available = available or 1
    if n_jobs is None:
        return available
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, Integral) or n_jobs == 0:
        raise ValueError(
            f"n_jobs must be a non-zero integer or None, got n_jobs={n_jobs!r}: 1 loads the "
            f"files one after another, None or -1 uses all {available} available cores, -2 all "
            "but one."
        )
    n_jobs = int(n_jobs)
    return n_jobs if n_jobs > 0 else max(available + 1 + n_jobs, 1)


def _frames(seconds, rate):
    """Frames to read for a clip of ``seconds`` (all: -1), one more to tell a longer file."""
    return -1 if seconds is None else math.ceil(seconds * rate) + 1


def _read_mono(sf, path, seconds, silence_threshold):
    """(mono float32 signal, sample rate), or a SkippedFile saying why the file is left out.

    Reads at most ``seconds`` (all when None), so long recordings cost only the part kept.
    """
    try:
        frames_at = functools.partial(_frames, seconds)
        read = read_wav(path, frames_at)
        if read is None:
            if os.path.getsize(path) == 0:
                return SkippedFile(path, "empty", "0 bytes")
            with sf.SoundFile(path) as audio:
                rate = audio.samplerate
                data = audio.read(frames_at(rate), dtype="float32", always_2d=True)
        else:
            data, rate = read
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


def _resample(signal, rate, sr):
    """``librosa.resample(signal, orig_sr=rate, target_sr=sr)``, sample for sample.

    librosa's default resampler is libsoxr at "soxr_hq", its output fixed to
    ceil(n * sr / rate) samples; calling soxr directly skips librosa's import (seconds) and its
    per-call checks, and releases the GIL, so threads resample in parallel.
    """
    soxr = require("soxr")
    n_out = math.ceil(signal.shape[0] * (sr / rate))  # librosa's expression, rounding included
    resampled = soxr.resample(signal, rate, sr, quality="soxr_hq")
    if resampled.shape[0] >= n_out:
        return resampled[:n_out]
    return np.pad(resampled, (0, n_out - resampled.shape[0]))


# Files each loading thread reads per task (see _in_order).
_FILES_PER_TASK = 32


class _Kept(NamedTuple):
    """A readable file whose samples went to output row ``row``."""

    row: int
    n_samples: int  # at the output rate, before padding or cutting to the duration
    resampled: bool


class _Loader(NamedTuple):
    """Reads one file, resamples it and writes it into its row of the output, in any thread."""

    sf: object
    duration: float | None
    silence_threshold: float
    resample: bool
    sr_given: bool

    def decode(self, path, sr):
        """(signal at ``sr`` (at its own rate when sr is None), its own rate, resampled?).

        Or the SkippedFile saying why it is left out.
        """
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            detail = f"extension {path.suffix!r} not in AUDIO_EXTENSIONS"
            return SkippedFile(path, "not audio", detail)
        read = _read_mono(self.sf, path, self.duration, self.silence_threshold)
        if isinstance(read, SkippedFile):
            return read
        signal, rate = read
        if sr is None or rate == sr:
            return signal, rate, False
        if not self.resample:
            raise ValueError(
                f"{str(path)!r} has sample rate {rate} Hz, expected {sr} Hz "
                f"({'given as sr' if self.sr_given else 'the rate of the first file'}); "
                "pass resample=True to resample it."
            )
        return _resample(signal, rate, sr), rate, True

    def store(self, clips, row, signal, resampled):
        """Write ``signal`` into ``clips[row]``, zero-padded or cut when a duration is set.

        Without a duration a clip of another length is not stored: the caller reports the
        lengths once every file is read.
        """
        n = signal.shape[0]
        if self.duration is not None or n == clips.shape[1]:
            kept = min(n, clips.shape[1])
            clips[row, :kept] = signal[:kept]
            clips[row, kept:] = 0
        return _Kept(row, n, resampled)

    def __call__(self, task):
        path, clips, row, sr = task
        decoded = self.decode(path, sr)
        if isinstance(decoded, SkippedFile):
            return decoded
        signal, _, resampled = decoded
        return self.store(clips, row, signal, resampled)


def _in_order(fn, items, n_workers, chunk=_FILES_PER_TASK):
    """Yield ``fn(item)`` for each item, in order, computed by ``n_workers`` threads.

    Each thread takes ``chunk`` items at a time: a file takes well under a millisecond, and
    handing out files one by one costs the threads more in scheduling and in waiting for the
    GIL than it saves. At most ``2 * n_workers`` chunks are submitted ahead of the one being
    yielded, so a long folder never queues more than that, and a failure stops the rest.
    """
    if n_workers == 1:
        yield from map(fn, items)
        return
    items = iter(items)
    chunks = iter(lambda: list(itertools.islice(items, chunk)), [])

    def run(part):
        return [fn(item) for item in part]

    with ThreadPoolExecutor(n_workers, thread_name_prefix="load_audio_folder") as pool:
        pending = deque(pool.submit(run, part) for part in itertools.islice(chunks, 2 * n_workers))
        try:
            while pending:
                results = pending.popleft().result()
                pending.extend(pool.submit(run, part) for part in itertools.islice(chunks, 1))
                yield from results
        finally:
            for future in pending:
                future.cancel()


def load_audio_folder(
    root: str | os.PathLike[str],
    sr: int | None = None,
    duration: float | None = None,
    *,
    resample: bool = True,
    silence_threshold: float = 1e-4,
    n_jobs: int | None = None,
    warn: bool = True,
) -> AudioFolder:
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
        What to do with a file at another sample rate: True resamples it to ``sr`` with libsoxr
        at high quality, sample for sample what ``librosa.resample`` returns (listed in
        ``report.resampled``); False raises a ``ValueError`` naming the file.
    silence_threshold : float, default=1e-4
        A file whose peak absolute amplitude (after mixing to mono) is at most this value is
        skipped as silent. 1e-4 is -80 dBFS, about 3 steps of 16-bit PCM.
    n_jobs : int, default=None
        Number of threads that read and resample files at the same time. None and -1 use every
        available core (unlike scikit-learn, where None means 1, as in mlx's nearest-neighbour
        estimators); -2 all but one, and so on; 1 reads the files one after another in the
        calling thread. The result is the same for any value.
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
        and ``resample=False``, clips differ in length and ``duration`` is None, or ``n_jobs``
        is 0 or not an integer.
    ImportError
        If soundfile (or soxr, when resampling) is missing.

    Notes
    -----
    Empty (0-byte) files, files libsndfile cannot decode, files with no audio frames and silent
    files are skipped, never silently: each is listed in ``report.skipped`` and a warning
    counts them by reason. Files with an extension that is not an audio one (see
    ``AUDIO_EXTENSIONS``) are listed as skipped too. With ``duration`` set, only the first
    ``duration`` seconds of each file are read, and the silence test applies to them: an hour
    long recording costs one clip's memory and time.

    Plain WAV files (16, 24 and 32-bit PCM, 32 and 64-bit float) are read with numpy, sample
    for sample what soundfile returns, without libsndfile's cost of opening a file (more than
    resampling a one-second clip); every other file, and any WAV file with something unusual
    in its header, goes through soundfile.

    Files are decoded and resampled in ``n_jobs`` threads (numpy's reads, libsndfile and libsoxr
    release the GIL), each writing its clip straight into its row of the returned array; beyond
    that array, only the files being read at the moment are held in memory. Clips, labels,
    groups and the report come out in the same order, bit for bit, whatever ``n_jobs`` is.

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
    n_workers = _n_workers(n_jobs)
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"Audio folder {str(root)!r} does not exist.")
    if not root.is_dir():
        raise FileNotFoundError(f"Audio folder {str(root)!r} is not a directory.")
    files = _class_files(root)
    loader = _Loader(require("soundfile"), duration, silence_threshold, resample, sr is not None)
    report = AudioFolderReport(sr=sr)

    # The first readable file fixes the rate (when sr is None) and the clip length (when
    # duration is None), hence the output's shape: it is read alone, before the others.
    first = len(files)
    decoded: Any = None  # (signal, rate, resampled) of the first readable file, if any
    for i, (_, path) in enumerate(files):
        decoded = loader.decode(path, report.sr)
        if not isinstance(decoded, SkippedFile):
            first = i
            break
        report.skipped.append(decoded)

    kept = []  # (label, path, _Kept) of each clip, in file order
    if first < len(files):
        signal, rate, resampled = decoded
        if report.sr is None:
            report.sr = rate
        n_samples = signal.shape[0] if duration is None else round(duration * report.sr)
        # One row per audio file from the first readable one on: rows of skipped files are
        # never written (so never paged in) and are squeezed out at the end.
        is_audio = [path.suffix.lower() in AUDIO_EXTENSIONS for _, path in files[first:]]
        clips = np.empty((sum(is_audio), n_samples), dtype=np.float32)
        rows = np.cumsum(is_audio) - 1
        tasks = [
            (path, clips, int(row), report.sr)
            for (_, path), row in zip(files[first:], rows, strict=True)
        ]
        first_result = loader.store(clips, 0, signal, resampled)
        del signal, decoded  # only the files being read stay in memory
        parallel = _in_order(loader, tasks[1:], n_workers)
        with closing(parallel):
            results = itertools.chain([first_result], parallel)
            for (label, path), result in zip(files[first:], results, strict=True):
                if isinstance(result, SkippedFile):
                    report.skipped.append(result)
                    continue
                if result.resampled:
                    report.resampled.append(path)
                if duration is not None:
                    report.n_cut += result.n_samples > n_samples
                    report.n_padded += result.n_samples < n_samples
                kept.append((label, path, result))

    if warn and report.skipped:
        counts = Counter(skipped.reason for skipped in report.skipped)
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
        warnings.warn(
            f"load_audio_folder skipped {len(report.skipped)} of {len(files)} files under "
            f"{str(root)!r} ({summary}); see report.skipped for each path and reason.",
            UserWarning,
            stacklevel=2,
        )
    if not kept:
        raise ValueError(
            f"No readable audio in {str(root)!r}: {len(files)} files found, all skipped.\n"
            + str(report)
        )

    lengths = np.array([result.n_samples for _, _, result in kept])
    if duration is None and lengths.min() != lengths.max():
        shortest, longest = int(lengths.argmin()), int(lengths.argmax())
        raise ValueError(
            f"Clips differ in length ({lengths.min()} to {lengths.max()} samples at "
            f"{report.sr} Hz; shortest {str(kept[shortest][1])!r}, longest "
            f"{str(kept[longest][1])!r}); pass duration= (seconds) to pad or cut them."
        )
    # Rows only move up (row >= its clip's index), so moving them in file order is safe.
    for index, (_, _, result) in enumerate(kept):
        if result.row != index:
            clips[index] = clips[result.row]
    if len(kept) < clips.shape[0]:
        # Shrinks the buffer in place; no view of it survives the loading above.
        clips.resize((len(kept), clips.shape[1]), refcheck=False)
    report.n_loaded = len(kept)
    labels = np.array([label for label, _, _ in kept])
    groups = np.array([path.stem.split("-", 1)[0] for _, path, _ in kept])
    return AudioFolder(clips, labels, groups, report)


def write_audio_folder(
    root: str | os.PathLike[str],
    clips: ArrayLike,
    labels: ArrayLike,
    groups: ArrayLike,
    sr: int,
    *,
    format: str = "WAV",
    subtype: str | None = None,
) -> Path:
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
