"""Sounds in time: LogMelSpectrogram's frames and the contour task that needs them.

The contour melodies differ only in the order of their notes: pooled log-mel statistics
(LogMelFeatures) cannot tell them apart, a model that sees the frames in order can.
"""

import pickle
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlx.audio.features
from mlx.audio import (
    CONTOURS,
    LogMelFeatures,
    LogMelSpectrogram,
    make_contour_sounds,
    make_instrument_sounds,
)
from mlx.estimators import CNNClassifier, MLPClassifier, RNNClassifier

librosa = pytest.importorskip("librosa")

SR = 16000


def _tone(freq, seconds=0.5, sr=SR, amplitude=0.5):
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _librosa_frames(clip, n_mfcc=None, **kwargs):
    """One clip through librosa directly: the reference for the transformer's rows."""
    power = librosa.feature.melspectrogram(y=clip, **kwargs)
    frames = librosa.power_to_db(power, ref=1.0, top_db=None)
    return frames if n_mfcc is None else librosa.feature.mfcc(S=frames, n_mfcc=n_mfcc)


@pytest.fixture(scope="module")
def clips():
    return make_instrument_sounds(2, random_state=0)[0]


# --- LogMelSpectrogram -----------------------------------------------------------------------


def test_layout_is_bands_by_frames_band_major():
    # A 1 kHz tone in the second half of the clip only.
    clip = _tone(1000, seconds=1.0)
    clip[: SR // 2] = 0
    frames = LogMelSpectrogram(sr=SR, n_fft=512, hop_length=256, n_mels=40).fit(clip[None])
    row = frames.transform(clip[None])[0]

    assert frames.n_frames_ == 1 + SR // 256 == 63
    assert frames.output_shape_ == (40, 63) and row.shape == (40 * 63,)
    spectrogram = row.reshape(frames.output_shape_)
    # The tone's band: the mel band whose centre is nearest 1 kHz holds the most energy.
    centres = librosa.mel_frequencies(n_mels=40 + 2, fmax=SR / 2)[1:-1]
    band = int(np.abs(centres - 1000).argmin())
    assert spectrogram.mean(axis=1).argmax() == band
    # Frame t is centred on sample 256 t: silence up to frame 29, the tone from frame 34 on.
    assert_allclose(spectrogram[:, :29], -100.0)
    assert (spectrogram[band, 34:] > -10).all()
    # Column b * n_frames + t holds band b at frame t, and its name says so.
    names = frames.get_feature_names_out()
    column = band * 63 + 40
    assert row[column] == spectrogram[band, 40]
    assert names[column] == f"mel{band:02d}_t040"


@pytest.mark.parametrize(
    ("params", "n_mfcc"),
    [
        ({"n_fft": 1024, "hop_length": 512, "n_mels": 40}, None),
        ({"n_fft": 512, "hop_length": 160, "n_mels": 64, "fmin": 50.0, "fmax": 7000.0}, None),
        ({"n_fft": 400, "hop_length": 100, "n_mels": 32}, 13),
    ],
)
def test_rows_equal_librosa_on_one_clip(clips, params, n_mfcc):
    frames = LogMelSpectrogram(sr=SR, n_mfcc=n_mfcc, **params).fit(clips)
    out = frames.transform(clips)
    expected = _librosa_frames(clips[5], n_mfcc=n_mfcc, sr=SR, **params)
    assert expected.shape == frames.output_shape_
    assert_allclose(out[5].reshape(frames.output_shape_), expected, rtol=1e-5, atol=1e-4)
    assert_allclose(out[5], expected.ravel(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("n_samples", "n_fft", "hop_length"),
    [(8000, 1024, 512), (8000, 1023, 512), (16000, 512, 256), (1024, 1024, 512), (999, 401, 160)],
)
def test_frame_count_formula(n_samples, n_fft, hop_length):
    X = np.random.default_rng(0).standard_normal((2, n_samples)).astype(np.float32)
    frames = LogMelSpectrogram(n_fft=n_fft, hop_length=hop_length, n_mels=8).fit(X)
    expected = 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop_length
    assert frames.n_frames_ == expected
    assert frames.transform(X).shape == (2, 8 * expected)
    if n_fft % 2 == 0:
        assert frames.n_frames_ == 1 + n_samples // hop_length


def test_each_clip_is_framed_on_its_own(monkeypatch, clips):
    clips = clips[:8].copy()
    clips[3] *= 1e-4  # very quiet: a batch-wide reference or floor would change its frames
    frames = LogMelSpectrogram(n_mfcc=20).fit(clips)
    batch = frames.transform(clips)
    assert_allclose(batch[3], frames.transform(clips[3:4])[0], rtol=1e-5, atol=1e-4)
    assert_allclose(batch[3], frames.transform(clips[::-1])[4], rtol=1e-5, atol=1e-4)
    # Chunking the batch (to bound the STFT's memory) changes nothing either.
    monkeypatch.setattr(mlx.audio.features, "_STFT_CHUNK_BYTES", 1)
    assert_allclose(frames.transform(clips), batch, rtol=1e-5, atol=1e-4)


def test_pooling_the_frames_gives_the_statistics(clips):
    # The two transformers share the frames: LogMelFeatures is LogMelSpectrogram pooled.
    for n_mfcc in (None, 13):
        frames = LogMelSpectrogram(n_mfcc=n_mfcc).fit(clips)
        pooled = LogMelFeatures(n_mfcc=n_mfcc, stats=("mean", "max")).fit_transform(clips)
        folded = frames.transform(clips).reshape(-1, *frames.output_shape_)
        expected = np.concatenate([folded.mean(axis=2), folded.max(axis=2)], axis=1)
        assert_allclose(pooled, expected, rtol=1e-5, atol=1e-4)


def test_mfcc_shape_names_and_dtype(clips):
    frames = LogMelSpectrogram(n_mfcc=13, hop_length=256).fit(clips)
    out = frames.transform(clips)
    assert frames.output_shape_ == (13, 32) and out.shape == (12, 13 * 32)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert frames.transform(clips.astype(np.float64)).dtype == np.float64
    names = frames.get_feature_names_out()
    assert names.shape == (13 * 32,)
    assert names[[0, 31, 32, 3 * 32 + 17]].tolist() == [
        "mfcc00_t000",
        "mfcc00_t031",
        "mfcc01_t000",
        "mfcc03_t017",
    ]
    # Widths grow with the counts: 128 bands, 1001 frames.
    long = LogMelSpectrogram(n_mels=128, n_fft=2048, hop_length=16).fit(np.zeros((1, 16000)))
    assert long.get_feature_names_out()[[0, -1]].tolist() == ["mel000_t0000", "mel127_t1000"]


def test_sklearn_face_clone_pickle_pandas_pipeline(clips):
    frames = LogMelSpectrogram(sr=SR, n_mels=20, hop_length=256, fmin=20.0)
    copy = clone(frames)
    assert copy.get_params() == frames.get_params() and copy is not frames
    assert "stats" not in frames.get_params()
    assert "n_mels=20" in repr(frames)
    fitted = frames.fit(clips)
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored.output_shape_ == (20, 32)
    assert_array_equal(restored.transform(clips), fitted.transform(clips))
    table = clone(frames).set_output(transform="pandas").fit_transform(clips)
    assert table.columns.tolist() == fitted.get_feature_names_out().tolist()
    pipe = make_pipeline(LogMelSpectrogram(n_mels=20, hop_length=256), StandardScaler()).fit(clips)
    scaled = pipe.transform(clips)
    assert scaled.shape == (12, 640)
    assert_allclose(scaled.mean(axis=0), 0, atol=1e-4)  # one column is one band at one time
    assert pipe.get_feature_names_out()[33] == "mel01_t001"


@pytest.mark.parametrize(
    ("X", "params", "match"),
    [
        (np.zeros(8000), {}, r"LogMelSpectrogram expects clips.*1-D array of shape \(8000,\)"),
        (np.zeros((3, 2, 8000)), {}, r"mono clips.*\(3, 2, 8000\).*mix channels"),
        (np.zeros((3, 500)), {}, r"500 samples are shorter than one frame, n_fft=1024"),
        (np.zeros((3, 8000)), {"n_mfcc": 50}, r"n_mfcc=50 should be <= n_mels=40"),
        (np.zeros((3, 8000)), {"fmax": 9000}, r"fmin < fmax <= sr / 2.*fmax=9000"),
        (np.zeros((3, 8000)), {"hop_length": 0}, r"'hop_length' parameter"),
    ],
)
def test_errors(X, params, match):
    with pytest.raises(ValueError, match=match):
        LogMelSpectrogram(**params).fit(X)


def test_transform_needs_fit_and_the_fitted_clip_length():
    with pytest.raises(NotFittedError):
        LogMelSpectrogram().transform(np.zeros((2, 8000)))
    frames = LogMelSpectrogram().fit(np.zeros((2, 8000)))
    with pytest.raises(ValueError, match=r"fitted on clips of 8000 samples, got clips of 4000"):
        frames.transform(np.zeros((2, 4000)))
    with pytest.raises(ValueError, match=r"input_features has 3 names, expected .*=8000"):
        frames.get_feature_names_out(["a", "b", "c"])


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "librosa", None)  # fault injection: librosa not installed
    frames = LogMelSpectrogram().fit(np.zeros((2, 8000)))  # fit needs no librosa
    assert frames.output_shape_ == (40, 16)
    with pytest.raises(ImportError, match=r'pip install "mlx-experiments\[audio\]"'):
        frames.transform(np.zeros((2, 8000)))


# --- make_contour_sounds ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def contours():
    return make_contour_sounds(6, duration=0.5, random_state=0, return_notes=True)


def test_contour_shapes_groups_and_determinism(contours):
    clips, labels, groups, notes = contours
    assert clips.shape == (30, 8000) and clips.dtype == np.float32 and np.isfinite(clips).all()
    peaks = np.abs(clips).max(axis=1)
    assert peaks.min() >= 0.1 - 1e-6 and peaks.max() <= 0.9 + 1e-6
    names, counts = np.unique(labels, return_counts=True)
    assert names.tolist() == sorted(CONTOURS) and (counts == 6).all()
    # Recordings of 5 then 1 clips, one contour each, ids unique across contours.
    ids, sizes = np.unique(groups, return_counts=True)
    assert ids.size == 10 and sorted(sizes.tolist()) == [1] * 5 + [5] * 5
    assert all(np.unique(labels[groups == g]).size == 1 for g in ids)
    assert notes.shape == (30, 5)

    again = make_contour_sounds(6, duration=0.5, random_state=0, return_notes=True)
    for a, b in zip(contours, again, strict=True):
        assert_array_equal(a, b)
    other = make_contour_sounds(6, duration=0.5, random_state=1)
    assert len(other) == 3 and not np.array_equal(other[0], clips)


def test_every_clip_plays_the_same_notes_in_its_contours_order(contours):
    _, labels, _, notes = contours
    for label, played in zip(labels, notes, strict=True):
        # The note at each position has the contour's rank among the clip's notes.
        assert np.argsort(np.argsort(played)).tolist() == list(CONTOURS[label])
    # Same multiset for all: sorted, the notes climb in major thirds (+-0.5 semitone detuning).
    steps = np.diff(12 * np.log2(np.sort(notes, axis=1)), axis=1)
    assert (np.abs(steps - 4) <= 0.5).all()
    assert notes.min() > 170 and notes.max() < 1100  # one register for every instrument


def test_the_audio_follows_the_contour():
    # The frame-wise pitch of a flute (nearly sinusoidal) climbs in a rising melody and
    # falls in a falling one.
    clips, labels, _ = make_contour_sounds(
        4, noise=0.0, instruments=("flute",), shuffle=False, random_state=0
    )
    spectrum = np.abs(librosa.stft(clips, n_fft=1024, hop_length=256))
    pitch = spectrum.argmax(axis=1).astype(float)  # (n_clips, n_frames) peak bin
    loud = spectrum.max(axis=1) > 0.1 * spectrum.max(axis=(1, 2))[:, None]
    for label, track, keep in zip(labels, pitch, loud, strict=True):
        time = np.flatnonzero(keep)
        correlation = np.corrcoef(time, track[keep])[0, 1]
        if label == "rising":
            assert correlation > 0.8
        elif label == "falling":
            assert correlation < -0.8


def test_contour_options_and_errors():
    clips, labels, groups = make_contour_sounds(
        3, sr=8000, duration=0.25, clips_per_recording=2, shuffle=False, random_state=3
    )
    assert clips.shape == (15, 2000)
    assert labels[:3].tolist() == ["rising"] * 3
    assert groups[:3].tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match=r"duration=0.1 s is too short for five notes"):
        make_contour_sounds(2, duration=0.1)
    with pytest.raises(ValueError, match=r"instruments must be a non-empty selection.*'oboe'"):
        make_contour_sounds(2, instruments=("flute", "oboe"))
    with pytest.raises(ValueError, match="n_per_class must be a positive integer"):
        make_contour_sounds(0)


