"""The graphs ``mammocad predict`` runs without PyTorch (:mod:`mammocad.predict.runtime`):
a patch network's class activation maps (:func:`write_cam`) and the shallow CNN
(:func:`write_shallow`), each checked against PyTorch and written with the record that ties
it to its checkpoint (:mod:`mammocad.deployed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mammocad.deployed import CAM_FILE, CAM_META, FORMAT, SHALLOW_FILE, SHALLOW_META, file_sha256
from mammocad.export.runners import compare, malignant_probability, onnx_runner, ort_session
from mammocad.export.writers import DeployModel, export_onnx
from mammocad.io import write_json
from mammocad.models.backbones import get_spec
from mammocad.models.data import ImageSet

#: Total stride of the CAM graphs' feature grid: inputs are multiples of it.
STRIDE = 32


class CamModel(nn.Module):
    """A patch network's class activation maps, for export.

    Maps grey images ``(B, 1, H, W)`` in [0, 1] to ``(B, classes, H / 32, W / 32)``: the
    input normalisation, the network up to ``target_layer`` and the ``classifier`` (a
    linear layer after global average pooling) applied at every feature cell. The spatial
    mean of the maps is the network's logits.

    Args:
        model: the fine-tuned backbone, mapping normalised ``(B, 3, H, W)`` to logits.
        target_layer: dotted path of the CAM target layer.
        classifier: dotted path of the final linear layer.
        mean: per-channel mean of the backbone's normalisation.
        std: per-channel standard deviation.

    Raises:
        ValueError: if the classifier is not a linear layer.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: str,
        classifier: str,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        linear = model.get_submodule(classifier)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{classifier}: a CAM graph needs a linear classifier")
        self.model = model.eval()
        self.target_layer = target_layer
        self.channels = len(mean)
        weight = linear.weight.detach().clone()[:, :, None, None]
        bias = (
            linear.bias.detach().clone()
            if linear.bias is not None
            else torch.zeros(linear.out_features)
        )
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """Class activation maps of grey ``(B, 1, H, W)`` images in [0, 1]."""
        x = grey.expand(-1, self.channels, -1, -1) if self.channels != 1 else grey
        captured: list[torch.Tensor] = []
        target = self.model.get_submodule(self.target_layer)
        handle = target.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.model((x - self.mean) / self.std)
        finally:
            handle.remove()
        return F.conv2d(captured[0], self.weight, self.bias)


def _checkpoint_record(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """What the graph's record keeps of its checkpoint: name, hash and the settings
    ``mammocad predict`` reads from a checkpoint."""
    metrics = checkpoint.get("metrics") or {}
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "config": checkpoint.get("config") or {},
        "metrics": {k: metrics[k] for k in ("patch_px", "image_px") if k in metrics},
    }


def _check_within(graph: str, worst: float, tolerance: float) -> None:
    """Fails the export of a graph whose probabilities differ from PyTorch's by more than
    ``tolerance``: it does not compute the model."""
    if worst > tolerance:
        raise RuntimeError(
            f"{graph} differs from PyTorch by {worst:.3g} in probability "
            f"(> export.fp32_tolerance {tolerance})"
        )


