"""load_audio_folder and write_audio_folder on files written here: formats, bad files, the report,
parallel loading (the same result as serial, bit for bit) and long files read only as far as kept.
"""

import json
import sys
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from mlx.audio import load_audio_folder, make_instrument_sounds, write_audio_folder
from mlx.audio._wav import read_wav
from mlx.audio.folder import _resample

sf = pytest.importorskip("soundfile")

SR = 16000


def _tone(freq, seconds=0.5, sr=SR, amplitude=0.5):
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path, data, sr=SR, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr, **kwargs)
    return path


def _assert_same_load(a, b):
    """Two load_audio_folder results are identical: clips bit for bit, labels, groups, report."""
    assert a.clips.dtype == b.clips.dtype == np.float32
    assert a.clips.flags.c_contiguous and b.clips.flags.c_contiguous
    assert_array_equal(a.clips, b.clips, strict=True)
    assert_array_equal(a.labels, b.labels, strict=True)
    assert_array_equal(a.groups, b.groups, strict=True)
    assert a.report == b.report


# --- formats, channels, rates ----------------------------------------------------------------

FORMATS = [
    ("WAV", "PCM_16", "wav", 1e-4),
    ("WAV", "PCM_24", "wav", 1e-6),
    ("WAV", "PCM_32", "wav", 1e-7),
    ("WAV", "FLOAT", "wav", 0.0),
    ("FLAC", "PCM_16", "flac", 1e-4),
    ("FLAC", "PCM_24", "flac", 1e-6),
    ("OGG", "VORBIS", "ogg", None),  # lossy: compared by spectrum below
]


@pytest.mark.parametrize(("fmt", "subtype", "ext", "atol"), FORMATS)
def test_reads_each_format_and_bit_depth(tmp_path, fmt, subtype, ext, atol):
    if subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"libsndfile here cannot write {fmt}/{subtype}")
    a, b = _tone(440), _tone(1000, amplitude=0.3)
    _write(tmp_path / "low" / f"recA-0.{ext}", a, format=fmt, subtype=subtype)
    _write(tmp_path / "high" / f"recB-0.{ext}", b, format=fmt, subtype=subtype)

    clips, labels, groups, report = load_audio_folder(tmp_path)

    assert clips.dtype == np.float32 and clips.shape == (2, a.size)
    assert_array_equal(labels, ["high", "low"])
    assert_array_equal(groups, ["recB", "recA"])
    assert report.sr == SR and report.n_loaded == 2 and report.skipped == []
    if atol is not None:
        assert_allclose(clips, [b, a], atol=atol, rtol=0)
    else:
        peaks = np.abs(np.fft.rfft(clips, axis=1)).argmax(axis=1) * SR / a.size
        assert_allclose(peaks, [1000, 440], atol=4)


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = _tone(440), _tone(660, amplitude=0.2)
    _write(tmp_path / "c" / "r-0.wav", np.column_stack([left, right]), subtype="FLOAT")
    clips, *_ = load_audio_folder(tmp_path)
    assert clips.shape == (1, left.size)
    assert_allclose(clips[0], (left + right) / 2, atol=1e-7)


def test_other_sample_rate_is_resampled_when_asked(tmp_path):
    _write(tmp_path / "a" / "r1-0.wav", _tone(440), subtype="FLOAT")
    odd = _write(tmp_path / "b" / "r2-0.wav", _tone(1000, sr=8000), sr=8000, subtype="FLOAT")

    clips, _, _, report = load_audio_folder(tmp_path, duration=0.5)

    assert report.sr == SR and report.resampled == [odd]
    assert clips.shape == (2, SR // 2)
    peak_hz = np.abs(np.fft.rfft(clips[1])).argmax() * SR / clips.shape[1]
    assert abs(peak_hz - 1000) <= 4  # the tone keeps its pitch at the new rate


@pytest.mark.parametrize(("n", "rate", "sr"), [(22050, 22050, 16000), (4001, 8000, 16000)])
def test_resampling_is_librosa_resample_sample_for_sample(n, rate, sr):
    # The loader calls libsoxr directly; it must return what it returned through librosa.
    librosa = pytest.importorskip("librosa")
    signal = np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32)
    expected = librosa.resample(signal, orig_sr=rate, target_sr=sr)
    assert_array_equal(_resample(signal, rate, sr), expected, strict=True)


