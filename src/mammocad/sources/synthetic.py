"""Synthetic CBIS-DDSM: an offline data source with the real collection's layout and quirks.

The pipeline reproduces Ansar et al., whose models read CBIS-DDSM (paper §3.1: full
mammograms for the normal-vs-cancerous shallow CNN, lesion ROIs for the benign-vs-malignant
transfer-learning models). The real collection is about 164 GB behind a web API, so the
default source generates a small stand-in that every later stage reads exactly as it would
read a TCIA download:

* ``csv/`` holds the four case-description files with the real columns (the calc files spell
  ``breast density``), real vocabularies and real quirks: stray whitespace and newlines inside
  path cells, crop and mask columns swapped on some rows, CSV paths that name
  ``<subject>/<StudyUID>/<SeriesUID>/00000N.dcm`` while the files on disk live under NBIA
  retriever folder names. Two ``normal_*`` files extend the layout with lesion-free images.
* ``CBIS-DDSM/`` holds Secondary Capture DICOMs: 16-bit MONOCHROME2 full mammograms and, per
  abnormality, one "ROI mask images" series with a full-size 8-bit binary mask and a 16-bit
  cropped ROI in no reliable order.

The images are built to look to the code like scanned-film mammograms: a dark background,
a breast that fills out from the chest wall with a thickness fall-off and a faint skin line,
fibroglandular texture that is denser near the chest wall and streams toward the nipple, a
pectoral muscle on MLO views, occasional film labels, masses whose shape and margin follow
their BI-RADS descriptors (benign: oval or round, circumscribed; malignant: irregular,
spiculated, and denser; a share ``style_crossover`` of each borrows the other look) and
clusters of calcifications.

Reproducibility: the discrete design (splits, breast kinds, pathologies, quirks) is drawn
from ``default_rng([seed, 0])`` in the calling process; each patient ``P_0000n`` draws its
images from ``default_rng([seed, n])``, so the output is byte-identical for a seed whatever
the worker count. UIDs are hashes of the seed and the file's role, never of the clock.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pydicom

from mammocad.io import write_csv
from mammocad.parallel import imap
from mammocad.sources.layout import (
    COLUMNS,
    KIND_FILE,
    KIND_PREFIX,
    SPLIT_PREFIX,
    csv_path,
    make_uid,
    series_folder,
    write_secondary_capture,
)

log = logging.getLogger(__name__)

#: Root of the real CBIS-DDSM UIDs; synthetic UIDs append up to 39 digits (64 characters).
#: Width of a full mammogram relative to its height (CBIS-DDSM scans: about 2800 × 4600).
ASPECT = 0.62
#: The smooth anatomy is built at 1/4 of full size or 512 rows, whichever is larger (and
#: never above full size); film grain and lesions are added at full size.
_LOW_RES = 512
#: Crop aspect ratios (w/h) outside this range are dropped by the patches stage (§3.2).
_CROP_ASPECT = (0.4, 1.5)

_SIDES = ("LEFT", "RIGHT")
_VIEWS = ("CC", "MLO")

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
_DENSITY = ((1, 0.18), (2, 0.42), (3, 0.28), (4, 0.12))
#: Density of a malignant mass relative to a benign one of the same subtlety: high
#: density is a BI-RADS sign of malignancy, a cue beside the margin and shape.
_MALIGNANT_DENSITY = 1.25
#: Share of masses drawn elongated (axis ratio 3.4-4.2); with the ~1.5% whose crops fall
#: outside the patches stage's aspect range by chance, about 3% of mass crops do.
_ELONGATED = 0.02
_FILM_LABEL = 0.25


# --------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class SyntheticConfig:
    """The ``data.synthetic`` params section.

    Attributes:
        n_patients: patients to generate; each has LEFT/RIGHT breasts × CC/MLO views.
        image_height: full-mammogram height in pixels (width about 0.62 × height); 4600 is
            the size of real CBIS-DDSM scans.
        normal_fraction: share of breasts with no finding (listed in the ``normal_*`` CSVs).
        calc_fraction: share of abnormal breasts whose finding is a calcification cluster.
        malignant_fraction: share of findings that are malignant.
        test_fraction: share of patients in the official ``*_test_set`` files.
        quirk_fraction: share of ROI rows whose crop and mask columns are swapped.
        missing_fraction: share of ROI series listed in the CSVs but not written, as in
            partial downloads.
        mismatched_mask_fraction: share of masks whose size differs from their full image
            (as ``Mass-Test_P_00145`` in the real collection).
        style_crossover: share of findings drawn with the other pathology's look (BI-RADS
            shape, margins, calcification type). A rule that knew each finding's look
            would reach a ROC AUC of about ``1 - style_crossover``; density carries a
            little more signal beside it.
    """

    n_patients: int = 60
    image_height: int = 1024
    normal_fraction: float = 0.3
    calc_fraction: float = 0.25
    malignant_fraction: float = 0.45
    test_fraction: float = 0.2
    quirk_fraction: float = 0.1
    missing_fraction: float = 0.0
    mismatched_mask_fraction: float = 0.0
    style_crossover: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"SyntheticConfig.{f.name} must be an int, got {value!r}")
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"SyntheticConfig.{f.name} must be a number, got {value!r}")
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"SyntheticConfig.{f.name} must be in [0, 1], got {value}")
        if self.n_patients < 1:
            raise ValueError(f"SyntheticConfig.n_patients must be >= 1, got {self.n_patients}")
        if self.n_patients > 99999:
            raise ValueError(
                f"SyntheticConfig.n_patients must be <= 99999 (P_ ids have five digits), "
                f"got {self.n_patients}"
            )
        if not 128 <= self.image_height <= 65535:
            raise ValueError(
                f"SyntheticConfig.image_height must be in [128, 65535] (DICOM Rows), "
                f"got {self.image_height}"
            )


# --------------------------------------------------------------------------------------
# the dataset design, drawn once in the calling process


@dataclass(frozen=True)
class _LesionPlan:
    abnormality_id: int
    malignant: bool
    swapped: tuple[bool, bool]  # per view (CC, MLO): crop/mask CSV columns swapped
    missing: tuple[bool, bool]  # per view: ROI series not written
    mismatched: tuple[bool, bool]  # per view: mask size differs from the image


@dataclass(frozen=True)
class _BreastPlan:
    side: str
    kind: str  # normal | mass | calcification
    lesions: tuple[_LesionPlan, ...]


@dataclass(frozen=True)
class _PatientTask:
    number: int
    split: str  # train | test
    breasts: tuple[_BreastPlan, _BreastPlan]
    image_height: int
    seed: int
    out_dir: Path
    style_crossover: float = 0.1


def _exact_flags(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """A boolean vector with exactly ``round(fraction * n)`` randomly placed True values."""
    flags = np.zeros(n, dtype=bool)
    flags[rng.permutation(n)[: int(round(fraction * n))]] = True
    return flags


def _plan(cfg: SyntheticConfig, seed: int, out_dir: Path) -> list[_PatientTask]:
    """Draws splits, breast kinds, pathologies and quirks with exact shares.

    Exact counts (rather than per-item coin flips) keep small datasets true to their
    fractions, e.g. a 10% quirk rate really is 10% of the ROI rows.
    """
    rng = np.random.default_rng([seed, 0])
    n = cfg.n_patients
    test = _exact_flags(rng, n, cfg.test_fraction)
    n_breasts = 2 * n
    normal = _exact_flags(rng, n_breasts, cfg.normal_fraction)
    abnormal = np.flatnonzero(~normal)
    calc = np.zeros(n_breasts, dtype=bool)
    calc[abnormal[_exact_flags(rng, abnormal.size, cfg.calc_fraction)]] = True
    # Most breasts hold one finding, some two (as the real files' abnormality ids 1, 2).
    n_lesions = np.where(normal, 0, 1 + (rng.random(n_breasts) < np.where(calc, 0.12, 0.15)))
    total = int(n_lesions.sum())
    malignant = _exact_flags(rng, total, cfg.malignant_fraction)
    swapped = _exact_flags(rng, 2 * total, cfg.quirk_fraction).reshape(-1, 2)
    missing = _exact_flags(rng, 2 * total, cfg.missing_fraction).reshape(-1, 2)
    mismatched = _exact_flags(rng, 2 * total, cfg.mismatched_mask_fraction).reshape(-1, 2)

    tasks = []
    k = 0
    for p in range(n):
        breasts = []
        for s, side in enumerate(_SIDES):
            b = 2 * p + s
            kind = "normal" if normal[b] else ("calcification" if calc[b] else "mass")
            lesions = []
            for a in range(int(n_lesions[b])):
                lesions.append(
                    _LesionPlan(
                        abnormality_id=a + 1,
                        malignant=bool(malignant[k]),
                        swapped=(bool(swapped[k, 0]), bool(swapped[k, 1])),
                        missing=(bool(missing[k, 0]), bool(missing[k, 1])),
                        mismatched=(bool(mismatched[k, 0]), bool(mismatched[k, 1])),
                    )
                )
                k += 1
            breasts.append(_BreastPlan(side, kind, tuple(lesions)))
        tasks.append(
            _PatientTask(
                number=p + 1,
                split="test" if test[p] else "train",
                breasts=(breasts[0], breasts[1]),
                image_height=cfg.image_height,
                style_crossover=cfg.style_crossover,
                seed=seed,
                out_dir=out_dir,
            )
        )
    return tasks


# --------------------------------------------------------------------------------------
# small random helpers


def _choice(rng: np.random.Generator, table: tuple[tuple[Any, float], ...]) -> Any:
    values = [v for v, _ in table]
    weights = np.array([w for _, w in table], dtype=np.float64)
    return values[int(rng.choice(len(values), p=weights / weights.sum()))]


def _unit_noise(noise: np.ndarray) -> np.ndarray:
    """Scales a noise field to zero mean and unit standard deviation."""
    noise -= noise.mean()
    noise /= max(float(noise.std()), 1e-6)
    return noise


def _blurred_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape, dtype=np.float32)
    return _unit_noise(cv2.GaussianBlur(noise, (0, 0), sigmaX=max(sigma, 0.3)))


def _smooth_1d(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Smooth unit-variance 1-D noise, for wobbly outlines."""
    return _blurred_noise(rng, (n, 1), sigma)[:, 0]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


