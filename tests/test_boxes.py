"""The one ROI crop rule: a lesion box widened by margins and clipped (value tables)."""

from __future__ import annotations

import numpy as np

from mammocad.boxes import bounding_box, crop_box, relative_margins
from mammocad.sources.mias import MIN_HALF_SIDE, roi_half_side


def _ddsm(mask: np.ndarray, **kw) -> tuple[int, int, int, int]:
    box = bounding_box(mask)
    return crop_box(box, mask.shape, relative_margins(box, **kw))


def test_relative_margins_ddsm_and_local():
    mask = np.zeros((100, 80), dtype=bool)
    mask[40:60, 10:70] = True  # 60 wide, 20 high
    assert bounding_box(mask) == (10, 40, 70, 60)
    assert _ddsm(mask) == (4, 36, 76, 64)  # 10% of 60 = 6; 10% of 20 = 2 -> 4 minimum
    assert _ddsm(mask, margin=0.0, min_margin=0) == (10, 40, 70, 60)
    edge = np.zeros((10, 10), dtype=bool)
    edge[0:3, 8:10] = True
    assert _ddsm(edge) == (4, 0, 10, 7)


def _mias(shape, row, col, radius, margin):
    half = roi_half_side(radius, margin)
    c0, r0, c1, r1 = crop_box((col, row, col + 1, row + 1), shape, (half,) * 4)
    return r0, r1, c0, c1


def test_square_around_a_circle_mias():
    assert roi_half_side(197, 1.2) == 237
    assert _mias((1024, 1024), 599, 535, 197, 1.2) == (362, 837, 298, 773)
    # tiny radii get MIN_HALF_SIDE, and the box is clipped to the image
    assert _mias((1024, 1024), 142, 687, 3, 1.2) == (
        142 - MIN_HALF_SIDE,
        143 + MIN_HALF_SIDE,
        687 - MIN_HALF_SIDE,
        688 + MIN_HALF_SIDE,
    )
    assert _mias((1024, 1024), 30, 233, 29, 1.2) == (0, 66, 198, 269)
    # a centre far outside gives an empty crop, never a negative size
    r0, r1, c0, c1 = _mias((1024, 1024), -100, 2000, 10, 1.2)
    assert r1 == r0 == 0 and c1 == c0 == 2000 - MIN_HALF_SIDE
