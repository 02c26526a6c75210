"""The trained framework of paper Fig. 1 applied to loaded mammograms: :class:`Predictor`.

The networks run on ONNX Runtime where the checkpoints' exported graphs stand for them
(:mod:`mammocad.predict.runtime`), else on PyTorch (:class:`mammocad.predict.networks.
TorchNetworks`); this module imports neither until a :class:`Predictor` is made.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammocad.enhance import EnhanceConfig, apply_chain, validate
from mammocad.localize.breast import breast_box, breast_mask
from mammocad.localize.maps import DEFAULT_MAX_PIXELS, Heatmap, Method, check_method, working_shape
from mammocad.localize.regions import top_regions
from mammocad.localize.render import render_overlay
from mammocad.patches import PatchesConfig, make_full, make_patch
from mammocad.predict.geometry import _widen, stripe_pixels
from mammocad.predict.load import check_image, load_image
from mammocad.predict.runtime import OnnxNetworks, Unavailable

log = logging.getLogger("mammocad.predict")  # the package's logger, named in the log lines


#: Rescaled pixels per network pass, context rows included: a full-size mammogram at the
#: 12-megapixel cap then runs in two stripes (MobileNet-v1; three for v2) and peaks about
#: 0.5 GB lower than in one pass, for about 8 % more computation.
DEFAULT_TILE_PIXELS = 3_800_000

#: Where the networks run: ``onnx`` (ONNX Runtime, the exported graphs; no PyTorch),
#: ``torch`` (PyTorch, the checkpoints) or ``auto`` (``onnx`` where the graphs stand for
#: the checkpoints and the method is CAM, else ``torch``, saying why).
ENGINES = ("auto", "onnx", "torch")


def load_networks(
    engine: str, checkpoint_backbone: Path, checkpoint_shallow: Path | None, method: str
) -> Any:
    """The networks of two checkpoints on the engine asked for (see :data:`ENGINES`).

    Raises:
        ValueError: for an unknown engine.
        Unavailable: ``onnx`` was asked for and the graphs cannot be used (the reason
            names the file).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine != "torch":
        if method != "cam":
            problem = Unavailable(f"the exported graphs compute CAM, not {method!r}", True)
        else:
            try:
                return OnnxNetworks(checkpoint_backbone, checkpoint_shallow)
            except Unavailable as exc:
                problem = exc
        if engine == "onnx":
            raise problem
        # a stale or broken graph costs the command seconds: worth a warning
        level = logging.INFO if problem.absent else logging.WARNING
        log.log(level, "networks on PyTorch: %s", problem.reason)
    from mammocad.predict.networks import TorchNetworks

    return TorchNetworks(checkpoint_backbone, checkpoint_shallow, method)


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
        patch_px: typical side, in training-image pixels, of the training ROI crops;
            images are rescaled by ``patches.image_size / patch_px`` for the patch network.
        image_px: long side of the training mammograms, or ``None``. Given, an input is
            taken to span the same physical height as the training films, so its crops
            are ``patch_px × long side / image_px`` of its own pixels (see
            :meth:`patch_px_for`); ``None`` takes ``patch_px`` in the input's pixels.
        method: ``cam`` (Grad-CAM where the head needs it) or ``gradcam``.
        top_k: most regions reported.
        threshold: heatmap level a region's pixels reach.
        max_pixels: cap on the rescaled image's pixels.
        tile_pixels: most rescaled pixels the network sees at once, context rows included
            (CAM only; see :func:`stripe_pixels`); ``None``: the whole breast at once.
        engine: where the networks run (:data:`ENGINES`); recorded in each result.
        networks: the networks already loaded (:func:`load_networks`) for these
            checkpoints and ``method``, instead of loading them on ``engine``.

    Raises:
        Unavailable: ``engine="onnx"`` and the exported graphs cannot be used.
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
        image_px: float | None = None,
        top_k: int = 3,
        threshold: float = 0.5,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        tile_pixels: int | None = DEFAULT_TILE_PIXELS,
        engine: str = "auto",
        networks: Any = None,
    ) -> None:
        if not patch_px > 0 or not math.isfinite(patch_px):
            raise ValueError(f"patch_px must be a positive number, got {patch_px}")
        if image_px is not None and not (image_px > 0 and math.isfinite(image_px)):
            raise ValueError(f"image_px must be a positive number, got {image_px}")
        check_method(method)
        validate(enhance)
        self.enhance, self.patches, self.patch_px = enhance, patches, float(patch_px)
        self.top_k, self.threshold = int(top_k), float(threshold)
        self.max_pixels = int(max_pixels)
        self.tile_pixels = tile_pixels
        self.image_px = None if image_px is None else float(image_px)
        self.checkpoint_backbone = Path(checkpoint_backbone)
        if networks is None:
            networks = load_networks(
                engine,
                self.checkpoint_backbone,
                None if checkpoint_shallow is None else Path(checkpoint_shallow),
                method,
            )
        self.networks = networks
        self.backbone = self.networks.backbone
        self.method = self.networks.method  # ``cam`` or ``gradcam``, as the head allows
        self.engine = self.networks.engine
        log.info(
            "predictor: %s (%s) on %s, shallow CNN %s, patch_px %.1f%s",
            self.backbone,
            self.networks.method,
            self.engine,
            "on" if self.networks.has_shallow else "off",
            self.patch_px,
            "" if self.image_px is None else f" of {self.image_px:.0f}-pixel films",
        )

    def patch_px_for(self, shape: tuple[int, ...]) -> float:
        """The training crop side in an image's own pixels.

        With ``image_px`` known, a mammogram of another pixel size (a full-resolution
        4,700-pixel scan for a model trained on 768-pixel films) is brought to the training
        scale: ``patch_px × long side / image_px``. Mammograms span about the same physical
        height whatever the scanner, so the ratio of long sides stands for the ratio of
        pixel spacings.
        """
        if self.image_px is None:
            return self.patch_px
        return self.patch_px * max(shape[:2]) / self.image_px

    # ----------------------------------------------------------------- parts

    @property
    def shallow(self) -> Any:
        """The shallow CNN module on PyTorch, ``None`` without it or on ONNX Runtime."""
        return getattr(self.networks, "shallow", None)

    def shallow_probability(self, enhanced: np.ndarray) -> tuple[float, bool]:
        """The shallow CNN's cancerous probability for an enhanced full image (Fig. 2).

        The image is down-sized and flipped exactly as the patches stage made the shallow
        CNN's training images, then normalised with the checkpoint's mean and std.

        Returns:
            The probability and whether the image was flipped.
        """
        if not self.networks.has_shallow:
            raise RuntimeError("no shallow CNN checkpoint was given")
        small, flipped = make_full(enhanced, self.patches)
        return self.networks.shallow_probability(small), bool(flipped)

    def region_probabilities(self, enhanced: np.ndarray, boxes: list[list[int]]) -> list[float]:
        """The patch network's malignant probability on each box's crop, as in training.

        A box is widened to at least ``patch_px`` per side around its centre (kept inside
        the image) and made into a patch like the training ROI crops (paper §3.2).
        """
        if not boxes:
            return []
        h, w = enhanced.shape
        side = int(round(self.patch_px_for(enhanced.shape)))
        patches = []
        for x0, y0, x1, y1 in boxes:
            ys = _widen(y0, y1, side, h)
            xs = _widen(x0, x1, side, w)
            patches.append(make_patch(enhanced[ys[0] : ys[1], xs[0] : xs[1]], self.patches))
        return self.networks.patch_probabilities(patches)

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
        if self.networks.has_shallow:
            prob, flipped = self.shallow_probability(enhanced)
            shallow = {
                "cancer_probability": prob,
                "flipped": flipped,
                **self.networks.shallow_info,
            }
            t = lap("shallow", t)
        heatmap, box = self.heatmap(enhanced, breast)
        t = lap("heatmap", t)
        patch_px = self.patch_px_for(image.shape)
        min_area_px = max(16, round((patch_px / 8) ** 2))
        regions = top_regions(heatmap.values, self.top_k, self.threshold, min_area_px)
        passed = bool(regions)
        if not passed:
            # No region large enough reached the threshold: the strongest region (pixels
            # at half the map's maximum or more around it) is still shown, marked as below
            # it, so that a reader sees where the network looked and how weakly.
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
            "engine": self.engine,
            "method": heatmap.method,
            "patch_px": round(patch_px, 3),
            "training_scale": {"patch_px": self.patch_px, "image_px": self.image_px},
            "working_size": {
                "height": heatmap.working_shape[0],
                "width": heatmap.working_shape[1],
            },
            "scale": {"y": heatmap.scale[0], "x": heatmap.scale[1]},
            "threshold": self.threshold,
            "min_region_px": min_area_px,
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

        The rescale factor is chosen for the whole image (``input_size / patch_px``, with
        ``patch_px`` in the image's own pixels, :meth:`patch_px_for`; reduced to fit
        ``max_pixels``), so that it depends on the image's geometry, not on how much
        background a film has; the network then runs on the breast's bounding
        box widened by half a training patch (as the localize stage does: the heatmap is
        zero outside the breast anyway), in stripes of at most ``tile_pixels``.

        Returns:
            The heatmap at the image's full size and the box it was computed in.
        """
        h, w = enhanced.shape
        patch_px = self.patch_px_for(enhanced.shape)
        scale = self.patches.image_size / patch_px
        if h * w * scale * scale > self.max_pixels:
            working_shape((h, w), scale, self.max_pixels)  # logs the reduction
            scale = math.sqrt(self.max_pixels / (h * w))
        box = breast_box(breast, margin=round(patch_px / 2))
        # the factor as mammocad.localize.backbone_heatmap forms it from patch_px
        scale = self.patches.image_size / (self.patches.image_size / scale)
        rows, cols = working_shape(enhanced[box].shape, scale, self.max_pixels)
        crop = self.networks.heatmap(
            enhanced[box],
            scale,
            breast[box],
            self.max_pixels,
            stripe_pixels(rows, cols, self.tile_pixels, self.networks.halo),
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
            ``backbone``, ``method`` (``cam``/``gradcam``), ``patch_px`` (the training
            crop side in this image's pixels, :meth:`patch_px_for`), ``training_scale``
            (``patch_px`` and ``image_px`` of training), ``working_size`` and ``scale`` of
            the rescaled image, ``shallow`` (``cancer_probability`` of the
            shallow CNN, ``flipped``; ``None`` without its checkpoint), ``regions`` (by
            rank: ``bbox`` ``[x0, y0, x1, y1]`` in original pixels with ``x1``/``y1``
            exclusive, ``peak`` heatmap value, ``malignancy_probability`` of the patch
            network on the region, ``area_px``; empty when no region of ``min_region_px``
            pixels or more (``(patch_px / 8)²``, at least 16) reached ``threshold``),
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
                f"no region of {result['min_region_px']} px or more reached the threshold "
                f"{self.threshold:.2f} (heatmap max {result['heatmap_max']:.2f})"
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
