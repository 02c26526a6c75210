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