# --------------------------------------------------------------------------------------
# anatomy at low resolution (canonical orientation: chest wall at x = 0, i.e. a LEFT breast)


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


# --------------------------------------------------------------------------------------
# lesions at full resolution


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
    lobes; irregular ones a broad spectrum; microlobulated margins add fine ripples; the
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
        # small undulations of the outline (lobules of a few pixels), not spikes: a dozen
        # high harmonics of 0.03 each added up to a star
        harmonics(range(8, 14), 0.012, 0.0)
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


# --------------------------------------------------------------------------------------
# one full mammogram


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
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    bw, bh = x1 - x0, y1 - y0
    # One margin for the four sides (with a little jitter) keeps the crop's aspect close to
    # the lesion's, so only truly elongated lesions give elongated crops.
    base = rng.uniform(0.02, 0.06) if max(bw / bh, bh / bw) > 2.5 else rng.uniform(0.05, 0.25)
    m = base * rng.uniform(0.8, 1.2, 4)
    return (
        max(0, x0 - int(m[0] * bw) - 2),
        max(0, y0 - int(m[1] * bh) - 2),
        min(w, x1 + int(m[2] * bw) + 2),
        min(h, y1 + int(m[3] * bh) + 2),
    )


# --------------------------------------------------------------------------------------
# DICOM files and NBIA folder names


