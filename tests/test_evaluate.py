"""Value tables for the metrics of paper §4.1, thresholds, bootstrap intervals and curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from mammocad.evaluate import (
    CI_METRICS,
    auc_difference,
    average_precision,
    binary_metrics,
    bootstrap_ci,
    choose_threshold,
    confusion,
    curves,
    descriptor_reference,
    descriptor_score,
    latency_ms,
    model_file_mb,
    roc_auc,
)
from mammocad.evaluate.metrics import average_ranks, pr_points, roc_points

Y = [0, 0, 1, 1]
P = [0.1, 0.6, 0.4, 0.9]


def test_binary_metrics_value_table():
    m = binary_metrics(Y, P, 0.5)
    # predictions at 0.5: [0, 1, 0, 1] → tp 1 (0.9), fp 1 (0.6), tn 1 (0.1), fn 1 (0.4)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 1, 1)
    for key in ("accuracy", "precision", "recall", "specificity", "f1"):
        assert m[key] == pytest.approx(0.5), key
    # positive/negative pairs (0.4,0.1) (0.4,0.6) (0.9,0.1) (0.9,0.6): 3 of 4 ordered
    assert m["roc_auc"] == pytest.approx(0.75)
    # descending scores 0.9(+) 0.6(−) 0.4(+) 0.1(−): recall steps 0.5 at precision 1 and
    # 0.5 at precision 2/3 → AP = 0.5·1 + 0.5·2/3
    assert m["pr_auc"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert (m["n"], m["n_positive"], m["threshold"]) == (4, 2, 0.5)


def test_threshold_is_inclusive_and_changes_counts():
    m = binary_metrics(Y, P, 0.4)  # 0.4 itself is called positive
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 0)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == 1.0 and m["specificity"] == 0.5
    assert m["f1"] == pytest.approx(0.8)


def test_ranking_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = rng.integers(0, 2, 30)
        y[:2] = (0, 1)
        p = np.round(rng.random(30), 1)  # many ties
        assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_curves_and_ranks_match_sklearn_and_scipy_with_ties():
    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 30, 200):
        for _ in range(20):
            y = rng.integers(0, 2, n)
            y[:2] = (0, 1)
            p = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties, often many
            np.testing.assert_array_equal(average_ranks(p), rankdata(p))
            for drop in (True, False):
                ours, theirs = roc_points(y, p, drop), roc_curve(y, p, drop_intermediate=drop)
                for a, b in zip(ours, theirs, strict=True):
                    np.testing.assert_array_equal(a, b)
            for a, b in zip(pr_points(y, p), precision_recall_curve(y, p), strict=True):
                np.testing.assert_array_equal(a, b)
    y = np.array([0, 1, 1, 0])  # one distinct score: the diagonal, one threshold
    p = np.full(4, 0.3)
    for a, b in zip(roc_points(y, p), roc_curve(y, p), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(pr_points(y, p), precision_recall_curve(y, p), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(average_ranks(p), [2.5] * 4)
    y = np.array([1, 1, 1])  # no negative: precision 1 everywhere, as sklearn has it
    for a, b in zip(
        pr_points(y, np.array([0.2, 0.5, 0.5])),
        precision_recall_curve(y, [0.2, 0.5, 0.5]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_single_class_and_no_positive_calls_never_crash():
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3], 0.5)
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["recall"] is None and m["f1"] is None
    assert m["precision"] == 0.0  # no positive calls: 0/0 taken as 0
    assert m["specificity"] == 1.0 and m["accuracy"] == 1.0
    m = binary_metrics([1, 1], [0.7, 0.2], 0.5)
    assert m["roc_auc"] is None and m["specificity"] is None
    assert m["pr_auc"] == 1.0 and m["recall"] == 0.5
    json.dumps(m)  # no NaN or NumPy types in metric files
    assert curves([0, 0], [0.1, 0.2]) == {"roc": [], "pr": []}


def test_invalid_inputs_rejected():
    with pytest.raises(ValueError):
        binary_metrics([], [], 0.5)
    with pytest.raises(ValueError):
        binary_metrics([0, 2], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.1, 1.2], 0.5)
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.1], 0.5)


@pytest.mark.parametrize(
    ("y", "p", "method", "expected"),
    [
        # J = tpr − fpr at 0.8 .33, 0.7 .67, 0.6 .42, 0.5 .75, 0.3 .5, 0.2 .25, 0.1 0
        ([0, 0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8], "youden", 0.5),
        # F1 at 0.8 .5, 0.7 .8, 0.6 .67, 0.5 .86, 0.3 .75 → 0.5
        ([0, 0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8], "f1", 0.5),
        # J ties at 0.9 and 0.4 (both 0.5): the higher threshold wins
        (Y, P, "youden", 0.9),
        # F1 at 0.9 .67, 0.6 .5, 0.4 .8, 0.1 .67 → 0.4
        (Y, P, "f1", 0.4),
        (Y, P, "fixed", 0.3),
        # one class: youden undefined → the fixed fallback
        ([1, 1, 1], [0.2, 0.5, 0.9], "youden", 0.3),
        ([0, 0, 0], [0.2, 0.5, 0.9], "f1", 0.3),
    ],
)
def test_choose_threshold_value_table(y, p, method, expected):
    assert choose_threshold(y, p, method, fixed=0.3) == pytest.approx(expected)


def test_choose_threshold_unknown_method():
    with pytest.raises(KeyError, match="youden"):
        choose_threshold(Y, P, "otsu")  # type: ignore[arg-type]


def test_confusion_layout():
    assert confusion([0, 0, 1, 1, 1], [0, 1, 1, 0, 1]) == [[1, 1], [1, 2]]


def _patients(n_patients: int, per_patient: int, seed: int):
    """Scores of ``n_patients``, each with ``per_patient`` identical duplicate images."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_patients)
    p = np.clip(0.5 + 0.25 * (2 * y - 1) + rng.normal(0, 0.25, n_patients), 0, 1)
    return (
        np.repeat(y, per_patient),
        np.repeat(p, per_patient),
        np.repeat(np.arange(n_patients), per_patient),
    )


