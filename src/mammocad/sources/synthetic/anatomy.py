"""The breast and its background at low resolution: outline with skin line and thickness
fall-off, pectoral muscle (MLO views) and fibroglandular texture. Canonical orientation:
chest wall at x = 0, i.e. a LEFT breast.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mammocad.sources.synthetic.noise import _blurred_noise, _sigmoid, _smooth_1d, _unit_noise

#: The smooth anatomy is built at 1/4 of full size or 512 rows, whichever is larger (and
#: never above full size); film grain and lesions are added at full size.
_LOW_RES = 512


@dataclass
class _Anatomy:
    """The smooth part of one view, at ``scale`` times less than full resolution."""

    intensity: np.ndarray  # float32, 0..1
    breast: np.ndarray  # float32 soft breast mask
    depth: np.ndarray  # float32 distance to the skin line, low-res pixels
    pectoral: np.ndarray  # float32 soft pectoral-muscle mask (zeros on CC)
    extent: np.ndarray  # per row: x of the skin line
    centre_y: float  # row of the nipple
    scale: float


def _breast_outline(
    rng: np.random.Generator, h: int, w: int, view: str
) -> tuple[np.ndarray, float]:
    """Per-row extent of the breast from the chest wall, and the nipple row.

    CC: a super-ellipse half-disc. MLO: the lower half is the same, but the upper half runs
    up into the axilla and reaches the top edge, as the view includes the axillary tail.
    """
    y = np.arange(h, dtype=np.float32) + 0.5
    q = rng.uniform(1.5, 2.1)
    if view == "CC":
        cy = h * rng.uniform(0.45, 0.55)
        half = h * rng.uniform(0.30, 0.40)
        reach = w * rng.uniform(0.50, 0.78)
        t = np.clip(np.abs(y - cy) / half, 0, 1)
        extent = reach * (1 - t**q) ** (1 / q)
    else:
        cy = h * rng.uniform(0.55, 0.64)
        lower = min(h * rng.uniform(0.30, 0.40), h - cy - 2)
        reach = w * rng.uniform(0.55, 0.80)
        top = w * rng.uniform(0.30, 0.42)
        q_up = rng.uniform(1.1, 1.6)
        t_low = np.clip((y - cy) / lower, 0, 1)
        t_up = np.clip((cy - y) / cy, 0, 1)
        extent = np.where(
            y >= cy,
            reach * (1 - t_low**q) ** (1 / q),
            top + (reach - top) * (1 - t_up**q_up) ** (1 / q_up),
        )
    wobble = 1 + 0.015 * _smooth_1d(rng, h, h * 0.08)
    return (extent * wobble).astype(np.float32), float(cy)


def _pectoral(rng: np.random.Generator, h: int, w: int, extent: np.ndarray) -> np.ndarray:
    """Soft mask of the pectoral muscle: a bright, slightly convex triangle at the top of
    the chest-wall side, seen on MLO views only."""
    width = float(extent[0]) * rng.uniform(0.70, 0.92)
    height = h * rng.uniform(0.35, 0.62)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / width, yy / height
    # A convex bulge of the muscle edge; the edge measured in low-res pixels.
    edge = (1 - u - v + rng.uniform(0.0, 0.35) * u * v) * min(width, height)
    return _sigmoid(edge / 1.2)


def _fibroglandular(
    rng: np.random.Generator,
    h: int,
    w: int,
    extent: np.ndarray,
    centre_y: float,
    depth: np.ndarray,
    density: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Fibroglandular tissue share (0..1) and a fine texture field, both low resolution.

    Band-pass filtered noise gives lobular blobs; noise blurred along rays from the nipple,
    remapped from polar coordinates, gives the ducts and stroma that stream toward it. The
    tissue is denser near the chest wall and leaves a fatty layer under the skin; BI-RADS
    density 1..4 shifts how much of the breast it fills.
    """
    fine = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), h * 0.006)
    blobs = _unit_noise(fine - cv2.GaussianBlur(fine, (0, 0), h * 0.03))
    coarse = _blurred_noise(rng, (h, w), h * 0.05)

    n_theta, n_rho = 720, 256
    polar = rng.standard_normal((n_theta, n_rho), dtype=np.float32)
    polar = _unit_noise(cv2.GaussianBlur(polar, (0, 0), sigmaX=n_rho * 0.035, sigmaY=0.9))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    nipple_x = float(extent[int(min(max(centre_y, 0), h - 1))])
    dx = nipple_x - xx
    dy = yy - centre_y
    # A slight warp bends the ducts, as real ones are not straight rays.
    theta = np.arctan2(dy, dx) + 0.04 * _blurred_noise(rng, (h, w), h * 0.08)
    rho = np.hypot(dx, dy)
    map_x = rho * ((n_rho - 1) / max(float(rho.max()), 1.0))
    map_y = (theta + np.pi) * ((n_theta - 1) / (2 * np.pi))
    streaks = cv2.remap(polar, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # Strands show in patches, not as a uniform starburst, and do not pile up at the nipple.
    streaks *= np.clip(0.6 + 0.6 * _blurred_noise(rng, (h, w), h * 0.04), 0, None)
    streaks *= np.clip(rho / (0.3 * nipple_x + 1), 0, 1)

    frac_depth = np.clip(xx / np.maximum(extent[:, None], 1.0), 0, 1)
    bias = (-1.5, -0.7, 0.0, 0.7)[density - 1]
    field = 1.0 * coarse + 0.35 * blobs + 0.25 * streaks + 1.6 * (0.55 - frac_depth) + bias
    gland = _sigmoid(1.6 * field)
    # The subcutaneous fat layer: no glandular tissue right under the skin.
    gland *= np.clip(depth / (0.06 * w), 0, 1)
    return gland, _unit_noise(0.8 * blobs + 0.5 * streaks)


def _anatomy(
    rng: np.random.Generator, height: int, width: int, view: str, density: int
) -> _Anatomy:
    """Builds background, breast, skin line, tissue and pectoral muscle at low resolution."""
    h = min(height, max(_LOW_RES, height // 4))
    w = max(16, int(round(width * h / height)))
    extent, cy = _breast_outline(rng, h, w, view)
    xx = np.arange(w, dtype=np.float32)[None, :] + 0.5
    breast = np.clip(extent[:, None] - xx + 0.5, 0, 1).astype(np.float32)
    # The breast goes on beyond the chest wall (and, on MLO, above the top edge): pad there
    # so the distance to the skin line ignores the image border.
    pad = w
    inside = (breast > 0.5).astype(np.uint8)
    padded = cv2.copyMakeBorder(inside, pad, pad, pad, 0, cv2.BORDER_REPLICATE)
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[pad : pad + h, pad : pad + w]

    # Compressed-breast thickness: flat inside, falling off over the outer ~10% to the skin.
    falloff = max(2.0, 0.11 * float(extent.max()))
    thick = 1 - 0.7 * (1 - np.clip(depth / falloff, 0, 1)) ** 2
    gland, texture = _fibroglandular(rng, h, w, extent, cy, depth, density)
    fat = rng.uniform(0.32, 0.42)
    gland_gain = rng.uniform(0.30, 0.40)
    tissue = thick * (fat + gland_gain * gland + 0.03 * texture)
    # Skin line: a thin rim slightly brighter than the thin tissue just inside it.
    skin = 0.06 * np.exp(-depth / max(0.8, h * 0.0025)) * (depth > 0)
    tissue = tissue + skin

    pectoral = np.zeros((h, w), dtype=np.float32)
    if view == "MLO":
        pectoral = _pectoral(rng, h, w, extent) * breast
        level = rng.uniform(0.70, 0.82)
        fibres = _blurred_noise(rng, (h, w), h * 0.01)
        yy = np.arange(h, dtype=np.float32)[:, None]
        muscle = level * (0.9 + 0.1 * (1 - xx / w) - 0.08 * yy / h) + 0.02 * fibres
        tissue = tissue * (1 - pectoral) + muscle * pectoral
    background = 0.006
    intensity = background + breast * (tissue - background)
    return _Anatomy(
        intensity=intensity.astype(np.float32),
        breast=breast,
        depth=depth,
        pectoral=pectoral,
        extent=extent,
        centre_y=cy,
        scale=height / h,
    )