def _study_folder(date: str, study_uid: str, rng: np.random.Generator) -> str:
    """NBIA retriever study folder, e.g. ``08-07-2016-DDSM-74994`` (some add ``NA-``)."""
    na = "NA-" if rng.random() < 0.2 else ""
    return f"{date[4:6]}-{date[6:8]}-{date[:4]}-DDSM-{na}{study_uid[-5:]}"


@dataclass(frozen=True)
class _Identity:
    """The fake identifying fields planted in every file of a patient (de-identification
    at ingest removes them: no run writes them to data/raw)."""

    seed: int
    number: int
    name: str
    birth_date: str
    accession: str
    study_date: str


def _identity(rng: np.random.Generator, number: int, seed: int) -> _Identity:
    year = int(rng.integers(1930, 1975))
    birth = f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    study = f"2016{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    return _Identity(
        seed=seed,
        number=number,
        name=f"SYNTH^PATIENT^{number}",
        birth_date=birth,
        accession=f"SYN{seed % 1000:03d}{number:05d}",
        study_date=study,
    )


# --------------------------------------------------------------------------------------
# one patient: images, files and CSV rows


@dataclass
class _PatientResult:
    rows: dict[tuple[str, str], list[dict[str, Any]]]  # (file kind, split) -> rows
    counts: Counter


