"""The whole system of paper Fig. 1: candidate marks, FROC, cascade scores, image AUCs.

Every expected value below is worked out by hand in the comments next to it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mammocad import localize as L
from mammocad import system as S
from mammocad.checkpoint import save_checkpoint
from mammocad.io import write_png
from mammocad.models.shallow import ShallowCNN, ShallowConfig
from mammocad.report import froc_figure, system_markdown

# --------------------------------------------------------------------------- candidates


def test_peak_candidates_suppress_neighbours_and_skip_zeros():
    heat = np.zeros((20, 30), np.float32)
    heat[5, 5], heat[5, 7], heat[15, 25] = 0.9, 0.8, 0.6
    found = L.peak_candidates(heat, k=5, radius=3)
    # 0.8 lies 2 px from 0.9, inside its 7×7 suppression square; zeros are never marks
    assert [(c["x"], c["y"], c["score"]) for c in found] == [
        (5, 5, pytest.approx(0.9)),
        (25, 15, pytest.approx(0.6)),
    ]
    # boxes: the suppression square, clipped to the 30-wide map (x1 exclusive)
    assert [c["bbox"] for c in found] == [[2, 2, 9, 9], [22, 12, 29, 19]]
    # with a radius of 1, 0.8 is outside 0.9's 3×3 square and becomes the second mark
    assert [c["score"] for c in L.peak_candidates(heat, k=5, radius=1)] == pytest.approx(
        [0.9, 0.8, 0.6]
    )
    assert len(L.peak_candidates(heat, k=1, radius=3)) == 1
    scaled = L.peak_candidates(heat, k=5, radius=3, score_scale=0.5)
    assert [c["score"] for c in scaled] == pytest.approx([0.45, 0.3])
    assert L.peak_candidates(np.zeros((4, 4)), k=3, radius=1) == []


def test_candidate_hits_use_the_peak_inside_the_outline():
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b = np.zeros((10, 10), bool)
    b[4:8, 4:8] = True
    marks = [{"x": 3, "y": 3}, {"x": 5, "y": 5}, {"x": 9, "y": 0}]
    # (3,3) in a only; (5,5) in the overlap of a and b; (9,0) in neither: a false positive
    assert L.candidate_hits(marks, {"a": a, "b": b}) == [["a"], ["a", "b"], []]


# --------------------------------------------------------------------------- FROC

# Three images: A with lesion a1, B with lesions b1 and b2, N normal.
#   A: 0.9 → a1, 0.8 → a1 (second hit on a1: ignored), 0.3 false positive
#   B: 0.6 → b1, 0.4 false positive, 0.2 → b2
#   N: 0.7, 0.5, 0.1 false positives (a normal image gives false positives only)
# Each lesion counts at its best hit: a1 0.9, b1 0.6, b2 0.2; false positives
# 0.7, 0.5, 0.4, 0.3, 0.1. Per threshold, sensitivity (of 3 lesions) and FP per image
# (of 3 images):
#   0.9: 1/3, 0   0.7: 1/3, 1/3   0.6: 2/3, 1/3   0.5: 2/3, 2/3   0.4: 2/3, 1
#   0.3: 2/3, 4/3   0.2: 1, 4/3   0.1: 1, 5/3
# Sensitivity at ≤ 0.25 FP/image: 1/3 (t = 0.9); ≤ 0.5: 2/3 (t = 0.6); ≤ 1: 2/3;
# ≤ 2 and ≤ 4: 1. Counting the second hit on a1 as a false positive would give 1/3 at
# 0.5 FP/image (t = 0.6 would then have 2/3 FP/image); counting hits instead of lesions
# would give 2/3 at 0.25 FP/image.
CANDS = [
    ("A", 0.9, ["a1"]),
    ("A", 0.8, ["a1"]),
    ("A", 0.3, []),
    ("B", 0.6, ["b1"]),
    ("B", 0.4, []),
    ("B", 0.2, ["b2"]),
    ("N", 0.7, []),
    ("N", 0.5, []),
    ("N", 0.1, []),
]
LESIONS = ["a1", "b1", "b2"]


def test_froc_curve_by_hand():
    curve = S.froc_curve([c[1] for c in CANDS], [c[2] for c in CANDS], LESIONS, n_images=3)
    assert curve.thresholds[0] == math.inf
    assert curve.thresholds[1:] == pytest.approx([0.9, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    assert curve.fp_per_image == pytest.approx(np.array([0, 0, 1, 1, 2, 3, 4, 4, 5]) / 3)
    assert curve.sensitivity == pytest.approx(np.array([0, 1, 1, 2, 2, 2, 2, 3, 3]) / 3)
    expected = {0.25: 1 / 3, 0.5: 2 / 3, 1.0: 2 / 3, 2.0: 1.0, 4.0: 1.0}
    for rate, sens in expected.items():
        assert curve.sensitivity_at(rate) == pytest.approx(sens), rate
    summary = curve.summary()
    assert summary["sensitivity_at_fp"] == pytest.approx(
        {"0.25": 1 / 3, "0.5": 2 / 3, "1": 2 / 3, "2": 1.0, "4": 1.0}
    )
    assert summary["mean_sensitivity"] == pytest.approx(11 / 15)  # (1+2+2+3+3)/3/5
    assert summary["max_fp_per_image"] == pytest.approx(5 / 3)
    assert (summary["n_images"], summary["n_lesions"]) == (3, 3)
    assert curve.rows()[0] == {"threshold": None, "fp_per_image": 0.0, "sensitivity": 0.0}


def test_froc_lesion_hit_twice_counts_once_and_normals_add_false_positives():
    # lesion x hit at 0.9 and 0.8 on image I; normal image M holds one mark at 0.85
    curve = S.froc_curve([0.9, 0.8, 0.85], [["x"], ["x"], []], ["x", "y"], n_images=2)
    # thresholds 0.9, 0.85: the second hit on x adds no point and no false positive
    assert curve.thresholds[1:] == pytest.approx([0.9, 0.85])
    assert curve.sensitivity[1:] == pytest.approx([0.5, 0.5])
    assert curve.fp_per_image[1:] == pytest.approx([0.0, 0.5])


def test_froc_rejects_unknown_lesions_and_handles_no_lesions():
    with pytest.raises(ValueError, match="unknown lesion"):
        S.froc_curve([0.5], [["z"]], ["x"], n_images=1)
    curve = S.froc_curve([0.5, 0.4], [[], []], [], n_images=2)
    assert curve.sensitivity_at(1.0) is None
    assert curve.fp_per_image[-1] == pytest.approx(1.0)


def _frames():
    images = pd.DataFrame({
        "image_id": ["A", "B", "N", "X"],
        # X: a finding without an outline; its marks could not be judged
        "froc_eligible": [True, True, True, False],
    })  # fmt: skip
    marks = CANDS + [("X", 0.95, [])]
    candidates = pd.DataFrame(
        {"image_id": [c[0] for c in marks], "score": [c[1] for c in marks],
         "lesions": [c[2] for c in marks]}
    )  # fmt: skip
    lesions = pd.DataFrame({"lesion_id": LESIONS, "image_id": ["A", "B", "B"]})
    return images, candidates, lesions


def test_system_frocs_drop_ineligible_images_and_gate_the_cascade():
    images, candidates, lesions = _frames()
    frocs = S.system_frocs(images, candidates, lesions, passed=["A", "N"])
    # X's 0.95 false positive and X itself are left out: the by-hand curve above
    assert frocs["patch_network"].sensitivity_at(1.0) == pytest.approx(2 / 3)
    assert frocs["patch_network"].n_images == 3
    # the gate stops B: its marks go (b1, b2 missed, its 0.4 FP gone); false positives
    # 0.7, 0.5, 0.3, 0.1 remain over 3 images, a1 is found at 0.9
    cascade = frocs["cascade"]
    assert cascade.thresholds[1:] == pytest.approx([0.9, 0.7, 0.5, 0.3, 0.1])
    assert cascade.fp_per_image[1:] == pytest.approx(np.array([0, 1, 2, 3, 4]) / 3)
    assert cascade.sensitivity_at(4.0) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- image level

# p (shallow CNN), m (heatmap maximum), threshold t = 0.4:
#   image 0 NORMAL    p 0.2 m 0.9  stopped: 0.5·0.2/0.4 = 0.25    p·m = 0.18
#   image 1 MALIGNANT p 0.6 m 0.1  passed:  0.5 + 0.05 = 0.55     p·m = 0.06
#   image 2 BENIGN    p 0.9 m 0.5  passed:  0.5 + 0.25 = 0.75     p·m = 0.45
#   image 3 NORMAL    p 0.3 m 0.0  stopped: 0.5·0.3/0.4 = 0.375   p·m = 0
P = [0.2, 0.6, 0.9, 0.3]
M = [0.9, 0.1, 0.5, 0.0]


def test_cascade_scores_by_hand():
    out = S.cascade_scores(P, M, 0.4)
    assert out["cascade"] == pytest.approx([0.25, 0.55, 0.75, 0.375])
    assert out["cascade_product"] == pytest.approx([0.18, 0.06, 0.45, 0.0])
    assert out["passed"].tolist() == [False, True, True, False]


def _images():
    return pd.DataFrame({
        "image_id": ["i0", "i1", "i2", "i3"],
        "patient_id": ["P1", "P1", "P2", "P2"],
        "pathology": ["NORMAL", "MALIGNANT", "BENIGN", "NORMAL"],
        "p_shallow": P,
        "peak": M,
    })  # fmt: skip


@pytest.mark.parametrize(
    "positive, aucs, n_positive",
    [
        # abnormal: positives i1, i2. shallow .6,.9 > .2,.3: 1. patch .1 beats 0 only,
        # .5 beats 0 only: 2/4. cascade .55,.75 > .25,.375: 1. product .06 > 0, .45 > .18
        # and 0: 3/4.
        ("abnormal", (1.0, 0.5, 1.0, 0.75), 2),
        # malignant: positive i1 only. shallow .6 beats .2, .3 not .9: 2/3. patch .1 beats
        # 0 only: 1/3. cascade .55 beats .25, .375: 2/3. product .06 beats 0 only: 1/3.
        ("malignant", (2 / 3, 1 / 3, 2 / 3, 1 / 3), 1),
    ],
)
def test_system_metrics_aucs_by_hand(positive, aucs, n_positive):
    out = S.system_metrics(_images(), 0.4, positive, n_boot=200, seed=0)
    assert out["positive"] == positive
    assert (out["n_images"], out["n_patients"], out["n_positive"]) == (4, 2, n_positive)
    got = tuple(out["auc"][name]["auc"] for name in S.SYSTEMS)
    assert got == pytest.approx(aucs)
    for name in S.SYSTEMS:
        a = out["auc"][name]
        assert set(a) == {"auc", "low", "high", "n_valid"}
        if a["n_valid"]:
            assert 0.0 <= a["low"] <= a["high"] <= 1.0
    gate = out["gate"]
    assert gate["passed"] == 2 and gate["passed_positive"] == n_positive


def test_evaluate_system_collects_aucs_froc_and_definitions():
    images, candidates, lesions = _frames()
    images = images[images["image_id"] != "X"].assign(
        patient_id=["P1", "P2", "P3"],
        pathology=["MALIGNANT", "BENIGN", "NORMAL"],
        p_shallow=[0.9, 0.1, 0.6],  # t = 0.5 stops B, as in the cascade test above
        peak=[0.9, 0.6, 0.7],
        heatmap_s=[1.0, 2.0, 4.0],
    )
    lesions = lesions.assign(abnormality_type=["mass", "mass", "calcification"])
    result = S.evaluate_system(images, candidates, lesions, 0.5, "abnormal", 50, 0)
    m = result.metrics
    assert m["froc"]["patch_network"]["sensitivity_at_fp"]["1"] == pytest.approx(2 / 3)
    assert m["froc"]["cascade"]["sensitivity_at_fp"]["4"] == pytest.approx(1 / 3)
    assert m["n_lesions_by_type"] == {"mass": 2, "calcification": 1}
    assert m["heatmap_seconds"]["median"] == 2.0
    assert "inside the lesion's outline" in m["detection_rule"]
    assert result.images["passed"].tolist() == [True, False, True]
    assert "heatmap_s" not in result.images  # seconds live apart from the per-image table
    # patch network: positives A .9, B .6 against N .7: 1 of 2 pairs
    assert m["auc"]["patch_network"]["auc"] == pytest.approx(0.5)
    json.dumps(m)  # JSON-ready


# --------------------------------------------------------------------------- the shallow CNN


def test_attach_shallow_joins_on_ids_and_checks_patients():
    images = _images()[["image_id", "patient_id", "pathology"]]
    frame = images.iloc[::-1].reset_index(drop=True)
    out = S.attach_shallow(images, frame, [0.1, 0.2, 0.3, 0.4])
    # frame is reversed: i3 got 0.1, i0 got 0.4
    assert out["p_shallow"].tolist() == [0.4, 0.3, 0.2, 0.1]
    with pytest.raises(ValueError, match="differ"):
        S.attach_shallow(images, frame.iloc[:3], [0.1, 0.2, 0.3])
    wrong = frame.assign(patient_id=["P9", "P2", "P1", "P1"])
    with pytest.raises(ValueError, match="i3: patient or pathology"):
        S.attach_shallow(images, wrong, [0.1, 0.2, 0.3, 0.4])


def test_shallow_probabilities_match_the_model(tmp_path):
    torch.manual_seed(0)
    model = ShallowCNN(ShallowConfig(channels=(4, 8), dropout=0.1)).eval()
    config = {
        "shallow": {"channels": [4, 8], "dropout": 0.1, "positive": "abnormal"},
        "input": {"channels": 1, "mean": [0.4], "std": [0.2]},
    }
    save_checkpoint(tmp_path / "s.pt", model, "shallow_cnn", config, 1, {})
    rng = np.random.default_rng(0)
    rows, images = [], []
    for i in range(3):
        images.append(rng.integers(0, 65535, (16, 12)).astype(np.uint16))
        write_png(tmp_path / f"{i}.png", images[-1])
        rows.append({"image_id": f"i{i}", "patient_id": "P", "pathology": "NORMAL",
                     "image_path": f"{i}.png"})  # fmt: skip
    loaded, ckpt = S.load_shallow(tmp_path / "s.pt")
    prob = S.shallow_probabilities(loaded, S.shallow_images(ckpt, pd.DataFrame(rows), tmp_path))
    # the stored pixels scaled to [0, 1], then normalised with the checkpoint's mean/std
    x = (torch.from_numpy(np.stack(images).astype(np.float32))[:, None] / 65535 - 0.4) / 0.2
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1)[:, 1].numpy()
    assert prob == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------- report


def test_system_section_and_froc_figure(tmp_path):
    images, candidates, lesions = _frames()
    images = images[images["image_id"] != "X"].assign(
        patient_id=["P1", "P2", "P3"],
        pathology=["MALIGNANT", "BENIGN", "NORMAL"],
        p_shallow=[0.9, 0.1, 0.6],
        peak=[0.9, 0.6, 0.7],
        heatmap_s=[1.0, 2.0, 4.0],
    )
    lesions = lesions.assign(abnormality_type=["mass", "mass", "mass"])
    result = S.evaluate_system(images, candidates, lesions, 0.5, "abnormal", 50, 0)
    metrics = {**result.metrics, "backbone": "mobilenet_v1", "method": "cam",
               "froc_candidates": 3}  # fmt: skip
    text = system_markdown(json.loads(json.dumps(metrics)))
    assert "## The whole system on full mammograms (paper Fig. 1)" in text
    assert "3 full mammograms (normals included) from 3 patients, 2 positive" in text
    assert "| Patch network, heatmap maximum (m) | 0.5" in text
    assert "| patch_network | 0.333 | 0.667 | 0.667 | 1.0 | 1.0 | 0.733 |" in text
    assert "| cascade | 0.333 | 0.333 | 0.333 | 0.333 | 0.333 | 0.333 |" in text
    assert "inside the lesion's outline" in text
    assert system_markdown(None) == ""
    files = {}
    for name, curve in result.frocs.items():
        files[name] = tmp_path / f"{name}.csv"
        pd.DataFrame(curve.rows()).to_csv(files[name], index=False)
    froc_figure(files, tmp_path / "froc.png")
    assert (tmp_path / "froc.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- the stage


@pytest.mark.slow
def test_localize_stage_scores_the_whole_system(tmp_path):
    """`dvc repro localize` on a tiny synthetic set: every test mammogram, the system's
    metrics, the FROC plots and the shallow CNN's AUC as its own stage measured it."""
    from tiny_repo import BIN, copy_tiny
    from tiny_repo import run as _run

    work = tmp_path / "repo"
    work.mkdir()
    copy_tiny(work, ["mobilenet_v1"], localize={"backbone": "mobilenet_v1"})
    _run(work, str(BIN / "dvc"), "init", "--no-scm", "-q")
    _run(work, str(BIN / "dvc"), "repro", "localize")

    split = pd.read_csv(work / "data/split/split.csv", keep_default_na=False)
    test = split[(split["split"] == "test") & (split["kind"] == "full")]
    system = json.loads((work / "metrics/system.json").read_text())
    assert system["n_images"] == len(test) and (test["pathology"] == "NORMAL").any()
    assert system["n_patients"] == test["patient_id"].nunique()
    assert system["positive"] == "abnormal"
    assert system["n_positive"] == int((test["pathology"] != "NORMAL").sum())
    assert set(system["auc"]) == set(S.SYSTEMS)
    # the same model on the same down-sized images as train_shallow's own evaluation
    shallow = json.loads((work / "metrics/shallow_cnn.json").read_text())
    assert system["auc"]["shallow_cnn"]["auc"] == pytest.approx(shallow["test"]["roc_auc"])
    assert system["gate"]["threshold"] == pytest.approx(shallow["threshold"])
    for name in ("patch_network", "cascade"):
        froc = system["froc"][name]
        assert set(froc["sensitivity_at_fp"]) == {"0.25", "0.5", "1", "2", "4"}
        curve = pd.read_csv(work / f"metrics/froc/{name}.csv")
        assert list(curve.columns) == ["threshold", "fp_per_image", "sensitivity"]
        assert curve["fp_per_image"].is_monotonic_increasing
    assert system["froc"]["patch_network"]["max_fp_per_image"] >= 4
    assert "heatmap_seconds" not in system  # timings live apart from the science
    timing = json.loads((work / "metrics/timing/system.json").read_text())
    assert timing["heatmap_seconds"]["median"] > 0
    overlays = list((work / "data/localize").glob("*.png"))
    assert len(overlays) == len(test)
    loc = json.loads((work / "metrics/localize.json").read_text())
    assert 0 < loc["n_images"] < len(test)  # lesion scores: images with masks only
    # the shallow CNN's activation map, scored on the same lesions beside the patch network
    assert loc["shallow_cnn"]["n"] == loc["n_images"]
    assert 0 <= loc["shallow_cnn"]["hit_rate"] <= 1
    assert loc["shallow_cnn"]["hit_rate_chance"] == pytest.approx(loc["hit_rate_chance"])
    per_image = pd.read_csv(work / "metrics/localize_images.csv")
    assert per_image["hit_shallow_cnn"].mean() == pytest.approx(loc["shallow_cnn"]["hit_rate"])
    # the top-level plot definition: x = FP per image, y = sensitivity of both curves
    out = _run(work, str(BIN / "dvc"), "plots", "show", "froc", "--json")
    plot = json.JSONDecoder().raw_decode(out)[0]["data"]["froc"][0]["content"]
    files = {row["filename"] for row in plot["data"]["values"]}
    assert files == {"patch_network.csv", "cascade.csv"}
