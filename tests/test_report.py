"""Table 1 regeneration from metrics files."""

import pandas as pd
import pytest

from mammocad.report import (
    PAPER_TABLE1,
    build_table,
    roc_figure,
    table_order,
    to_markdown,
    transfer_gains,
)


def _eval(acc, auc, params):
    return {
        "test": {"accuracy": acc, "recall": 0.8, "precision": 0.6, "roc_auc": auc},
        "ci": {
            "accuracy": {"low": acc - 0.1, "high": acc + 0.05},
            "roc_auc": {"low": auc - 0.1, "high": None},
        },
        "params_total": params,
        "init": "scratch",
        "n_test": 30,
        "n_test_patients": 12,
    }


def test_table_rows_follow_paper_order_and_values():
    evals = {"mobilenet_v2": _eval(0.7, 0.8, 2_226_434), "alexnet": _eval(0.6, 0.65, 57_012_034)}
    table = build_table(evals)
    assert list(table["cnn"]) == ["AlexNet", "MobileNet-v2"]
    row = table.iloc[1].to_dict()
    assert row["params_m"] == 2.23 and row["params_m_paper"] == 2.5
    assert row["acc"] == 70.0 and row["acc_low"] == 60.0 and row["acc_high"] == 75.0
    assert row["acc_paper_cbis"] == 73.0 and row["rec_paper_cbis"] == 0.77
    assert row["auc"] == 0.8 and row["auc_low"] == 0.7
    assert row["auc_high"] is None or pd.isna(row["auc_high"])


def test_markdown_shows_both_columns_and_shallow_summary():
    table = build_table({"mobilenet_v1": _eval(0.75, 0.81, 3_209_026)})
    shallow = {
        "test": {"accuracy": 0.9, "recall": 0.95, "precision": 0.9, "roc_auc": 0.97},
        "n_test": 48,
        "params_total": 98_000,
        "train": {"positive": "abnormal"},
    }
    loc = {
        "backbone": "mobilenet_v1",
        "method": "cam",
        "init": "scratch",
        "n_images": 34,
        "hit_rate": 0.5,
        "hit_rate_chance": 0.015,
        "mean_iou": 0.2,
        "mean_iou_chance": 0.01,
        "mean_dice": 0.3,
        "mean_dice_chance": 0.02,
    }
    text = to_markdown(table, "synthetic", shallow, loc)
    assert "hit rate 0.5 (chance 0.015)" in text
    assert "own class activation map" not in text  # no shallow-CNN map scored
    loc["shallow_cnn"] = {"hit_rate": 0.62, "hit_rate_chance": 0.015}
    text = to_markdown(table, "synthetic", shallow, loc)
    assert "own class activation map" in text and "hit rate 0.62 (chance 0.015)" in text
    assert "above the patch network's" in text
    loc["shallow_cnn"] = {"hit_rate": 0.4, "hit_rate_chance": 0.015}
    text = to_markdown(table, "synthetic", shallow, loc)
    assert "hit rate 0.4 (chance 0.015)." in text and "above the patch network's" not in text
    assert "| MobileNet-v1 | 2017 | 3.2 | 3.21 | scratch | 74.5 | 75.0 [65.0, 80.0] |" in text
    assert "0.81 [0.71," not in text  # an open interval is shown as the point value only
    assert "| 0.81 |" in text
    assert "data source `synthetic`" in text and "30 patches from 12 patients" in text
    assert "Accuracy 90.0 %" in text


def test_paper_table_is_complete():
    assert set(PAPER_TABLE1) == {
        "alexnet",
        "vgg16",
        "vgg19",
        "resnet50",
        "googlenet",
        "mobilenet_v1",
        "mobilenet_v2",
    }
    assert PAPER_TABLE1["mobilenet_v1"]["cbis"] == (74.5, 0.76, 0.70)


def test_roc_figure_is_written(tmp_path):
    curve = tmp_path / "a.csv"
    pd.DataFrame({"model": "alexnet", "fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1]}).to_csv(curve)
    roc_figure({"alexnet": curve}, {"alexnet": {"test": {"roc_auc": 0.7}}}, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_variants_follow_their_backbone_without_paper_values():
    evals = {
        "mobilenet_v1-scratch": _eval(0.6, 0.62, 3_209_026),
        "alexnet": _eval(0.6, 0.65, 57_012_034),
        "mobilenet_v1": _eval(0.8, 0.9, 3_209_026),
    }
    assert table_order(evals) == ["alexnet", "mobilenet_v1", "mobilenet_v1-scratch"]
    table = build_table(evals)
    assert list(table["cnn"]) == ["AlexNet", "MobileNet-v1", "MobileNet-v1 (scratch)"]
    variant = table.iloc[2].to_dict()
    assert variant["year"] is None or pd.isna(variant["year"])
    assert variant["acc_paper_cbis"] is None or pd.isna(variant["acc_paper_cbis"])
    assert table.iloc[1]["acc_paper_cbis"] == 74.5


def _predictions(probs, labels=(0, 0, 1, 1), patients=("a", "b", "c", "d")):
    return [
        {"image_id": f"i{k}", "patient_id": g, "label": y, "prob": p}
        for k, (g, y, p) in enumerate(zip(patients, labels, probs, strict=True))
    ]


def test_transfer_gains_pair_each_backbone_with_its_scratch_run():
    predictions = {
        "mobilenet_v1": _predictions([0.1, 0.2, 0.8, 0.9]),
        # the same patches in another order: pairing is by image id
        "mobilenet_v1-scratch": list(reversed(_predictions([0.1, 0.8, 0.2, 0.9]))),
        "alexnet": _predictions([0.5, 0.5, 0.5, 0.5]),  # no scratch run: no row
    }
    gains = transfer_gains(predictions, n_boot=100)
    assert [g["backbone"] for g in gains] == ["mobilenet_v1"]
    # a "pretrained" run that resolved to scratch measures nothing
    assert transfer_gains(predictions, n_boot=10, inits={"mobilenet_v1": "scratch"}) == []
    assert gains[0]["auc_a"] == 1.0 and gains[0]["auc_b"] == 0.75
    assert gains[0]["difference"] == 0.25
    predictions["mobilenet_v1-scratch"] = predictions["mobilenet_v1-scratch"][:3]
    with pytest.raises(ValueError, match="different patches"):
        transfer_gains(predictions)


def test_markdown_sections_for_transfer_reference_and_one_class_rows():
    table = build_table({"mobilenet_v1": _eval(0.75, 0.81, 3_209_026)})
    transfer = [{"backbone": "mobilenet_v1", "auc_a": 0.9, "auc_b": 0.7, "difference": 0.2,
                 "low": 0.05, "high": 0.33}]  # fmt: skip
    reference = {"auc": 0.88, "low": 0.8, "high": 0.94, "n": 90, "n_scored": 90}
    text = to_markdown(table, "synthetic", None, None, transfer, reference, ["GoogLeNet"])
    assert "| mobilenet_v1 | 0.9 | 0.7 | 0.2 [0.05, 0.33] |" in text
    assert "ROC AUC 0.88 [0.8, 0.94] on 90 of 90 test patches" in text
    assert "whatever its AUC): GoogLeNet." in text
    assert "close to what the drawn look allows" in text  # the synthetic source's wording
    real = to_markdown(table, "cbis-ddsm", None, None, transfer, reference)
    assert "close to what the drawn look allows" not in real and "GoogLeNet" not in real
