"""The breast region of a mammogram (:func:`breast_mask`) and its bounding box."""

from __future__ import annotations

import cv2
import numpy as np


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