def _generate_patient(task: _PatientTask) -> _PatientResult:
    """Renders and writes every file of one patient; returns its CSV rows and counts."""
    rng = np.random.default_rng([task.seed, task.number])
    height = task.image_height
    pid = f"P_{task.number:05d}"
    who = _identity(rng, task.number, task.seed)
    density = int(_choice(rng, _DENSITY))
    split = SPLIT_PREFIX[task.split]
    root = task.out_dir / "CBIS-DDSM"
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    counts: Counter = Counter()

    for breast in task.breasts:
        lesions = [
            _draw_lesion(rng, plan, breast.kind, height, density, task.style_crossover)
            for plan in breast.lesions
        ]
        counts[f"breasts_{breast.kind}"] += 1
        key = (KIND_FILE[breast.kind], task.split)
        for view in _VIEWS:
            width = 2 * int(round(height * ASPECT * rng.uniform(0.96, 1.04) / 2))
            image, placed, label = _render_view(
                rng, height, width, breast.side, view, density, lesions
            )
            counts["film_labels"] += int(label)
            subject = f"{KIND_PREFIX[breast.kind]}-{split}_{pid}_{breast.side}_{view}"
            (image_path,) = _write_series(
                rng, root, who, subject, "full mammogram images", breast.side, view, [image]
            )
            counts["full_images"] += 1
            common = {
                "patient_id": pid,
                "density": density,
                "left or right breast": breast.side,
                "image view": view,
                "image file path": image_path,
            }
            if breast.kind == "normal":
                counts["normal_images"] += 1
                rows.setdefault(key, []).append(_stray_space(rng, _normal_row(common), counts))
                continue
            for p in placed:
                roi = _write_roi(rng, root, who, subject, breast.side, view, image, p, counts)
                rows.setdefault(key, []).append(_stray_space(rng, {**common, **roi}, counts))
    return _PatientResult(rows, counts)


