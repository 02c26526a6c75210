"""One DDSM image decoded and written as CBIS-DDSM series: the full image and, per usable
abnormality, its crop and mask.

Grey levels: the raw digital values are kept. Mapping them to optical density needs a
per-digitizer calibration (DBA, HOWTEK at MGH or ISMD, LUMISYS), published by USF; that is
out of scope here. For the pipeline's 16-bit representation (:mod:`mammocad.dicom`) the
``BITS_PER_PIXEL`` range is stretched linearly onto ``0..65535`` (12-bit values times
65535/4095), exactly as a 12-bit DICOM would be read; higher values mean denser tissue on
every DDSM digitizer, so no inversion is needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammocad.boxes import bounding_box, crop_box, relative_margins
from mammocad.codecs.ljpeg import LjpegError, decode_ljpeg
from mammocad.sources.ddsm.ics import IcsImage
from mammocad.sources.ddsm.overlay import Abnormality, abnormality_mask
from mammocad.sources.layout import KIND_FILE, subject_id, write_series

DATASET = "ddsm"


def to_uint16(raw: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """Stretches ``bits``-bit values linearly onto ``0..65535`` (as a DICOM reader does).

    When values exceed the ``bits`` range (an ``.ics`` understating the depth), the
    smallest depth that holds them is used instead.

    Returns:
        ``(pixels, bits_used)``.
    """
    top = int(raw.max()) if raw.size else 0
    used = bits
    while used < 16 and top >= 1 << used:
        used += 1
    if used == 16:
        return raw.astype(np.uint16, copy=False), used
    lut = np.rint(np.arange(1 << used) * (65535 / ((1 << used) - 1))).astype(np.uint16)
    return lut[raw], used


@dataclass(frozen=True)
class _ImageTask:
    """One image to decode and write, with its labels."""

    out_dir: Path
    case_name: str
    patient_id: str
    split: str
    density: str
    study_date: str
    view: str
    ljpeg: Path
    ics: IcsImage
    abnormalities: tuple[tuple[int, Abnormality], ...]  # (abnormality id, block)
    normal: bool


def _study_folder(date: str, study_uid: str) -> str:
    """NBIA-style study folder name, e.g. ``02-07-1995-DDSM-74994``."""
    if date:
        return f"{date[4:6]}-{date[6:8]}-{date[:4]}-DDSM-{study_uid[-5:]}"
    return f"DDSM-{study_uid[-5:]}"


def _write_series(
    task: _ImageTask, subject: str, description: str, images: list[np.ndarray]
) -> list[str]:
    """Writes one series of ``images``; returns their case-description paths."""
    side, view = task.view.split("_")
    return write_series(
        task.out_dir / "CBIS-DDSM" / subject,
        DATASET,
        subject,
        description,
        images,
        side=side,
        view=view,
        study_date=task.study_date,
        study_folder=lambda uid: _study_folder(task.study_date, uid),
    )


def _write_image(task: _ImageTask) -> dict[str, Any]:
    """Decodes one LJPEG and writes its series; returns CSV rows, skips and counts."""
    result: dict[str, Any] = {"rows": [], "skipped": [], "counts": Counter()}
    image_name = f"{task.case_name}.{task.view}"
    try:
        raw = decode_ljpeg(
            task.ljpeg, task.ics.lines, task.ics.pixels_per_line, task.ics.bits_per_pixel
        )
    except Exception as exc:  # a bad image is skipped, never fatal
        detail = str(exc) if isinstance(exc, LjpegError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(f"undecodable LJPEG: {detail}".split())
        result["skipped"].append(
            {
                "file": str(task.ljpeg),
                "case": task.case_name,
                "image": image_name,
                "reason": reason,
            }
        )
        return result
    pixels, bits_used = to_uint16(raw, task.ics.bits_per_pixel)
    del raw
    if bits_used != task.ics.bits_per_pixel:
        result["counts"]["bits_per_pixel_understated"] += 1
    side, view = task.view.split("_")
    common = {
        "patient_id": task.patient_id,
        "left or right breast": side,
        "image view": view,
        "dataset": DATASET,
    }
    result["counts"]["full_images"] += 1
    if task.normal:
        subject = subject_id("normal", task.split, task.patient_id, side, view)
        (image_path,) = _write_series(task, subject, "full mammogram images", [pixels])
        result["counts"]["normal_images"] += 1
        result["rows"].append(
            (
                "normal",
                {
                    **common,
                    "breast_density": task.density,
                    "abnormality id": 0,
                    "abnormality type": "normal",
                    "assessment": 1,
                    "pathology": "NORMAL",
                    "subtlety": 0,
                    "image file path": image_path,
                    "cropped image file path": "",
                    "ROI mask file path": "",
                },
            )
        )
        return result

    by_kind: dict[str, list[tuple[int, Abnormality]]] = {}
    for number, abnormality in task.abnormalities:
        by_kind.setdefault(abnormality.kind, []).append((number, abnormality))
    for kind, items in by_kind.items():
        subject = subject_id(kind, task.split, task.patient_id, side, view)
        (image_path,) = _write_series(task, subject, "full mammogram images", [pixels])
        result["counts"]["full_image_series"] += 1
        file_kind = KIND_FILE[kind]
        for number, abnormality in items:
            lesion = abnormality.lesion_types[0]
            crop_path = mask_path = ""
            mask = abnormality_mask(abnormality, pixels.shape)
            if mask.any():
                # outline box widened by 10 % of its side (at least 4 pixels) on every side
                box = bounding_box(mask)
                x0, y0, x1, y1 = crop_box(box, mask.shape, relative_margins(box))
                mask8 = np.where(mask, np.uint8(255), np.uint8(0))
                crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
                crop_path, mask_path = _write_series(
                    task, f"{subject}_{number}", "ROI mask images", [crop, mask8]
                )
                result["counts"][f"rois_{kind}"] += 1
                result["counts"][f"rois_{abnormality.pathology}"] += 1
            else:
                result["counts"]["rois_without_outline"] += 1
                result["skipped"].append(
                    {
                        "file": str(task.ljpeg),
                        "case": task.case_name,
                        "image": f"{image_name}#{number}",
                        "reason": "outline empty or outside the image: full image kept "
                        "without ROI",
                    }
                )
            descriptors = (
                {"mass shape": lesion.shape, "mass margins": lesion.margins}
                if kind == "mass"
                else {"calc type": lesion.shape, "calc distribution": lesion.margins}
            )
            density_key = "breast_density" if kind == "mass" else "breast density"
            row = {
                **common,
                density_key: task.density,
                "abnormality id": number,
                "abnormality type": kind,
                **descriptors,
                "assessment": "" if abnormality.assessment is None else abnormality.assessment,
                "pathology": abnormality.pathology,
                "subtlety": "" if abnormality.subtlety is None else abnormality.subtlety,
                "image file path": image_path,
                "cropped image file path": crop_path,
                "ROI mask file path": mask_path,
            }
            result["rows"].append((file_kind, row))
    return result
