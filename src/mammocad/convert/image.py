"""One task of ``convert`` (runs in worker processes): a full image decoded, checked by the
minimum-image rule and written, then its ROIs; only small row dicts return to the parent.
"""

from __future__ import annotations

from typing import Any

from mammocad.convert.index import _rel
from mammocad.convert.plan import _ImageTask
from mammocad.convert.roi import _convert_roi
from mammocad.dicom import SkipImage, read_pixels
from mammocad.image_rules import image_problem
from mammocad.io import write_png


def _convert_image(task: _ImageTask) -> dict[str, Any]:
    """Converts one full image and its ROIs; returns only small row dicts.

    Returns:
        ``{"full": row | None, "rois": [rows], "skipped": [rows], "patient_id_mismatch":
        bool}``.
    """
    result: dict[str, Any] = {
        "full": None,
        "rois": [],
        "skipped": [],
        "patient_id_mismatch": False,
    }
    full_file = task.full_files[0]
    reason = ""
    if len(task.full_files) > 1:
        reason = (
            f"full-image series {task.full_series_uid} holds {len(task.full_files)} images, "
            "expected 1"
        )
    else:
        try:
            image = read_pixels(full_file)
        except SkipImage as exc:
            reason = exc.reason
        else:
            reason = image_problem(image.pixels)
    if reason:
        full_name = _rel(full_file, task.raw_dir)
        result["skipped"].append({"file": full_name, "image_id": task.image_id, "reason": reason})
        for roi in task.rois:
            result["skipped"].append(
                {
                    "file": full_name,
                    "image_id": roi.roi_id,
                    "reason": f"full image {task.image_id} skipped: {reason}",
                }
            )
        return result

    # PatientID only checks the join; it is not written anywhere.
    if image.header.patient_id and image.header.patient_id != task.image_id:
        result["patient_id_mismatch"] = True
    full_rel = f"full/{task.image_id}.png"
    write_png(task.out_dir / full_rel, image.pixels)
    height, width = image.pixels.shape
    result["full"] = {
        "image_path": full_rel,
        "height": int(height),
        "width": int(width),
        "bits_stored": int(image.bits_stored),
    }
    del image  # free the full image before decoding the ROI files
    for roi in task.rois:
        row, skipped = _convert_roi(roi, (height, width), task)
        if row is not None:
            result["rois"].append(row)
        if skipped is not None:
            result["skipped"].append(skipped)
    return result
