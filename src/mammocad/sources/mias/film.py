"""One mini-MIAS film written as CBIS-DDSM series (runs in worker processes): the full image
and, per lesion with coordinates, a crop around its circle and the filled-circle mask.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mammocad.boxes import crop_box
from mammocad.codecs.pgm import PgmError, read_pgm
from mammocad.sources.layout import KIND_FILE, subject_id, write_series
from mammocad.sources.mias.info import (
    BREAST_DENSITY,
    CALC_DISTRIBUTION,
    MASS_DESCRIPTORS,
    MiasRow,
    patient_id,
)

log = logging.getLogger(__name__)

#: The ``dataset`` named on every CSV row.
DATASET = "mias"
#: Every mini-MIAS film is an MLO view (one film per breast, pectoral muscle visible).
VIEW = "MLO"
#: Smallest half-side of a ROI crop, so that tiny calcification clusters (radius 3 pixels)
#: still give a crop with some surrounding tissue.
MIN_HALF_SIDE = 16


def disc_mask(shape: tuple[int, int], row: int, col: int, radius: int) -> np.ndarray:
    """A 0/255 ``uint8`` mask of the pixels within ``radius`` of ``(row, col)``."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    inside = (yy - row) ** 2 + (xx - col) ** 2 <= radius * radius
    return np.where(inside, np.uint8(255), np.uint8(0))


def roi_half_side(radius: int, margin: float) -> int:
    """Half-side of the square ROI crop around a lesion's circle: ``radius × margin``, at
    least :data:`MIN_HALF_SIDE`."""
    return max(math.ceil(radius * margin), MIN_HALF_SIDE)


@dataclass(frozen=True)
class _FilmTask:
    ref: str
    pgm: Path
    rows: tuple[MiasRow, ...]
    split: str
    root: Path  # where the DICOM tree goes
    roi_margin: float


@dataclass
class _FilmResult:
    ref: str
    error: str = ""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)


def _study_folder(study_uid: str) -> str:
    """Study folder in the NBIA retriever's style, without a date (mini-MIAS has none)."""
    return f"MIAS-{study_uid[-5:]}"


def _write_series(
    root: Path, subject: str, description: str, side: str, images: list[np.ndarray]
) -> list[str]:
    """Writes one series under ``root/<subject>/``; returns the CSV path of each image."""
    return write_series(
        root / subject,
        DATASET,
        subject,
        description,
        images,
        side=side,
        view=VIEW,
        study_folder=_study_folder,
    )


def _lesion_fields(row: MiasRow) -> dict[str, Any]:
    if row.kind == "mass":
        shape, margins = MASS_DESCRIPTORS[row.abnormality_class]
        return {"mass shape": shape, "mass margins": margins}
    return {"calc type": "", "calc distribution": CALC_DISTRIBUTION[row.has_coordinates]}


def _convert_film(task: _FilmTask) -> _FilmResult:
    """Reads one PGM and writes its series; returns its CSV rows and counts."""
    result = _FilmResult(task.ref)
    try:
        image = read_pgm(task.pgm.read_bytes())
    except (PgmError, OSError) as exc:
        result.error = str(exc)
        return result
    first = task.rows[0]
    pid = patient_id(first.patient_number)
    counts = result.counts
    # A film whose rows mix calcifications and masses appears, as in CBIS-DDSM, once per
    # finding type (a Calc- and a Mass- subject sharing the pixels).
    by_kind: dict[str, list[MiasRow]] = {}
    for row in task.rows:
        by_kind.setdefault(row.kind, []).append(row)
    for kind, rows in by_kind.items():
        file = KIND_FILE[kind]
        subject = subject_id(kind, task.split, pid, first.side, VIEW)
        (image_path,) = _write_series(
            task.root, subject, "full mammogram images", first.side, [image]
        )
        counts["full_series"] += 1
        counts["dicom_files"] += 1
        density_column = "breast density" if file == "calc" else "breast_density"
        common = {
            "patient_id": pid,
            density_column: BREAST_DENSITY[first.tissue],
            "left or right breast": first.side,
            "image view": VIEW,
            "image file path": image_path,
            "assessment": "",
            "subtlety": "",
            "dataset": DATASET,
        }
        out = result.rows.setdefault((file, task.split), [])
        if kind == "normal":
            out.append(
                {
                    **common,
                    "abnormality id": 0,
                    "abnormality type": "normal",
                    "pathology": "NORMAL",
                    "cropped image file path": "",
                    "ROI mask file path": "",
                }
            )
            continue
        for number, row in enumerate(rows, start=1):
            crop_path = mask_path = ""
            centre = row.centre(image.shape[0])
            if centre is None or row.radius is None:
                counts["lesions_without_coordinates"] += 1
            else:
                # the square centred on the lesion, clipped (empty for a centre far outside)
                (r, c), half = centre, roi_half_side(row.radius, task.roi_margin)
                c0, r0, c1, r1 = crop_box((c, r, c + 1, r + 1), image.shape, (half,) * 4)
                mask = disc_mask(image.shape, *centre, row.radius)
                if r1 <= r0 or c1 <= c0 or not mask.any():
                    log.warning(
                        "%s (Info.txt line %d): lesion centre %s lies outside the %dx%d "
                        "image; kept without ROI",
                        task.ref,
                        row.line,
                        centre,
                        *image.shape,
                    )
                    counts["lesions_outside_image"] += 1
                else:
                    crop = np.ascontiguousarray(image[r0:r1, c0:c1])
                    crop_path, mask_path = _write_series(
                        task.root,
                        f"{subject}_{number}",
                        "ROI mask images",
                        first.side,
                        [crop, mask],
                    )
                    counts["lesions_with_coordinates"] += 1
                    counts["roi_series"] += 1
                    counts["dicom_files"] += 2
            out.append(
                {
                    **common,
                    "abnormality id": number,
                    "abnormality type": kind,
                    **_lesion_fields(row),
                    "pathology": row.pathology,
                    "cropped image file path": crop_path,
                    "ROI mask file path": mask_path,
                }
            )
    return result
