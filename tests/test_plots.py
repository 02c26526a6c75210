"""Value tables for the plot data files: the confusion rows of DVC's confusion template."""

from __future__ import annotations

import pandas as pd
import pytest

from mammocad.evaluate import confusion
from mammocad.plots import confusion_rows, write_confusion

CLASSES = ("benign", "malignant")


def test_confusion_rows_table():
    # threshold 0.5: prob >= 0.5 is called malignant (0.5 itself included)
    rows = confusion_rows([1, 0, 1, 0, 1], [0.9, 0.5, 0.2, 0.1, 0.5], 0.5, CLASSES)
    assert list(rows.columns) == ["actual", "predicted"]
    assert rows.values.tolist() == [  # sorted: the order carries nothing, diffs stay small
        ["benign", "benign"],
        ["benign", "malignant"],
        ["malignant", "benign"],
        ["malignant", "malignant"],
        ["malignant", "malignant"],
    ]


def test_confusion_rows_count_the_cells_of_the_metrics_matrix():
    y = [0, 0, 0, 1, 1, 1, 1, 0]
    p = [0.1, 0.7, 0.3, 0.8, 0.4, 0.9, 0.6, 0.2]
    rows = confusion_rows(y, p, 0.55, CLASSES)
    counts = rows.value_counts()
    (tn, fp), (fn, tp) = confusion(y, [int(v >= 0.55) for v in p])
    assert counts[("benign", "benign")] == tn == 3
    assert counts[("benign", "malignant")] == fp == 1
    assert counts[("malignant", "benign")] == fn == 1
    assert counts[("malignant", "malignant")] == tp == 3


def test_write_confusion_csv(tmp_path):
    path = tmp_path / "metrics/confusion/m.csv"
    write_confusion(path, [0, 1], [0.2, 0.7], 0.5, ("normal", "abnormal"))
    assert path.read_text().splitlines() == [
        "actual,predicted",
        "abnormal,abnormal",
        "normal,normal",
    ]
    pd.testing.assert_frame_equal(
        pd.read_csv(path), confusion_rows([0, 1], [0.2, 0.7], 0.5, ("normal", "abnormal"))
    )


@pytest.mark.parametrize(
    ("y", "p", "classes", "message"),
    [
        ([0, 2], [0.1, 0.2], CLASSES, "0/1 labels"),
        ([0, 1], [0.1], CLASSES, "one length"),
        ([0, 1], [0.1, 0.2], ("a", "a"), "two distinct"),
        ([0, 1], [0.1, 0.2], ("a",), "two distinct"),
    ],
)
def test_confusion_rows_refuses_bad_input(y, p, classes, message):
    with pytest.raises(ValueError, match=message):
        confusion_rows(y, p, 0.5, classes)
