"""Test-set metrics of paper §4.1, with thresholds, confidence intervals and plot data.

Paper §4.1 reports accuracy, precision and recall (equations 1–3) with P = malignant
(or cancerous) and N = benign (or normal). Those need a decision threshold on the
predicted probability; it is chosen on the validation split (:func:`choose_threshold`) and
applied unchanged to the test split. Threshold-free ROC AUC and average precision, the
specificity, F1, patient-level bootstrap intervals (images of one patient are not
independent), ROC/PR curve data for DVC plots and model size/latency (the paper's
argument for MobileNet, §4.3) complete the picture.

Undefined values (an AUC on a single class, a recall without positives) are ``None``,
never an exception or a NaN, so metric files stay valid JSON.

Modules: :mod:`~mammocad.evaluate.metrics` (metrics at a threshold, ROC AUC, average
precision, confusion matrix, curve data), :mod:`~mammocad.evaluate.thresholds`
(:func:`choose_threshold` and its methods), :mod:`~mammocad.evaluate.bootstrap`
(patient-bootstrap intervals, :func:`auc_difference`), :mod:`~mammocad.evaluate.footprint`
(model size and latency) and :mod:`~mammocad.evaluate.descriptors` (the BI-RADS descriptor
reference).
"""

from mammocad.evaluate.bootstrap import CI_METRICS, auc_difference, bootstrap_ci
from mammocad.evaluate.descriptors import (
    MARGIN_RANK,
    SHAPE_RANK,
    descriptor_reference,
    descriptor_score,
)
from mammocad.evaluate.footprint import latency_ms, model_file_mb
from mammocad.evaluate.metrics import (
    average_precision,
    binary_metrics,
    confusion,
    curves,
    roc_auc,
)
from mammocad.evaluate.thresholds import THRESHOLDS, ThresholdFn, choose_threshold

__all__ = [
    "CI_METRICS",
    "MARGIN_RANK",
    "SHAPE_RANK",
    "THRESHOLDS",
    "ThresholdFn",
    "auc_difference",
    "average_precision",
    "binary_metrics",
    "bootstrap_ci",
    "choose_threshold",
    "confusion",
    "curves",
    "descriptor_reference",
    "descriptor_score",
    "latency_ms",
    "model_file_mb",
    "roc_auc",
]
