"""mlx.audio: LogMelFeatures and the synthetic sounds (the folder loader: test_audio_folder.py)."""

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
)

sf = pytest.importorskip("soundfile")
librosa = pytest.importorskip("librosa")

SR = 16000


def _tone(freq, seconds=0.5, sr=SR, amplitude=0.5):
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def instruments():
    return make_instrument_sounds(100, random_state=0)


# --- LogMelFeatures --------------------------------------------------------------------------


def test_features_shapes_names_and_dtype(instruments):
    clips = instruments[0][:12]
    features = LogMelFeatures(sr=SR).fit(clips)
    out = features.transform(clips)
    names = features.get_feature_names_out()
    assert out.shape == (12, 80) and out.dtype == np.float32 and np.isfinite(out).all()
    assert names.shape == (80,) and names[7] == "mel07_mean" and names[40] == "mel00_std"
    assert features.n_features_in_ == clips.shape[1] and features.n_frames_ == 1 + 8000 // 512
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
