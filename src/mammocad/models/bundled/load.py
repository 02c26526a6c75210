"""The bundled weight files, and their dequantized layers mapped onto the PyTorch models."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mammocad.models.backbones.spec import get_spec
from mammocad.models.bundled.architecture import tf_architecture
from mammocad.models.bundled.reader import BundledWeightsUnavailable, TFLiteLayer, read_tflite

logger = logging.getLogger(__name__)

#: Folder of the bundled weight files, inside the installed package.
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: The 1001 ImageNet labels of the TF models, line 0 ``background``.
LABELS_FILE = "imagenet_labels.txt"
#: SHA-256 of each bundled model (as in ``weights/NOTICE``): a flipped bit in a weight
#: still parses, so only the digest tells a damaged file from a good one.
SHA256 = {
    "mobilenet_v2_1.0_224_quant.tflite": (
        "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
    ),
    "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite": (
        "f409ef4f73fcbb9667841965623c5c8524aac33d41b9bf5f3667161fb4a76319"
    ),
}


class BundledWeightsMismatch(ValueError):
    """A bundled weight file does not fit the architecture it is loaded into."""


def bundled_path(filename: str) -> Path:
    """Path of a bundled weight file (see ``weights/NOTICE``)."""
    return WEIGHTS_DIR / filename


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in torchvision's order (the TF background dropped)."""
    lines = (WEIGHTS_DIR / LABELS_FILE).read_text(encoding="utf-8").splitlines()
    return lines[1:1001]


def build_bundled(name: str) -> nn.Module:
    """A backbone with its bundled ImageNet weights and original head (paper §3).

    The TFLite architecture (:func:`tf_architecture`, for the spec's normalisation) with
    the dequantized weights; MobileNet-v2 gets its 1000-class classifier, MobileNet-v1
    (an embedding extractor) keeps a randomly initialised one.

    Args:
        name: a registered backbone with a bundled file (``mobilenet_v1``, ``mobilenet_v2``).

    Raises:
        KeyError: for an unknown backbone name.
        BundledWeightsUnavailable: if the backbone has no bundled weights, or their file is
            missing or unreadable.
        BundledWeightsMismatch: if the file does not fit the architecture.
    """
    spec = get_spec(name)
    if spec.bundled is None:
        raise BundledWeightsUnavailable(f"backbone {name!r} has no bundled ImageNet weights")
    model = tf_architecture(spec.builder(False), spec.mean, spec.std)
    load_tflite_weights(
        model,
        bundled_path(spec.bundled),
        spec.classifier,
        label=name,
        sha256=SHA256.get(spec.bundled),
    )
    return model


def weighted_layers(
    model: nn.Module, classifier: str | None = None
) -> list[tuple[str, nn.Module, nn.Module | None]]:
    """``(path, module, batch-norm or None)`` for each weighted layer, in forward order.

    Each convolution is paired with the next batch-norm over as many channels, before the
    next convolution: where TF folded it.
    """
    targets: list[list] = []
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            targets.append([path, module, None])
        elif (
            isinstance(module, nn.modules.batchnorm._BatchNorm)
            and targets
            and targets[-1][2] is None
            and isinstance(targets[-1][1], nn.Conv2d)
            and module.num_features == targets[-1][1].out_channels
        ):
            targets[-1][2] = module
    if classifier is not None:
        targets.append([classifier, model.get_submodule(classifier), None])
    return [tuple(t) for t in targets]