def _write_series(
    rng: np.random.Generator,
    root: Path,
    who: _Identity,
    subject: str,
    description: str,
    side: str,
    view: str,
    images: list[np.ndarray],
    write: bool = True,
) -> list[str]:
    """Writes one series (files in random on-disk order); returns the CSV path per image.

    On disk the NBIA retriever's names (``1-1.dcm``, ``1-2.dcm`` …) carry no meaning; the CSV
    names ``00000N.dcm`` after the image's InstanceNumber ``N + 1``. With ``write=False``
    only the CSV paths are made, as for a series lost from a partial download.
    """
    study_uid = make_uid(who.seed, subject, "study")  # each subject has its own study
    series_uid = make_uid(who.seed, subject, description)
    folder = root / subject / _study_folder(who.study_date, study_uid, rng)
    folder = folder / series_folder(description, series_uid)
    order = rng.permutation(len(images))
    paths = []
    for i, image in enumerate(images):
        if write:
            write_secondary_capture(
                folder / f"1-{int(order[i]) + 1}.dcm",
                image,
                subject=subject,
                study_uid=study_uid,
                series_uid=series_uid,
                sop_uid=make_uid(who.seed, subject, description, str(i)),
                description=description,
                side=side,
                view=view,
                instance=i + 1,
                study_date=who.study_date,
                identifying={
                    "AccessionNumber": who.accession,
                    "InstitutionName": "SYNTHETIC BREAST IMAGING CENTRE",
                    "PatientName": who.name,
                    "PatientBirthDate": who.birth_date,
                },
            )
        paths.append(csv_path(subject, study_uid, series_uid, i))
    return paths


def _write_roi(
    rng: np.random.Generator,
    root: Path,
    who: _Identity,
    subject: str,
    side: str,
    view: str,
    image: np.ndarray,
    placed: _Placed,
    counts: Counter,
) -> dict[str, Any]:
    """Writes one abnormality's "ROI mask images" series; returns its CSV row fields.

    As in the real collection the mask and the crop share one series; mass files list the
    crop as ``000000.dcm`` and calc files the mask, the cell naming ``000001.dcm`` ends in a
    newline, and the quirk swaps the two columns.
    """
    lesion, plan = placed.lesion, placed.lesion.plan
    view_index = _VIEWS.index(view)
    height, width = image.shape
    mask = _full_mask(placed, height, width)
    x0, y0, x1, y1 = _crop_box(rng, mask)
    crop = image[y0:y1, x0:x1].copy()
    if not _CROP_ASPECT[0] <= (x1 - x0) / (y1 - y0) <= _CROP_ASPECT[1]:
        counts["elongated_crops"] += 1
    missing = plan.missing[view_index]
    if plan.mismatched[view_index] and not missing:
        # A mask scanned at another size than its image (as Mass-Test_P_00145).
        fy, fx = rng.uniform(0.97, 0.995, 2) if rng.random() < 0.5 else rng.uniform(1.005, 1.03, 2)
        size = (max(1, int(width * fx)), max(1, int(height * fy)))
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        counts["mismatched_masks"] += 1
    crop_first = lesion.kind == "mass"
    images = [crop, mask] if crop_first else [mask, crop]
    counts["missing_series"] += int(missing)
    roi_subject = f"{subject}_{plan.abnormality_id}"
    paths = _write_series(
        rng, root, who, roi_subject, "ROI mask images", side, view, images, write=not missing
    )
    paths[1] += "\n"  # the real files carry a newline at the end of these cells
    counts["newline_cells"] += 1
    crop_path, mask_path = paths if crop_first else paths[::-1]
    if plan.swapped[view_index]:
        crop_path, mask_path = mask_path, crop_path
        counts["swapped_columns"] += 1
    counts[f"rois_{lesion.kind}"] += 1
    counts[f"rois_{lesion.pathology}"] += 1
    return {
        "abnormality id": plan.abnormality_id,
        "abnormality type": lesion.kind,
        "descriptor_a": lesion.descriptor_a,
        "descriptor_b": lesion.descriptor_b,
        "assessment": lesion.assessment,
        "pathology": lesion.pathology,
        "subtlety": lesion.subtlety,
        "cropped image file path": crop_path,
        "ROI mask file path": mask_path,
    }


def _stray_space(rng: np.random.Generator, row: dict[str, Any], counts: Counter) -> dict:
    """Now and then pads the image path cell with whitespace, as hand-edited CSVs do."""
    if rng.random() < 0.05:
        row["image file path"] = row["image file path"] + " "
        counts["stray_whitespace_cells"] += 1
    return row


