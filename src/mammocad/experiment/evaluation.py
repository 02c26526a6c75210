"""Test-split metrics of a trained model, with the threshold chosen on validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mammocad.evaluate import (
    binary_metrics,
    bootstrap_ci,
    choose_threshold,
    confusion,
    curves,
    latency_ms,
    model_file_mb,
)
from mammocad.experiment.params import EvaluateParams
from mammocad.models.backbones import count_parameters
from mammocad.models.data import ImageSet
from mammocad.train import predict_proba


def evaluate_model(
    model: nn.Module,
    val_set: ImageSet,
    test_set: ImageSet,
    params: EvaluateParams,
    seed: int,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Test-split metrics with patient-bootstrap intervals (paper §4.1, and beyond it).

    The threshold is chosen on the validation split and applied unchanged to the test
    split. Returns a JSON-ready dict: point metrics, intervals, confusion matrix, curves,
    parameter counts, model file size and batch-1 CPU latency.
    """
    val_prob = predict_proba(model, val_set)
    test_prob = predict_proba(model, test_set)
    y_val = val_set.labels.numpy()
    y_test = test_set.labels.numpy()
    threshold = choose_threshold(y_val, val_prob, params.threshold, params.fixed_threshold)
    metrics = binary_metrics(y_test, test_prob, threshold)
    ci = bootstrap_ci(
        y_test,
        test_prob,
        test_set.groups,
        threshold,
        n_boot=params.bootstrap,
        seed=seed,
        alpha=params.alpha,
    )
    total, trainable = count_parameters(model)
    shape = (1, *test_set.get_batch([0])[0].shape[1:])
    out = {
        "threshold": threshold,
        "threshold_method": params.threshold,
        "test": metrics,
        "ci": ci,
        "confusion": confusion(y_test, (test_prob >= threshold).astype(int)),
        # a model that puts every test image in one class has learnt nothing usable,
        # whatever its accuracy on an unbalanced split
        "one_class": bool(len(np.unique(test_prob >= threshold)) < 2),
        "val": binary_metrics(y_val, val_prob, threshold),
        "n_test": len(test_set),
        "n_test_patients": int(len(np.unique(test_set.groups))),
        "params_total": total,
        "params_trainable": trainable,
        "params_millions": round(total / 1e6, 3),
        "latency": latency_ms(model, shape, repeats=params.latency_repeats),
        "curves": curves(y_test, test_prob),
        "predictions": [
            {"image_id": i, "patient_id": g, "label": int(y), "prob": float(p)}
            for i, g, y, p in zip(
                test_set.image_ids, test_set.groups, y_test, test_prob, strict=True
            )
        ],
    }
    if checkpoint is not None:
        out["model_file_mb"] = round(model_file_mb(checkpoint), 3)
    return out