def test_bootstrap_contains_estimate_and_is_deterministic():
    y, p, g = _patients(40, 2, seed=1)
    ci = bootstrap_ci(y, p, g, 0.5, n_boot=300, seed=3)
    point = binary_metrics(y, p, 0.5)
    assert set(ci) == set(CI_METRICS)
    for name in CI_METRICS:
        assert ci[name]["n_valid"] == 300
        assert ci[name]["low"] <= point[name] <= ci[name]["high"], name
    assert bootstrap_ci(y, p, g, 0.5, n_boot=300, seed=3) == ci
    assert bootstrap_ci(y, p, g, 0.5, n_boot=300, seed=4) != ci


def test_bootstrap_narrower_with_more_patients():
    def width(n):
        y, p, g = _patients(n, 1, seed=n)
        ci = bootstrap_ci(y, p, g, 0.5, n_boot=300, seed=0)["accuracy"]
        return ci["high"] - ci["low"]

    assert width(400) < width(25)


def test_bootstrap_resamples_patients_not_images():
    # 30 patients with 6 identical images each: there are 30 independent observations,
    # not 180, and the interval must say so
    y, p, g = _patients(30, 6, seed=2)
    by_patient = bootstrap_ci(y, p, g, 0.5, n_boot=400, seed=0)["accuracy"]
    rng = np.random.default_rng(0)
    correct = ((p >= 0.5) == y).astype(float)
    naive = [correct[rng.integers(0, len(y), len(y))].mean() for _ in range(400)]
    low, high = np.quantile(naive, [0.025, 0.975])
    assert by_patient["high"] - by_patient["low"] > 1.5 * (high - low)
    # every image its own group is the naive bootstrap
    per_image = bootstrap_ci(y, p, np.arange(len(y)), 0.5, n_boot=400, seed=0)["accuracy"]
    assert per_image["high"] - per_image["low"] == pytest.approx(high - low, rel=0.35)


def test_bootstrap_counts_valid_replicates():
    # one positive patient: replicates that miss it have no defined recall or AUC
    y = np.array([1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.1, 0.7, 0.3, 0.4])
    ci = bootstrap_ci(y, p, np.arange(6), 0.5, n_boot=200, seed=0)
    assert 0 < ci["recall"]["n_valid"] < 200
    assert ci["roc_auc"]["n_valid"] == ci["recall"]["n_valid"]
    assert ci["accuracy"]["n_valid"] == 200
    none = bootstrap_ci([0, 0], [0.1, 0.2], ["a", "b"], 0.5, n_boot=20)
    assert none["roc_auc"] == {"low": None, "high": None, "n_valid": 0}


