"""Lesions at full resolution: BI-RADS descriptors drawn per lesion, mass outlines whose
shape and margins follow them (spicules included), calcification clusters, and placement
inside the breast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mammocad.sources.synthetic.anatomy import _Anatomy
from mammocad.sources.synthetic.design import _LesionPlan
from mammocad.sources.synthetic.noise import _choice, _sigmoid, _smooth_1d

# BI-RADS descriptors: (value, weight). A lesion's rendering follows its descriptors, and the
# descriptors follow its "look", which matches its pathology for 80% of lesions.
_MASS_SHAPES = {
    False: (("OVAL", 0.45), ("ROUND", 0.25), ("LOBULATED", 0.25), ("IRREGULAR", 0.05)),
    True: (("IRREGULAR", 0.75), ("IRREGULAR-ARCHITECTURAL_DISTORTION", 0.10), ("LOBULATED", 0.15)),
}
# In the real CBIS-DDSM mass CSVs, MICROLOBULATED margins are mostly malignant (69 of 108
# training rows) and ILL_DEFINED ones 63 %; CIRCUMSCRIBED and OBSCURED ones about 10 %.
_MASS_MARGINS = {
    False: (("CIRCUMSCRIBED", 0.55), ("OBSCURED", 0.35), ("ILL_DEFINED", 0.10)),
    True: (("SPICULATED", 0.50), ("ILL_DEFINED", 0.35), ("MICROLOBULATED", 0.15)),
}
_CALC_TYPES = {
    False: (
        ("PUNCTATE", 0.30),
        ("ROUND_AND_REGULAR", 0.20),
        ("LUCENT_CENTER", 0.20),
        ("COARSE", 0.15),
        ("VASCULAR", 0.10),
        ("EGGSHELL", 0.05),
    ),
    True: (
        ("PLEOMORPHIC", 0.50),
        ("AMORPHOUS", 0.20),
        ("FINE_LINEAR_BRANCHING", 0.20),
        ("PUNCTATE-PLEOMORPHIC", 0.10),
    ),
}
_CALC_DISTRIBUTIONS = {
    False: (("CLUSTERED", 0.50), ("REGIONAL", 0.30), ("DIFFUSELY_SCATTERED", 0.20)),
    True: (("CLUSTERED", 0.60), ("SEGMENTAL", 0.20), ("LINEAR", 0.20)),
}
#: BI-RADS assessment (2-5) given the pathology, roughly as in the real files.
_ASSESSMENT = {
    "MALIGNANT": ((3, 0.10), (4, 0.55), (5, 0.35)),
    "BENIGN": ((2, 0.10), (3, 0.40), (4, 0.50)),
    "BENIGN_WITHOUT_CALLBACK": ((2, 0.75), (3, 0.25)),
}
_SUBTLETY = ((1, 0.05), (2, 0.10), (3, 0.25), (4, 0.27), (5, 0.33))
#: Peak added intensity (of a 0..1 range) for subtlety 1..5: subtle findings barely show.
_MASS_CONTRAST = (0.14, 0.18, 0.22, 0.27, 0.33)
_CALC_CONTRAST = (0.12, 0.16, 0.21, 0.27, 0.33)
#: Density of a malignant mass relative to a benign one of the same subtlety: high
#: density is a BI-RADS sign of malignancy, a cue beside the margin and shape. At 1.25 the
#: cue did not survive CLAHE: fine-tuned MobileNets scored benign and malignant masses
#: with ill-defined margins alike (mean malignancy 0.42 vs 0.46 on the test patches).
_MALIGNANT_DENSITY = 1.6
#: Share of masses drawn elongated (axis ratio 3.4-4.2); with the ~1.5% whose crops fall
#: outside the patches stage's aspect range by chance, about 3% of mass crops do.
_ELONGATED = 0.02


@dataclass(frozen=True)
class _Lesion:
    """One finding, shared by the CC and MLO views of a breast."""

    plan: _LesionPlan
    kind: str
    pathology: str
    look_malignant: bool
    descriptor_a: str  # mass shape | calc type
    descriptor_b: str  # mass margins | calc distribution
    assessment: int
    subtlety: int
    radius: float  # full-resolution pixels, area-equivalent
    elongation: float  # major/minor axis ratio
    depth: float  # 0..1 from chest wall to skin line
    offset: float  # -1..1 across the breast
    shape_seed: int


def _draw_lesion(
    rng: np.random.Generator,
    plan: _LesionPlan,
    kind: str,
    height: int,
    density: int,
    crossover: float,
) -> _Lesion:
    """Draws a finding's pathology, BI-RADS descriptors and geometry.

    A share ``crossover`` of findings takes the other pathology's look (descriptors and
    rendering), so no rule on the look alone can be perfect.
    """
    malignant = plan.malignant
    if malignant:
        pathology = "MALIGNANT"
    else:
        callback_free = 0.2 if kind == "mass" else 0.45
        pathology = "BENIGN_WITHOUT_CALLBACK" if rng.random() < callback_free else "BENIGN"
    look = malignant != (rng.random() < crossover)
    if kind == "mass":
        a = _choice(rng, _MASS_SHAPES[look])
        b = _choice(rng, _MASS_MARGINS[look])
        radius = height * math.exp(rng.uniform(math.log(0.022), math.log(0.07)))
        if rng.random() < _ELONGATED:
            a, elongation = "OVAL", rng.uniform(3.4, 4.2)
        elif a == "ROUND":
            elongation = rng.uniform(1.0, 1.15)
        elif a == "OVAL":
            elongation = rng.uniform(1.2, 1.6)
        else:
            elongation = rng.uniform(1.0, 1.3)
    else:
        a = _choice(rng, _CALC_TYPES[look])
        b = _choice(rng, _CALC_DISTRIBUTIONS[look])
        lo, hi, elo, ehi = {
            "CLUSTERED": (0.008, 0.02, 1.0, 1.6),
            "LINEAR": (0.012, 0.025, 3.0, 4.5),
            "SEGMENTAL": (0.02, 0.035, 1.8, 2.8),
            "REGIONAL": (0.025, 0.04, 1.0, 1.6),
            "DIFFUSELY_SCATTERED": (0.03, 0.045, 1.0, 1.5),
        }[b]
        radius = height * rng.uniform(lo, hi)
        elongation = rng.uniform(elo, ehi)
    return _Lesion(
        plan=plan,
        kind=kind,
        pathology=pathology,
        look_malignant=look,
        descriptor_a=a,
        descriptor_b=b,
        assessment=int(_choice(rng, _ASSESSMENT[pathology])),
        subtlety=int(_choice(rng, _SUBTLETY)),
        radius=radius,
        elongation=elongation,
        depth=rng.uniform(0.25, 0.75),
        offset=rng.uniform(-0.6, 0.6),
        shape_seed=int(rng.integers(2**31)),
    )


def _outline(rng: np.random.Generator, shape: str, margins: str, spikes: np.ndarray) -> np.ndarray:
    """Radius factor of a mass boundary sampled at 1024 angles (1 = the base ellipse).

    Smooth low-order harmonics make oval and round masses; lobulated ones get a few strong
    lobes; irregular ones a broad spectrum; microlobulated margins are scalloped; the
    bases of spicules (at angles ``spikes``) pull the outline out into sharp points, as
    the outlines drawn around spiculated masses in CBIS-DDSM do.
    """
    theta = np.linspace(0, 2 * np.pi, 1024, endpoint=False)
    r = np.ones_like(theta)

    def harmonics(ks: range, amp: float, decay: float) -> None:
        nonlocal r
        for k in ks:
            phase = rng.uniform(0, 2 * np.pi)
            r = r + amp * rng.uniform(0.5, 1.0) / k**decay * np.cos(k * theta + phase)

    if shape in ("OVAL", "ROUND"):
        harmonics(range(2, 4), 0.03, 0.0)
    elif shape == "LOBULATED":
        harmonics(range(3, 6), 0.10, 0.3)
    else:  # IRREGULAR, with or without architectural distortion
        harmonics(range(2, 20), 0.35, 0.9)
    if margins == "MICROLOBULATED":
        # scalloped: a ring of small rounded lobules with notches between them, a few
        # pixels deep at the default 768-pixel height (ripples of 1 % of the radius, drawn
        # before, were under a pixel: invisible), not spikes
        lobes = int(rng.integers(10, 17))
        depth = rng.uniform(0.06, 0.09)
        r = r + depth * (np.abs(np.cos(lobes * theta / 2 + rng.uniform(0, np.pi))) - 2 / np.pi)
    for angle in spikes:
        gap = np.angle(np.exp(1j * (theta - angle)))  # wrapped angular distance
        r = r + rng.uniform(0.15, 0.35) * np.exp(-0.5 * (gap / 0.05) ** 2)
    return np.clip(r, 0.35, None).astype(np.float32)


def _render_mass(
    rng: np.random.Generator, lesion: _Lesion, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Intensity patch and binary mask of a mass, centred in a square patch.

    The outline is a rotated ellipse (area-equivalent radius ``lesion.radius``) modulated
    by the shape's harmonics; the margin sets how sharply the density falls off at the
    outline; spiculated masses send tapering spicules out from the core, and the mask
    follows the core with the spicules' bases.
    """
    shape_rng = np.random.default_rng(lesion.shape_seed)  # same outline in both views
    spiculated = "SPICULATED" in lesion.descriptor_b or "DISTORTION" in lesion.descriptor_a
    n_spikes = int(shape_rng.integers(8, 22)) if spiculated else 0
    spikes = shape_rng.uniform(0, 2 * np.pi, n_spikes)
    outline = _outline(shape_rng, lesion.descriptor_a, lesion.descriptor_b, spikes)
    radius = lesion.radius * rng.uniform(0.92, 1.08)
    e = lesion.elongation
    if e > 3:  # elongated masses stay near an axis so the crop is elongated too
        angle = rng.choice([0.0, np.pi / 2]) + rng.uniform(-0.08, 0.08)
    else:
        angle = rng.uniform(0, np.pi)
    major, minor = radius * math.sqrt(e), radius / math.sqrt(e)
    spike = rng.uniform(0.8, 1.6) if spiculated else 0.0
    edge = {
        "CIRCUMSCRIBED": 0.03,
        "MICROLOBULATED": 0.05,
        "OBSCURED": 0.09,
        "SPICULATED": 0.10,
        "ILL_DEFINED": 0.18,
    }.get(lesion.descriptor_b, 0.08)
    # The core's density (out to where its soft edge has faded) lives in a smaller box than
    # the spicules, which keeps full-size (4600-pixel) renders light.
    core = int(math.ceil(major * float(outline.max()) * (1 + 6 * edge) + 4))
    half = max(core, int(math.ceil(major * float(outline.max()) * (1 + spike) + 4)))
    yy, xx = np.mgrid[-core : core + 1, -core : core + 1].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    u = (xx * c + yy * s) / major
    v = (-xx * s + yy * c) / minor
    theta = np.arctan2(v, u)
    index = ((theta + np.pi) * (outline.size / (2 * np.pi))).astype(np.int32) % outline.size
    q = np.hypot(u, v) / outline[index]

    contrast = _MASS_CONTRAST[lesion.subtlety - 1] * rng.uniform(0.85, 1.15)
    if lesion.pathology == "MALIGNANT":
        contrast *= _MALIGNANT_DENSITY
    dome = 0.75 + 0.25 * np.sqrt(np.clip(1 - q * q, 0, 1))
    inner = (slice(half - core, half + core + 1),) * 2
    value = np.zeros((2 * half + 1, 2 * half + 1), dtype=np.float32)
    value[inner] = contrast * _sigmoid((1 - q) / edge) * dome
    mask = np.zeros(value.shape, dtype=bool)
    mask[inner] = q <= 1.0
    if spiculated:
        # Where each spike's base lies on the outline, in patch coordinates.
        k = ((spikes + np.pi) * (outline.size / (2 * np.pi))).astype(int) % outline.size
        bu = np.cos(spikes) * outline[k] * major
        bv = np.sin(spikes) * outline[k] * minor
        bases = np.stack([bu * c - bv * s, bu * s + bv * c], axis=1)
        rays = _spicules(shape_rng, half, bases, spike * major, max(1.0, major * 0.08))
        np.maximum(value, contrast * 0.7 * rays, out=value)
    return value, mask