# --------------------------------------------------------------------------------------
# the dataset


def generate_synthetic(
    out_dir: Path, cfg: SyntheticConfig, seed: int, workers: int = 0
) -> dict[str, Any]:
    """Writes a synthetic CBIS-DDSM-format raw dataset into ``out_dir``.

    Writes ``csv/`` (mass, calc and normal case descriptions, train and test) and the
    ``CBIS-DDSM/`` DICOM tree; ``source.json`` is left to the caller. Patients are rendered
    in parallel, one at a time per worker, so memory does not grow with the dataset.

    Args:
        out_dir: the raw-data directory (created if absent; expected to be empty).
        cfg: sizes, class shares and quirk rates.
        seed: non-negative seed; the same seed and config give byte-identical files.
        workers: processes, ``0`` for every core; the output does not depend on it.

    Returns:
        A summary: counts of patients, full images, ROIs by type and pathology, normal
        images and the quirks injected.

    Raises:
        ValueError: for a negative or non-integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    out_dir = Path(out_dir)
    (out_dir / "csv").mkdir(parents=True, exist_ok=True)
    (out_dir / "CBIS-DDSM").mkdir(parents=True, exist_ok=True)
    tasks = _plan(cfg, seed, out_dir)
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {
        (kind, split): [] for kind in COLUMNS for split in SPLIT_PREFIX
    }
    counts: Counter = Counter()
    results = imap(_generate_patient, tasks, workers=workers, desc="synthetic", unit="patient")
    for result in results:
        for key, patient_rows in result.rows.items():
            rows[key].extend(patient_rows)
        counts.update(result.counts)
    for (kind, split), kind_rows in rows.items():
        write_csv(
            out_dir / "csv" / f"{kind}_case_description_{split}_set.csv", _frame(kind, kind_rows)
        )

    n_test = sum(t.split == "test" for t in tasks)
    summary = {
        "patients": cfg.n_patients,
        "patients_train": cfg.n_patients - n_test,
        "patients_test": n_test,
        "image_height": cfg.image_height,
        "full_images": counts["full_images"],
        "normal_images": counts["normal_images"],
        "breasts": {k: counts[f"breasts_{k}"] for k in ("normal", "mass", "calcification")},
        "rois": counts["rois_mass"] + counts["rois_calcification"],
        "rois_by_type": {k: counts[f"rois_{k}"] for k in ("mass", "calcification")},
        "rois_by_pathology": {
            k: counts[f"rois_{k}"] for k in ("BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT")
        },
        "film_labels": counts["film_labels"],
        "quirks": {
            k: counts[k]
            for k in (
                "swapped_columns",
                "missing_series",
                "mismatched_masks",
                "elongated_crops",
                "newline_cells",
                "stray_whitespace_cells",
            )
        },
    }
    log.info("synthetic CBIS-DDSM written to %s: %s", out_dir, summary)
    return summary


def _frame(kind: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Puts rows into the column names and order of one case-description file."""
    columns = COLUMNS[kind]
    rename = {"density": columns[1]}
    if kind == "mass":
        rename.update(descriptor_a="mass shape", descriptor_b="mass margins")
    elif kind == "calc":
        rename.update(descriptor_a="calc type", descriptor_b="calc distribution")
    frame = pd.DataFrame(rows).rename(columns=rename) if rows else pd.DataFrame()
    return frame.reindex(columns=columns)


def _normal_row(common: dict[str, Any]) -> dict[str, Any]:
    """The normal-file row of a lesion-free image (the layout's synthetic extension)."""
    return {
        **common,
        "abnormality id": 0,
        "abnormality type": "normal",
        "assessment": 1,
        "pathology": "NORMAL",
        "subtlety": 0,
        "cropped image file path": "",
        "ROI mask file path": "",
    }


