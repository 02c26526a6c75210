"""One synthetic patient: its images rendered and written as DICOM series in NBIA folders,
with de-identifiable identities, and its case-description rows with the real files' quirks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mammocad.sources.layout import (
    KIND_FILE,
    KIND_PREFIX,
    SPLIT_PREFIX,
    csv_path,
    make_uid,
    series_folder,
    write_secondary_capture,
)
from mammocad.sources.synthetic.design import _PatientTask
from mammocad.sources.synthetic.lesions import _draw_lesion, _Placed
from mammocad.sources.synthetic.noise import _choice
from mammocad.sources.synthetic.view import _crop_box, _full_mask, _render_view

#: Width of a full mammogram relative to its height (CBIS-DDSM scans: about 2800 × 4600).
ASPECT = 0.62
#: Crop aspect ratios (w/h) outside this range are dropped by the patches stage (§3.2).
_CROP_ASPECT = (0.4, 1.5)
_VIEWS = ("CC", "MLO")
_DENSITY = ((1, 0.18), (2, 0.42), (3, 0.28), (4, 0.12))


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
