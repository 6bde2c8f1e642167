"""Bootstrap intervals: coverage at the nominal rate, whole groups, fixed class counts, seeds.

Every vectorised statistic is checked against scikit-learn computed on the redrawn rows
themselves (``np.repeat`` of the rows by their counts), through the public functions: a single
resample's interval is that resample's value.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression, Ridge

from mlx.evaluation import (
    bootstrap_counts,
    bootstrap_interval,
    bootstrap_intervals,
    class_metric,
    interval_metrics,
    scorer_interval,
)
from mlx.evaluation.intervals import scorer_metric


def _rows(counts):
    return np.repeat(np.arange(len(counts)), counts)


def _classes(n=80, k=4, accuracy=0.6, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < accuracy, y, rng.integers(0, k, n))
    return y, pred


CLASSIFICATION = {
    "accuracy": skm.accuracy_score,
    "balanced_accuracy": skm.balanced_accuracy_score,
    "matthews_corrcoef": skm.matthews_corrcoef,
    **{
        f"{kind}_{average}": (lambda t, p, f=func, a=average: f(t, p, average=a, zero_division=0))
        for kind, func in [
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ]
        for average in ("macro", "weighted", "micro")
    },
}


@pytest.mark.parametrize("name", sorted(CLASSIFICATION))
def test_classification_statistics_equal_sklearn_on_the_redrawn_rows(name):
    y, pred = _classes()
    for seed in range(8):
        (counts,) = bootstrap_counts(len(y), n_resamples=1, random_state=seed)
        drawn = _rows(counts)
        expected = CLASSIFICATION[name](y[drawn], pred[drawn])
        low, high = bootstrap_interval(y, pred, name, n_resamples=1, random_state=seed)
        assert low == pytest.approx(expected) and high == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["precision", "recall", "f1"])
def test_per_class_statistics_equal_sklearn(kind):
    y, pred = _classes()
    func = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
    for seed in range(5):
        (counts,) = bootstrap_counts(len(y), n_resamples=1, random_state=seed)
        drawn = _rows(counts)
        for label in range(4):
            expected = func[kind](
                y[drawn], pred[drawn], labels=[label], average=None, zero_division=0
            )[0]
            interval = bootstrap_interval(
                y, pred, class_metric(kind, label), n_resamples=1, random_state=seed
            )
            assert interval == pytest.approx((expected, expected))


REGRESSION = {
    "r2": skm.r2_score,
    "rmse": skm.root_mean_squared_error,
    "mae": skm.mean_absolute_error,
    "mse": skm.mean_squared_error,
    "neg_mean_squared_error": lambda t, p: -skm.mean_squared_error(t, p),
    "neg_root_mean_squared_error": lambda t, p: -skm.root_mean_squared_error(t, p),
    "neg_mean_absolute_error": lambda t, p: -skm.mean_absolute_error(t, p),
}


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_regression_statistics_equal_sklearn(name, outputs):
    rng = np.random.default_rng(2)
    # A large mean: the sums are centred, so R^2 keeps its precision.
    y = (1e4 + 3 * rng.normal(size=(60, outputs))).squeeze()
    pred = y + rng.normal(size=y.shape)
    for seed in range(5):
        (counts,) = bootstrap_counts(len(y), n_resamples=1, random_state=seed)
        drawn = _rows(counts)
        expected = REGRESSION[name](y[drawn], pred[drawn])
        low, _ = bootstrap_interval(y, pred, name, n_resamples=1, random_state=seed)
        assert low == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "func"),
    [("roc_auc", skm.roc_auc_score), ("average_precision", skm.average_precision_score)],
)
def test_ranking_statistics_equal_sklearn_with_tied_scores(name, func):
    rng = np.random.default_rng(3)
    y = np.array(["no", "yes"])[rng.integers(0, 2, 70)]
    score = np.round(rng.random(70) + 0.4 * (y == "yes"), 1)  # rounded: many ties
    for seed in range(6):
        (counts,) = bootstrap_counts(len(y), n_resamples=1, random_state=seed)
        drawn = _rows(counts)
        expected = func(y[drawn] == "yes", score[drawn])
        interval = bootstrap_interval(
            y, None, name, y_score=score, n_resamples=1, random_state=seed
        )
        assert interval == pytest.approx((expected, expected))


CLUSTERING = {
    "adjusted_rand": skm.adjusted_rand_score,
    "normalized_mutual_info": skm.normalized_mutual_info_score,
}


@pytest.mark.parametrize("name", sorted(CLUSTERING))
@pytest.mark.parametrize(
    "case", ["overlapping", "string classes", "one cluster", "identical", "tiny"]
)
def test_clustering_statistics_equal_sklearn_on_the_redrawn_rows(name, case):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 50)
    labels = np.where(rng.random(50) < 0.7, y + 5, rng.integers(0, 6, 50))  # other numbers
    if case == "string classes":
        y = np.array(["flute", "oboe", "harp"])[y]
    elif case == "one cluster":
        labels = np.zeros(50, dtype=int)
    elif case == "identical":
        labels = y.copy()
    elif case == "tiny":  # resamples often hold a single class or a single row's label
        y, labels = y[:3], labels[:3]
    for seed in range(10):
        (counts,) = bootstrap_counts(len(y), n_resamples=1, random_state=seed)
        drawn = _rows(counts)
        expected = CLUSTERING[name](y[drawn], labels[drawn])
        low, high = bootstrap_interval(y, labels, name, n_resamples=1, random_state=seed)
        assert low == pytest.approx(expected, abs=1e-12) and high == low


@pytest.mark.parametrize("name", sorted(CLUSTERING))
def test_a_clustering_scorer_is_resampled_in_closed_form(name):
    """Its scikit-learn scorer maps to the vectorised metric, not a call per resample."""
    from sklearn.metrics import get_scorer

    assert scorer_metric(get_scorer(f"{name}_score"), f"{name}_score") == (name, "predict")


def test_a_callable_is_called_on_each_resample():
    y, pred = _classes(n=40)
    for seed in range(3):
        (counts,) = bootstrap_counts(len(y), stratify=y, n_resamples=1, random_state=seed)
        drawn = _rows(counts)
        expected = skm.cohen_kappa_score(y[drawn], pred[drawn])
        interval = bootstrap_interval(
            y, pred, skm.cohen_kappa_score, stratify=y, n_resamples=1, random_state=seed
        )
        assert interval == pytest.approx((expected, expected))


def _simulated_coverage(n, accuracy, repetitions, n_resamples, groups_of=1, grouped=True):
    """Share of intervals covering the true accuracy of a simulated classifier.

    Each repetition draws a new test set of ``n`` rows (two balanced classes) whose rows are
    correct with probability ``accuracy``; with ``groups_of > 1``, all rows of a group are
    correct or wrong together.
    """
    rng = np.random.default_rng(0)
    groups = np.arange(n) // groups_of
    y = groups % 2
    hits, widths = 0, []
    for repetition in range(repetitions):
        correct = (rng.random(groups[-1] + 1) < accuracy)[groups]
        pred = np.where(correct, y, 1 - y)
        low, high = bootstrap_interval(
            y,
            pred,
            "accuracy",
            stratify=y,
            groups=groups if grouped else None,
            n_resamples=n_resamples,
            random_state=repetition,
        )
        hits += low <= accuracy <= high
        widths.append(high - low)
    return hits / repetitions, float(np.mean(widths))


def test_intervals_cover_the_true_accuracy_at_the_nominal_rate():
    """1,000 simulated test sets of 100 rows, accuracy 0.8: 95% intervals cover 0.8 ~95%."""
    coverage, width = _simulated_coverage(100, 0.8, repetitions=1000, n_resamples=400)
    assert 0.92 <= coverage <= 0.98, coverage  # 0.953 with these seeds
    # 1.96 standard errors of a proportion on each side: 2 * 1.96 * sqrt(0.16 / 100) = 0.157.
    assert width == pytest.approx(0.157, abs=0.02)


def test_groups_of_correlated_rows_need_the_grouped_bootstrap():
    """Rows of a group right or wrong together: 40 groups of 5 rows carry the information of
    40 rows, not 200. The row bootstrap ignores that and covers far less than 95%; the grouped
    bootstrap's intervals are wider and cover at about the nominal rate."""
    grouped, grouped_width = _simulated_coverage(200, 0.8, 300, 300, groups_of=5)
    rows, rows_width = _simulated_coverage(200, 0.8, 300, 300, groups_of=5, grouped=False)
    assert 0.9 <= grouped <= 0.99, grouped  # 0.95 with these seeds
    assert rows < 0.8, rows  # 0.65
    assert grouped_width > 1.8 * rows_width  # sqrt(5) = 2.2 in theory


