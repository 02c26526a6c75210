"""Class activation maps at the feature grid: CAM for global-average-pooling + linear
heads, Grad-CAM otherwise, whole or in horizontal stripes, and the rescaled network input
(:func:`to_input`, :func:`working_shape`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from mammocad.localize.maps import (
    DEFAULT_HALO,
    DEFAULT_MAX_PIXELS,
    METHODS,
    MIN_WORKING_SIDE,
    PATCH_INPUT,
    STRIDE_ALIGN,
    ActivationMap,
    Method,
    check_method,
    check_stride,
    stripes,
    unit_range,
    working_shape,
)

log = logging.getLogger(__name__)

#: Re-exported: the names the package's other modules and its users import from here.
__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_MAX_PIXELS",
    "METHODS",
    "MIN_WORKING_SIDE",
    "PATCH_INPUT",
    "STRIDE_ALIGN",
    "ActivationMap",
    "Method",
    "activation_map",
    "to_input",
    "working_shape",
]


@contextlib.contextmanager
def _inference_state(model: nn.Module, freeze: bool) -> Iterator[None]:
    """Evaluation mode and, optionally, no parameter gradients; both restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    if freeze:
        for p, _ in flags:
            p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _cam(
    feats: torch.Tensor, logits: torch.Tensor, classifier: nn.Linear, target_class: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-location class probabilities and logit difference from GAP-linear weights."""
    if not isinstance(classifier, nn.Linear):
        raise ValueError(f"CAM needs a linear classifier, got {type(classifier).__name__}")
    if feats.shape[1] != classifier.in_features:
        raise ValueError(
            f"CAM needs global average pooling + one linear layer after the target layer: "
            f"the target layer has {feats.shape[1]} channels, the classifier takes "
            f"{classifier.in_features} inputs (use method 'gradcam')"
        )
    weight = classifier.weight.detach().to(feats.dtype)
    bias = (
        classifier.bias.detach().to(feats.dtype)
        if classifier.bias is not None
        else torch.zeros(classifier.out_features, dtype=feats.dtype)
    )
    cams = torch.einsum("ck,khw->chw", weight, feats[0]) + bias[:, None, None]
    # Average pooling and the linear layer commute: the mean CAM is the network's logit.
    # If it is not, something sits between the target layer and the classifier.
    mean = cams.mean(dim=(1, 2))
    if not torch.allclose(mean, logits[0], rtol=1e-3, atol=1e-3):
        raise ValueError(
            "the spatial mean of the CAMs differs from the network's logits "
            f"({mean.tolist()} vs {logits[0].tolist()}): the head is not global average "
            "pooling + one linear layer (use method 'gradcam')"
        )
    prob = torch.softmax(cams, dim=0)[target_class]
    others = torch.cat([cams[:target_class], cams[target_class + 1 :]]).mean(dim=0)
    score = cams[target_class] - others
    return prob.numpy().astype(np.float32), score.numpy().astype(np.float32)


def activation_map(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module,
    classifier: nn.Module | None = None,
    method: Method = "cam",
    target_class: int = 1,
) -> ActivationMap:
    """The class activation map of one input at a given layer (paper §3, localization).

    One forward pass of the whole input; Grad-CAM adds one backward pass through the head
    only. The model is put in evaluation mode for the call and its parameters'
    ``requires_grad`` flags are restored afterwards.

    Args:
        model: the network, mapping ``(1, C, H, W)`` to ``(1, num_classes)`` logits.
        x: the input batch of one image.
        target_layer: the module whose output feature maps ``(1, K, h, w)`` are weighted.
        classifier: the final linear layer (needed for ``cam``).
        method: ``cam`` (global-average-pooling + linear heads) or ``gradcam``.
        target_class: the class mapped (1: malignant).

    Returns:
        The map at the feature grid's resolution, with the whole-image logits.

    Raises:
        ValueError: for an unknown method, a ``cam`` request on a head that is not global
            average pooling + one linear layer, or a batch of more than one image.
    """
    check_method(method)
    if x.shape[0] != 1:
        raise ValueError(f"expected a batch of one image, got {x.shape[0]}")
    captured: dict[str, torch.Tensor] = {}

    if method == "cam":

        def keep(_module, _inputs, output):
            captured["a"] = output

        handle = target_layer.register_forward_hook(keep)
        try:
            with _inference_state(model, freeze=False), torch.no_grad():
                logits = model(x)
        finally:
            handle.remove()
        feats = captured["a"].float()
        if classifier is None:
            raise ValueError("CAM needs the classifier layer")
        prob, score = _cam(feats, logits.float(), classifier, target_class)
        return ActivationMap(prob, score, logits[0].float().numpy(), "cam")

    def leaf(_module, _inputs, output):
        # The layers before run without a graph (parameters frozen, input without grad):
        # the gradient is needed with respect to this output only.
        a = output.detach().requires_grad_(True)
        captured["a"] = a
        return a.clone()  # a later in-place op must not touch the leaf itself

    handle = target_layer.register_forward_hook(leaf)
    try:
        with _inference_state(model, freeze=True), torch.enable_grad():
            logits = model(x.detach())
            others = torch.cat([logits[0, :target_class], logits[0, target_class + 1 :]])
            score = logits[0, target_class] - others.mean()
            (grad,) = torch.autograd.grad(score, captured["a"])
    finally:
        handle.remove()
    feats = captured["a"].detach()[0].float()
    alpha = grad[0].float().mean(dim=(1, 2))
    cam = torch.relu(torch.einsum("k,khw->hw", alpha, feats)).numpy().astype(np.float32)
    lo, hi = float(cam.min()), float(cam.max())
    prob = (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)
    return ActivationMap(
        prob.astype(np.float32), cam, logits[0].detach().float().numpy(), "gradcam"
    )


def _striped_cam(
    model: nn.Module,
    work: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    target_layer: nn.Module,
    classifier: nn.Module | None,
    tile_pixels: int,
    halo: int = DEFAULT_HALO,
    target_class: int = 1,
) -> ActivationMap:
    """CAM of a rescaled image computed stripe by stripe, with the memory of one stripe.

    A whole 12-megapixel pass holds about 2 GB of activations at once (MobileNet's
    64-channel maps at half resolution). The network is fully convolutional up to the
    target layer, so each feature row depends only on the input rows of its receptive
    field: running horizontal stripes with ``halo`` rows of real context on either side
    and keeping each stripe's own feature rows gives the whole pass's feature map (to
    float rounding) when the halo covers the receptive field's half-width. Stripes start
    on multiples of :data:`STRIDE_ALIGN`, so the padding pattern of every strided layer is
    the whole pass's. The whole image's logits follow from the assembled map: for a global
    average pooling + linear head, the mean CAM is the logit (:func:`_cam` checks it).

    Args:
        model: the network (its head must be global average pooling + one linear layer).
        work: the rescaled 2-D image, sides multiples of :data:`STRIDE_ALIGN`.
        mean: per-channel normalisation mean.
        std: per-channel normalisation standard deviation.
        target_layer: the module whose feature maps are weighted.
        classifier: the final linear layer.
        tile_pixels: most rescaled pixels of a stripe without its halo.
        halo: rows of context either side, rounded up to :data:`STRIDE_ALIGN`.
        target_class: the class mapped (1: malignant).

    Returns:
        The :class:`ActivationMap` (method ``cam``).
    """
    if not isinstance(classifier, nn.Linear):
        raise ValueError("CAM needs the classifier layer")
    h, w = work.shape
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        captured["a"] = output

    parts = []
    handle = target_layer.register_forward_hook(keep)
    try:
        with _inference_state(model, freeze=False), torch.no_grad():
            for lo, hi, first, last in stripes(h, w, tile_pixels, halo):
                x = to_input(work[lo:hi], mean, std).contiguous(memory_format=torch.channels_last)
                model(x)
                feats = captured.pop("a")
                check_stride(hi - lo, feats.shape[2])
                parts.append(feats[:, :, first:last].float())
                del x, feats
            feats = torch.cat(parts, dim=2)
            del parts
            logits = classifier(feats.mean(dim=(2, 3)))
    finally:
        handle.remove()
    prob, score = _cam(feats, logits, classifier, target_class)
    return ActivationMap(prob, score, logits[0].float().numpy(), "cam")


# --------------------------------------------------------------------------- network input


def to_input(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A grey ``uint8``/``uint16`` image as a normalised ``(1, C, H, W)`` float tensor.

    Grey levels are scaled from their full bit range to [0, 1], replicated to
    ``len(mean)`` channels and normalised per channel, as the training sets were
    (paper §3: inputs in "the same format that the network was initially trained on").
    """
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean and std must have the same non-zero length: {mean}, {std}")
    x = torch.from_numpy(unit_range(image))
    m = torch.tensor([float(v) for v in mean]).view(-1, 1, 1)
    s = torch.tensor([float(v) for v in std]).view(-1, 1, 1)
    return ((x.expand(len(mean), *x.shape) - m) / s).unsqueeze(0)
