"""Table 1 regeneration from metrics files."""

import pandas as pd

from mammocad.report import PAPER_TABLE1, build_table, roc_figure, to_markdown


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
