"""The committed default run's metrics files agree with each other.

``dvc metrics show`` lists the training record (``metrics/train/<entry>.json``) and the
evaluation (``metrics/eval/<entry>.json``) side by side: a key both hold must have one value.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EVAL = sorted((REPO / "metrics/eval").glob("*.json"))


def test_the_committed_run_has_evaluations():
    assert EVAL, "metrics/eval holds no evaluation of the committed run"


@pytest.mark.parametrize("path", EVAL, ids=[p.stem for p in EVAL])
def test_evaluation_repeats_the_training_record(path):
    evaluation = json.loads(path.read_text())
    training = json.loads((REPO / "metrics/train" / path.name).read_text())
    for key in ("init", "best_epoch", "params_total", "params_trainable"):
        assert evaluation[key] == training[key], key
    # default freezing of a model from ImageNet weights: it trains fewer parameters than it
    # holds
    if training["init"] != "scratch" and training["freeze"] == "default":
        assert training["params_trainable"] < training["params_total"]


EXPORT = sorted((REPO / "metrics/export").glob("*.json"))


@pytest.mark.parametrize("path", EXPORT, ids=[p.stem for p in EXPORT])
def test_exports_with_a_cam_head_carry_the_graph_predict_runs(path):
    """Each exported backbone with a CAM head (the MobileNets) has the class activation map
    graph of ``mammocad predict`` (``--engine onnx``), checked against PyTorch within
    ``export.fp32_tolerance``; one without (AlexNet, VGG) has none."""
    import yaml

    from mammocad.models.backbones import get_spec

    record = json.loads(path.read_text())
    if get_spec(record["backbone"]).head != "gap_linear":
        assert "cam" not in record["files"] and "cam_onnx" not in record["checks"]
        return
    tolerance = yaml.safe_load((REPO / "params.yaml").read_text())["export"]["fp32_tolerance"]
    assert record["files"]["cam"] == "cam.onnx"
    check = record["checks"]["cam_onnx"]
    assert 0 <= check["max_prob_diff"] <= tolerance
    assert 0 <= check["max_map_diff"] <= tolerance
    assert check["decision_agreement"] == 1.0
    # the maps were checked on an input of another shape than the patches
    assert check["mosaic_shape"] != record["input"]["shape"][2:]