def _spicules(
    rng: np.random.Generator, half: int, bases: np.ndarray, reach: float, width: float
) -> np.ndarray:
    """Thin tapering rays from points on a mass outline, blurred like soft-tissue strands.

    Args:
        rng: source of the rays' lengths and widths.
        half: the patch's centre (and half size) in pixels.
        bases: (n, 2) offsets of the rays' bases from the centre.
        reach: longest ray length beyond its base, in pixels.
        width: typical half width of a ray at its base, in pixels.
    """
    size = 2 * half + 1
    canvas = np.zeros((size, size), dtype=np.float32)
    for base in bases:
        d = base / max(float(np.hypot(*base)), 1e-6)
        p = np.array([-d[1], d[0]])
        start = half + 0.7 * base
        tip = half + base + reach * rng.uniform(0.4, 1.0) * d
        w = width * rng.uniform(0.5, 1.2)
        poly = np.array([start + w * p, start - w * p, tip]) * 16
        cv2.fillConvexPoly(canvas, poly.round().astype(np.int32), 1.0, cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(canvas, (0, 0), max(0.6, width * 0.5))


def _render_calcification(
    rng: np.random.Generator, lesion: _Lesion, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Intensity patch (bright specks) and binary mask (the cluster's region).

    Speck morphology follows the calc type: punctate and round specks, pleomorphic ones of
    varying size and shape, short linear-branching segments, lucent-centred rings.
    """
    shape_rng = np.random.default_rng(lesion.shape_seed)
    radius = lesion.radius * rng.uniform(0.92, 1.08)
    e = lesion.elongation
    major, minor = radius * math.sqrt(e), radius / math.sqrt(e)
    angle = rng.uniform(0, np.pi)
    half = int(math.ceil(major * 1.15 + 4))
    size = 2 * half + 1
    c, s = math.cos(angle), math.sin(angle)

    # The region: an irregular ellipse; the mask traces it, the specks lie inside it.
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    wobble = 1 + 0.12 * _smooth_1d(shape_rng, 64, 3.0)
    px = np.cos(theta) * major * wobble
    py = np.sin(theta) * minor * wobble
    poly = np.stack([half + px * c - py * s, half + px * s + py * c], axis=1)
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    mask[half, half] = 1  # a cluster a pixel wide (tiny test images) still has a region

    style = lesion.descriptor_a.split("-")[-1]
    n = int(shape_rng.integers(6, 16) if not lesion.look_malignant else shape_rng.integers(12, 40))
    unit = height / 1024
    contrast = _CALC_CONTRAST[lesion.subtlety - 1]
    canvas = np.zeros((size, size), dtype=np.float32)
    rr = np.sqrt(rng.uniform(0, 0.8**2, n))
    aa = rng.uniform(0, 2 * np.pi, n)
    for r_, a_ in zip(rr, aa, strict=True):
        x0, y0 = r_ * math.cos(a_) * major, r_ * math.sin(a_) * minor
        cx, cy = half + x0 * c - y0 * s, half + x0 * s + y0 * c
        _speck(rng, canvas, (cx, cy), style, unit, contrast * rng.uniform(0.6, 1.2))
    canvas = cv2.GaussianBlur(canvas, (0, 0), max(0.5, 0.5 * unit))
    return canvas, mask.astype(bool)


def _speck(
    rng: np.random.Generator,
    canvas: np.ndarray,
    centre: tuple[float, float],
    style: str,
    unit: float,
    value: float,
) -> None:
    """Draws one calcification (anti-aliased, sub-pixel placed) onto ``canvas``."""
    f = 16
    cx, cy = (int(round(centre[0] * f)), int(round(centre[1] * f)))
    if style in ("FINE_LINEAR_BRANCHING", "VASCULAR"):
        length = rng.uniform(3, 9) * unit
        a = rng.uniform(0, np.pi)
        dx, dy = int(length * math.cos(a) * f), int(length * math.sin(a) * f)
        thick = max(1, int(round(0.9 * unit)))
        cv2.line(canvas, (cx - dx, cy - dy), (cx + dx, cy + dy), value, thick, cv2.LINE_AA, 4)
        return
    big = style in ("COARSE", "ROUND_AND_REGULAR", "LUCENT_CENTER", "EGGSHELL")
    r = rng.uniform(1.5, 3.8) * unit if big else rng.uniform(0.8, 2.2) * unit
    if style in ("PLEOMORPHIC", "AMORPHOUS", "COARSE"):
        axes = (max(1, int(r * f)), max(1, int(r * rng.uniform(0.4, 1.0) * f)))
    else:
        axes = (max(1, int(r * f)), max(1, int(r * f)))
    if style == "AMORPHOUS":
        value *= 0.6
    hollow = style in ("LUCENT_CENTER", "EGGSHELL")
    thickness = max(1, int(round(0.5 * r))) if hollow else -1
    angle = float(rng.uniform(0, 180))
    cv2.ellipse(canvas, (cx, cy), axes, angle, 0, 360, value, thickness, cv2.LINE_AA, 4)


def _place(
    rng: np.random.Generator,
    anatomy: _Anatomy,
    lesion: _Lesion,
    taken: list[tuple[float, float, float]],
) -> tuple[float, float]:
    """Full-resolution centre of a lesion inside the breast, off the pectoral muscle.

    Both views use the lesion's depth from the chest wall and offset across the breast,
    with some jitter, so a finding sits at consistent positions in CC and MLO.
    """
    s = anatomy.scale
    h, w = anatomy.breast.shape
    reach = lesion.radius * math.sqrt(lesion.elongation) / s  # low-res pixels
    rows = np.flatnonzero(anatomy.extent > 2)
    top, bottom = float(rows[0]), float(rows[-1])
    for attempt in range(60):
        jitter = 0.06 if attempt < 30 else 0.3
        offset = np.clip(lesion.offset + rng.normal(0, jitter), -0.95, 0.95)
        y = anatomy.centre_y + offset * (
            (anatomy.centre_y - top) if offset < 0 else (bottom - anatomy.centre_y)
        )
        yi = int(np.clip(y, 0, h - 1))
        x = np.clip(lesion.depth + rng.normal(0, jitter), 0.05, 0.95) * anatomy.extent[yi]
        xi = int(np.clip(x, 0, w - 1))
        if anatomy.depth[yi, xi] > 1.1 * reach + 1 and anatomy.pectoral[yi, xi] < 0.2:
            clear = all(math.hypot(x * s - tx, y * s - ty) > r for tx, ty, r in taken)
            if clear:
                return float(x * s), float(y * s)
    # A breast too small for this lesion: the deepest point off the muscle.
    score = anatomy.depth * (anatomy.pectoral < 0.2)
    yi, xi = np.unravel_index(int(np.argmax(score)), score.shape)
    return float((xi + 0.5) * s), float((yi + 0.5) * s)


@dataclass
class _Placed:
    """A rendered lesion in one view: its binary mask patch at ``(x0, y0)``."""

    lesion: _Lesion
    mask: np.ndarray
    x0: int
    y0: int


def _overlap(
    shape: tuple[int, ...], patch: tuple[int, ...], x0: int, y0: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices of an image and of a patch placed at ``(x0, y0)`` where the two overlap (a
    lesion near the chest wall may be cut by the image border)."""
    h, w = shape
    ph, pw = patch
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(w, x0 + pw), min(h, y0 + ph)
    dst = (slice(iy0, iy1), slice(ix0, ix1))
    src = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    return dst, src
