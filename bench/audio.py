"""Loading a folder of audio files: load_audio_folder on threads against serial loading.

2,400 one-second WAV files (PCM_16) at 22.05 kHz, written by ``make_instrument_sounds`` and
``write_audio_folder`` into a temporary folder, loaded as
``load_audio_folder(root, sr=16000, duration=1.0)`` (every file resampled to 16 kHz), against:

  (a) the same function with ``n_jobs=1``: the same code, one file after another;
  (b) a plain serial loop a user would write: ``sorted(glob)``, ``soundfile.read``,
      ``soxr.resample(..., quality="soxr_hq")``, ``np.stack``;
  (c) the loader as it was before it read files in parallel (mlx/audio/folder.py at commit
      ``BEFORE_PARALLEL``, read through ``git show``; the row is left out where git or that
      commit is not available). Target from issue 18: ours at most 0.5x this row.

Every variant is checked to return the same clips, bit for bit, before anything is timed. The
files are read from the page cache (they were just written), the same for every variant. Each
row times reference and ours back to back, alternating which goes first, and reports medians
(bench/_harness.py): on a machine shared with other work the ratios still move by +-0.1 or
more between runs, and threads only pay off when the cores are actually free.

Run: ``python bench/audio.py [--n-files 2400] [--repeats 5] [--n-jobs N]``.
"""

import argparse
import collections
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import HEADER, Case, format_row, measure  # noqa: E402

from mlx.audio import load_audio_folder, make_instrument_sounds, write_audio_folder  # noqa: E402

BEFORE_PARALLEL = "d799549ded6a51dd1a740b7295ef68218f3542fd"
FILE_SR, SR, DURATION = 22050, 16000, 1.0
REPO = Path(__file__).resolve().parent.parent


def _write_data(root, n_files):
    n_per_class = -(-n_files // 6)  # six instruments
    clips, labels, groups = make_instrument_sounds(
        n_per_class, sr=FILE_SR, duration=DURATION, random_state=0
    )
    write_audio_folder(root, clips[:n_files], labels[:n_files], groups[:n_files], sr=FILE_SR)


def _plain_loop(root):
    import soundfile as sf
    import soxr

    clips = []
    for path in sorted(root.glob("*/*.wav")):
        data, rate = sf.read(path, dtype="float32")
        clips.append(soxr.resample(data, rate, SR, quality="soxr_hq"))
    return np.stack(clips)


def _loader_before_parallel():
    """load_audio_folder as of BEFORE_PARALLEL, or None where git cannot show it."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BEFORE_PARALLEL}:mlx/audio/folder.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp(prefix="mlx-bench-audio-")) / "folder_before_parallel.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("folder_before_parallel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_audio_folder


def _rms(clips):
    return float(np.sqrt(np.mean(np.square(clips, dtype=np.float64))))


def _cpu_timed(fn, name, cpu):
    """fn, appending the process CPU time (every thread) of each call to cpu[name]."""

    def timed():
        start = time.process_time()
        out = fn()
        cpu[name].append(time.process_time() - start)
        return out

    return timed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-files", type=int, default=2400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=None, help="ours (default: every core)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mlx-bench-audio-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        _write_data(root, args.n_files)
        print(f"{args.n_files} files written in {time.perf_counter() - start:.1f} s", flush=True)

        cpu = collections.defaultdict(list)  # variant -> CPU seconds of each timed call
        ours_name = "n_jobs=None" if args.n_jobs is None else f"n_jobs={args.n_jobs}"
        variants = {
            ours_name: lambda: load_audio_folder(root, SR, DURATION, n_jobs=args.n_jobs).clips,
            "n_jobs=1": lambda: load_audio_folder(root, SR, DURATION, n_jobs=1).clips,
            "soundfile+soxr loop": lambda: _plain_loop(root),
        }
        before = _loader_before_parallel()
        if before is None:
            print(f"(git show {BEFORE_PARALLEL[:7]} failed: the row against it is left out)")
        else:
            variants[f"loader at {BEFORE_PARALLEL[:7]}"] = lambda: before(root, SR, DURATION)[0]

        expected = variants[ours_name]()
        assert expected.shape == (args.n_files, round(SR * DURATION))
        for name, variant in variants.items():
            if not np.array_equal(variant(), expected):
                raise SystemExit(f"{name} returns other clips than load_audio_folder")
        print("every variant returns the same clips, bit for bit\n", flush=True)

        timed = {name: _cpu_timed(fn, name, cpu) for name, fn in variants.items()}
        print(HEADER, flush=True)
        for name in list(variants)[1:]:
            case = Case(
                name=f"load_audio_folder({ours_name}) {args.n_files} x 1 s WAV 22.05->16 kHz",
                ours=timed[ours_name],
                reference=timed[name],
                quality=_rms,
                quality_name="clip RMS",
                reference_name=name,
                repeats=args.repeats,
            )
            print(format_row(measure(case)), flush=True)

        # The target is about wall time. CPU time (every thread of this process) is the work
        # each variant does, whatever share of the cores a busy machine gave it: on free cores
        # the threaded loader's wall time approaches its CPU time / the number of cores.
        print("\n| variant | median CPU s (all threads) |\n|---|---|")
        for name, seconds in cpu.items():
            print(f"| {name} | {statistics.median(seconds):.3f} |")


if __name__ == "__main__":
    main()
