"""What counts as a usable full mammogram: the one rule every source and ``predict`` apply.

Full-field mammograms have thousands of pixels per side (mini-MIAS, the smallest common
set, has 1024 × 1024; CBIS-DDSM about 3000 × 4600). A much smaller picture is a
thumbnail, an icon or a mistake, and models trained or run on it learn or report nothing
about lesions. The limits are low enough for the synthetic source's quick settings
(``image_height: 256`` gives about 160 × 256) and refuse anything smaller. ROI crops and
masks are not full images and are not subject to the rule.
"""

from __future__ import annotations

import numpy as np

#: Shortest allowed short side of a full mammogram, in pixels.
MIN_SHORT_SIDE = 128
#: Shortest allowed long side of a full mammogram, in pixels.
MIN_LONG_SIDE = 256


def size_problem(height: int, width: int) -> str:
    """Why an image of this size cannot be a full mammogram; ``""`` when it can."""
    short, long = sorted((int(height), int(width)))
    if short < MIN_SHORT_SIDE or long < MIN_LONG_SIDE:
        return (
            f"image too small to be a mammogram: {width}×{height} pixels (at least "
            f"{MIN_SHORT_SIDE} on the short side and {MIN_LONG_SIDE} on the long side)"
        )
    return ""


def image_problem(image: np.ndarray) -> str:
    """Why a decoded 2-D image cannot be a full mammogram (too small, blank); ``""`` if none."""
    h, w = image.shape[:2]
    problem = size_problem(h, w)
    if problem:
        return problem
    lo, hi = int(image.min()), int(image.max())
    if lo == hi:
        return f"blank image: every pixel is {lo}"
    return ""
