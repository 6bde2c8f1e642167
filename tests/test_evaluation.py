"""The single test evaluation's output: per-class evidence, curves, intervals, and sounds.

``evaluate`` is called directly on small fitted models; what the runner logs of it is covered
in tests/test_runner.py.
"""

import csv
import io
import posixpath
import re

import numpy as np
import pytest
from matplotlib.figure import Figure
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris, make_blobs
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlx.audio import LogMelFeatures, LogMelSpectrogram, make_instrument_sounds
from mlx.evaluation import audio_sample_rate, evaluate, misclassified_clips
from mlx.evaluation.metrics import resolve_metric


def _evaluate(model, X, y, task, metric="accuracy", **kwargs):
    name, scorer = resolve_metric(metric, task)
    return evaluate(model, X, y, task=task, metric_name=name, scorer=scorer, **kwargs)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versi color", "virginica?"])[y]  # spaces, punctuation
    model = LogisticRegression(max_iter=300).fit(X[::2], names[::2])
    return model, X[1::2], names[1::2]


@pytest.fixture(scope="module")
def iris_result(iris):
    model, X, y = iris
    return _evaluate(model, X, y, "classification")


def test_multiclass_metrics_tables_and_figures(iris, iris_result):
    model, X, y = iris
    out = iris_result
    pred = model.predict(X)
    metrics = out["metrics"]
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred)
    for j, key in enumerate(["setosa", "versi color", "virginica_"]):
        assert metrics[f"precision_{key}"] == pytest.approx(precision[j])
        assert metrics[f"recall_{key}"] == pytest.approx(recall[j])
        assert metrics[f"f1_{key}"] == pytest.approx(f1[j])
        assert metrics[f"support_{key}"] == support[j]
    assert "tp" not in metrics and "roc_auc" not in metrics  # binary only
    assert set(out["tables"]) == {"confusion_matrix.csv", "classification_report.csv"}
    assert set(out["figures"]) == {"confusion_matrix.png", "confusion_matrix_normalized.png"}
    assert all(isinstance(sketch.draw(), Figure) for sketch in out["figures"].values())
    assert out["files"] == {}  # not audio


def test_classification_report_csv_matches_sklearn(iris, iris_result):
    model, X, y = iris
    rows = list(csv.DictReader(io.StringIO(iris_result["tables"]["classification_report.csv"])))
    report = skm.classification_report(y, model.predict(X), output_dict=True)
    assert [row["class"] for row in rows] == [
        "setosa",
        "versi color",
        "virginica?",
        "macro avg",
        "weighted avg",
        "accuracy",
    ]
    for row in rows[:5]:
        expected = report[row["class"]]
        for column in ("precision", "recall", "f1-score"):
            assert float(row[column]) == pytest.approx(expected[column], abs=1e-5)
        assert int(row["support"]) == expected["support"]
    assert float(rows[-1]["f1-score"]) == pytest.approx(report["accuracy"], abs=1e-5)


def test_normalised_confusion_matrix_shows_recall_on_the_diagonal(iris, iris_result):
    model, X, y = iris
    ax = iris_result["figures"]["confusion_matrix_normalized.png"].draw().axes[0]
    image = ax.images[0].get_array()
    recall = skm.recall_score(y, model.predict(X), average=None)
    assert_allclose(np.diag(image), recall)
    assert_allclose(np.asarray(image).sum(axis=1), 1.0)
    raw = iris_result["figures"]["confusion_matrix.png"].draw().axes[0].images[0].get_array()
    assert_array_equal(raw, skm.confusion_matrix(y, model.predict(X)))


def test_intervals_of_every_rate_and_why_counts_have_none(iris_result):
    out = iris_result
    metrics, intervals = out["metrics"], out["intervals"]
    rates = [k for k in metrics if not k.startswith("support_")]
    assert set(intervals) == set(rates)
    for name in rates:
        low, high = intervals[name]
        assert 0.0 <= low <= high <= 1.0
        assert low <= metrics[name] + 1e-12, name  # the point estimate lies within
        assert metrics[name] <= high + 1e-12, name
    assert set(out["no_interval"]) == {k for k in metrics if k.startswith("support_")}
    low, high = intervals["accuracy"]
    assert high - low > 0.02  # 75 rows: an interval, not a point


def test_class_names_become_valid_distinct_mlflow_keys():
    from mlflow.utils.validation import _validate_metric_name

    labels = np.array(["macro", "a/b/", "x//y", "ünï", "q?", "q!", "c:d", "../up"])
    y = np.repeat(labels, 4)
    X = np.repeat(np.eye(len(labels)), 4, axis=0)
    model = LogisticRegression(max_iter=300).fit(X, y)
    metrics = _evaluate(model, X, y, "classification")["metrics"]
    assert metrics["precision_macro"] == pytest.approx(skm.precision_score(y, y, average="macro"))
    per_class = [k for k in metrics if k.startswith("support_")]
    assert len(per_class) == len(labels)  # none collided
    for key in metrics:
        _validate_metric_name(key)  # raises on a key MLflow refuses
        assert posixpath.normpath(key) == key


