"""Boxes on images: a mask's bounding box and the ROI crop box around a lesion.

Every source crops its ROI with :func:`crop_box`: a lesion box widened by per-side margins
and clipped to the image. The sources differ only in how they choose the margins (DDSM and
local: :func:`relative_margins`; mini-MIAS: a square around the lesion's circle; synthetic:
drawn at random).
"""

from __future__ import annotations

import numpy as np

#: ``(x0, y0, x1, y1)`` in pixels, x = column, y = row, ``x1``/``y1`` exclusive.
Box = tuple[int, int, int, int]


def bounding_box(mask: np.ndarray) -> Box:
    """The box of a non-empty mask's non-zero pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def relative_margins(box: Box, margin: float = 0.1, min_margin: int = 4) -> Box:
    """Margins of a share of the box's width (left, right) and height (top, bottom).

    Args:
        box: the lesion's box.
        margin: share of the box's width (height) added left and right (top and bottom).
        min_margin: the least number of pixels added on each side.

    Returns:
        ``(left, top, right, bottom)`` in pixels.
    """
    x0, y0, x1, y1 = box
    mx = max(min_margin, int(round(margin * (x1 - x0))))
    my = max(min_margin, int(round(margin * (y1 - y0))))
    return mx, my, mx, my


def crop_box(box: Box, shape: tuple[int, int], margins: Box) -> Box:
    """A box widened by ``(left, top, right, bottom)`` pixels and clipped to the image.

    The ends never fall below the starts, so a box far outside the image gives an empty
    crop rather than a negative size.
    """
    x0, y0, x1, y1 = box
    left, top, right, bottom = margins
    h, w = shape
    cx0, cy0 = max(0, x0 - left), max(0, y0 - top)
    cx1, cy1 = min(w, x1 + right), min(h, y1 + bottom)
    return cx0, cy0, max(cx1, cx0), max(cy1, cy0)
