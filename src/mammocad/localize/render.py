"""Overlays: the heatmap blended over the mammogram with the lesion outline, the region
boxes, an optional colour bar and a banner, written as a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from mammocad.io import atomic_file


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
        regions: boxes as :func:`~mammocad.localize.regions.top_regions` returns them, in
            image pixels.
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
