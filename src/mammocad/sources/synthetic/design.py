"""The ``data.synthetic`` settings (:class:`SyntheticConfig`) and the dataset design drawn
once in the calling process: each patient's split, breasts, lesions, pathologies and quirks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

_SIDES = ("LEFT", "RIGHT")


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
            would reach a ROC AUC of about ``1 - style_crossover``; density (malignant
            masses are drawn denser whatever their look) carries more signal beside it.
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
    style_crossover: float = 0.05

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
    style_crossover: float = 0.05


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
