"""Skip reasons of ``convert``: the reason texts other modules match, their categories for
the metrics, the reasons a source gives for series it lacks, and the summary a failed run
shows.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

UNREFERENCED = "not referenced by any case-description row"
#: A source's list of series the case descriptions name but it could not provide.
MISSING_SERIES = "missing_series.csv"

#: Reason prefix → category, for the metrics; first match wins.
REASON_CATEGORIES: tuple[tuple[str, str], ...] = (
    (r"^not a DICOM (file|image)|^unreadable DICOM header", "not_dicom"),
    (r"^no pixel data", "no_pixel_data"),
    (r"^undecodable pixel data", "undecodable_pixels"),
    (r"^not greyscale", "not_greyscale"),
    (r"^multi-frame volume", "multi_frame"),
    (r"^not a mammogram", "not_mammogram"),
    (r"^image too small|^blank image", "not_full_mammogram"),
    (r"^series \S+ not found under raw", "series_not_found"),
    (r"^full image \S+ skipped", "full_image_skipped"),
    (r"^mask size", "mask_size_mismatch"),
    (r"^(no mask|no cropped image|empty mask|ambiguous ROI series|no ROI path)", "roi_incomplete"),
    (r"^full-image series", "ambiguous_full_series"),
    (r"^duplicate SOPInstanceUID", "duplicate_file"),
    (r"^" + re.escape(UNREFERENCED), "unreferenced"),
)


def reason_category(reason: str) -> str:
    """Maps a skip reason to a short category name (``"other"`` if none matches)."""
    for pattern, category in REASON_CATEGORIES:
        if re.search(pattern, reason):
            return category
    return "other"


def missing_reasons(raw_dir: Path) -> dict[str, str]:
    """Why a source lacks series the case descriptions name: ``missing_series.csv`` of the
    raw folder (or of each combined source's subfolder), SeriesInstanceUID → reason."""
    reasons: dict[str, str] = {}
    for path in sorted([*raw_dir.glob(MISSING_SERIES), *raw_dir.glob(f"*/{MISSING_SERIES}")]):
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            reasons.update(zip(frame["series_uid"], frame["reason"], strict=True))
        except (OSError, ValueError, KeyError) as err:
            log.warning(
                "%s is unreadable (%s); missing series are reported without reasons", path, err
            )
    return reasons


def _not_found(uid: str, reasons: dict[str, str]) -> str:
    reason = f"series {uid} not found under raw"
    return f"{reason} ({reasons[uid]})" if reasons.get(uid) else reason


def _summary(skips: list[dict[str, str]], n_items: int) -> str:
    """The most frequent skip categories with one example reason each."""
    if not skips:
        return f"0 of {n_items} items skipped"
    by_category: dict[str, list[str]] = {}
    for skip in skips:
        by_category.setdefault(reason_category(skip["reason"]), []).append(skip["reason"])
    ranked = sorted(by_category.items(), key=lambda kv: -len(kv[1]))[:5]
    return "; ".join(f"{cat} ×{len(reasons)} (e.g. {reasons[0]!r})" for cat, reasons in ranked)
