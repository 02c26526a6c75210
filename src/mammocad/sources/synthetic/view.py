"""One full mammogram: anatomy, placed lesions and an occasional film label composed at
full size, with the lesion masks and ROI crop boxes taken from it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from mammocad.boxes import bounding_box, crop_box
from mammocad.sources.synthetic.anatomy import _anatomy
from mammocad.sources.synthetic.lesions import (
    _Lesion,
    _overlap,
    _place,
    _Placed,
    _render_calcification,
    _render_mass,
)

_FILM_LABEL = 0.25


def _film_label(
    rng: np.random.Generator, image: np.ndarray, breast: np.ndarray, text: str
) -> bool:
    """Occasionally burns a bright film label into a background corner on the nipple side
    of a 16-bit image; returns whether it did."""
    if rng.random() >= _FILM_LABEL:
        return False
    h, w = image.shape
    lw, lh = int(w * rng.uniform(0.12, 0.2)), int(h * rng.uniform(0.03, 0.05))
    mx, my = int(w * rng.uniform(0.02, 0.05)), int(h * rng.uniform(0.02, 0.05))
    right = breast[:, -1].max() < 0.5  # the side away from the chest wall
    x0 = w - mx - lw if right else mx
    y0 = my if rng.random() < 0.5 else h - my - lh
    s = breast.shape[0] / h
    region = breast[int(y0 * s) : int((y0 + lh) * s) + 2, int(x0 * s) : int((x0 + lw) * s) + 2]
    if region.size == 0 or region.max() > 0.01:
        return False  # it would cover the breast
    # OpenCV draws text on 8-bit images only: stamp it, then blend into the float image.
    stamp = np.zeros((lh, lw), dtype=np.uint8)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
    scale = min(0.6 * lh / th, 0.85 * lw / tw)
    stroke = max(1, int(round(2 * scale)))
    origin = (int(0.07 * lw), int(0.5 * (lh + th * scale)))
    cv2.putText(stamp, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, stroke, cv2.LINE_AA)
    level = float(rng.uniform(0.85, 0.95))
    label = 65535.0 * (level - (level - 0.2) / 255.0 * stamp.astype(np.float32))
    image[y0 : y0 + lh, x0 : x0 + lw] = label.round().astype(np.uint16)
    return True


def _render_view(
    rng: np.random.Generator,
    height: int,
    width: int,
    side: str,
    view: str,
    density: int,
    lesions: list[_Lesion],
) -> tuple[np.ndarray, list[_Placed], bool]:
    """One 16-bit full mammogram, its lesions' masks (image coordinates), and whether a
    film label was burnt in.

    The smooth anatomy is built at low resolution and upsampled; film grain and the lesions
    are added at full resolution, in float32 to keep full-size temporaries small.
    """
    anatomy = _anatomy(rng, height, width, view, density)
    image = cv2.resize(anatomy.intensity, (width, height), interpolation=cv2.INTER_LINEAR)
    placed: list[_Placed] = []
    taken: list[tuple[float, float, float]] = []
    for lesion in lesions:
        render = _render_mass if lesion.kind == "mass" else _render_calcification
        value, mask = render(rng, lesion, height)
        cx, cy = _place(rng, anatomy, lesion, taken)
        taken.append((cx, cy, lesion.radius * math.sqrt(lesion.elongation) * 2))
        half = value.shape[0] // 2
        x0, y0 = int(round(cx)) - half, int(round(cy)) - half
        dst, src = _overlap(image.shape, value.shape, x0, y0)
        image[dst] += value[src]
        placed.append(_Placed(lesion, mask, x0, y0))

    # Film grain, stronger where the tissue is denser (brighter); drawn in strips so that
    # no extra full-size float temporaries exist.
    for y in range(0, height, 256):
        strip = image[y : y + 256]
        grain = rng.standard_normal(strip.shape, dtype=np.float32)
        grain *= 0.003 + 0.012 * strip
        strip += grain
    np.clip(image, 0.0, 1.0, out=image)
    image *= 65535.0
    image += 0.5
    pixels = image.astype(np.uint16)
    del image
    breast = anatomy.breast
    if side == "RIGHT":  # the canonical layout is a LEFT breast; a RIGHT one mirrors it
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        breast = breast[:, ::-1]
        for p in placed:
            p.mask = p.mask[:, ::-1]
            p.x0 = width - (p.x0 + p.mask.shape[1])
    label = _film_label(rng, pixels, breast, f"{side[0]} {view}")
    return pixels, placed, label


def _full_mask(placed: _Placed, height: int, width: int) -> np.ndarray:
    """The lesion's binary mask (0/255) at the full image's size."""
    mask = np.zeros((height, width), dtype=np.uint8)
    dst, src = _overlap(mask.shape, placed.mask.shape, placed.x0, placed.y0)
    mask[dst][placed.mask[src]] = 255
    return mask


def _crop_box(rng: np.random.Generator, mask: np.ndarray) -> tuple[int, int, int, int]:
    """The lesion's bounding box with a random margin, clipped to the image (x0, y0, x1, y1).

    An elongated lesion gets tight margins so its crop stays elongated.
    """
    box = bounding_box(mask)
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    # One margin for the four sides (with a little jitter) keeps the crop's aspect close to
    # the lesion's, so only truly elongated lesions give elongated crops.
    base = rng.uniform(0.02, 0.06) if max(bw / bh, bh / bw) > 2.5 else rng.uniform(0.05, 0.25)
    m = base * rng.uniform(0.8, 1.2, 4)
    margins = (int(m[0] * bw) + 2, int(m[1] * bh) + 2, int(m[2] * bw) + 2, int(m[3] * bh) + 2)
    return crop_box(box, mask.shape, margins)
