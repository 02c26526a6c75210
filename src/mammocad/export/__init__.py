"""Deployment formats of a fine-tuned backbone: ONNX, TorchScript and int8 (paper §4.3).

The paper prefers MobileNet because it is small and fast enough for "mobile and embedded
vision applications" (§4.3). This module makes that claim measurable. Each trained
backbone is written as

* ``model.onnx``: FP32 ONNX for ONNX Runtime and mobile runtimes;
* ``model.torchscript.pt``: FP32 TorchScript for PyTorch's C++ and mobile runtimes;
* ``model.int8.onnx``: int8 ONNX, statically quantized (QDQ, per-channel weights) with
  activation ranges calibrated on training patches, or dynamically quantized (weights
  only) where static quantization fails or is not asked for;
* ``model.json``: what a deployment needs besides the weights: input shape, threshold,
  preprocessing and how each file was checked.

Every exported graph takes what the pipeline's patches hold, grey ROI patches in [0, 1]
of shape ``(B, 1, H, W)``, and returns class probabilities ``(B, 2)`` (benign,
malignant): channel replication, ImageNet normalisation and softmax are inside the graph,
so no deployment can get them wrong. Each file is run on the test patches and compared
with the PyTorch model: the largest probability difference, the share of identical
decisions at the evaluation threshold, and the accuracy and AUC of the variant.

Modules: :mod:`~mammocad.export.config` (settings, file names),
:mod:`~mammocad.export.writers` (TorchScript and ONNX), :mod:`~mammocad.export.quantize`
(int8 and its calibration), :mod:`~mammocad.export.runners` (checks and latency) and
:mod:`~mammocad.export.backbone` (:func:`export_backbone`).
"""

from mammocad.export.backbone import export_backbone, patch_sets
from mammocad.export.config import (
    FP32_VARIANTS,
    INT8_FILE,
    META_FILE,
    ONNX_FILE,
    TORCHSCRIPT_FILE,
    ExportConfig,
)
from mammocad.export.quantize import calibration_batches, quantize_onnx
from mammocad.export.runners import (
    Runner,
    compare,
    malignant_probability,
    onnx_runner,
    ort_session,
    time_runner,
    torch_runner,
    torch_threads,
)
from mammocad.export.writers import DeployModel, export_onnx, export_torchscript

__all__ = [
    "FP32_VARIANTS",
    "INT8_FILE",
    "META_FILE",
    "ONNX_FILE",
    "TORCHSCRIPT_FILE",
    "DeployModel",
    "ExportConfig",
    "Runner",
    "calibration_batches",
    "compare",
    "export_backbone",
    "export_onnx",
    "export_torchscript",
    "malignant_probability",
    "onnx_runner",
    "ort_session",
    "patch_sets",
    "quantize_onnx",
    "time_runner",
    "torch_runner",
    "torch_threads",
]