#: Columns of the NBIA Data Retriever's ``metadata.csv`` (recent versions).
RETRIEVER_METADATA_COLUMNS: tuple[str, ...] = (
    "Series UID", "Collection", "3rd Party Analysis", "Data Description URI", "Subject ID",
    "Study UID", "Study Description", "Study Date", "Series Description", "Manufacturer",
    "Modality", "SOP Class Name", "SOP Class UID", "Number of Images", "File Size",
    "File Location", "Download Timestamp",
)  # fmt: skip
#: The four official case-description files (the synthetic ``normal_*`` ones are extras).
_OFFICIAL_CSVS = tuple(
    f"{kind}_case_description_{split}_set.csv"
    for kind in ("mass", "calc")
    for split in ("train", "test")
)


def write_retriever_download(
    dest: Path,
    cfg: SyntheticConfig,
    seed: int,
    workers: int = 0,
    csv_dir: Path | None = None,
    tcia_headers: bool = True,
) -> dict[str, Any]:
    """Writes a synthetic CBIS-DDSM as the NBIA Data Retriever leaves a download on disk.

    ``dest/CBIS-DDSM/<Subject ID>/<study>/<series>/1-N.dcm`` and ``dest/metadata.csv``
    (retriever columns, ``File Location`` relative, starting ``./``), for trying and testing
    ``data.cbis_ddsm.root`` without the real 164 GB. The four official case-description
    CSVs go to ``csv_dir`` (default ``dest/csv``); the synthetic ``normal_*`` files are
    dropped, as the real collection has no normal images, so normal breasts' series are
    extra series a reader must ignore (use ``normal_fraction: 0`` to have none).

    Args:
        dest: an empty or absent folder.
        cfg: the synthetic data set's settings.
        seed: its seed.
        workers: processes (0 = every core).
        csv_dir: where the case descriptions go.
        tcia_headers: give every file the identifying fields TCIA's files carry
            (``PatientName`` = the subject id, ``StudyID`` = ``DDSM``, a private ``CTP``
            block), which reading such a folder must remove.

    Returns:
        The synthetic source's summary.
    """
    dest = Path(dest)
    summary = generate_synthetic(dest, cfg, seed=seed, workers=workers)
    target = Path(csv_dir) if csv_dir is not None else dest / "csv"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted((dest / "csv").glob("*.csv")):
        if path.name in _OFFICIAL_CSVS:
            path.replace(target / path.name)
        else:
            path.unlink()
    if target != dest / "csv":
        (dest / "csv").rmdir()
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted((dest / "CBIS-DDSM").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        if tcia_headers:
            ds.PatientName = ds.PatientID
            ds.StudyID = "DDSM"
            block = ds.private_block(0x0013, "CTP", create=True)
            block.add_new(0x10, "LO", "CBIS-DDSM")
            ds.save_as(path, enforce_file_format=True)
        folder = path.parent.relative_to(dest).as_posix()
        row = rows.setdefault(
            str(ds.SeriesInstanceUID),
            {
                "Series UID": str(ds.SeriesInstanceUID),
                "Collection": "CBIS-DDSM",
                "3rd Party Analysis": "NO",
                "Data Description URI": "",
                "Subject ID": str(ds.PatientID),
                "Study UID": str(ds.StudyInstanceUID),
                "Study Description": "",
                "Study Date": str(ds.get("StudyDate", "")),
                "Series Description": str(ds.SeriesDescription),
                "Manufacturer": "",
                "Modality": str(ds.Modality),
                "SOP Class Name": "Secondary Capture Image Storage",
                "SOP Class UID": str(ds.SOPClassUID),
                "Number of Images": 0,
                "File Size": 0,
                "File Location": f"./{folder}",
                "Download Timestamp": "",
            },
        )
        row["Number of Images"] += 1
        row["File Size"] += path.stat().st_size
    frame = pd.DataFrame(list(rows.values()), columns=list(RETRIEVER_METADATA_COLUMNS))
    write_csv(dest / "metadata.csv", frame)
    return summary