def _tiled(patches: ImageSet, rows: int, cols: int) -> torch.Tensor:
    """A ``rows × cols`` mosaic of the first patches: a larger, non-square test input."""
    n = rows * cols
    batch = patches.get_batch([i % len(patches) for i in range(n)])[0]
    _, c, h, w = batch.shape
    return batch.view(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(1, c, rows * h, cols * w)


def write_cam(
    model: nn.Module,
    checkpoint: dict[str, Any],
    checkpoint_path: Path,
    folder: Path,
    test: ImageSet,
    threshold: float,
    opset: int,
    tolerance: float,
    halo: int,
) -> dict[str, Any]:
    """Writes ``cam.onnx`` and ``cam.json`` of a backbone with a CAM head into ``folder``.

    Checked two ways: the graph's patch probabilities (softmax of the maps' spatial mean)
    against the eager model's on the test patches, and its maps on a 3 × 2 mosaic of test
    patches against :class:`CamModel` in PyTorch, both within ``tolerance`` in probability.

    Args:
        model: the trained backbone in eval mode.
        checkpoint: its checkpoint dict.
        checkpoint_path: the checkpoint file, whose hash the record keeps.
        folder: the output folder (the caller writes it atomically).
        test: test patches, grey in [0, 1].
        threshold: the decision threshold, for the agreement check.
        opset: ONNX opset.
        tolerance: largest probability difference allowed from PyTorch.
        halo: rescaled rows of context a stripe of a striped pass needs on either side.

    Returns:
        The checks: :func:`mammocad.export.runners.compare`'s record on the test patches,
        with ``max_map_diff`` on the mosaic.

    Raises:
        RuntimeError: if the export fails or the graph differs from PyTorch by more than
            ``tolerance``.
    """
    backbone = checkpoint["backbone"]
    spec = get_spec(backbone)
    norm = checkpoint["config"]["input"]
    cam = CamModel(model, spec.cam_target_layer, spec.classifier, norm["mean"], norm["std"])
    example = test.get_batch([0])[0]
    path = folder / CAM_FILE
    spatial = {0: "batch", 2: "height", 3: "width"}
    axes = {"image": spatial, "cams": {0: "batch", 2: "rows", 3: "cols"}}
    export_onnx(cam, example, path, opset, names=("image", "cams"), axes=axes)
    session = ort_session(path, 1)
    run = onnx_runner(session)

    def patch_probs(x: np.ndarray) -> np.ndarray:
        logits = run(x).mean(axis=(2, 3), dtype=np.float64)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    deploy = DeployModel(model, norm["mean"], norm["std"]).eval()
    with torch.inference_mode():
        reference = malignant_probability(lambda x: deploy(torch.from_numpy(x)).numpy(), test)
    checks = compare(
        reference, malignant_probability(patch_probs, test), test.labels.numpy(), threshold
    )
    mosaic = _tiled(test, 3, 2)
    with torch.inference_mode():
        expected = torch.softmax(cam(mosaic), dim=1)[:, 1].numpy()
    got = torch.softmax(torch.from_numpy(run(mosaic.numpy())), dim=1)[:, 1].numpy()
    checks["max_map_diff"] = float(np.abs(got - expected).max())
    checks["mosaic_shape"] = list(mosaic.shape[2:])
    worst = max(checks["max_prob_diff"], checks["max_map_diff"])
    _check_within(f"{backbone}: {CAM_FILE}", worst, tolerance)
    classes = int(cam.bias.numel())
    record = {
        "format": FORMAT,
        "backbone": backbone,
        "checkpoint": _checkpoint_record(checkpoint, checkpoint_path),
        "method": "cam",
        "halo": int(halo),
        "stride": STRIDE,
        "input": {
            "name": "image",
            "shape": ["batch", 1, "height", "width"],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "layout": f"grey, enhanced as in 'preprocessing'; sides multiples of {STRIDE}",
        },
        "output": {
            "name": "cams",
            "shape": ["batch", classes, f"height / {STRIDE}", f"width / {STRIDE}"],
            "meaning": "class activation maps; their spatial mean is the logits",
        },
        "normalisation_in_graph": {"mean": norm["mean"], "std": norm["std"]},
        "checks": checks,
    }
    write_json(folder / CAM_META, record)
    return checks


def write_shallow(
    model: nn.Module,
    checkpoint: dict[str, Any],
    checkpoint_path: Path,
    folder: Path,
    test: ImageSet,
    opset: int,
    tolerance: float,
) -> dict[str, Any]:
    """Writes the shallow CNN's ``model.onnx`` and ``model.json`` into ``folder``.

    The graph maps grey down-sized images ``(B, 1, H, W)`` in [0, 1] to the probabilities
    of the two classes, normalised in the graph. Height and width are free, as the network
    ends in global pooling: checked against PyTorch on ``test`` and on its first image
    enlarged to 1.5 times its sides.

    Returns:
        :func:`mammocad.export.runners.compare`'s record on ``test`` (threshold 0.5), with
        ``max_prob_diff_other_size`` on the enlarged image.

    Raises:
        RuntimeError: if the export fails or differs from PyTorch by more than
            ``tolerance`` in probability.
    """
    norm = checkpoint["config"]["input"]
    deploy = DeployModel(model.eval(), norm["mean"], norm["std"]).eval()
    example = test.get_batch([0])[0]
    path = folder / SHALLOW_FILE
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "probabilities": {0: "batch"}}
    export_onnx(deploy, example, path, opset, names=("image", "probabilities"), axes=axes)
    run = onnx_runner(ort_session(path, 1))
    with torch.inference_mode():
        reference = malignant_probability(lambda x: deploy(torch.from_numpy(x)).numpy(), test)
        larger = F.interpolate(example, scale_factor=1.5, mode="bilinear")
        expected = deploy(larger)[:, 1].numpy()
    checks = compare(reference, malignant_probability(run, test), test.labels.numpy(), 0.5)
    checks["max_prob_diff_other_size"] = float(np.abs(run(larger.numpy())[:, 1] - expected).max())
    checks["other_size"] = list(larger.shape[2:])
    worst = max(checks["max_prob_diff"], checks["max_prob_diff_other_size"])
    _check_within(f"shallow CNN: {SHALLOW_FILE}", worst, tolerance)
    record = {
        "format": FORMAT,
        "backbone": checkpoint["backbone"],
        "checkpoint": _checkpoint_record(checkpoint, checkpoint_path),
        "input": {
            "name": "image",
            "shape": ["batch", 1, "height", "width"],
            "trained_size": list(example.shape[2:]),
            "dtype": "float32",
            "range": [0.0, 1.0],
            "layout": "grey full mammogram, enhanced, down-sized and flipped as in 'patches'",
        },
        "output": {"name": "probabilities", "shape": ["batch", 2]},
        "normalisation_in_graph": {"mean": norm["mean"], "std": norm["std"]},
        "checks": checks,
    }
    write_json(folder / SHALLOW_META, record)
    return checks
