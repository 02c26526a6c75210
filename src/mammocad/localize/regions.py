"""Regions and candidate marks read off a heatmap: the strongest thresholded regions
(:func:`top_regions`), FROC candidates by greedy suppression (:func:`peak_candidates`) and
the lesions each candidate hits.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np


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
