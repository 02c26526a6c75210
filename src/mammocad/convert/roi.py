"""One ROI of a task (runs in worker processes): crop and mask told apart by content (a
mask is binary and has the full image's size), the swapped-columns check, and the PNGs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mammocad.boxes import bounding_box
from mammocad.convert.index import _rel
from mammocad.convert.plan import _ImageTask, _RoiTask
from mammocad.dicom import SkipImage, read_pixels
from mammocad.io import write_png


def _is_binary(pixels: np.ndarray) -> bool:
    """At most two distinct values (min/max comparison avoids sorting 12 M pixels)."""
    lo, hi = pixels.min(), pixels.max()
    return bool(np.all((pixels == lo) | (pixels == hi)))


def _convert_roi(
    roi: _RoiTask, full_shape: tuple[int, int], task: _ImageTask
) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """Decodes, classifies and writes one ROI; returns ``(row, None)`` or ``(None, skip)``."""
    if roi.missing_reason:
        return None, {
            "file": roi.missing_file,
            "image_id": roi.roi_id,
            "reason": roi.missing_reason,
        }
    files = list(dict.fromkeys(roi.crop_files + roi.mask_files))

    def skip(reason: str, path: Path | None = None) -> tuple[None, dict[str, str]]:
        shown = path if path is not None else (files[0] if files else None)
        name = _rel(shown, task.raw_dir) if shown is not None else ""
        return None, {"file": name, "image_id": roi.roi_id, "reason": reason}

    crops: list[tuple[Path, Any]] = []
    masks: list[tuple[Path, Any]] = []
    wrong_size: list[tuple[Path, tuple[int, int]]] = []
    for path in files:
        try:
            image = read_pixels(path)
        except SkipImage as exc:
            return skip(exc.reason, path)
        if not _is_binary(image.pixels):
            crops.append((path, image))
        elif image.pixels.shape == full_shape:
            masks.append((path, image))
        else:
            wrong_size.append((path, image.pixels.shape))
        del image
    if not masks:
        if wrong_size:
            path, shape = wrong_size[0]
            return skip(
                f"mask size {shape[0]}x{shape[1]} does not match full image "
                f"{full_shape[0]}x{full_shape[1]}",
                path,
            )
        return skip(f"no mask in ROI series {roi.roi_series_uid}: no binary full-size image")
    if len(masks) > 1:
        return skip(
            f"ambiguous ROI series {roi.roi_series_uid}: {len(masks)} binary full-size images"
        )
    if not crops:
        return skip(f"no cropped image in ROI series {roi.roi_series_uid}")
    if len(crops) > 1:
        return skip(f"ambiguous ROI series {roi.roi_series_uid}: {len(crops)} crop candidates")

    mask_path, mask_image = masks[0]
    crop_image = crops[0][1]
    pixels = mask_image.pixels
    top = pixels.max()
    if top == pixels.min():
        return skip("empty mask: no lesion pixels", mask_path)
    mask = np.where(pixels == top, np.uint8(255), np.uint8(0))
    x0, y0, x1, y1 = bounding_box(mask)

    if roi.same_series:
        position = files.index(mask_path)
        swapped = roi.crop_file_index is not None and position == roi.crop_file_index
    else:
        swapped = mask_path in roi.crop_files and mask_path not in roi.mask_files

    crop_rel = f"roi/{roi.roi_id}_crop.png"
    mask_rel = f"roi/{roi.roi_id}_mask.png"
    write_png(task.out_dir / crop_rel, crop_image.pixels)
    write_png(task.out_dir / mask_rel, mask)
    height, width = crop_image.pixels.shape
    row = {
        "roi_id": roi.roi_id,
        "image_path": crop_rel,
        "mask_path": mask_rel,
        "height": int(height),
        "width": int(width),
        "bbox_x0": x0,
        "bbox_y0": y0,
        "bbox_x1": x1,
        "bbox_y1": y1,
        "bits_stored": int(crop_image.bits_stored),
        "swapped": bool(swapped),
    }
    return row, None