def test_grouped_resamples_consist_of_whole_groups():
    rng = np.random.default_rng(4)
    groups = rng.permutation(np.repeat(np.arange(12), rng.integers(1, 6, 12)))
    counts = bootstrap_counts(len(groups), groups=groups, n_resamples=200, random_state=0)
    for g in range(12):
        members = counts[:, groups == g]
        assert_array_equal(members, members[:, :1].repeat(members.shape[1], axis=1))
    first = np.array([np.flatnonzero(groups == g)[0] for g in range(12)])
    assert_array_equal(counts[:, first].sum(axis=1), np.full(200, 12))  # 12 groups drawn
    assert len(np.unique(counts.sum(axis=1))) > 1  # row totals vary with the groups drawn


def test_stratified_resamples_keep_class_counts():
    y = np.array(["a"] * 7 + ["b"] * 20 + ["c"] * 3)
    counts = bootstrap_counts(len(y), stratify=y, n_resamples=300, random_state=0)
    for label, n in [("a", 7), ("b", 20), ("c", 3)]:
        assert_array_equal(counts[:, y == label].sum(axis=1), np.full(300, n))
    plain = bootstrap_counts(len(y), n_resamples=300, random_state=0)
    assert_array_equal(plain.sum(axis=1), np.full(300, 30))
    assert len(np.unique(plain[:, y == "c"].sum(axis=1))) > 1


