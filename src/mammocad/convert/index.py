"""The DICOM tree index: every DICOM-like file under the raw folder, its header read (not
its pixels) and grouped by SeriesInstanceUID; unreadable files and second copies of one
SOPInstanceUID become skip rows.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

from mammocad.dicom import SkipImage, read_header
from mammocad.parallel import imap

log = logging.getLogger(__name__)

_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".dic"}


class DicomIndex(NamedTuple):
    """DICOM files found under a folder.

    Attributes:
        series: SeriesInstanceUID → files, ordered by InstanceNumber then path.
        skipped: ``{"file", "image_id", "reason"}`` rows for unreadable or duplicate files.
    """

    series: dict[str, list[Path]]
    skipped: list[dict[str, str]]


def _candidate_files(raw_dir: Path) -> list[Path]:
    """Files that may be DICOM: ``.dcm``-like or extension-less, outside ``csv/``."""
    found: list[Path] = []
    for root, dirs, files in os.walk(raw_dir):
        here = Path(root)
        # The case-description folder and hidden folders (temporary outputs) hold no images.
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not (here == raw_dir and d == "csv")
        )
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in _DICOM_SUFFIXES:
                continue
            found.append(path)
    return found


def _index_one(path: Path) -> tuple[Path, str, str, int, str]:
    """``(path, series_uid, sop_uid, instance_number, reason)``; reason empty when read."""
    try:
        header = read_header(path)
    except SkipImage as skip:
        return path, "", "", 0, skip.reason
    instance = header.instance_number if header.instance_number is not None else 0
    return path, header.series_uid, header.sop_uid, instance, ""


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def index_dicoms(raw_dir: str | os.PathLike, workers: int = 0) -> DicomIndex:
    """Reads the headers (not the pixels) of every DICOM-like file under ``raw_dir``.

    Args:
        raw_dir: the raw-data folder; its ``csv/`` subfolder and hidden entries are ignored,
            as are files whose extension is not ``.dcm``/``.dicom``/``.dic`` or empty.
        workers: processes for :func:`mammocad.parallel.imap` (0 = all cores).

    Returns:
        The :class:`DicomIndex`: files grouped by SeriesInstanceUID, plus skip rows for files
        that are not readable DICOM and for second copies of one SOPInstanceUID.
    """
    raw_dir = Path(raw_dir)
    paths = _candidate_files(raw_dir)
    entries: dict[str, list[tuple[int, str, Path]]] = {}
    skipped: list[dict[str, str]] = []
    seen_sop: dict[str, Path] = {}
    results = imap(_index_one, paths, workers=workers, desc="index DICOM headers", unit="file")
    for path, series_uid, sop_uid, instance, reason in results:
        if reason:
            skipped.append({"file": _rel(path, raw_dir), "image_id": "", "reason": reason})
            continue
        if sop_uid and sop_uid in seen_sop:
            first = _rel(seen_sop[sop_uid], raw_dir)
            skipped.append(
                {
                    "file": _rel(path, raw_dir),
                    "image_id": "",
                    "reason": f"duplicate SOPInstanceUID of {first}",
                }
            )
            continue
        if sop_uid:
            seen_sop[sop_uid] = path
        entries.setdefault(series_uid, []).append((instance, path.as_posix(), path))
    series = {uid: [p for _, _, p in sorted(items)] for uid, items in entries.items()}
    log.info(
        "indexed %d DICOM files in %d series under %s (%d unreadable or duplicate)",
        sum(len(v) for v in series.values()),
        len(series),
        raw_dir,
        len(skipped),
    )
    return DicomIndex(series=series, skipped=skipped)