def test_other_sample_rate_is_rejected_naming_the_file(tmp_path):
    _write(tmp_path / "a" / "r1-0.wav", _tone(440))
    _write(tmp_path / "b" / "r2-0.wav", _tone(440, sr=8000), sr=8000)
    _write(tmp_path / "b" / "r3-0.wav", _tone(440, sr=8000), sr=8000)
    # The first file in sorted order is named, however many threads read ahead of it.
    for n_jobs in (1, 2):
        with pytest.raises(ValueError, match=r"r2-0\.wav' has sample rate 8000 Hz, expected 16000"):
            load_audio_folder(tmp_path, resample=False, n_jobs=n_jobs)
    # An explicit sr holds the first file to it as well.
    with pytest.raises(ValueError, match=r"r1-0\.wav' has sample rate 16000 Hz, expected 8000"):
        load_audio_folder(tmp_path, sr=8000, resample=False)


# --- bad files and the report ----------------------------------------------------------------


def test_bad_files_are_skipped_listed_and_warned_about(tmp_path):
    good = _write(tmp_path / "a" / "good-0.wav", _tone(440))
    (tmp_path / "a" / "empty-0.wav").write_bytes(b"")
    _write(tmp_path / "a" / "noframes-0.wav", np.zeros(0, dtype=np.float32))
    _write(tmp_path / "b" / "silent-0.wav", np.zeros(SR // 2, dtype=np.float32))
    rng = np.random.default_rng(0)
    (tmp_path / "b" / "corrupt-0.wav").write_bytes(rng.bytes(2000))
    (tmp_path / "b" / "notes.txt").write_text("not audio")
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\0")  # hidden: not part of the layout

    with pytest.warns(UserWarning, match=r"skipped 5 of 6 files") as record:
        clips, labels, groups, report = load_audio_folder(tmp_path)

    assert clips.shape == (1, SR // 2) and labels.tolist() == ["a"] and groups.tolist() == ["good"]
    reasons = {path.name: reason for path, reason, _ in report.skipped}
    assert reasons == {
        "empty-0.wav": "empty",
        "noframes-0.wav": "no audio frames",
        "silent-0.wav": "silent",
        "corrupt-0.wav": "unreadable",
        "notes.txt": "not audio",
    }
    assert good not in [s.path for s in report.skipped]
    message = str(record[0].message)
    assert "1 empty, 1 no audio frames, 1 not audio, 1 silent, 1 unreadable" in message
    assert "silent-0.wav: silent (peak amplitude 0 <= silence_threshold=0.0001)" in str(report)


def test_quiet_but_not_silent_file_is_kept(tmp_path):
    _write(tmp_path / "a" / "quiet-0.wav", _tone(440, amplitude=1e-3), subtype="PCM_24")
    clips, *_ = load_audio_folder(tmp_path)
    assert clips.shape[0] == 1


def test_report_to_dict_is_plain_json(tmp_path):
    _write(tmp_path / "a" / "r1-0.wav", _tone(440, seconds=0.25))
    odd = _write(tmp_path / "a" / "r2-0.wav", _tone(440, sr=8000), sr=8000)
    (tmp_path / "b" / "x-0.wav").parent.mkdir()
    (tmp_path / "b" / "x-0.wav").write_bytes(b"")
    with pytest.warns(UserWarning, match="1 empty"):
        *_, report = load_audio_folder(tmp_path, sr=np.int64(SR), duration=0.5)

    assert json.loads(json.dumps(report.to_dict())) == {
        "sr": SR,
        "n_loaded": 2,
        "n_padded": 1,
        "n_cut": 0,
        "resampled": [str(odd)],
        "skipped": [
            {"path": str(tmp_path / "b" / "x-0.wav"), "reason": "empty", "detail": "0 bytes"}
        ],
    }


# --- lengths, order, groups, errors ----------------------------------------------------------


def test_clips_are_padded_or_cut_to_duration(tmp_path):
    short, long = _tone(440, seconds=0.25), _tone(440, seconds=1.0)
    _write(tmp_path / "a" / "s-0.wav", short, subtype="FLOAT")
    _write(tmp_path / "a" / "t-0.wav", long, subtype="FLOAT")
    clips, _, _, report = load_audio_folder(tmp_path, duration=0.5)
    assert clips.shape == (2, SR // 2)
    assert_allclose(clips[0, : short.size], short)
    assert not clips[0, short.size :].any()
    assert_allclose(clips[1], long[: SR // 2])
    assert (report.n_padded, report.n_cut) == (1, 1)
    with pytest.raises(ValueError, match=r"differ in length \(4000 to 16000 samples.*duration="):
        load_audio_folder(tmp_path)


def test_groups_are_stem_prefixes_and_order_is_sorted(tmp_path):
    for name in ["zeta-2.wav", "alpha-1-take2.wav", "solo.wav"]:
        _write(tmp_path / "b" / name, _tone(440))
    _write(tmp_path / "a" / "nested" / "rec9-1.flac", _tone(440), format="FLAC")
    clips, labels, groups, _ = load_audio_folder(tmp_path)
    assert labels.tolist() == ["a", "b", "b", "b"]
    assert groups.tolist() == ["rec9", "alpha", "solo", "zeta"]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_audio_folder(tmp_path / "missing")
    (tmp_path / "loose.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="No class folders"):
        load_audio_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x-0.wav").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="No readable audio"):
        load_audio_folder(tmp_path)
    with pytest.raises(ValueError, match="duration must be a positive"):
        load_audio_folder(tmp_path, duration=0)


def test_write_then_load_round_trip(tmp_path):
    clips, labels, groups = make_instrument_sounds(5, random_state=0)
    write_audio_folder(tmp_path, clips, labels, groups, sr=SR, subtype="PCM_24")
    loaded, loaded_labels, loaded_groups, report = load_audio_folder(tmp_path, sr=SR)
    # The loader returns files sorted by label then name, "{group}-{index:04d}.wav".
    names = [f"{g}-{i:04d}" for i, g in enumerate(groups)]
    order = np.lexsort((names, labels))
    assert_array_equal(loaded_labels, labels[order])
    assert_array_equal(loaded_groups, groups[order].astype(str))
    assert_allclose(loaded, clips[order], atol=1e-6)
    assert report.skipped == []
    with pytest.raises(ValueError, match="without '-'"):
        write_audio_folder(tmp_path, clips[:1], ["a"], ["x-1"], sr=SR)
    with pytest.raises(ValueError, match=r"beyond \[-1, 1\]"):
        write_audio_folder(tmp_path, np.full((1, 100), 1.5), ["a"], ["x"], sr=SR)


# --- parallel loading ------------------------------------------------------------------------


def _mixed_folder(root):
    """Formats, rates, channels and bad files interleaved, so threads finish out of order."""
    rng = np.random.default_rng(1)
    kinds = [  # (rate, format, subtype, channels)
        (SR, "WAV", "PCM_16", 1),
        (8000, "WAV", "PCM_24", 1),
        (32000, "FLAC", "PCM_16", 2),
        (SR, "WAV", "FLOAT", 2),
        (8000, "FLAC", "PCM_24", 1),
    ]
    if "VORBIS" in sf.available_subtypes("OGG"):
        kinds.append((SR, "OGG", "VORBIS", 1))
    for i in range(24):
        rate, fmt, subtype, channels = kinds[i % len(kinds)]
        n = round(0.5 * rate)
        data = rng.uniform(-0.5, 0.5, (n, channels)).astype(np.float32)
        ext = {"OGG": "ogg"}.get(fmt, fmt.lower())
        _write(
            root / f"c{i % 3}" / f"r{i}-{i:02d}.{ext}", data, sr=rate, format=fmt, subtype=subtype
        )
    (root / "c0" / "r90-00.wav").write_bytes(rng.bytes(3000))  # corrupt, early in sorted order
    _write(root / "c1" / "r91-01.wav", np.zeros(SR // 2, dtype=np.float32))  # silent
    (root / "c2" / "r92-02.flac").write_bytes(b"")  # empty
    (root / "c2" / "readme.md").write_text("not audio")
    return root


@pytest.mark.parametrize(("sr", "duration"), [(SR, None), (SR, 0.3), (None, 0.75)])
def test_parallel_load_is_the_serial_load_bit_for_bit(tmp_path, sr, duration):
    root = _mixed_folder(tmp_path)
    with pytest.warns(UserWarning, match="skipped 4 of 28 files"):
        serial = load_audio_folder(root, sr=sr, duration=duration, n_jobs=1)
    assert serial.report.n_loaded == 24 and len(serial.report.resampled) == 12
    for n_jobs in (2, 5, None, -1):
        with pytest.warns(UserWarning, match="skipped 4 of 28 files"):
            parallel = load_audio_folder(root, sr=sr, duration=duration, n_jobs=n_jobs)
        _assert_same_load(parallel, serial)
    # Sorted by class folder, then by name: the order does not depend on which thread finished.
    names = sorted((f"c{i % 3}", f"r{i}-{i:02d}") for i in range(24))
    assert serial.labels.tolist() == [label for label, _ in names]
    assert serial.groups.tolist() == [name.split("-")[0] for _, name in names]


def test_corrupt_file_in_a_parallel_load_is_reported_as_skipped(tmp_path):
    clips, labels, groups = make_instrument_sounds(2, random_state=0)
    write_audio_folder(tmp_path, clips, labels, groups, sr=SR)
    corrupt = sorted(tmp_path.glob("drum/*.wav"))[0]
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))

    with pytest.warns(UserWarning, match=r"skipped 1 of 12 files .*\(1 unreadable\)"):
        loaded, loaded_labels, _, report = load_audio_folder(tmp_path, n_jobs=2)

    assert [(s.path, s.reason) for s in report.skipped] == [(corrupt, "unreadable")]
    assert loaded.shape == (11, clips.shape[1]) and report.n_loaded == 11
    assert loaded_labels.tolist().count("drum") == 1
    # The clips after the corrupt one moved up into its row: each still matches its file.
    for clip, path in zip(loaded, sorted(set(tmp_path.glob("*/*.wav")) - {corrupt}), strict=True):
        assert_allclose(clip, sf.read(path, dtype="float32")[0], atol=0)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_n_jobs_must_be_a_non_zero_integer(tmp_path, n_jobs):
    _write(tmp_path / "a" / "r-0.wav", _tone(440))
    with pytest.raises(
        ValueError,
        match=rf"n_jobs must be a non-zero integer or None, got n_jobs={n_jobs!r}: 1 loads",
    ):
        load_audio_folder(tmp_path, n_jobs=n_jobs)


@pytest.mark.parametrize("n_jobs", [-2, -100, 64])
def test_n_jobs_beyond_the_cores_still_loads(tmp_path, n_jobs):
    _write(tmp_path / "a" / "r-0.wav", _tone(440))
    _write(tmp_path / "a" / "r-1.wav", _tone(660))
    clips, *_ = load_audio_folder(tmp_path, n_jobs=n_jobs)
    assert_allclose(clips, [_tone(440), _tone(660)], atol=1e-4)


def test_missing_soxr_names_the_install_command(monkeypatch, tmp_path):
    _write(tmp_path / "a" / "r1-0.wav", _tone(440))
    _write(tmp_path / "a" / "r2-0.wav", _tone(440, sr=8000), sr=8000)
    monkeypatch.setitem(sys.modules, "soxr", None)  # fault injection: soxr not installed
    with pytest.raises(ImportError, match=r"soxr .*mlx-experiments\[audio\]"):
        load_audio_folder(tmp_path, n_jobs=2)


# --- long files ------------------------------------------------------------------------------


def test_long_file_is_read_only_as_far_as_the_clip(tmp_path):
    # 15 minutes of 16-bit noise, written a minute at a time: 28.8 MB on disk, 57.6 MB as
    # float32 samples, against 64 kB for the one-second clip kept.
    long = tmp_path / "a" / "long-0.wav"
    long.parent.mkdir()
    rng = np.random.default_rng(0)
    with sf.SoundFile(long, "w", samplerate=SR, channels=1, subtype="PCM_16") as audio:
        for _ in range(15):
            audio.write(rng.integers(-8000, 8000, 60 * SR, dtype=np.int16))
    _write(tmp_path / "b" / "short-0.wav", _tone(440), subtype="PCM_16")
    clip_bytes = SR * np.dtype(np.float32).itemsize

    # The measurement sees soundfile's buffers: reading the whole file peaks at its size.
    tracemalloc.start()
    try:
        sf.read(long, dtype="float32")
        whole_file_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert whole_file_peak > 800 * clip_bytes

    for n_jobs in (1, 2):
        tracemalloc.start()
        try:
            clips, labels, _, report = load_audio_folder(tmp_path, duration=1.0, n_jobs=n_jobs)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # The output (2 clips), the clip being read and its temporaries: a few clips in all.
        assert peak < 8 * clip_bytes, f"peak {peak / 1e3:.0f} kB with n_jobs={n_jobs}"
        assert labels.tolist() == ["a", "b"] and (report.n_cut, report.n_padded) == (1, 1)
        assert_array_equal(clips[0], sf.read(long, frames=SR, dtype="float32")[0], strict=True)


# --- plain WAV files read with numpy ---------------------------------------------------------

NUMPY_READ = [
    ("WAV", "PCM_16"),
    ("WAV", "PCM_24"),
    ("WAV", "PCM_32"),
    ("WAV", "FLOAT"),
    ("WAV", "DOUBLE"),
    ("WAVEX", "PCM_16"),
    ("WAVEX", "PCM_24"),
    ("WAVEX", "FLOAT"),
]


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize(("fmt", "subtype"), NUMPY_READ)
def test_plain_wav_is_read_with_numpy_as_soundfile_reads_it(tmp_path, fmt, subtype, channels):
    rng = np.random.default_rng(channels)
    data = rng.uniform(-1, 1, (3001, channels))
    data[:2] = [[1.0] * channels, [-1.0] * channels]  # the ends of the integer range
    path = _write(tmp_path / "x.wav", data, sr=22050, format=fmt, subtype=subtype)

    read = read_wav(path)
    assert read is not None, f"{fmt}/{subtype} should not need libsndfile"
    expected = sf.read(path, dtype="float32", always_2d=True)[0]
    assert read[1] == 22050
    assert_array_equal(read[0], expected, strict=True)
    first = read_wav(path, lambda rate: 100)[0]
    assert_array_equal(first, sf.read(path, frames=100, dtype="float32", always_2d=True)[0])


def _truncated(path):
    path.write_bytes(path.read_bytes()[:-101])  # the data chunk claims more than the file holds
    return path


def _with_chunk_before_data(path):
    # An odd-sized chunk (padded to even) between fmt and data, as tagging tools write.
    raw = path.read_bytes()
    at = raw.index(b"data")
    path.write_bytes(raw[:at] + b"LIST" + (5).to_bytes(4, "little") + b"abcde\0" + raw[at:])
    return path


def _big_endian(path):
    sf.write(path, _tone(440), SR, format="WAV", subtype="PCM_16", endian="BIG")
    return path


@pytest.mark.parametrize(
    ("change", "numpy_reads"),
    [(_truncated, False), (_with_chunk_before_data, True), (_big_endian, False)],
)
def test_odd_wav_files_read_as_soundfile_reads_them(tmp_path, change, numpy_reads):
    path = change(_write(tmp_path / "a" / "odd-0.wav", _tone(440), subtype="PCM_16"))
    assert (read_wav(path) is not None) is numpy_reads
    clips, *_ = load_audio_folder(tmp_path, n_jobs=1)
    assert_array_equal(clips[0], sf.read(path, dtype="float32")[0], strict=True)


@pytest.mark.parametrize("subtype", ["PCM_U8", "ULAW", "ALAW", "IMA_ADPCM"])
def test_other_wav_encodings_are_left_to_soundfile(tmp_path, subtype):
    if subtype not in sf.available_subtypes("WAV"):
        pytest.skip(f"libsndfile here cannot write WAV/{subtype}")
    path = _write(tmp_path / "a" / "r-0.wav", _tone(440), subtype=subtype)
    assert read_wav(path) is None
    clips, *_ = load_audio_folder(tmp_path)
    assert_array_equal(clips[0], sf.read(path, dtype="float32")[0], strict=True)