def test_groups_within_one_class_are_drawn_within_their_class():
    groups = np.repeat(np.arange(8), 3)
    y = np.where(groups < 3, "a", "b")  # 3 groups of a, 5 of b
    counts = bootstrap_counts(len(y), groups=groups, stratify=y, n_resamples=100, random_state=0)
    assert_array_equal(counts[:, y == "a"].sum(axis=1), np.full(100, 9))
    # Groups that mix classes cannot keep class counts: drawn without strata, still whole.
    mixed = np.arange(len(y)) % 2
    counts = bootstrap_counts(len(y), groups=groups, stratify=mixed, n_resamples=100)
    assert_array_equal(counts.sum(axis=1), np.full(100, 24))
    assert_array_equal(counts[:, ::3], counts[:, 1::3])


def test_seeded_and_reproducible():
    y, pred = _classes()
    first = bootstrap_intervals(y, pred, ["accuracy", "f1_macro"], stratify=y, random_state=5)
    again = bootstrap_intervals(y, pred, ["accuracy", "f1_macro"], stratify=y, random_state=5)
    other = bootstrap_intervals(y, pred, ["accuracy", "f1_macro"], stratify=y, random_state=6)
    assert first == again
    assert first != other
    generator = bootstrap_counts(10, random_state=np.random.default_rng(1), n_resamples=3)
    assert_array_equal(generator, bootstrap_counts(10, random_state=1, n_resamples=3))


def test_chunks_and_several_metrics_share_the_resamples(monkeypatch):
    """Resamples drawn in several chunks give the same intervals as in one."""
    import mlx.evaluation.intervals as intervals

    y, pred = _classes(n=50)
    whole = bootstrap_intervals(y, pred, ["accuracy", "f1_macro"], n_resamples=300)
    monkeypatch.setattr(intervals, "_CHUNK_CELLS", 50 * 7)  # chunks of 7 resamples
    chunked = bootstrap_intervals(y, pred, ["accuracy", "f1_macro"], n_resamples=300)
    assert chunked == whole
    counts = bootstrap_counts(len(y), n_resamples=300)
    values = [skm.accuracy_score(y[_rows(c)], pred[_rows(c)]) for c in counts]
    assert whole[0]["accuracy"] == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])))


def test_degenerate_cases():
    y = np.array([0, 1, 2] * 5)
    assert bootstrap_interval(y, y, "accuracy") == (1.0, 1.0)
    assert bootstrap_interval(y, y, "f1_macro", stratify=y) == (1.0, 1.0)
    assert bootstrap_interval(y, (y + 1) % 3, "accuracy") == (0.0, 0.0)
    target = np.linspace(0, 1, 20)
    assert bootstrap_interval(target, target, "r2") == (1.0, 1.0)
    assert bootstrap_interval(target, target, "rmse") == (0.0, 0.0)
    assert bootstrap_interval([1], [1], "accuracy") == (1.0, 1.0)  # one row