def test_binary_counts_curves_and_aucs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = np.where(X[:, 0] + 0.7 * rng.normal(size=300) > 0, "yes", "no")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[:150], y[:150])
    out = _evaluate(model, X[150:], y[150:], "classification")
    metrics, pred = out["metrics"], model.predict(X[150:])
    truth = y[150:]
    assert metrics["tp"] == np.sum((pred == "yes") & (truth == "yes"))
    assert metrics["fn"] == np.sum((pred == "no") & (truth == "yes"))
    score = model.decision_function(X[150:])
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(truth == "yes", score))
    assert metrics["average_precision"] == pytest.approx(
        skm.average_precision_score(truth == "yes", score)
    )
    assert {"roc_curve.png", "precision_recall_curve.png"} <= set(out["figures"])
    for name in ("roc_auc", "average_precision"):
        low, high = out["intervals"][name]
        assert low <= metrics[name] <= high
    assert {"tp", "fp", "tn", "fn"} <= set(out["no_interval"])


def test_the_experiments_own_metric_gets_an_interval_when_it_can(iris):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    y = (X[:, 1] > 0).astype(int)
    model = KNeighborsClassifier().fit(X[:100], y[:100])
    f1 = _evaluate(model, X[100:], y[100:], "classification", metric="f1")
    low, high = f1["intervals"]["f1"]
    assert low <= f1["metrics"]["f1"] <= high
    loss = _evaluate(model, X[100:], y[100:], "classification", metric="neg_log_loss")
    assert "neg_log_loss" not in loss["intervals"]
    assert "predict_proba" in loss["no_interval"]["neg_log_loss"]
    iris_model, X_iris, y_iris = iris
    custom = _evaluate(iris_model, X_iris, y_iris, "classification", metric=lambda m, X, y: 0.5)
    (name,) = set(custom["no_interval"]) - {k for k in custom["metrics"] if "support" in k}
    assert "needs the model and X" in custom["no_interval"][name]


def test_no_resamples_no_intervals_and_groups_widen_them(iris):
    model, X, y = iris
    assert _evaluate(model, X, y, "classification", n_resamples=0)["intervals"] == {}
    # Each row five times, as five clips of one recording: the copies are right or wrong
    # together, so 375 rows carry the information of 75, which only the grouped bootstrap sees.
    weak = LogisticRegression(max_iter=300).fit(X[:, 1:2], y)  # sepal width alone: errors
    X5, y5, groups = np.repeat(X[:, 1:2], 5, axis=0), np.repeat(y, 5), np.repeat(np.arange(75), 5)

    def width(**kwargs):
        out = _evaluate(weak, X5, y5, "classification", n_resamples=300, **kwargs)
        low, high = out["intervals"]["accuracy"]
        return high - low

    assert width(groups=groups) > 1.8 * width()  # sqrt(5) = 2.2 in theory


def test_regression_error_plots_and_intervals():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 3))
    y = X @ [2.0, -1.0, 0.5] + rng.normal(size=160)
    model = Ridge().fit(X[:80], y[:80])
    out = _evaluate(model, X[80:], y[80:], "regression", metric="r2")
    assert set(out["figures"]) == {"residuals.png", "predicted_vs_true.png"}
    assert out["figures"]["residuals.png"].draw().axes[0].get_ylabel().startswith("Residuals")
    for name in ("r2", "rmse", "mae"):
        low, high = out["intervals"][name]
        assert low <= out["metrics"][name] <= high
    Y = np.column_stack([y, -y])
    multi = _evaluate(
        LinearRegression().fit(X[:80], Y[:80]), X[80:], Y[80:], "regression", metric="r2"
    )
    assert len(multi["figures"]["predicted_vs_true.png"].draw().axes) == 2
    assert set(multi["intervals"]) == {"r2", "rmse", "mae"}


def test_clustering_intervals_need_labels():
    X, y = make_blobs(90, centers=3, random_state=0)
    model = KMeans(3, n_init=2, random_state=0).fit(X)
    out = _evaluate(model, X, y, "clustering", metric="silhouette", n_resamples=100)
    assert set(out["intervals"]) == {"adjusted_rand", "normalized_mutual_info"}
    assert {"silhouette", "inertia"} <= set(out["no_interval"])
    assert _evaluate(model, X, None, "clustering", metric="silhouette")["intervals"] == {}


# --- sounds as evidence ---------------------------------------------------------------------------
sf = pytest.importorskip("soundfile")
pytest.importorskip("librosa")

SR = 8000


@pytest.mark.parametrize(
    ("estimator", "rate"),
    [
        (make_pipeline(LogMelFeatures(sr=22050), StandardScaler(), LogisticRegression()), 22050),
        (make_pipeline(LogMelSpectrogram(sr=SR), LogisticRegression()), SR),
        (make_pipeline(make_pipeline("passthrough", LogMelFeatures(sr=SR)), Ridge()), SR),
        (make_pipeline(StandardScaler(), LogisticRegression()), None),
        (LogisticRegression(), None),
        (LogMelFeatures(sr=SR), SR),
    ],
)
def test_audio_sample_rate_is_read_from_the_first_step(estimator, rate):
    assert audio_sample_rate(estimator) == rate


