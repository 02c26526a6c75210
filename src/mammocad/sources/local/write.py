"""One labelled image of the ``local`` source written (runs in worker processes): the image
read and checked, its side and view completed, its full-image series and, from the mask
or the box, its ROI series.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammocad.boxes import bounding_box, crop_box, relative_margins
from mammocad.dicom import SkipImage
from mammocad.image_rules import size_problem
from mammocad.imaging import read_image
from mammocad.patches import chest_wall_on_right
from mammocad.sources.layout import KIND_PREFIX, SPLIT_PREFIX, write_series

DATASET = "local"


@dataclass(frozen=True)
class _Task:
    """One labelled image to read and write."""

    out_dir: Path
    path: Path
    shown: str  # the labels' file cell
    row: int
    patient_id: str
    subject_key: str  # the patient id made safe for folder names
    suffix: str  # "" or "_R<row>", which keeps subjects unique
    split: str
    pathology: str
    kind: str  # mass | calcification | normal
    laterality: str
    view: str
    mask: Path | None
    mask_shown: str
    box: tuple[int, int, int, int] | None


def _write_series(
    task: _Task, subject: str, description: str, images: list[np.ndarray], side: str, view: str
) -> list[str]:
    return write_series(
        task.out_dir / "CBIS-DDSM" / subject,
        DATASET,
        subject,
        description,
        images,
        side=side,
        view=view,
        study_folder=lambda uid: f"LOCAL-{uid[-5:]}",
    )


def _lesion_mask(task: _Task, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The lesion mask (bool) from the mask file or the box, or a reason it is unusable."""
    if task.mask is not None:
        if not task.mask.is_file():
            return None, f"mask {task.mask_shown} not found: image kept without ROI"
        try:
            mask_image = read_image(task.mask, expect_mammogram=False)
        except Exception as exc:  # a bad mask loses the ROI, not the image
            why = exc.reason if isinstance(exc, SkipImage) else type(exc).__name__
            return None, f"unusable mask {task.mask_shown} ({why}): image kept without ROI"
        if mask_image.pixels.shape != shape:
            h, w = mask_image.pixels.shape
            return None, (
                f"mask size {h}x{w} does not match image {shape[0]}x{shape[1]}: "
                "image kept without ROI"
            )
        mask = mask_image.pixels > 0
        if not mask.any():
            return None, "empty mask: image kept without ROI"
        return mask, ""
    if task.box is not None:
        x0, y0, x1, y1 = task.box
        h, w = shape
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            return None, f"ROI box {task.box} outside the {h}x{w} image: image kept without ROI"
        mask = np.zeros(shape, dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask, ""
    return None, ""


def _write_task(task: _Task) -> dict[str, Any]:
    """Reads one image and writes its series; returns its CSV row, skips and counts."""
    result: dict[str, Any] = {"row": None, "skipped": [], "counts": Counter()}
    try:
        image = read_image(task.path)
    except SkipImage as skip:
        result["skipped"].append({"file": task.shown, "row": task.row, "reason": skip.reason})
        return result
    except Exception as exc:  # a bad image is skipped, never fatal
        reason = " ".join(f"unreadable image: {type(exc).__name__}: {exc}".split())
        result["skipped"].append({"file": task.shown, "row": task.row, "reason": reason})
        return result
    pixels = image.pixels
    problem = size_problem(*pixels.shape)
    if problem:
        result["skipped"].append({"file": task.shown, "row": task.row, "reason": problem})
        return result
    side = task.laterality or image.laterality
    view = task.view or image.view
    if not task.laterality:
        if image.laterality:
            result["counts"]["laterality_from_dicom"] += 1
        else:
            side = "RIGHT" if chest_wall_on_right(pixels) else "LEFT"
            result["counts"]["laterality_inferred"] += 1
    if not task.view and image.view:
        result["counts"]["view_from_dicom"] += 1
    subject = (
        f"{KIND_PREFIX[task.kind]}-{SPLIT_PREFIX[task.split]}_{task.subject_key}"
        f"_{side}_{view or 'UNKNOWN'}{task.suffix}"
    )
    (image_path,) = _write_series(task, subject, "full mammogram images", [pixels], side, view)
    result["counts"]["images_written"] += 1
    row: dict[str, Any] = {
        "patient_id": task.patient_id,
        "left or right breast": side,
        "image view": view,
        "abnormality id": 0 if task.kind == "normal" else 1,
        "abnormality type": task.kind,
        "assessment": "",
        "pathology": task.pathology,
        "subtlety": "",
        "image file path": image_path,
        "cropped image file path": "",
        "ROI mask file path": "",
        "dataset": DATASET,
    }
    if task.kind == "normal":
        result["counts"]["normal_images"] += 1
        row.update({"breast_density": "", "assessment": 1, "subtlety": 0})
        result["row"] = row
        return result
    if task.kind == "mass":
        row.update({"breast_density": "", "mass shape": "", "mass margins": ""})
    else:
        row.update({"breast density": "", "calc type": "", "calc distribution": ""})
    mask, reason = _lesion_mask(task, pixels.shape)
    if mask is not None:
        box = bounding_box(mask)
        x0, y0, x1, y1 = crop_box(box, mask.shape, relative_margins(box))
        crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        mask8 = np.where(mask, np.uint8(255), np.uint8(0))
        crop_path, mask_path = _write_series(
            task, f"{subject}_1", "ROI mask images", [crop, mask8], side, view
        )
        row.update({"cropped image file path": crop_path, "ROI mask file path": mask_path})
        result["counts"][f"rois_{task.kind}"] += 1
        result["counts"][f"rois_{task.pathology}"] += 1
    else:
        result["counts"]["findings_without_roi"] += 1
        if reason:
            shown = task.mask_shown or task.shown
            result["skipped"].append({"file": shown, "row": task.row, "reason": reason})
    result["row"] = row
    return result