def test_what_has_no_interval_says_why():
    y, pred = _classes()
    intervals, skipped = bootstrap_intervals(
        y, pred, ["accuracy", "tp", "roc_auc", "silhouette", class_metric("recall", 9)]
    )
    assert list(intervals) == ["accuracy"]
    assert "a count" in skipped["tp"]
    assert "needs scores" in skipped["roc_auc"]
    assert "callable" in skipped["silhouette"]
    assert "does not occur" in skipped[repr(class_metric("recall", 9))]
    three = bootstrap_intervals(y, pred, ["roc_auc"], y_score=np.zeros(len(y)))[1]
    assert "two classes" in three["roc_auc"]
    with pytest.raises(ValueError, match="no bootstrap interval for metric 'tp': a count"):
        bootstrap_interval(y, pred, "tp")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidence": 1.0}, "confidence must lie strictly between 0 and 1"),
        ({"confidence": 0}, "confidence must lie strictly between 0 and 1"),
        ({"n_resamples": 0}, "n_resamples must be a positive integer, got 0"),
        ({"n_resamples": 2.5}, "n_resamples must be a positive integer"),
        ({"groups": [0, 1]}, "groups has 2 entries but there are 6 rows"),
        ({"stratify": [0] * 7}, "stratify has 7 entries but there are 6 rows"),
        ({"y_score": [0.1]}, "y_true has 6 rows but y_score has 1"),
    ],
)
def test_errors_name_the_problem(kwargs, match):
    y = [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match=match):
        bootstrap_intervals(y, y, ["accuracy"], **kwargs)


def test_error_on_mismatched_or_empty_predictions():
    with pytest.raises(ValueError, match="y_true has 3 rows but y_pred has 2"):
        bootstrap_interval([0, 1, 0], [0, 1], "accuracy")
    with pytest.raises(ValueError, match="cannot bootstrap zero rows"):
        bootstrap_interval([], [], "accuracy")
    with pytest.raises(ValueError, match="kind must be one of"):
        class_metric("support", 1)


def test_interval_metrics_are_flat_names():
    flat = interval_metrics({"accuracy": (0.9, 1.0), "r2": (0.3, 0.5)})
    assert flat == {
        "accuracy_ci_low": 0.9,
        "accuracy_ci_high": 1.0,
        "r2_ci_low": 0.3,
        "r2_ci_high": 0.5,
    }


@pytest.fixture(scope="module")
def binary_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 3))
    y = (X[:, 0] + 0.8 * rng.normal(size=240) > 0).astype(int)
    model = LogisticRegression().fit(X[:120], y[:120])
    return model, X[120:], y[120:]


@pytest.mark.parametrize(
    "name",
    ["accuracy", "f1", "precision", "recall", "f1_macro", "matthews_corrcoef", "roc_auc",
     "average_precision", "jaccard"],
)  # fmt: skip
def test_scorer_interval_holds_the_scorers_value(binary_model, name):
    model, X, y = binary_model
    scorer = skm.get_scorer(name)
    # jaccard has no vectorised form: scikit-learn is called per resample (about 5 ms each).
    low, high = scorer_interval(scorer, model, X, y, metric_name=name, stratify=y, n_resamples=200)
    assert low <= scorer(model, X, y) <= high
    assert 0 < high - low < 0.5


def test_scorer_interval_of_a_negated_regression_scorer():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = X @ [1.0, -2.0] + rng.normal(size=100)
    model = Ridge().fit(X, y)
    scorer = skm.get_scorer("neg_mean_squared_error")
    low, high = scorer_interval(scorer, model, X, y, metric_name="neg_mean_squared_error")
    assert low <= scorer(model, X, y) <= high < 0


def test_scorer_interval_refuses_what_needs_more_than_predictions(binary_model):
    model, X, y = binary_model
    with pytest.raises(ValueError, match="reads predict_proba"):
        scorer_interval(skm.get_scorer("neg_log_loss"), model, X, y, metric_name="log_loss")
    with pytest.raises(ValueError, match="needs the model and X"):
        scorer_interval(lambda est, X, y: 1.0, model, X, y, metric_name="custom")
