"""Mass localization in full mammograms by class activation maps (paper §3, Fig. 1).

Paper §3: "The fine-tuned neural patch network is then used to locate mammographic defects
in mammograms of full size by generating heat-map at the end of output layer." The patch
network was trained on ROI crops resized to 224 × 224, so a full mammogram is first rescaled
by ``224 / patch_px`` (``patch_px``: the typical side, in full-image pixels, of the training
crops) so that lesions appear at the scale the network learned them at. The rescaled image
then goes through the network once, fully convolutionally (no sliding window), and the
malignant class's activation map is read at the backbone's CAM target layer:

* **CAM** (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization") for
  heads made of global average pooling and one linear layer (ResNet-50, GoogLeNet,
  MobileNet-v1, MobileNet-v2). With feature maps ``A_k`` and classifier weights ``w_ck``,
  biases ``b_c``, ``CAM_c(x, y) = Σ_k w_ck A_k(x, y) + b_c``; the network's logit of class
  ``c`` is the spatial mean of ``CAM_c``, because average pooling and the linear layer
  commute. The map reported is the softmax of the CAMs over classes at each location, for
  two classes ``σ(CAM_1 − CAM_0)``: the probability the patch network would give a patch
  whose feature map were this location's features repeated. Averaging the logit difference
  ``CAM_1 − CAM_0`` over any window gives exactly the patch network's logit difference for
  that window's features, so the map is the one-pass equivalent of a sliding classifier.
  Every call checks that identity against the network's own output on the whole image.
* **Grad-CAM** (Selvaraju et al. 2017) for the fully connected heads of AlexNet and VGG:
  the head is applied after adaptive pooling, as the model does, and the map is
  ``ReLU(Σ_k α_k A_k)`` with ``α_k`` the spatial mean of ``∂s/∂A_k``. The score ``s`` is
  the log-odds ``y_1 − y_0``, the only part of the two logits that softmax depends on (the
  class-1 logit alone also rises with evidence shared by both classes). The map is
  min-max scaled to [0, 1] over the breast: a relative saliency, not a probability.
  Gradients are taken with respect to the target layer's output only: the layers before
  it run without an autograd graph, so memory stays that of an inference pass even on a
  full mammogram.

Both are implemented here with forward hooks rather than through the ``grad-cam`` package,
which depends on ``opencv-python`` and would conflict with the project's
``opencv-python-headless`` (both install the ``cv2`` module).

The class map (one value per feature cell) is resized with bilinear interpolation straight
to the original image's size: cell ``i`` of an ``h``-cell axis lands at original pixel
``(i + 0.5) · H / h − 0.5``, which composes the internal rescaling and the network's stride
exactly under the assumption that the feature grid spans the rescaled image uniformly
(true up to half a feature cell, i.e. 16 rescaled pixels or ``patch_px / 14`` original
pixels, for the stride-32 backbones). Outside the breast the heatmap is zero.

The scores follow the weakly supervised localization literature: the pointing game (Zhang
et al. 2016; a hit when the map's maximum lies in the lesion), and IoU and Dice of the
thresholded map against the lesion mask, each next to its chance level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mammocad.io import atomic_dir, atomic_file, read_png, write_csv
from mammocad.models.backbones import get_module, get_spec
from mammocad.patches import resize

log = logging.getLogger(__name__)

Method = Literal["cam", "gradcam"]
METHODS: tuple[str, ...] = ("cam", "gradcam")

#: Side of the patches the backbones were trained on (paper §3.2).
PATCH_INPUT = 224
#: Rescaled sides are rounded to this multiple: the total stride of the backbones, so that
#: every feature cell covers whole pixels and the grid spans the image uniformly.
STRIDE_ALIGN = 32
#: Smallest rescaled side: AlexNet's feature stack needs 63 pixels for one output cell.
MIN_WORKING_SIDE = 64
#: Pixels of the rescaled image above which the scale is reduced (with a warning): a full
#: mammogram with small training crops would otherwise need tens of megapixels of memory.
DEFAULT_MAX_PIXELS = 12_000_000
#: Rows of context (in rescaled pixels) above and below each stripe of a striped CAM pass:
#: more than half the receptive field of MobileNet-v1's last layer (315 px) and of
#: MobileNet-v2's, so that a stripe's own feature rows see what they see in a whole pass.
DEFAULT_HALO = 256


# --------------------------------------------------------------------------- activation maps


@dataclass(frozen=True)
class ActivationMap:
    """The class activation map of one image at the feature grid's resolution.

    Attributes:
        prob: ``(h, w)`` float32 map in [0, 1]: the per-location softmax of the CAMs
            (method ``cam``) or the min-max scaled Grad-CAM (method ``gradcam``).
        score: ``(h, w)`` float32 map before that scaling: the logit difference
            ``CAM_1 − CAM_0`` (two classes; the target class's CAM minus the mean of the
            others' in general) or ``ReLU(Σ α_k A_k)``.
        logits: the network's own logits for the whole image.
        method: ``"cam"`` or ``"gradcam"``.
    """

    prob: np.ndarray
    score: np.ndarray
    logits: np.ndarray
    method: str


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


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown heatmap method {method!r}; valid: {', '.join(METHODS)}")


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
    _check_method(method)
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
    step = max(STRIDE_ALIGN, (tile_pixels // max(w, 1)) // STRIDE_ALIGN * STRIDE_ALIGN)
    halo = -(-int(halo) // STRIDE_ALIGN) * STRIDE_ALIGN
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        captured["a"] = output

    parts = []
    handle = target_layer.register_forward_hook(keep)
    try:
        with _inference_state(model, freeze=False), torch.no_grad():
            for top in range(0, h, step):
                bottom = min(h, top + step)
                lo, hi = max(0, top - halo), min(h, bottom + halo)
                x = to_input(work[lo:hi], mean, std).contiguous(memory_format=torch.channels_last)
                model(x)
                feats = captured.pop("a")
                stride = (hi - lo) / feats.shape[2]
                if stride != STRIDE_ALIGN:
                    raise ValueError(
                        f"striped CAM needs a feature stride of {STRIDE_ALIGN}, got {stride}"
                    )
                first, last = (top - lo) // STRIDE_ALIGN, (bottom - lo) // STRIDE_ALIGN
                parts.append(feats[:, :, first:last].float())
                del x, feats
            feats = torch.cat(parts, dim=2)
            del parts
            logits = classifier(feats.mean(dim=(2, 3)))
    finally:
        handle.remove()
    prob, score = _cam(feats, logits, classifier, target_class)
    return ActivationMap(prob, score, logits[0].float().numpy(), "cam")


# --------------------------------------------------------------------------- images


def to_input(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A grey ``uint8``/``uint16`` image as a normalised ``(1, C, H, W)`` float tensor.

    Grey levels are scaled from their full bit range to [0, 1], replicated to
    ``len(mean)`` channels and normalised per channel, as the training sets were
    (paper §3: inputs in "the same format that the network was initially trained on").
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if image.dtype == np.uint16:
        full = 65535.0
    elif image.dtype == np.uint8:
        full = 255.0
    else:
        raise ValueError(f"expected a uint8 or uint16 image, got {image.dtype}")
    if len(mean) != len(std) or not mean:
        raise ValueError(f"mean and std must have the same non-zero length: {mean}, {std}")
    x = torch.from_numpy(np.ascontiguousarray(image).astype(np.float32) / full)
    m = torch.tensor([float(v) for v in mean]).view(-1, 1, 1)
    s = torch.tensor([float(v) for v in std]).view(-1, 1, 1)
    return ((x.expand(len(mean), *x.shape) - m) / s).unsqueeze(0)


def working_shape(
    shape: tuple[int, int], scale: float, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """Rows and columns of an image rescaled by ``scale`` for the patch network.

    Each side is rounded to a multiple of :data:`STRIDE_ALIGN` (at least
    :data:`MIN_WORKING_SIDE`); when the result exceeds ``max_pixels`` the scale is reduced
    to fit, with a warning, because lesions then appear smaller than in training.
    """
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a positive number, got {scale}")
    h, w = shape
    if h * w * scale * scale > max_pixels:
        reduced = math.sqrt(max_pixels / (h * w))
        log.warning(
            "rescaling %d×%d by %.3f would give %.1f megapixels; using %.3f instead "
            "(lesions appear %.0f%% of their training size)",
            h,
            w,
            scale,
            h * w * scale * scale / 1e6,
            reduced,
            100 * reduced / scale,
        )
        scale = reduced

    def side(n: int) -> int:
        return max(MIN_WORKING_SIDE, int(round(n * scale / STRIDE_ALIGN)) * STRIDE_ALIGN)

    return side(h), side(w)


def breast_mask(image: np.ndarray, fraction: float = 0.05, work_side: int = 512) -> np.ndarray:
    """The breast region of a mammogram: the largest bright connected region, holes filled.

    A pixel is breast when it exceeds the background level (1st percentile) by more than
    ``fraction`` of the image's range (1st to 99th percentile); labels and markers are
    separate, smaller components and drop out. Computed on a copy down-sized to about
    ``work_side`` pixels and smoothed, which keeps film noise out and the cost small.

    Args:
        image: 2-D grey image, bright = dense.
        fraction: threshold above the background level, as a share of the range.
        work_side: long side of the working copy.

    Returns:
        A boolean mask of the image's shape; all ``True`` for an image without background.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    h, w = image.shape
    f = work_side / max(h, w)
    small = image.astype(np.float32)
    if f < 1:
        small = cv2.resize(
            small, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
        )
    small = cv2.GaussianBlur(small, (5, 5), 0)
    lo, hi = np.percentile(small, [1, 99])
    if hi <= lo:
        return np.ones(image.shape, dtype=bool)
    fg = (small > lo + fraction * (hi - lo)).astype(np.uint8)
    # Scanned films often carry bright edges and frames that touch the breast; a thin
    # margin is cleared and an opening cuts the narrow strips that remain.
    sh, sw = fg.shape
    my, mx = max(1, sh // 100), max(1, sw // 100)
    fg[:my], fg[-my:], fg[:, :mx], fg[:, -mx:] = 0, 0, 0, 0
    k = max(3, (min(sh, sw) // 64) | 1)
    opened = cv2.morphologyEx(
        fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    if opened.any():
        fg = opened
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.ones(image.shape, dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(region, contours, -1, 1, thickness=cv2.FILLED)
    # the cleared margin takes the value of the row or column next to it
    region[:my], region[-my:] = region[my], region[-my - 1]
    region[:, :mx], region[:, -mx:] = region[:, mx : mx + 1], region[:, -mx - 1 : -mx]
    if region.shape != image.shape:
        region = cv2.resize(region, (w, h), interpolation=cv2.INTER_NEAREST)
    return region.astype(bool)


def breast_box(breast: np.ndarray, margin: int = 0) -> tuple[slice, slice]:
    """Rows and columns of the breast's bounding box, widened by ``margin`` pixels.

    The patch network need not see the background: cropping a mammogram to this box
    before the heatmap saves the background's share of the cost (about 45 % on the
    synthetic images, more on scanned films), and the heatmap is zero outside the breast
    anyway. The margin keeps real background around the breast's edge, so that the
    network's zero padding does not sit against the skin line.

    Args:
        breast: boolean breast mask.
        margin: pixels added on every side, clipped to the image.

    Returns:
        ``(rows, columns)`` slices; the whole image for an empty mask.
    """
    if breast.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {breast.shape}")
    rows, cols = np.flatnonzero(breast.any(axis=1)), np.flatnonzero(breast.any(axis=0))
    h, w = breast.shape
    if not len(rows):
        return slice(0, h), slice(0, w)
    m = max(0, int(margin))
    return (
        slice(max(0, int(rows[0]) - m), min(h, int(rows[-1]) + 1 + m)),
        slice(max(0, int(cols[0]) - m), min(w, int(cols[-1]) + 1 + m)),
    )


@dataclass(frozen=True)
class Heatmap:
    """A full-resolution heatmap with how it was computed.

    Attributes:
        values: float32 map in [0, 1] of the input image's shape, zero outside the breast.
        method: ``"cam"`` or ``"gradcam"``.
        working_shape: rows and columns of the rescaled image the network saw.
        scale: ``(rows, columns)`` factors from original to rescaled pixels.
        logits: the network's logits for the whole rescaled image.
        grid: rows and columns of the feature grid.
        peak: the image's score: the map's maximum inside the breast, in [0, 1]. For CAM
            the highest per-location malignant probability; for Grad-CAM, whose
            ``values`` are stretched per image, ``g / (1 + g)`` of the unscaled map's
            maximum ``g``, so that images compare.
    """

    values: np.ndarray
    method: str
    working_shape: tuple[int, int]
    scale: tuple[float, float]
    logits: np.ndarray
    grid: tuple[int, int]
    peak: float = float("nan")


def compute_heatmap(
    model: nn.Module,
    image: np.ndarray,
    scale: float,
    mean: Sequence[float],
    std: Sequence[float],
    target_layer: nn.Module,
    classifier: nn.Module | None,
    method: Method = "cam",
    breast: np.ndarray | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tile_pixels: int | None = None,
    halo: int = DEFAULT_HALO,
) -> Heatmap:
    """The malignancy heatmap of a whole mammogram with explicit layers (paper §3).

    The image is resized by ``scale`` (cubic when growing, area when shrinking, as the
    training patches were), run through the network once, and its class-1 activation map
    is resized bilinearly to the image's own size and zeroed outside the breast.

    Args:
        model: the patch network.
        image: 2-D ``uint8``/``uint16`` image, already enhanced as in training.
        scale: factor from original to network pixels (``224 / patch_px``).
        mean: per-channel normalisation mean of the network's training inputs.
        std: per-channel normalisation standard deviation.
        target_layer: module whose feature maps are weighted.
        classifier: the final linear layer (for ``cam``).
        method: ``cam`` or ``gradcam`` (used as given).
        breast: boolean breast mask of the image's shape; computed when ``None``.
        max_pixels: cap on the rescaled image's pixels (see :func:`working_shape`).
        tile_pixels: for CAM, run the network on horizontal stripes of at most about this
            many rescaled pixels each (plus ``halo`` rows either side) instead of the whole
            image at once, which bounds the memory of the pass (see :func:`_striped_cam`);
            ``None`` runs it whole.
        halo: rescaled rows of context above and below each stripe.

    Returns:
        The :class:`Heatmap`.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    h, w = image.shape
    wh, ww = working_shape((h, w), scale, max_pixels)
    work = resize(image, wh, ww)
    if method == "cam" and tile_pixels and wh * ww > tile_pixels:
        amap = _striped_cam(model, work, mean, std, target_layer, classifier, tile_pixels, halo)
    else:
        x = to_input(work, mean, std).contiguous(memory_format=torch.channels_last)
        amap = activation_map(model, x, target_layer, classifier, method)
    del work
    values = cv2.resize(amap.prob, (w, h), interpolation=cv2.INTER_LINEAR)
    np.clip(values, 0.0, 1.0, out=values)
    if breast is None:
        breast = breast_mask(image)
    elif breast.shape != image.shape:
        raise ValueError(f"breast mask shape {breast.shape} differs from image {image.shape}")
    values[~breast] = 0.0
    peak = float(values.max())
    if amap.method == "gradcam" and breast.any():
        # Grad-CAM is a relative saliency: its range is stretched over the breast alone
        inside = values[breast]
        lo, hi = float(inside.min()), float(inside.max())
        values[breast] = (inside - lo) / (hi - lo) if hi > lo else 0.0
        raw = cv2.resize(amap.score, (w, h), interpolation=cv2.INTER_LINEAR)
        top = max(0.0, float(raw[breast].max()))
        peak = top / (1.0 + top)
    return Heatmap(
        values=values,
        method=amap.method,
        working_shape=(wh, ww),
        scale=(wh / h, ww / w),
        logits=amap.logits,
        grid=amap.prob.shape,
        peak=peak,
    )


def heatmap_method(backbone: str, method: Method = "cam") -> str:
    """The method actually used for a backbone: CAM where its head allows, else Grad-CAM."""
    _check_method(method)
    exact = get_spec(backbone).head == "gap_linear"
    return "cam" if method == "cam" and exact else "gradcam"


def backbone_heatmap(
    model: nn.Module,
    backbone: str,
    image: np.ndarray,
    patch_px: float,
    mean: Sequence[float],
    std: Sequence[float],
    method: Method = "cam",
    *,
    breast: np.ndarray | None = None,
    input_size: int = PATCH_INPUT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tile_pixels: int | None = None,
) -> Heatmap:
    """:func:`malignancy_heatmap` returning the full :class:`Heatmap` record.

    ``tile_pixels`` bounds the memory of the network pass (see :func:`compute_heatmap`).
    """
    if not patch_px > 0 or not math.isfinite(patch_px):
        raise ValueError(f"patch_px must be a positive number, got {patch_px}")
    spec = get_spec(backbone)
    used = heatmap_method(backbone, method)
    if used != method:
        log.debug("%s has a fully connected head: using Grad-CAM", backbone)
    return compute_heatmap(
        model,
        image,
        input_size / patch_px,
        mean,
        std,
        get_module(model, spec.cam_target_layer),
        get_module(model, spec.classifier),
        used,  # type: ignore[arg-type]
        breast=breast,
        max_pixels=max_pixels,
        tile_pixels=tile_pixels,
    )


def malignancy_heatmap(
    model: nn.Module,
    backbone: str,
    image: np.ndarray,
    patch_px: float,
    mean: Sequence[float],
    std: Sequence[float],
    method: Method = "cam",
    *,
    breast: np.ndarray | None = None,
    input_size: int = PATCH_INPUT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Heatmap of malignancy over a full mammogram from the patch network (paper §3).

    Args:
        model: a fine-tuned backbone of paper Table 1 (two classes, 1 = malignant).
        backbone: its registry name, which gives the CAM target layer and classifier.
        image: 2-D ``uint16`` (or ``uint8``) full mammogram, already enhanced as in
            training (paper §3.2).
        patch_px: typical side, in this image's pixels, of the ROI crops the network was
            trained on; the image is rescaled by ``input_size / patch_px``.
        mean: per-channel normalisation mean of the network's training inputs.
        std: per-channel normalisation standard deviation.
        method: ``cam`` uses CAM where the head is global average pooling + one linear
            layer (a ``gap_linear`` head on the backbone's spec) and Grad-CAM otherwise; ``gradcam``
            always uses Grad-CAM.
        breast: boolean breast mask of the image's shape; computed when ``None``.
        input_size: side of the training patches.
        max_pixels: cap on the rescaled image's pixels.

    Returns:
        float32 map in [0, 1] of the image's shape, zero outside the breast: the
        per-location malignant probability (CAM) or relative saliency (Grad-CAM).

    Raises:
        KeyError: for an unknown backbone.
        ValueError: for an unknown method, a non-positive ``patch_px`` or a bad image.
    """
    return backbone_heatmap(
        model,
        backbone,
        image,
        patch_px,
        mean,
        std,
        method,
        breast=breast,
        input_size=input_size,
        max_pixels=max_pixels,
    ).values


# --------------------------------------------------------------------------- scores


def _check_pair(heatmap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap shape {heatmap.shape} differs from mask shape {mask.shape}")
    mask = np.asarray(mask).astype(bool)
    if not mask.any():
        raise ValueError("the lesion mask is empty")
    return mask


def pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the heatmap's maximum lies inside the lesion (Zhang et al. 2016).

    Ties go to the first maximum in row-major order, so a constant map points at the
    top-left pixel.

    Raises:
        ValueError: for shapes that differ or an empty mask.
    """
    mask = _check_pair(heatmap, mask)
    return bool(mask.flat[int(np.argmax(heatmap))])


def overlap(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """IoU and Dice of the region ``heatmap >= threshold`` against the lesion mask.

    Returns:
        ``(iou, dice)``; both 0 when no pixel reaches the threshold.

    Raises:
        ValueError: for shapes that differ or an empty mask.
    """
    mask = _check_pair(heatmap, mask)
    pred = heatmap >= threshold
    inter = int(np.count_nonzero(pred & mask))
    p, m = int(np.count_nonzero(pred)), int(np.count_nonzero(mask))
    return inter / (p + m - inter), 2 * inter / (p + m)


def chance_levels(
    mask: np.ndarray, breast_mask: np.ndarray, predicted_area: float
) -> dict[str, float]:
    """Scores a heatmap would get by chance, to read the real ones against.

    * Pointing game: a maximum placed uniformly at random in the breast hits the lesion
      with probability ``|lesion ∩ breast| / |breast|``.
    * IoU and Dice: a predicted region ``B`` of ``predicted_area`` pixels placed at random
      in the breast covers each breast pixel with probability ``|B| / |breast|``, so its
      expected intersection with the lesion ``A`` is ``E[I] = |A||B| / |breast|``; the
      chance levels are ``Dice = 2 E[I] / (|A| + |B|)`` and
      ``IoU = E[I] / (|A| + |B| − E[I])`` (the scores at the expected intersection, a
      first-order approximation of the expected scores).

    Args:
        mask: lesion mask.
        breast_mask: breast mask of the same shape.
        predicted_area: pixels of the predicted region (e.g. ``heatmap >= threshold``).

    Returns:
        ``{"pointing", "iou", "dice"}``.

    Raises:
        ValueError: for shapes that differ, an empty lesion mask or an empty breast.
    """
    mask = np.asarray(mask).astype(bool)
    breast = np.asarray(breast_mask).astype(bool)
    if mask.shape != breast.shape:
        raise ValueError(f"mask shape {mask.shape} differs from breast shape {breast.shape}")
    area_b = int(np.count_nonzero(breast))
    area_a = int(np.count_nonzero(mask & breast))
    if area_b == 0:
        raise ValueError("the breast mask is empty")
    if not mask.any():
        raise ValueError("the lesion mask is empty")
    pred = min(max(float(predicted_area), 0.0), float(area_b))
    inter = area_a * pred / area_b
    union = area_a + pred - inter
    return {
        "pointing": area_a / area_b,
        "iou": inter / union if union > 0 else 0.0,
        "dice": 2 * inter / (area_a + pred) if area_a + pred > 0 else 0.0,
    }


def score_heatmap(
    heatmap: np.ndarray, mask: np.ndarray, breast: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """One image's localization record: pointing game, IoU, Dice and their chance levels.

    The result, with a ``pathology`` key added, is what :func:`localization_metrics`
    aggregates.
    """
    mask = _check_pair(heatmap, mask)
    iou, dice = overlap(heatmap, mask, threshold)
    predicted = int(np.count_nonzero(heatmap >= threshold))
    chance = chance_levels(mask, breast, predicted)
    return {
        "hit": pointing_game(heatmap, mask),
        "iou": iou,
        "dice": dice,
        "chance_hit": chance["pointing"],
        "chance_iou": chance["iou"],
        "chance_dice": chance["dice"],
        "lesion_area": int(np.count_nonzero(mask)),
        "predicted_area": predicted,
    }


_AGG = (
    ("hit_rate", "hit"),
    ("hit_rate_chance", "chance_hit"),
    ("mean_iou", "iou"),
    ("mean_iou_chance", "chance_iou"),
    ("mean_dice", "dice"),
    ("mean_dice_chance", "chance_dice"),
)


def _aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(records)}
    for name, key in _AGG:
        out[name] = float(np.mean([float(r[key]) for r in records])) if records else None
    return out


def localization_metrics(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Hit rate, mean IoU and mean Dice with their chance levels, overall and per pathology.

    Args:
        records: per-lesion records as :func:`score_heatmap` returns them, each with a
            ``pathology`` key (``BENIGN``/``MALIGNANT``).

    Returns:
        ``{"n", "hit_rate", "hit_rate_chance", "mean_iou", "mean_iou_chance", "mean_dice",
        "mean_dice_chance", "by_pathology": {pathology: same keys}}``; means are ``None``
        for no records.
    """
    records = list(records)
    out = _aggregate(records)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r.get("pathology", "UNKNOWN")), []).append(r)
    out["by_pathology"] = {k: _aggregate(v) for k, v in sorted(groups.items())}
    return out


# --------------------------------------------------------------------------- regions


def top_regions(
    heatmap: np.ndarray, k: int = 3, threshold: float = 0.5, min_area_px: int = 16
) -> list[dict[str, Any]]:
    """The ``k`` strongest connected regions of the thresholded heatmap.

    Args:
        heatmap: 2-D map in [0, 1].
        k: most regions returned.
        threshold: a pixel belongs to a region when its value is at least this.
        min_area_px: regions smaller than this (in map pixels) are ignored.

    Returns:
        Regions by decreasing peak value, each ``{"prob": peak value, "bbox": [x0, y0, x1,
        y1], "area": pixels}`` with the box in the map's pixel coordinates, ``x1``/``y1``
        exclusive (as the manifest's lesion boxes).
    """
    if heatmap.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap, got shape {heatmap.shape}")
    binary = (heatmap >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    regions = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area_px:
            continue
        window = heatmap[y : y + h, x : x + w]
        peak = float(window[labels[y : y + h, x : x + w] == i].max())
        regions.append({"prob": peak, "bbox": [x, y, x + w, y + h], "area": area})
    regions.sort(key=lambda r: (-r["prob"], -r["area"], r["bbox"]))
    return regions[:k]


def peak_candidates(
    heatmap: np.ndarray, k: int, radius: float, score_scale: float = 1.0
) -> list[dict[str, Any]]:
    """Up to ``k`` candidate marks from a heatmap, strongest first (FROC input).

    Greedy non-maximum suppression: take the map's maximum, record it, blank the square of
    half-side ``radius`` around it, repeat. With ``radius`` half the training patch side,
    two marks are at least half a patch apart and each mark's box is the patch-sized
    window the network judged. Zero-valued pixels (outside the breast) are never marks.

    Args:
        heatmap: 2-D map, larger = more suspicious.
        k: most candidates returned.
        radius: half-side of the suppression square, in map pixels (at least 1).
        score_scale: factor applied to every score (to put maps on one scale).

    Returns:
        ``{"x", "y", "score", "bbox": [x0, y0, x1, y1]}`` per candidate, the peak in map
        pixels and the box its suppression square clipped to the map (``x1``/``y1``
        exclusive).
    """
    if heatmap.ndim != 2:
        raise ValueError(f"expected a 2-D heatmap, got shape {heatmap.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    work = np.array(heatmap, dtype=np.float32)
    h, w = work.shape
    r = max(1, int(round(radius)))
    out: list[dict[str, Any]] = []
    for _ in range(k):
        idx = int(np.argmax(work))
        value = float(work.flat[idx])
        if not value > 0:
            break
        y, x = divmod(idx, w)
        box = [max(0, x - r), max(0, y - r), min(w, x + r + 1), min(h, y + r + 1)]
        out.append({"x": x, "y": y, "score": value * score_scale, "bbox": box})
        work[box[1] : box[3], box[0] : box[2]] = -np.inf
    return out


def candidate_hits(
    candidates: Sequence[Mapping[str, Any]], lesions: Mapping[Hashable, np.ndarray]
) -> list[list[Hashable]]:
    """The lesions each candidate detects: those whose mask holds the candidate's peak.

    Args:
        candidates: marks with ``x``/``y`` peaks, as :func:`peak_candidates` gives.
        lesions: lesion id → boolean mask in the same pixel grid.

    Returns:
        One list of lesion ids per candidate; empty for a false positive.
    """
    hits = []
    for c in candidates:
        x, y = int(c["x"]), int(c["y"])
        hits.append([key for key, mask in lesions.items() if bool(mask[y, x])])
    return hits


# --------------------------------------------------------------------------- overlays


def _grey8(image: np.ndarray) -> np.ndarray:
    """An 8-bit display copy, stretched between the 0.5th and 99.5th percentiles."""
    lo, hi = np.percentile(image, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1
    scaled = (image.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _dashed_rectangle(
    out: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], colour, thick: int
) -> None:
    """A dashed box: a region that did not pass the threshold must not look like one that did."""
    dash = 6 * thick
    (x0, y0), (x1, y1) = p0, p1
    for a, b, fixed, horizontal in (
        (x0, x1, y0, True),
        (x0, x1, y1, True),
        (y0, y1, x0, False),
        (y0, y1, x1, False),
    ):
        for start in range(a, b + 1, 2 * dash):
            end = min(b, start + dash)
            q0, q1 = (
                ((start, fixed), (end, fixed)) if horizontal else ((fixed, start), (fixed, end))
            )
            cv2.line(out, q0, q1, colour, thick)


def _with_colour_scale(out: np.ndarray, thick: int) -> np.ndarray:
    """The overlay with a jet colour bar from 0 (bottom) to 1 (top) added at its right."""
    h = out.shape[0]
    bar_w, pad = 14 * thick, 8 * thick
    top, bottom = 20 * thick, h - 20 * thick
    panel = np.zeros((h, bar_w + pad * 2 + 40 * thick, 3), np.uint8)
    if bottom - top > 10:
        ramp = np.linspace(255, 0, bottom - top).astype(np.uint8)[:, None]
        bar = cv2.applyColorMap(np.repeat(ramp, bar_w, axis=1), cv2.COLORMAP_JET)
        panel[top:bottom, pad : pad + bar_w] = bar
        font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thick
        for value in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = int(round(bottom - 1 - value * (bottom - top - 1)))
            cv2.line(panel, (pad + bar_w, y), (pad + bar_w + 3 * thick, y), (255, 255, 255), 1)
            org = (pad + bar_w + 5 * thick, y + 4 * thick)
            cv2.putText(
                panel, f"{value:.2f}", org, font, scale, (255, 255, 255), max(1, thick // 2)
            )
    return np.ascontiguousarray(np.hstack([out, panel]))


def _banner(out: np.ndarray, text: str, thick: int) -> None:
    """Writes ``text`` on a dark strip across the top of the overlay."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    strip = th + base + 8 * thick
    out[:strip] = (out[:strip] * 0.3).astype(np.uint8)
    cv2.putText(out, text, (6 * thick, th + 4 * thick), font, scale, (0, 255, 255), thick)


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    mask: np.ndarray | None,
    regions: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    max_side: int | None = 2048,
    alpha: float = 0.5,
    *,
    colour_scale: bool = False,
    note: str | None = None,
    below_threshold: bool = False,
) -> None:
    """Writes the heatmap over the mammogram as an 8-bit colour PNG, atomically.

    The jet-coloured heatmap is blended over the grey mammogram in proportion to its value
    (cold areas keep the mammogram visible), the ground-truth lesion outline is drawn in
    green and the predicted regions' boxes in magenta, numbered by rank.

    Args:
        image: 2-D grey mammogram.
        heatmap: map in [0, 1] of the same shape.
        mask: lesion mask of the same shape, or ``None``.
        regions: boxes as :func:`top_regions` returns them, in image pixels.
        path: the PNG to write.
        max_side: the overlay is down-sized so that its long side is at most this.
        alpha: opacity of the heatmap where it is 1.
        colour_scale: draw the heatmap's colour scale (0 to 1) at the right edge.
        note: a line written at the top of the image (e.g. that nothing passed).
        below_threshold: the regions did not reach the threshold: their boxes are drawn
            dashed in yellow and labelled as below it.
    """
    if heatmap.shape != image.shape:
        raise ValueError(f"heatmap shape {heatmap.shape} differs from image {image.shape}")
    h, w = image.shape
    f = 1.0 if not max_side or max(h, w) <= max_side else max_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    heat = heatmap.astype(np.float32)
    if f < 1:
        # down-size first: percentiles of a full-size mammogram cost more than the rest
        image = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
        heat = cv2.resize(heat, size, interpolation=cv2.INTER_AREA)
    grey = _grey8(image)
    colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (np.clip(heat, 0, 1) * alpha)[..., None]
    out = (cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR) * (1 - weight) + colour * weight).astype(
        np.uint8
    )
    thick = max(1, round(max(size) / 500))
    if mask is not None:
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image {image.shape}")
        small = np.asarray(mask).astype(np.uint8)
        if f < 1:
            small = cv2.resize(small, size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (0, 255, 0), thick)
    box_colour = (0, 255, 255) if below_threshold else (255, 0, 255)
    for rank, region in enumerate(regions, start=1):
        x0, y0, x1, y1 = (float(v) * f for v in region["bbox"])
        p0 = (int(round(x0)), int(round(y0)))
        p1 = (max(p0[0], int(round(x1)) - 1), max(p0[1], int(round(y1)) - 1))
        if below_threshold:
            _dashed_rectangle(out, p0, p1, box_colour, thick)
            label = f"strongest, below threshold: {float(region.get('prob', 0.0)):.2f}"
        else:
            cv2.rectangle(out, p0, p1, box_colour, thick)
            label = f"{rank}: {float(region.get('prob', 0.0)):.2f}"
        org = (p0[0], max(12 * thick, p0[1] - 3 * thick))
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, box_colour, thick)
    if colour_scale:
        out = _with_colour_scale(out, thick)
    if note:
        _banner(out, note, thick)
    ok, buf = cv2.imencode(".png", out)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_file(path, "wb") as fh:
        fh.write(buf.tobytes())


# --------------------------------------------------------------------------- the stage's work


@dataclass(frozen=True)
class LocalizeConfig:
    """The ``localize`` params section (paper §3: MobileNet localizes masses).

    Attributes:
        backbone: the fine-tuned backbone whose activation maps are used.
        method: ``cam`` (CAM where the head allows it, else Grad-CAM) or ``gradcam``.
        threshold: heatmap level above which a pixel counts as lesion (IoU, Dice, boxes).
        top_k: suspicious regions drawn per overlay.
        report_overlays: overlays copied to ``reports/localize/`` (the rest stay in
            ``data/localize/``).
        froc_candidates: candidate marks taken from each heatmap for the FROC curve
            (:func:`peak_candidates`); enough that the curve reaches 4 false positives per
            image.
    """

    backbone: str = "mobilenet_v1"
    method: Literal["cam", "gradcam"] = "cam"
    threshold: float = 0.5
    top_k: int = 3
    report_overlays: int = 4
    froc_candidates: int = 10

    def __post_init__(self) -> None:
        if self.froc_candidates < 1:
            raise ValueError(f"froc_candidates must be >= 1, got {self.froc_candidates}")


@dataclass
class LocalizeResult:
    """What :func:`localize_dataset` computes from the heatmaps, each computed once.

    Attributes:
        lesion_images: one record per image with lesion masks: pointing game, IoU, Dice
            and their chance levels (the rows :func:`localization_metrics` aggregates).
        metrics: those records aggregated, overall and per pathology.
        images: one row per image, normals included: ``image_id``, ``patient_id``,
            ``pathology``, ``abnormality_type``, ``n_lesions``, ``froc_eligible`` (a
            normal image, or every finding outlined), ``peak`` (the image score, see
            :class:`Heatmap`), ``heatmap_s`` (seconds of the heatmap computation).
        candidates: one row per candidate mark: ``image_id``, ``rank``, ``x``, ``y``,
            ``score``, ``x0``, ``y0``, ``x1``, ``y1`` and ``lesions`` (list of the lesion
            ids it detects; empty for a false positive).
        lesions: one row per outlined lesion: ``lesion_id`` (its ROI's image id),
            ``image_id``, ``pathology``, ``abnormality_type``.
    """

    lesion_images: pd.DataFrame
    metrics: dict[str, Any]
    images: pd.DataFrame
    candidates: pd.DataFrame
    lesions: pd.DataFrame


def localize_dataset(
    model: nn.Module,
    backbone: str,
    patch_px: float,
    mean: Sequence[float],
    std: Sequence[float],
    enhanced_dir: Path,
    image_ids: Iterable[str],
    out_dir: Path,
    cfg: LocalizeConfig,
    input_size: int = PATCH_INPUT,
) -> LocalizeResult:
    """Heatmaps of every full mammogram, scored against lesion masks (paper §3, Fig. 1).

    Each heatmap is computed once, on the image cropped to the breast's bounding box
    widened by half a training patch (:func:`breast_box`; zero outside it, as outside the
    breast), and used four ways: lesion scores (pointing game, IoU, Dice) on images with
    lesion masks, the image score (its maximum inside the breast), FROC candidates
    (:func:`peak_candidates`, suppression half-side ``patch_px / 2``, matched by
    :func:`candidate_hits`) and an overlay.

    Args:
        model: the fine-tuned patch network.
        backbone: its registry name.
        patch_px: training patch scale in full-image pixels.
        mean: input normalisation mean of the network.
        std: input normalisation standard deviation.
        enhanced_dir: an ``enhance`` output folder (images and masks, manifest).
        image_ids: the full images to localize in (e.g. the test split's), normals
            included; every one must be in the manifest.
        out_dir: folder to create with one overlay PNG per image, ``images.csv`` and
            ``candidates.csv``.
        cfg: threshold, method, regions and candidates.
        input_size: side of the patches the network was trained on (``patches.image_size``
            of its run): a full image is rescaled by ``input_size / patch_px``.

    Returns:
        The :class:`LocalizeResult`.

    Raises:
        ValueError: for image ids missing from the manifest, or none with a lesion mask.
    """
    manifest = pd.read_csv(Path(enhanced_dir) / "manifest.csv", keep_default_na=False)
    wanted = set(image_ids)
    full = manifest[(manifest["kind"] == "full") & manifest["image_id"].isin(wanted)]
    missing = sorted(wanted - set(full["image_id"]))
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) to localize are not full images of the enhanced "
            f"manifest, e.g. {missing[:3]}"
        )
    rois = manifest[manifest["kind"] == "roi"]
    unoutlined = set(rois.loc[rois["mask_path"] == "", "full_image_id"])
    rois = rois[rois["mask_path"] != ""].sort_values("image_id")
    rois_of = {
        key: list(zip(group["image_id"], group["mask_path"], strict=True))
        for key, group in rois.groupby("full_image_id")
    }
    full = full.sort_values("image_id")
    if not full["image_id"].isin(rois_of).any():
        raise ValueError("no full mammogram with a lesion mask among the images to localize")
    radius = float(patch_px) / 2
    records, rows, cands = [], [], []
    with atomic_dir(out_dir) as tmp:
        for row in tqdm(full.to_dict("records"), desc="localize", unit="img", disable=None):
            image_id = row["image_id"]
            image = read_png(Path(enhanced_dir) / row["image_path"])
            lesions = {
                rid: read_png(Path(enhanced_dir) / rel) > 0
                for rid, rel in rois_of.get(image_id, [])
            }
            breast = breast_mask(image)
            t0 = time.perf_counter()
            box = breast_box(breast, margin=round(radius))
            crop = backbone_heatmap(
                model,
                backbone,
                image[box],
                patch_px,
                mean,
                std,
                cfg.method,
                input_size=input_size,
                breast=breast[box],
            )
            heat = dataclasses.replace(crop, values=np.zeros(image.shape, np.float32))
            heat.values[box] = crop.values
            seconds = time.perf_counter() - t0
            union = None
            if lesions:
                union = np.logical_or.reduce(list(lesions.values()))
                record = score_heatmap(heat.values, union, breast, cfg.threshold)
                record.update(
                    image_id=image_id,
                    pathology=row["pathology"],
                    abnormality_type=row["abnormality_type"],
                )
                records.append(record)
            # candidate scores on the image score's scale (1 for CAM; Grad-CAM's values are
            # stretched per image)
            top = float(heat.values.max())
            scale = heat.peak / top if top > 0 else 1.0
            found = peak_candidates(heat.values, cfg.froc_candidates, radius, scale)
            for rank, (c, hit) in enumerate(
                zip(found, candidate_hits(found, lesions), strict=True), start=1
            ):
                x0, y0, x1, y1 = c["bbox"]
                cands.append(
                    dict(image_id=image_id, rank=rank, x=c["x"], y=c["y"], score=c["score"],
                         x0=x0, y0=y0, x1=x1, y1=y1, lesions=hit)
                )  # fmt: skip
            normal = row["pathology"] == "NORMAL" and image_id not in unoutlined
            rows.append({
                "image_id": image_id,
                "patient_id": row["patient_id"],
                "pathology": row["pathology"],
                "abnormality_type": row["abnormality_type"],
                "n_lesions": len(lesions),
                "froc_eligible": normal or (bool(lesions) and image_id not in unoutlined),
                "peak": heat.peak,
                "heatmap_s": seconds,
            })  # fmt: skip
            regions = top_regions(heat.values, k=cfg.top_k, threshold=cfg.threshold)
            render_overlay(image, heat.values, union, regions, tmp / f"{image_id}.png")
        frame = pd.DataFrame(records)
        images = pd.DataFrame(rows)
        candidates = pd.DataFrame(
            cands,
            columns=["image_id", "rank", "x", "y", "score", "x0", "y0", "x1", "y1", "lesions"],
        )
        scored = frame.drop(columns=["pathology", "abnormality_type"])
        write_csv(tmp / "images.csv", images.merge(scored, on="image_id", how="left"))
        write_csv(
            tmp / "candidates.csv",
            candidates.assign(lesions=candidates["lesions"].map(";".join)),
        )
    metrics = localization_metrics(records)
    metrics.update(
        backbone=backbone,
        method=cfg.method,
        threshold=cfg.threshold,
        patch_px=patch_px,
        n_images=len(records),
    )
    lesion_rows = rois[rois["full_image_id"].isin(set(full["image_id"]))]
    lesion_frame = pd.DataFrame({
        "lesion_id": lesion_rows["image_id"].to_numpy(),
        "image_id": lesion_rows["full_image_id"].to_numpy(),
        "pathology": lesion_rows["pathology"].to_numpy(),
        "abnormality_type": lesion_rows["abnormality_type"].to_numpy(),
    })  # fmt: skip
    return LocalizeResult(frame, metrics, images, candidates, lesion_frame)
