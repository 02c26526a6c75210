"""Prediction on new mammograms: the whole framework of paper Fig. 1 on one image.

Paper Fig. 1: a pre-processed full mammogram goes to the shallow CNN (normal vs cancerous,
Fig. 2) and to the fine-tuned MobileNet patch network, whose class activation map
localizes masses in the full image. :class:`Predictor` loads both trained checkpoints
once and, for each file, repeats the training preprocessing exactly (same enhancement
chain with the full-image tile grid, same down-sizing and orientation for the shallow CNN,
same normalisation from the checkpoints), then reports the shallow CNN's probability and
the strongest heatmap regions with bounding boxes in the original image's pixels. The
localization always runs; the shallow probability is reported beside it rather than used
as a gate, so that a reader sees both.

Inputs are refused with :class:`NotAMammogram` and a one-line reason when they cannot be a
mammogram: a DICOM file of another modality, colour, multi-frame or corrupt (see
:func:`mammocad.dicom.read_pixels`), a colour or undecodable PNG/PGM, a blank image, or
one much too small.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mammocad.checkpoint import load_checkpoint, load_trained_backbone
from mammocad.dicom import SkipImage, read_pixels
from mammocad.enhance import EnhanceConfig, apply_chain, validate
from mammocad.entries import SHALLOW
from mammocad.image_rules import image_problem
from mammocad.imaging import read_image as read_image_file
from mammocad.inference import build_architecture, cam_halo, fuse_for_inference
from mammocad.localize import (
    DEFAULT_HALO,
    DEFAULT_MAX_PIXELS,
    STRIDE_ALIGN,
    Heatmap,
    Method,
    breast_box,
    breast_mask,
    compute_heatmap,
    heatmap_method,
    render_overlay,
    to_input,
    top_regions,
    working_shape,
)
from mammocad.models.backbones import get_module, get_spec
from mammocad.models.shallow import ShallowCNN, shallow_from_checkpoint
from mammocad.patches import PatchesConfig, make_full, make_patch

log = logging.getLogger(__name__)

#: File name suffixes read as images besides DICOM.
IMAGE_SUFFIXES = (".png", ".pgm")


#: Rescaled pixels per network pass, context rows included: a full-size mammogram at the
#: 12-megapixel cap then runs in two stripes (MobileNet-v1; three for v2) and peaks about
#: 0.5 GB lower than in one pass, for about 8 % more computation.
DEFAULT_TILE_PIXELS = 3_800_000


class NotAMammogram(Exception):
    """An input that cannot be read as a greyscale mammogram, with a one-line ``reason``."""

    def __init__(self, reason: str) -> None:
        reason = " ".join(str(reason).split())
        super().__init__(reason)
        self.reason = reason


def has_dicom_preamble(path: str | os.PathLike) -> bool:
    """Whether a file carries the DICOM Part 10 marker ``DICM`` after its 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silences OpenCV's own messages, which a corrupt PNG prints straight to stderr."""
    logging_ = cv2.utils.logging
    level = logging_.getLogLevel()
    logging_.setLogLevel(logging_.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_.setLogLevel(level)


def _is_pgm(path: Path) -> bool:
    """Whether the file starts like a binary or plain PGM (``P5``/``P2``)."""
    with open(path, "rb") as fh:
        return re.match(rb"^P[25]\s", fh.read(3)) is not None


def _decode_raster(path: Path) -> np.ndarray:
    """A PNG (or other OpenCV-readable raster) as a 2-D ``uint16`` image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise NotAMammogram(f"cannot read file: {exc.strerror or exc}") from None
    with _quiet_opencv():
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise NotAMammogram("cannot decode image")
    if image.ndim == 3:
        colour = image[..., :3] if image.shape[2] >= 3 else image[..., :1]
        if not all(
            np.array_equal(colour[..., 0], colour[..., c]) for c in range(1, colour.shape[2])
        ):
            raise NotAMammogram("not a greyscale mammogram: colour image")
        image = np.ascontiguousarray(colour[..., 0])
    if image.dtype == np.uint8:
        return image.astype(np.uint16) * 257
    if image.dtype != np.uint16:
        raise NotAMammogram(f"unsupported pixel type {image.dtype} (expected 8 or 16 bits)")
    return image


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Reads a mammogram file as a 2-D ``uint16`` image using the full 16-bit range.

    DICOM (by its ``DICM`` marker or a ``.dcm`` suffix) goes through
    :func:`mammocad.dicom.read_pixels`; other files are decoded by OpenCV, 8-bit grey
    multiplied by 257 and 16-bit grey kept; PGMs are read by :mod:`mammocad.imaging`, as the
    training pipeline reads them (stretched from ``0..maxval``).

    Returns:
        The image and its format (``dicom``, ``png``, ``pgm`` or the file's suffix).

    Raises:
        NotAMammogram: with the reason the file is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise NotAMammogram("no such file" if not path.exists() else "not a file")
    suffix = path.suffix.lower()
    if has_dicom_preamble(path) or suffix == ".dcm":
        try:
            image, kind = read_pixels(path).pixels, "dicom"
        except SkipImage as exc:
            raise NotAMammogram(exc.reason) from None
    else:
        try:
            if _is_pgm(path):
                # PGMs as training reads them: stretched from 0..maxval (mammocad.imaging)
                try:
                    image, kind = read_image_file(path).pixels, "pgm"
                except SkipImage as exc:
                    raise NotAMammogram(exc.reason) from None
            else:
                image, kind = _decode_raster(path), suffix.lstrip(".") or "raster"
        except NotAMammogram:
            if suffix in IMAGE_SUFFIXES:
                raise
            try:  # a DICOM without the Part 10 preamble and without a suffix
                image, kind = read_pixels(path).pixels, "dicom"
            except SkipImage:
                raise NotAMammogram("cannot decode image") from None
    check_image(image)
    return image, kind


def check_image(image: np.ndarray) -> None:
    """Refuses images that cannot be full mammograms (:mod:`mammocad.image_rules`).

    Raises:
        NotAMammogram: with the reason (too small, blank).
    """
    problem = image_problem(image)
    if problem:
        raise NotAMammogram(problem)


def _backbone_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuilds a fine-tuned backbone from its checkpoint (no ImageNet weights needed).

    :func:`mammocad.checkpoint.load_trained_backbone` with, for the MobileNets, the
    architectures of :mod:`mammocad.inference` (the same state dict and outputs, without
    importing torchvision or timm).
    """
    return load_trained_backbone(path, build_architecture)


def _shallow_model(path: Path) -> tuple[ShallowCNN, dict[str, Any]]:
    """Rebuilds the shallow CNN of a checkpoint; its widths are read from the weights."""
    ckpt = load_checkpoint(path)
    if ckpt["backbone"] != SHALLOW:
        raise ValueError(f"{path}: holds {ckpt['backbone']!r}, not the {SHALLOW!r} model")
    try:
        return shallow_from_checkpoint(ckpt), ckpt
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _input_stats(
    ckpt: dict[str, Any], default: tuple | None, path: Path
) -> tuple[list[float], list[float]]:
    stats = (ckpt.get("config") or {}).get("input") or {}
    mean, std = stats.get("mean"), stats.get("std")
    if mean is None or std is None:
        if default is None:
            raise ValueError(f"{path}: the checkpoint's config holds no input mean/std")
        log.warning("%s: no input mean/std in the checkpoint; using %s", path, default)
        return list(default[0]), list(default[1])
    return [float(v) for v in mean], [float(v) for v in std]


@dataclass
class Prediction:
    """One file's prediction with the arrays its overlay is drawn from.

    Attributes:
        result: the JSON-ready record (see :meth:`Predictor.predict_file`).
        image: the enhanced image the networks saw, ``uint16``.
        heatmap: the malignancy heatmap at the image's resolution.
        regions: the reported regions, boxes in original pixels; when none reached the
            threshold, the strongest region below it.
        passed: whether ``regions`` reached the threshold.
    """

    result: dict[str, Any]
    image: np.ndarray
    heatmap: Heatmap
    regions: list[dict[str, Any]]
    passed: bool = True


class Predictor:
    """The trained framework of paper Fig. 1, applied to mammogram files.

    Args:
        checkpoint_backbone: the fine-tuned patch network's checkpoint.
        checkpoint_shallow: the shallow CNN's checkpoint, or ``None`` to skip it.
        enhance: the enhancement chain used in training (paper §3.2).
        patches: the patch and down-sizing settings used in training.
        patch_px: typical side, in original pixels, of the training ROI crops; images are
            rescaled by ``patches.image_size / patch_px`` for the patch network.
        method: ``cam`` (Grad-CAM where the head needs it) or ``gradcam``.
        top_k: most regions reported.
        threshold: heatmap level a region's pixels reach.
        max_pixels: cap on the rescaled image's pixels.
        tile_pixels: most rescaled pixels the network sees at once, context rows included
            (CAM only; see :func:`stripe_pixels`); ``None``: the whole breast at once.
    """

    def __init__(
        self,
        checkpoint_backbone: Path,
        checkpoint_shallow: Path | None,
        enhance: EnhanceConfig,
        patches: PatchesConfig,
        patch_px: float,
        method: Method = "cam",
        *,
        top_k: int = 3,
        threshold: float = 0.5,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        tile_pixels: int | None = DEFAULT_TILE_PIXELS,
    ) -> None:
        if not patch_px > 0 or not math.isfinite(patch_px):
            raise ValueError(f"patch_px must be a positive number, got {patch_px}")
        validate(enhance)
        self.enhance, self.patches, self.patch_px = enhance, patches, float(patch_px)
        self.method, self.top_k, self.threshold = method, int(top_k), float(threshold)
        self.max_pixels = int(max_pixels)
        self.tile_pixels = tile_pixels
        self.min_area_px = max(16, round((self.patch_px / 8) ** 2))
        self.checkpoint_backbone = Path(checkpoint_backbone)
        model, ckpt = _backbone_model(self.checkpoint_backbone)
        self.backbone = str(ckpt["backbone"])
        spec = get_spec(self.backbone)
        # Batch norms and ReLU6 folded into the convolutions (MobileNets; outputs change by
        # float rounding only), and channels-last, which runs depthwise convolutions about
        # 1.6× faster on CPUs.
        self.model = fuse_for_inference(model).to(memory_format=torch.channels_last)
        # context rows of a heatmap stripe: half the network's receptive field
        self.halo = cam_halo(self.model) or DEFAULT_HALO
        self.mean, self.std = _input_stats(ckpt, (spec.mean, spec.std), self.checkpoint_backbone)
        self.shallow: ShallowCNN | None = None
        self.shallow_info: dict[str, Any] = {}
        if checkpoint_shallow is not None:
            self.shallow, sckpt = _shallow_model(Path(checkpoint_shallow))
            self.shallow_mean, self.shallow_std = _input_stats(
                sckpt, None, Path(checkpoint_shallow)
            )
            self.shallow_info = {
                "positive": (sckpt["config"].get("shallow") or {}).get("positive"),
                "checkpoint": str(checkpoint_shallow),
            }
        log.info(
            "predictor: %s (%s), shallow CNN %s, patch_px %.1f",
            self.backbone,
            method,
            "on" if self.shallow is not None else "off",
            self.patch_px,
        )

    # ----------------------------------------------------------------- parts

    @torch.no_grad()
    def shallow_probability(self, enhanced: np.ndarray) -> tuple[float, bool]:
        """The shallow CNN's cancerous probability for an enhanced full image (Fig. 2).

        The image is down-sized and flipped exactly as the patches stage made the shallow
        CNN's training images, then normalised with the checkpoint's mean and std.

        Returns:
            The probability and whether the image was flipped.
        """
        if self.shallow is None:
            raise RuntimeError("no shallow CNN checkpoint was given")
        small, flipped = make_full(enhanced, self.patches)
        x = to_input(np.ascontiguousarray(small), self.shallow_mean, self.shallow_std)
        prob = torch.softmax(self.shallow(x), dim=1)[0, 1]
        return float(prob), bool(flipped)

    @torch.no_grad()
    def region_probabilities(self, enhanced: np.ndarray, boxes: list[list[int]]) -> list[float]:
        """The patch network's malignant probability on each box's crop, as in training.

        A box is widened to at least ``patch_px`` per side around its centre (kept inside
        the image) and made into a patch like the training ROI crops (paper §3.2).
        """
        if not boxes:
            return []
        h, w = enhanced.shape
        side = int(round(self.patch_px))
        patches = []
        for x0, y0, x1, y1 in boxes:
            ys = _widen(y0, y1, side, h)
            xs = _widen(x0, x1, side, w)
            patches.append(make_patch(enhanced[ys[0] : ys[1], xs[0] : xs[1]], self.patches))
        x = torch.cat([to_input(p, self.mean, self.std) for p in patches])
        x = x.contiguous(memory_format=torch.channels_last)
        self.model.eval()
        probs = torch.softmax(self.model(x), dim=1)[:, 1]
        return [float(p) for p in probs]

    # ----------------------------------------------------------------- files

    def predict_image(
        self,
        image: np.ndarray,
        source: str | os.PathLike = "",
        kind: str = "array",
        read_s: float | None = None,
    ) -> Prediction:
        """Runs the framework on a loaded ``uint16`` mammogram (see :meth:`predict_file`).

        Args:
            image: the mammogram as :func:`load_image` returns it.
            source: the file it came from, reported as ``input``.
            kind: its format, reported as ``format``.
            read_s: seconds spent reading it, added to the timings and their total.
        """
        t0 = time.perf_counter() - (read_s or 0.0)
        timings: dict[str, float] = {} if read_s is None else {"read": round(read_s, 4)}
        check_image(image)

        def lap(name: str, start: float) -> float:
            now = time.perf_counter()
            timings[name] = round(now - start, 4)
            return now

        t = time.perf_counter()
        breast = breast_mask(image)
        t = lap("breast", t)
        enhanced = apply_chain(image, self.enhance)
        t = lap("enhance", t)
        shallow = None
        if self.shallow is not None:
            prob, flipped = self.shallow_probability(enhanced)
            shallow = {"cancer_probability": prob, "flipped": flipped, **self.shallow_info}
            t = lap("shallow", t)
        heatmap, box = self.heatmap(enhanced, breast)
        t = lap("heatmap", t)
        regions = top_regions(heatmap.values, self.top_k, self.threshold, self.min_area_px)
        passed = bool(regions)
        if not passed:
            # Nothing reached the threshold: the strongest region (pixels at half the
            # map's maximum or more around it) is still shown, marked as below it, so
            # that a reader sees where the network looked and how weakly.
            top = float(heatmap.values.max())
            if top > 0:
                regions = top_regions(heatmap.values, 1, top / 2, 1)
        probs = self.region_probabilities(enhanced, [r["bbox"] for r in regions])
        lap("regions", t)
        reported = [
            {
                "rank": rank,
                "bbox": r["bbox"],
                "peak": round(r["prob"], 6),
                "malignancy_probability": round(p, 6),
                "area_px": r["area"],
            }
            for rank, (r, p) in enumerate(zip(regions, probs, strict=True), start=1)
        ]
        h, w = image.shape
        result = {
            "input": str(source),
            "format": kind,
            "image": {"height": h, "width": w},
            "backbone": self.backbone,
            "checkpoint": str(self.checkpoint_backbone),
            "method": heatmap.method,
            "patch_px": self.patch_px,
            "working_size": {
                "height": heatmap.working_shape[0],
                "width": heatmap.working_shape[1],
            },
            "scale": {"y": heatmap.scale[0], "x": heatmap.scale[1]},
            "threshold": self.threshold,
            "shallow": shallow,
            "heatmap_max": float(heatmap.values.max()),
            "breast_box": [box[1].start, box[0].start, box[1].stop, box[0].stop],
            "passed_threshold": passed,
            "regions": reported if passed else [],
            "strongest_below_threshold": None if passed else (reported[0] if reported else None),
            "bbox_format": "x0, y0, x1, y1 in original image pixels; x1, y1 exclusive",
        }
        timings["total"] = round(time.perf_counter() - t0, 4)
        result["timings_s"] = timings
        return Prediction(result, enhanced, heatmap, regions, passed)

    def heatmap(
        self, enhanced: np.ndarray, breast: np.ndarray
    ) -> tuple[Heatmap, tuple[slice, slice]]:
        """The malignancy heatmap of an enhanced image, computed on its breast only.

        The rescale factor is chosen for the whole image (``input_size / patch_px``,
        reduced to fit ``max_pixels``), so that it depends on the image's geometry, not on
        how much background a film has; the network then runs on the breast's bounding
        box widened by half a training patch (as the localize stage does: the heatmap is
        zero outside the breast anyway), in stripes of at most ``tile_pixels``.

        Returns:
            The heatmap at the image's full size and the box it was computed in.
        """
        h, w = enhanced.shape
        scale = self.patches.image_size / self.patch_px
        if h * w * scale * scale > self.max_pixels:
            working_shape((h, w), scale, self.max_pixels)  # logs the reduction
            scale = math.sqrt(self.max_pixels / (h * w))
        box = breast_box(breast, margin=round(self.patch_px / 2))
        spec = get_spec(self.backbone)
        method = heatmap_method(self.backbone, self.method)
        # the factor as mammocad.localize.backbone_heatmap forms it from patch_px
        scale = self.patches.image_size / (self.patches.image_size / scale)
        rows, cols = working_shape(enhanced[box].shape, scale, self.max_pixels)
        crop = compute_heatmap(
            self.model,
            enhanced[box],
            scale,
            self.mean,
            self.std,
            get_module(self.model, spec.cam_target_layer),
            get_module(self.model, spec.classifier),
            method,  # type: ignore[arg-type]
            breast=breast[box],
            max_pixels=self.max_pixels,
            tile_pixels=stripe_pixels(rows, cols, self.tile_pixels, self.halo),
            halo=self.halo,
        )
        values = np.zeros((h, w), np.float32)
        values[box] = crop.values
        return dataclasses.replace(crop, values=values), box

    def predict(self, path: str | os.PathLike) -> Prediction:
        """Loads a file and runs the framework on it (see :meth:`predict_file`).

        Raises:
            NotAMammogram: when the file is refused.
        """
        t0 = time.perf_counter()
        image, kind = load_image(path)
        return self.predict_image(image, path, kind, read_s=time.perf_counter() - t0)

    def predict_file(self, path: str | os.PathLike) -> dict[str, Any]:
        """The JSON-ready prediction for one mammogram file (paper Fig. 1).

        Returns:
            ``input`` (the path), ``format``, ``image`` (``height``, ``width``),
            ``backbone``, ``method`` (``cam``/``gradcam``), ``patch_px``, ``working_size``
            and ``scale`` of the rescaled image, ``shallow`` (``cancer_probability`` of the
            shallow CNN, ``flipped``; ``None`` without its checkpoint), ``regions`` (by
            rank: ``bbox`` ``[x0, y0, x1, y1]`` in original pixels with ``x1``/``y1``
            exclusive, ``peak`` heatmap value, ``malignancy_probability`` of the patch
            network on the region, ``area_px``; empty when none reached ``threshold``),
            ``passed_threshold``, ``strongest_below_threshold`` (the strongest region, in
            the same form, when none passed; else ``None``), ``breast_box`` (where the
            heatmap was computed) and ``timings_s``.

        Raises:
            NotAMammogram: when the file is refused, with the reason.
        """
        return self.predict(path).result

    def write_overlay(self, prediction: Prediction, path: str | os.PathLike) -> None:
        """Writes the heatmap, its colour scale and the regions over the mammogram as a PNG.

        When no region reached the threshold, the strongest one is drawn with its score
        and the image says so.
        """
        result = prediction.result
        note = None
        if not prediction.passed:
            note = (
                f"no region reached the threshold {self.threshold:.2f} "
                f"(heatmap max {result['heatmap_max']:.2f})"
            )
        render_overlay(
            prediction.image,
            prediction.heatmap.values,
            None,
            prediction.regions,
            path,
            colour_scale=True,
            note=note,
            below_threshold=not prediction.passed,
        )


def stripe_pixels(rows: int, cols: int, budget: int | None, halo: int) -> int | None:
    """The ``tile_pixels`` of :func:`mammocad.localize.compute_heatmap` for a budget.

    The fewest stripes of equal height (multiples of :data:`STRIDE_ALIGN`) whose rows,
    with ``halo`` rows of context on each inner side, fit in ``budget`` pixels: fewer
    stripes recompute fewer context rows, and equal heights keep the largest one, which
    sets the memory, small.

    Returns:
        The pixels of one stripe without its context (one stripe height times ``cols``),
        or None for one pass over the whole image (it fits, or no budget).
    """
    if not budget or rows * cols <= budget:
        return None
    n = 2
    while True:
        step = -(-rows // (n * STRIDE_ALIGN)) * STRIDE_ALIGN
        context = halo * (2 if n > 2 else 1)
        if (step + context) * cols <= budget or step == STRIDE_ALIGN:
            return step * cols
        n += 1


def _widen(lo: int, hi: int, side: int, limit: int) -> tuple[int, int]:
    """``[lo, hi)`` widened to at least ``side`` about its centre, inside ``[0, limit)``."""
    side = min(max(hi - lo, side), limit)
    start = int(round((lo + hi - side) / 2))
    start = min(max(start, 0), limit - side)
    return start, start + side