def test_curves_rows_for_dvc_plots():
    c = curves(Y, P)
    assert [(r["fpr"], r["tpr"]) for r in c["roc"]] == [
        (0, 0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1)
    ]  # fmt: skip
    assert c["roc"][0]["threshold"] is None and c["roc"][1]["threshold"] == 0.9
    assert c["pr"][-1] == {"precision": 1.0, "recall": 0.0, "threshold": None}
    assert {"precision": 2 / 3, "recall": 1.0, "threshold": 0.4} in c["pr"]
    json.loads(json.dumps(c, allow_nan=False))


def test_latency_and_file_size(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
    model.train()
    lat = latency_ms(model, (1, 8, 8), repeats=5, warmup=1, threads=1)
    assert 0 < lat["median_ms"] <= lat["p90_ms"] and lat["repeats"] == 5
    assert lat["threads"] == 1
    assert model.training  # mode restored
    with pytest.raises(ValueError):
        latency_ms(model, (2, 1, 8, 8))
    path = tmp_path / "m.bin"
    path.write_bytes(b"\0" * (3 * 2**20 // 2))
    assert model_file_mb(path) == 1.5


# --------------------------------------------------------------------------- references


def test_auc_difference_value_table():
    y = [0, 0, 1, 1]
    groups = ["a", "b", "c", "d"]
    perfect = [0.1, 0.2, 0.8, 0.9]
    out = auc_difference(y, perfect, [0.9, 0.8, 0.2, 0.1], groups, n_boot=200, seed=1)
    assert out["auc_a"] == 1.0 and out["auc_b"] == 0.0 and out["difference"] == 1.0
    assert out["low"] == out["high"] == 1.0  # every replicate with both classes says so
    same = auc_difference(y, perfect, perfect, groups, n_boot=50)
    assert same["difference"] == 0.0 and same["low"] == same["high"] == 0.0
    # b ranks one of four positive-negative pairs wrongly: AUC 3/4
    part = auc_difference(y, perfect, [0.1, 0.8, 0.2, 0.9], groups, n_boot=200, seed=1)
    assert part["auc_b"] == 0.75 and part["difference"] == 0.25
    assert part["low"] <= 0.25 <= part["high"] and part["n_valid"] > 100


def test_auc_difference_is_paired_by_patient():
    # a patient's two images always travel together: swapping one patient's scores in b
    # changes the difference only through that patient
    y = [0, 1, 0, 1]
    groups = ["p", "p", "q", "q"]
    out = auc_difference(y, [0.2, 0.7, 0.3, 0.8], [0.2, 0.7, 0.3, 0.8], groups, n_boot=100)
    assert out["low"] == out["high"] == 0.0
    with pytest.raises(ValueError, match="one entry per image"):
        auc_difference(y, [0.1] * 4, [0.2] * 4, ["p"])


@pytest.mark.parametrize(
    ("shape", "margins", "score"),
    [
        ("OVAL", "CIRCUMSCRIBED", 0.0),
        ("ROUND", "OBSCURED", 1.0),
        ("LOBULATED", "MICROLOBULATED", 3.0),
        ("IRREGULAR", "SPICULATED", 6.0),
        ("LOBULATED", "OBSCURED-ILL_DEFINED", 4.0),  # a compound value counts its worst part
        ("IRREGULAR-ARCHITECTURAL_DISTORTION", "", 2.0),
        (" oval ", "circumscribed\n", 0.0),
        ("", "", None),
        ("N/A", "", None),
    ],
)
def test_descriptor_score_value_table(shape, margins, score):
    assert descriptor_score(shape, margins) == score


def test_descriptor_reference_on_a_tiny_split():
    frame = pd.DataFrame(
        {
            "lesion_shape": ["OVAL", "ROUND", "IRREGULAR", "IRREGULAR", ""],
            "lesion_margins": ["CIRCUMSCRIBED", "SPICULATED", "SPICULATED", "OBSCURED", ""],
            "pathology": ["BENIGN", "BENIGN", "MALIGNANT", "MALIGNANT", "MALIGNANT"],
            "patient_id": ["a", "b", "c", "d", "e"],
        }
    )
    ref = descriptor_reference(frame, n_boot=100)
    # scores 0, 4 (benign) vs 6, 3 (malignant; the empty row is not scored): 3 of 4 pairs
    assert ref["auc"] == 0.75 and ref["n"] == 5 and ref["n_scored"] == 4
    empty = frame.assign(lesion_shape="", lesion_margins="")
    assert descriptor_reference(empty) is None
