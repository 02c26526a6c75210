"""The series the case descriptions name, linked into ``data/raw``, and what is missing."""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom

from mammocad.convert import MISSING_SERIES
from mammocad.deid import deidentify
from mammocad.errors import InputError
from mammocad.io import write_csv
from mammocad.progress import progress
from mammocad.sources.retriever.index import Entry

log = logging.getLogger(__name__)

#: Lists written into data/raw (``convert`` reads the first).
MISSING_NAME = MISSING_SERIES
SKIPPED_NAME = "root_skipped.csv"
MISSING_COLUMNS = ("series_uid", "subject", "role", "reason")
SKIPPED_COLUMNS = ("file", "series_uid", "reason")

UNKNOWN_SERIES = "SeriesInstanceUID not named by the case descriptions"


def _subject(path: str) -> str:
    return path.replace("\\", "/").strip().split("/")[0]


def needed_series(table: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """SeriesInstanceUID → (subject, role) of every series the case descriptions name."""
    needed: dict[str, tuple[str, str]] = {}
    for role, uid_col, path_col in (
        ("full", "full_series_uid", "image_file_path"),
        ("crop", "crop_series_uid", "cropped_image_file_path"),
        ("mask", "mask_series_uid", "roi_mask_file_path"),
    ):
        for uid, path in zip(table[uid_col], table[path_col], strict=True):
            if uid and uid not in needed:
                needed[uid] = (_subject(path), role)
    return needed


def _pick(entries: list[Entry]) -> Entry:
    """Of files claiming one SOPInstanceUID, the complete one, then the larger, then the
    first by path: a truncated second copy must not replace a good file."""
    return min(entries, key=lambda e: (not e.complete, -e.size, e.path))


class Linker:
    """Puts files into data/raw: hard link, else symbolic link, else copy; cleaned copies
    for files with identifying fields. Remembers a method that failed so as not to retry
    it for every file (a hard link across file systems fails every time)."""

    METHODS = ("hardlink", "symlink", "copy")

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._failed: set[str] = set()

    def install(self, src: Path, dst: Path, identifying: bool) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if identifying:
            ds = pydicom.dcmread(src)
            deidentify(ds)
            ds.save_as(dst, enforce_file_format=False)
            self.counts["deidentified_copy"] += 1
            return
        for method in self.METHODS:
            if method in self._failed:
                continue
            try:
                if method == "hardlink":
                    os.link(src, dst)
                elif method == "symlink":
                    os.symlink(src, dst)
                else:
                    shutil.copy2(src, dst)
            except OSError as err:
                if method == "copy":
                    raise
                log.info("%s not possible into data/raw (%s); trying the next way", method, err)
                self._failed.add(method)
                continue
            self.counts[method] += 1
            return


def _missing_reason(
    uid: str, metadata: dict[str, dict[str, str]], entries: dict[str, Entry]
) -> str:
    where = metadata.get(uid, {}).get("location", "")
    if not where:
        return "no file under the root has this SeriesInstanceUID"
    inside = [e for p, e in entries.items() if p == where or p.startswith(where + "/")]
    if not inside:
        return f"metadata.csv lists it at {where}, which holds no DICOM file (incomplete copy?)"
    bad = [e for e in inside if e.reason]
    if len(bad) == len(inside):
        return f"the files at {where} are unreadable: {bad[0].reason}"
    others = sorted({e.series_uid for e in inside if e.series_uid})
    return f"the files at {where} carry SeriesInstanceUID {', '.join(others[:2])}, not this one"


def link_series(
    out_dir: Path,
    root: Path,
    entries: dict[str, Entry],
    table: pd.DataFrame,
    metadata: dict[str, dict[str, str]],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    """Links the files of every series the case descriptions name into ``out_dir``.

    Writes ``missing_series.csv`` and ``root_skipped.csv`` (with ``skipped`` from the walk).

    Returns:
        The counts of the summary (see :func:`fetch_from_root`).

    Raises:
        InputError: if the root holds no readable DICOM file, or none of the named series.
    """
    skipped = list(skipped)
    unreadable = [e for e in entries.values() if e.reason]
    for e in unreadable:
        skipped.append({"file": e.path, "series_uid": "", "reason": e.reason})
    readable = [e for e in entries.values() if not e.reason]
    if not readable:
        example = f" (e.g. {unreadable[0].path}: {unreadable[0].reason})" if unreadable else ""
        raise InputError(
            f"data.cbis_ddsm.root {root} holds no readable DICOM file: {len(entries)} "
            f"candidate files{example}; point it at an NBIA Data Retriever download folder"
        )

    by_sop: dict[str, list[Entry]] = {}
    for e in readable:
        by_sop.setdefault(e.sop_uid or f"no-sop:{e.path}", []).append(e)
    kept: list[Entry] = []
    for group in by_sop.values():
        best = _pick(group)
        kept.append(best)
        for e in group:
            if e is not best:
                skipped.append(
                    {
                        "file": e.path,
                        "series_uid": e.series_uid,
                        "reason": f"duplicate SOPInstanceUID of {best.path} (kept: "
                        + ("complete, " if best.complete else "")
                        + f"{best.size} bytes against {e.size})",
                    }
                )
    series: dict[str, list[Entry]] = {}
    for e in kept:
        series.setdefault(e.series_uid, []).append(e)

    needed = needed_series(table)
    present = [uid for uid in needed if uid in series]
    extra = sorted(set(series) - set(needed))
    if not present:
        subjects = sorted({e.patient_id for e in readable if e.patient_id})[:3]
        collections = sorted({m["collection"] for m in metadata.values() if m["collection"]})
        raise InputError(
            f"none of the {len(series)} DICOM series under data.cbis_ddsm.root {root} is named "
            f"by the {len(needed)} series of the case descriptions (PatientIDs found: "
            f"{', '.join(subjects) or 'none'}"
            + (f"; metadata.csv collection: {', '.join(collections)}" if collections else "")
            + "): is it a CBIS-DDSM download?"
        )
    for uid in extra:
        for e in series[uid]:
            skipped.append({"file": e.path, "series_uid": uid, "reason": UNKNOWN_SERIES})

    linker = Linker()
    mismatched = 0
    files = sorted((e for uid in present for e in series[uid]), key=lambda e: e.path)
    bar = progress(total=sum(e.size for e in files), desc="link into data/raw", unit="B")
    try:
        for e in files:
            subject = needed[e.series_uid][0]
            # ROI subjects add "_<abnormality id>"; either is the file's own subject.
            if e.patient_id and not subject.startswith(e.patient_id):
                mismatched += 1
            linker.install(root / e.path, out_dir / e.path, e.identifying)
            bar.update(e.size)
    finally:
        bar.close()
    missing = [
        {
            "series_uid": uid,
            "subject": subject,
            "role": role,
            "reason": _missing_reason(uid, metadata, entries),
        }
        for uid, (subject, role) in needed.items()
        if uid not in series
    ]
    write_csv(out_dir / MISSING_NAME, pd.DataFrame(missing, columns=list(MISSING_COLUMNS)))
    write_csv(out_dir / SKIPPED_NAME, pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS)))

    checked = disagree = 0
    for uid in present:
        where = metadata.get(uid, {}).get("location", "")
        if where:
            checked += 1
            disagree += any(not e.path.startswith(where + "/") for e in series[uid])
    kinds = Counter(
        "duplicate"
        if s["reason"].startswith("duplicate SOPInstanceUID")
        else "unknown_series"
        if s["reason"] == UNKNOWN_SERIES
        else "unreadable"
        for s in skipped
    )
    return {
        "series_needed": len(needed),
        "series_linked": len(present),
        "series_missing": len(missing),
        "series_missing_fraction": round(len(missing) / len(needed), 6),
        "series_extra": len(extra),
        "files_extra": kinds["unknown_series"],
        "files_unreadable": kinds["unreadable"],
        "files_duplicate": kinds["duplicate"],
        "files_linked": len(files),
        "bytes_linked": sum(e.size for e in files),
        "link_methods": dict(sorted(linker.counts.items())),
        "patient_id_mismatches": mismatched,
        "metadata_series_checked": checked,
        "metadata_disagreements": disagree,
    }
