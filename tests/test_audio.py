"""mlx.audio on files written here: the folder loader, LogMelFeatures and the synthetic sounds."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx.audio
import mlx.audio.features
from mlx.audio import (
    INSTRUMENTS,
    LogMelFeatures,
    load_audio_folder,
    make_instrument_sounds,
    write_audio_folder,
)

sf = pytest.importorskip("soundfile")
librosa = pytest.importorskip("librosa")

SR = 16000


def _tone(freq, seconds=0.5, sr=SR, amplitude=0.5):
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path, data, sr=SR, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr, **kwargs)
    return path


@pytest.fixture(scope="module")
def instruments():
    return make_instrument_sounds(100, random_state=0)


# --- load_audio_folder -----------------------------------------------------------------------

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


def test_other_sample_rate_is_rejected_naming_the_file(tmp_path):
    _write(tmp_path / "a" / "r1-0.wav", _tone(440))
    _write(tmp_path / "b" / "r2-0.wav", _tone(440, sr=8000), sr=8000)
    with pytest.raises(ValueError, match=r"r2-0\.wav' has sample rate 8000 Hz, expected 16000"):
        load_audio_folder(tmp_path, resample=False)
    # An explicit sr holds the first file to it as well.
    with pytest.raises(ValueError, match=r"r1-0\.wav' has sample rate 16000 Hz, expected 8000"):
        load_audio_folder(tmp_path, sr=8000, resample=False)


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
    assert set(reasons) == {
        "empty-0.wav",
        "noframes-0.wav",
        "silent-0.wav",
        "corrupt-0.wav",
        "notes.txt",
    }
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


def test_write_then_load_round_trip(tmp_path, instruments):
    clips, labels, groups = (a[:30] for a in instruments)
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


# --- LogMelFeatures --------------------------------------------------------------------------


def test_features_shapes_names_and_dtype(instruments):
    clips = instruments[0][:12]
    features = LogMelFeatures(sr=SR).fit(clips)
    out = features.transform(clips)
    names = features.get_feature_names_out()
    assert out.shape == (12, 80) and out.dtype == np.float32 and np.isfinite(out).all()
    assert names.shape == (80,) and names[7] == "mel07_mean" and names[40] == "mel00_std"
    assert features.n_features_in_ == clips.shape[1]
    assert features.transform(clips.astype(np.float64)).dtype == np.float64

    mfcc = LogMelFeatures(n_mfcc=13, stats=("median", "max", "min")).fit(clips)
    assert mfcc.transform(clips).shape == (12, 39)
    assert mfcc.get_feature_names_out()[[3, 13, 38]].tolist() == [
        "mfcc03_median",
        "mfcc00_max",
        "mfcc12_min",
    ]
    many = LogMelFeatures(n_mels=128, n_fft=2048).fit(clips).get_feature_names_out()
    assert many[0] == "mel000_mean" and many[127] == "mel127_mean"


def test_sine_lands_in_its_mel_band_and_matches_librosa():
    clips = np.stack([_tone(1000), _tone(3000, amplitude=0.1)])
    features = LogMelFeatures(sr=SR, n_mels=40, stats=("mean", "std", "min", "max", "median"))
    out = features.fit_transform(clips)
    centres = librosa.mel_frequencies(n_mels=40 + 2, fmax=SR / 2)[1:-1]
    for row, freq in zip(out, [1000, 3000], strict=True):
        assert abs(centres[row[:40].argmax()] - freq) < 0.1 * freq
        mean, std, low, high, median = row.reshape(5, 40)
        assert (std >= 0).all() and (low <= median).all() and (median <= high).all()
        assert (low <= mean).all() and (mean <= high).all()
    # The 0.1-amplitude tone is 20 dB below a full-scale one: dB are not normalised per clip.
    expected = librosa.power_to_db(
        librosa.feature.melspectrogram(y=clips[1], sr=SR, n_fft=1024, hop_length=512, n_mels=40),
        top_db=None,
    ).mean(axis=1)
    assert_allclose(out[1, :40], expected, rtol=1e-4, atol=1e-3)


def test_each_clip_is_featurised_on_its_own(monkeypatch, instruments):
    clips = instruments[0][:10].copy()
    clips[3] *= 1e-4  # a very quiet clip: a batch-wide dB floor would change its features
    batch = LogMelFeatures(n_mfcc=20).fit(clips).transform(clips)
    alone = LogMelFeatures(n_mfcc=20).fit(clips[3:4]).transform(clips[3:4])
    assert_allclose(batch[3], alone[0], rtol=1e-5, atol=1e-4)
    # Chunking the batch (to bound the STFT's memory) changes nothing either.
    monkeypatch.setattr(mlx.audio.features, "_STFT_CHUNK_BYTES", 1)
    assert_allclose(LogMelFeatures(n_mfcc=20).fit(clips).transform(clips), batch, rtol=1e-5)


@pytest.mark.parametrize(
    ("X", "params", "match"),
    [
        (np.zeros(8000), {}, r"got a 1-D array of shape \(8000,\)"),
        (np.zeros((3, 2, 8000)), {}, r"mono clips.*\(3, 2, 8000\).*mix channels"),
        (np.zeros((3, 500)), {}, r"500 samples are shorter than one frame, n_fft=1024"),
        (np.zeros((3, 8000)), {"stats": ("mean", "mode")}, r"stats must be distinct.*'mode'"),
        (np.zeros((3, 8000)), {"n_mfcc": 50}, r"n_mfcc=50 should be <= n_mels=40"),
        (np.zeros((3, 8000)), {"fmax": 9000}, r"fmin < fmax <= sr / 2.*fmax=9000"),
        (np.zeros((3, 8000)), {"n_fft": 0}, r"'n_fft' parameter"),
    ],
)
def test_feature_errors(X, params, match):
    with pytest.raises(ValueError, match=match):
        LogMelFeatures(**params).fit(X)


def test_transform_checks_clip_length_and_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        LogMelFeatures().transform(np.zeros((2, 8000)))
    features = LogMelFeatures().fit(np.zeros((2, 8000)))
    with pytest.raises(ValueError, match="8000"):
        features.transform(np.zeros((2, 4000)))


def test_sklearn_face_clone_params_pickle(instruments):
    clips = instruments[0][:6]
    features = LogMelFeatures(sr=SR, n_mfcc=13, stats=("mean",), fmin=20.0)
    copy = clone(features)
    assert copy.get_params() == features.get_params() and copy is not features
    assert copy.set_params(n_mels=64).n_mels == 64
    fitted = features.fit(clips)
    restored = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(restored.transform(clips), fitted.transform(clips))
    assert "n_mfcc=13" in repr(features)
    frame = clone(features).set_output(transform="pandas").fit_transform(clips)
    assert frame.columns.tolist() == fitted.get_feature_names_out().tolist()


def test_pipeline_reaches_high_accuracy_on_a_grouped_split(instruments):
    clips, labels, groups = instruments
    train, test = next(
        GroupShuffleSplit(1, test_size=0.25, random_state=0).split(clips, labels, groups)
    )
    assert not set(groups[train]) & set(groups[test])
    pipe = make_pipeline(LogMelFeatures(sr=SR), StandardScaler(), LogisticRegression(max_iter=2000))
    pipe.fit(clips[train], labels[train])
    assert pipe.score(clips[test], labels[test]) >= 0.9
    assert pipe[:-1].get_feature_names_out()[0] == "mel00_mean"


def test_missing_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "librosa", None)  # fault injection: librosa not installed
    with pytest.raises(ImportError, match=r'pip install "mlx-experiments\[audio\]"'):
        LogMelFeatures().fit(np.zeros((2, 8000))).transform(np.zeros((2, 8000)))
    monkeypatch.setitem(sys.modules, "soundfile", None)
    (tmp_path / "a").mkdir()
    with pytest.raises(ImportError, match=r"soundfile .*mlx-experiments\[audio\]"):
        load_audio_folder(tmp_path)


def test_module_and_synthesis_work_without_the_extra():
    code = (
        "import sys; sys.modules['librosa'] = None; sys.modules['soundfile'] = None\n"
        "from mlx.audio import make_contour_sounds, make_instrument_sounds\n"
        "print(make_instrument_sounds(2, random_state=0)[0].shape)\n"
        "print(make_contour_sounds(2, duration=0.5, random_state=0)[0].shape)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["(12, 8000)", "(10, 8000)"]


# --- make_instrument_sounds ------------------------------------------------------------------


def test_instrument_sounds_shapes_groups_and_determinism(instruments):
    clips, labels, groups = instruments
    assert clips.shape == (600, 8000) and clips.dtype == np.float32
    assert np.isfinite(clips).all()
    peaks = np.abs(clips).max(axis=1)
    assert peaks.min() >= 0.1 - 1e-6 and peaks.max() <= 0.9 + 1e-6
    names, counts = np.unique(labels, return_counts=True)
    assert names.tolist() == sorted(INSTRUMENTS) and (counts == 100).all()
    # Recordings: 5 clips each, one instrument each, ids unique across instruments.
    ids, sizes = np.unique(groups, return_counts=True)
    assert ids.size == 120 and (sizes == 5).all()
    assert all(np.unique(labels[groups == g]).size == 1 for g in ids)

    again = make_instrument_sounds(100, random_state=0)
    for a, b in zip(instruments, again, strict=True):
        assert_array_equal(a, b)
    small, other = (make_instrument_sounds(5, random_state=seed)[0] for seed in (0, 1))
    assert not np.array_equal(small, other)


def test_instrument_sounds_options():
    clips, labels, groups = make_instrument_sounds(
        7, sr=8000, duration=0.25, clips_per_recording=3, shuffle=False, random_state=3
    )
    assert clips.shape == (42, 2000)
    assert labels[:7].tolist() == [INSTRUMENTS[0]] * 7
    assert groups[:7].tolist() == [0, 0, 0, 1, 1, 1, 2]
    with pytest.raises(ValueError, match="n_per_class must be a positive integer"):
        make_instrument_sounds(0)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        make_instrument_sounds(2, noise=-1)


def test_instruments_differ_the_way_real_ones_do():
    clips, labels, _ = make_instrument_sounds(20, noise=0.0, shuffle=False, random_state=0)
    quarter = clips.shape[1] // 4
    energy = [(clips[:, i * quarter : (i + 1) * quarter] ** 2).mean(axis=1) for i in range(4)]
    decay = energy[3] / energy[1]  # last quarter against the second: struck notes die away
    by_class = {name: np.median(decay[labels == name]) for name in INSTRUMENTS}
    for struck in ("piano", "drum"):
        for sustained in ("flute", "clarinet", "violin"):
            assert by_class[struck] < 0.5 * by_class[sustained]