# --- the task: order, not content --------------------------------------------------------------


def _task(n_per_class, sr, seed=0):
    """Contour clips, their labels and a grouped train / test split (30% of the recordings)."""
    clips, labels, groups = make_contour_sounds(
        n_per_class, sr=sr, clips_per_recording=2, random_state=seed
    )
    train, test = next(
        GroupShuffleSplit(1, test_size=0.3, random_state=0).split(clips, labels, groups)
    )
    assert not set(groups[train]) & set(groups[test])
    return clips[train], labels[train], clips[test], labels[test]


def _frames(sr):
    # 64 ms frames resolve fundamentals a major third apart; 32 frames per one-second clip.
    n_fft = round(0.064 * sr)
    return dict(sr=sr, n_fft=n_fft, hop_length=n_fft // 2, n_mels=32)


def _statistics_mlp(sr):
    return make_pipeline(
        LogMelFeatures(**_frames(sr), stats=("mean", "std", "min", "max")),
        StandardScaler(),
        MLPClassifier((64,), alpha=1e-3, max_iter=100, random_state=0),
    )


def _frames_then(sr, network):
    frames = LogMelSpectrogram(**_frames(sr))
    return make_pipeline(frames, StandardScaler(), network.set_params(input_shape=(32, 32)))


def _fit_quietly(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def test_statistics_stay_at_chance_where_a_gru_on_frames_learns():
    # Small and fast (8 kHz, 500 clips): the contrast, not the final accuracy.
    X_train, y_train, X_test, y_test = _task(100, sr=8000)
    mlp = _fit_quietly(_statistics_mlp(8000), X_train, y_train)
    # It fits the training clips (their statistics differ clip by clip) but learns nothing
    # that carries over to other recordings: chance is 1 in 5.
    assert mlp.score(X_train, y_train) > 0.7
    assert mlp.score(X_test, y_test) < 0.33
    gru = RNNClassifier("gru", hidden_size=32, batch_size=16, learning_rate_init=3e-3)
    gru = _fit_quietly(
        _frames_then(8000, gru.set_params(max_iter=12, random_state=0)), X_train, y_train
    )
    assert gru.score(X_test, y_test) > 0.6


@pytest.mark.slow
def test_cnn_and_gru_learn_contours_that_statistics_cannot():
    X_train, y_train, X_test, y_test = _task(300, sr=SR)
    assert _fit_quietly(_statistics_mlp(SR), X_train, y_train).score(X_test, y_test) < 0.3
    cnn = CNNClassifier((32, 32), batch_size=16, learning_rate_init=3e-3, dropout=0.3)
    gru = RNNClassifier("gru", hidden_size=32, batch_size=16, learning_rate_init=3e-3)
    for network in (cnn, gru):
        model = _fit_quietly(
            _frames_then(SR, network.set_params(max_iter=15, random_state=0)), X_train, y_train
        )
        assert model.score(X_test, y_test) >= 0.9, network