def _clips(n_clips=12, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(SR // 4) / SR
    freq = rng.uniform(200, 2000, (n_clips, 1))
    return (0.8 * np.sin(2 * np.pi * freq * t) * rng.uniform(0.2, 1, (n_clips, 1))).astype(
        np.float32
    )


def test_misclassified_clips_decode_to_the_same_samples():
    clips = _clips()
    y_true = np.array(["flute", "bell", "drum"] * 4, dtype=object)
    y_pred = y_true.copy()
    y_pred[[0, 4, 7]] = ["bell", "drum", "bell/x"]
    files = misclassified_clips(clips, y_true, y_pred, SR)
    assert set(files) == {
        f"misclassified/{stem}.{ext}"
        for stem in ["true-flute_pred-bell_row-0", "true-bell_pred-drum_row-4",
                     "true-bell_pred-bell_x_row-7"]
        for ext in ("wav", "png")
    }  # fmt: skip
    for name, data in files.items():
        assert re.fullmatch(r"misclassified/[A-Za-z0-9_.\-]+", name)
        if name.endswith(".png"):
            assert data.startswith(b"\x89PNG")
            continue
        samples, rate = sf.read(io.BytesIO(data))
        info = sf.info(io.BytesIO(data))
        assert (rate, info.subtype, info.channels) == (SR, "PCM_16", 1)
        row = int(name.rsplit("-", 1)[1].removesuffix(".wav"))
        assert_allclose(samples, clips[row], atol=1.01 / 32768)


def test_at_most_n_clips_spread_over_the_true_classes():
    clips = _clips(40)
    y_true = np.repeat(["a", "b", "c", "d"], 10)
    y_pred = np.where(np.arange(40) % 10 < 8, "z", y_true)  # 8 errors per class
    files = misclassified_clips(clips, y_true, y_pred, SR, max_clips=4, images=False)
    assert len(files) == 4
    assert {name.split("_")[0] for name in files} == {f"misclassified/true-{c}" for c in "abcd"}
    again = misclassified_clips(clips, y_true, y_pred, SR, max_clips=4, images=False)
    other = misclassified_clips(clips, y_true, y_pred, SR, max_clips=4, images=False,
                                random_state=1)  # fmt: skip
    assert again.keys() == files.keys() and other.keys() != files.keys()
    assert len(misclassified_clips(clips, y_true, y_pred, SR, max_clips=30, images=False)) == 30


def test_nothing_when_every_clip_is_right_and_loud_clips_are_scaled():
    clips = _clips(4)
    labels = np.array(["a", "b", "a", "b"])
    assert misclassified_clips(clips, labels, labels, SR) == {}
    loud = clips * 4
    (wav,) = misclassified_clips(loud, labels, labels[::-1], SR, max_clips=1, images=False).values()
    samples, _ = sf.read(io.BytesIO(wav))
    assert np.abs(samples).max() == pytest.approx(1.0, abs=1e-4)
    assert samples @ loud[np.argmax(np.abs(loud).max(1) > 0)] != 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(100), ["a"], ["b"], SR), r"clips must have shape \(n_clips, n_samples\)"),
        ((np.zeros((2, 100)), ["a"], ["b", "a"], SR), "one entry per clip, got 2, 1 and 2"),
    ],
)
def test_clip_errors(args, match):
    with pytest.raises(ValueError, match=match):
        misclassified_clips(*args)
    with pytest.raises(ValueError, match="max_clips must be a non-negative integer"):
        misclassified_clips(np.zeros((1, 10)), ["a"], ["b"], SR, max_clips=-1)


def test_evaluate_attaches_misclassified_sounds_of_an_audio_model():
    clips, labels, _ = make_instrument_sounds(6, sr=SR, duration=0.25, random_state=0)
    # Few mel bands and a tiny training set: an audio model that makes mistakes.
    model = make_pipeline(LogMelFeatures(sr=SR, n_fft=256, hop_length=128, n_mels=8),
                          StandardScaler(), LogisticRegression(C=1e-3))  # fmt: skip
    model.fit(clips[:12], labels[:12])
    out = _evaluate(model, clips[12:], labels[12:], "classification")
    wrong = np.flatnonzero(model.predict(clips[12:]) != labels[12:])
    assert wrong.size > 0
    wavs = [name for name in out["files"] if name.endswith(".wav")]
    assert len(wavs) == min(6, wrong.size)
    rows = {int(name.rsplit("-", 1)[1].removesuffix(".wav")) for name in wavs}
    assert rows <= set(wrong)
    silent = _evaluate(model, clips[12:], labels[12:], "classification", sample_rate=None)
    assert silent["files"] == {}