def load_tflite_weights(
    model: nn.Module,
    path: str | os.PathLike,
    classifier: str | None = None,
    label: str | None = None,
    sha256: str | None = None,
) -> int:
    """Loads a TFLite model's dequantized weights into the matching PyTorch model.

    The file's convolution layers map, in order, onto the model's ``nn.Conv2d`` modules;
    a final layer of the file with ``1 + out_features`` outputs maps onto the ``classifier``
    ``nn.Linear`` without its first row (TF's background class), giving torchvision's 1000
    ImageNet classes. A file that ends before the classifier (a feature extractor) leaves
    it as it is. Folded batch-norm: the weight goes into the convolution, the bias into the
    following batch-norm with identity statistics (mean 0, variance ``1 - eps``, scale 1).

    Args:
        model: the architecture, e.g. after :func:`tf_architecture`; modified in place.
        path: the ``.tflite`` file.
        classifier: dotted path of the final ``nn.Linear``, or None.
        label: how error messages name the model (default: its class name).
        sha256: the file's expected SHA-256, see :func:`read_tflite`.

    Returns:
        The number of layers loaded.

    Raises:
        BundledWeightsUnavailable: if the file is missing or unreadable.
        BundledWeightsMismatch: if a layer of the file does not fit the model, in one line
            naming the tensor, the model's layer and both shapes.
    """
    path = Path(path)
    layers = read_tflite(path, sha256)
    targets = weighted_layers(model, classifier)
    arch = label or type(model).__name__
    # Every layer is checked before any is written: a mismatch leaves the model untouched,
    # and the first tensor that does not fit is the one named.
    values = [
        _checked(path, arch, layer, name, module, bn)
        for layer, (name, module, bn) in zip(layers, targets, strict=False)
    ]
    if len(layers) > len(targets):
        extra = layers[len(targets)]
        raise BundledWeightsMismatch(
            f"{path.name}: tensor {extra.name!r} (op {extra.op_index}) has no counterpart: "
            f"{arch} has {len(targets)} weighted layers, the file {len(layers)}"
        )
    missing = targets[len(layers) :]
    if missing and not (len(missing) == 1 and missing[0][0] == classifier):
        raise BundledWeightsMismatch(
            f"{path.name}: ends after {len(layers)} weighted layers; {arch} "
            f"{missing[0][0]}.weight has no tensor"
        )
    for (weight, bias), (_, module, bn) in zip(values, targets, strict=False):
        _assign(module, bn, weight, bias)
    if missing:
        logger.info("%s holds no classifier: %s keeps its initialisation", path.name, classifier)
    return len(layers)


def _checked(
    path: Path, arch: str, layer: TFLiteLayer, name: str, module: nn.Module, bn
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(weight, bias)`` of a file layer for one model layer, or a one-line error."""
    weight = layer.weight
    if isinstance(module, nn.Linear):
        weight = weight.reshape(weight.shape[0], -1)
        if weight.shape[0] == module.out_features + 1:
            weight = weight[1:]  # TF's class 0 is "background"; torchvision has none
    expected = tuple(module.weight.shape)

    def mismatch(why: str) -> BundledWeightsMismatch:
        return BundledWeightsMismatch(
            f"{path.name}: tensor {layer.name!r} (op {layer.op_index}, {layer.op}) {why} "
            f"for {arch} {name}.weight"
        )

    if tuple(weight.shape) != expected:
        found = tuple(int(s) for s in layer.weight.shape)
        raise mismatch(f"has shape {found}, expected {expected}")
    if isinstance(module, nn.Conv2d):
        if tuple(layer.stride) != tuple(module.stride):
            raise mismatch(f"has stride {layer.stride}, expected {tuple(module.stride)}")
        if max(module.kernel_size) > 1 and not layer.same_padding:
            raise mismatch("pads VALID, expected SAME")
    bias = layer.bias
    if bias is not None and isinstance(module, nn.Linear) and bias.shape[0] == expected[0] + 1:
        bias = bias[1:]
    if bias is None:
        bias = np.zeros(expected[0], dtype=np.float32)
    elif bias.shape != (expected[0],):
        raise mismatch(f"has a bias of shape {tuple(bias.shape)}, expected ({expected[0]},)")
    if module.bias is None and bn is None and np.any(bias):
        raise mismatch("has a bias, but the layer has none and no batch-norm follows")
    return weight, bias


def _assign(module: nn.Module, bn: nn.Module | None, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(weight)))
        if bn is not None:
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(np.array(bias)))
            bn.running_mean.zero_()
            # eval-mode BN divides by sqrt(running_var + eps): 1 here, so it adds the bias
            bn.running_var.fill_(1.0 - bn.eps)
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.zero_()
        elif module.bias is not None:
            module.bias.copy_(torch.from_numpy(np.array(bias)))
