"""The parts of a heatmap that need no network library: the rescaled grid, the stripes of a
striped pass, the map from class activation maps, and the full-resolution heatmap.

PyTorch (:mod:`mammocad.localize.cam`) and ONNX Runtime (:mod:`mammocad.predict.runtime`)
run the network; both rescale, cut stripes and bring the map to full resolution with the
functions here, so that the two give one heatmap by one rule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

log = logging.getLogger("mammocad.localize.cam")

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


def check_method(method: str) -> None:
    """Refuses a heatmap method other than :data:`METHODS`, naming the valid ones."""
    if method not in METHODS:
        raise ValueError(f"unknown heatmap method {method!r}; valid: {', '.join(METHODS)}")


def unit_range(image: np.ndarray) -> np.ndarray:
    """A grey ``uint8``/``uint16`` image as float32 in [0, 1], scaled from its full bit
    range, as the training sets were."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    if image.dtype == np.uint16:
        full = 65535.0
    elif image.dtype == np.uint8:
        full = 255.0
    else:
        raise ValueError(f"expected a uint8 or uint16 image, got {image.dtype}")
    return np.ascontiguousarray(image).astype(np.float32) / np.float32(full)


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


def cam_map(cams: np.ndarray, target_class: int = 1) -> ActivationMap:
    """The CAM :class:`ActivationMap` of class activation maps ``(classes, h, w)``.

    ``prob`` is the per-location softmax over classes, ``score`` the target class's map
    minus the mean of the others', and ``logits`` the maps' spatial means: for a global
    average pooling + linear head, the network's logits for the whole image.
    """
    cams = np.asarray(cams, dtype=np.float32)
    if cams.ndim != 3 or cams.shape[0] < 2:
        raise ValueError(f"expected class maps (classes >= 2, h, w), got shape {cams.shape}")
    shifted = np.exp(cams - cams.max(axis=0, keepdims=True))
    prob = shifted[target_class] / shifted.sum(axis=0)
    others = np.delete(cams, target_class, axis=0).mean(axis=0)
    score = cams[target_class] - others
    logits = cams.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
    return ActivationMap(prob.astype(np.float32), score.astype(np.float32), logits, "cam")


def stripes(rows: int, cols: int, tile_pixels: int, halo: int) -> Iterator[tuple[int, ...]]:
    """The stripes of a striped CAM pass over a ``rows × cols`` rescaled image.

    Each stripe holds at most ``tile_pixels`` pixels of its own (whole multiples of
    :data:`STRIDE_ALIGN` rows) and ``halo`` rows of context either side (rounded up to
    :data:`STRIDE_ALIGN`, cut at the image's edges).

    Yields:
        ``(lo, hi, first, last)``: the input rows ``[lo, hi)`` the network sees, and the
        feature rows ``[first, last)`` of its output that belong to the stripe.
    """
    step = max(STRIDE_ALIGN, (tile_pixels // max(cols, 1)) // STRIDE_ALIGN * STRIDE_ALIGN)
    halo = -(-int(halo) // STRIDE_ALIGN) * STRIDE_ALIGN
    for top in range(0, rows, step):
        bottom = min(rows, top + step)
        lo, hi = max(0, top - halo), min(rows, bottom + halo)
        yield lo, hi, (top - lo) // STRIDE_ALIGN, (bottom - lo) // STRIDE_ALIGN


def check_stride(rows: int, feature_rows: int) -> None:
    """Refuses a network whose feature stride is not :data:`STRIDE_ALIGN`: its stripes'
    feature rows would not line up with the whole pass's."""
    stride = rows / feature_rows
    if stride != STRIDE_ALIGN:
        raise ValueError(f"striped CAM needs a feature stride of {STRIDE_ALIGN}, got {stride}")


# --------------------------------------------------------------------------- the rescaled grid


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


# --------------------------------------------------------------------------- full resolution


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


def full_resolution(
    amap: ActivationMap, shape: tuple[int, int], breast: np.ndarray, working: tuple[int, int]
) -> Heatmap:
    """The :class:`Heatmap` of an activation map on an image of ``shape``.

    The map is resized bilinearly to the image's size and zeroed outside the breast; a
    Grad-CAM map is then stretched to [0, 1] over the breast, and its ``peak`` taken from
    the unscaled map.

    Args:
        amap: the activation map of the image rescaled to ``working``.
        shape: rows and columns of the image.
        breast: boolean breast mask of the image's shape.
        working: rows and columns of the rescaled image the network saw.
    """
    h, w = shape
    if breast.shape != (h, w):
        raise ValueError(f"breast mask shape {breast.shape} differs from image {(h, w)}")
    values = cv2.resize(amap.prob, (w, h), interpolation=cv2.INTER_LINEAR)
    np.clip(values, 0.0, 1.0, out=values)
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
    wh, ww = working
    return Heatmap(
        values=values,
        method=amap.method,
        working_shape=(wh, ww),
        scale=(wh / h, ww / w),
        logits=amap.logits,
        grid=amap.prob.shape,
        peak=peak,
    )
