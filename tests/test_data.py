"""Loading, audit, split and fingerprints of the data side."""

import json

import numpy as np
import pandas as pd
import pytest

from mlx.data import audit, fingerprint, load, row_hashes, split, split_summary
from mlx.exceptions import DataError

rng = np.random.default_rng(0)
X = rng.normal(size=(60, 3))
y = np.repeat([0, 1, 2], 20)


def test_fingerprint_ignores_row_order_but_not_content_or_labels():
    perm = rng.permutation(len(X))
    assert fingerprint(X, y) == fingerprint(X[perm], y[perm])
    assert fingerprint(X, y) != fingerprint(X, np.roll(y, 1))
    changed = X.copy()
    changed[0, 0] += 1e-9
    assert fingerprint(X, y) != fingerprint(changed, y)
    assert fingerprint(X[:-1], y[:-1]) != fingerprint(X, y)


def test_fingerprint_of_pandas_equals_numpy_rows():
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    assert fingerprint(frame, pd.Series(y)) == fingerprint(X, y)
    assert len(row_hashes(frame)) == len(X)


def test_split_is_deterministic_stratified_and_disjoint():
    data = load(lambda: (X, y), "classification")
    first = split(data, (0.6, 0.2, 0.2), seed=3, stratify=True)
    again = split(data, (0.6, 0.2, 0.2), seed=3, stratify=True)
    other = split(data, (0.6, 0.2, 0.2), seed=4, stratify=True)
    for (_, a), (_, b) in zip(first.items(), again.items(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.sort(first.test), np.sort(other.test))
    assert [len(first.train), len(first.val), len(first.test)] == [36, 12, 12]
    everything = np.concatenate([first.train, first.val, first.test])
    assert sorted(everything) == list(range(60))
    for indices in (first.val, first.test):
        assert np.bincount(y[indices]).tolist() == [4, 4, 4]


def test_split_keeps_each_group_in_one_split():
    groups = np.repeat(np.arange(12), 5)
    data = load(lambda: (X, y, groups), "classification")
    parts = split(data, (0.6, 0.2, 0.2), seed=0, stratify=True)
    seen = [set(groups[indices]) for _, indices in parts.items()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    summary = split_summary(data, parts, task="classification")
    assert sum(summary["splits"][k]["groups"] for k in ("train", "val", "test")) == 12


def test_grouped_split_stays_stratified_when_the_groups_allow():
    groups = np.repeat(np.arange(30), 2)  # ten single-class groups per class
    data = load(lambda: (X, y, groups), "classification")
    for seed in range(3):
        parts = split(data, (0.6, 0.2, 0.2), seed=seed, stratify=True)
        for _, indices in parts.items():
            assert set(y[indices]) == {0, 1, 2}
        assert not set(groups[parts.test]) & set(groups[parts.train])


def test_split_too_small_is_a_clear_error():
    data = load(lambda: (X[:5], np.array([0, 1, 0, 1, 0])), "classification")
    with pytest.raises(DataError, match="cannot split 5 rows"):
        split(data, (0.8, 0.1, 0.1), seed=0, stratify=True)


def test_audit_reports_problems():
    bad = pd.DataFrame(
        {
            "x": [1.0, np.nan, 3.0, 3.0, np.inf, 5.0],
            "const": [7, 7, 7, 7, 7, 7],
            "name": ["a", "b", "c", "c", "d", "e"],
        }
    )
    labels = np.array([0, 0, 0, 0, 0, 1])
    report = audit(bad, labels, task="classification")
    json.dumps(report)  # serialisable as audit.json
    assert report["rows"] == 6 and report["features"] == 3
    assert report["nan"] == {"total": 1, "columns": {"x": 1}}
    assert report["inf"] == {"total": 1, "columns": {"x": 1}}
    assert report["duplicate_rows"] == 1
    assert report["constant_features"] == ["const"]
    assert report["class_counts"] == {"0": 5, "1": 1}
    assert report["imbalance_ratio"] == 5.0
    assert len(report["warnings"]) == 4


def test_split_summary_counts_rows_shared_between_splits():
    dup = np.vstack([X, X[:10]])
    labels = np.concatenate([y, y[:10]])
    data = load(lambda: (dup, labels), "classification")
    parts = split(data, (0.5, 0.25, 0.25), seed=0, stratify=True)
    shared = split_summary(data, parts, task="classification")["shared_rows"]
    assert sum(shared.values()) > 0
    clean = load(lambda: (X, y), "classification")
    parts = split(clean, (0.5, 0.25, 0.25), seed=0, stratify=True)
    assert sum(split_summary(clean, parts, task="classification")["shared_rows"].values()) == 0


@pytest.mark.parametrize(
    "data, task, message",
    [
        (lambda: X, "classification", r"must return \(X, y\)"),
        (lambda: (X[:, 0], y), "classification", "X must be 2-D"),
        (lambda: (X, y[:-1]), "classification", "y has 59 rows but X has 60"),
        (lambda: (X[:0], y[:0]), "classification", "empty"),
        (lambda: (X, np.where(y == 2, np.nan, y)), "classification", "20 missing"),
        (lambda: (X, np.zeros(60)), "classification", "single class"),
        (lambda: (X, None), "regression", "y is None"),
        (lambda: 1 / 0, "regression", "ZeroDivisionError"),
    ],
)
def test_load_errors(data, task, message):
    with pytest.raises(DataError, match=message):
        load(data, task)


def test_load_accepts_string_labels_and_clustering_without_labels():
    names = np.array(["cat", "dog", "eel"])[y]
    assert load(lambda: (X, names), "classification").y[0] == "cat"
    assert load(lambda: (X, None), "clustering").y is None
