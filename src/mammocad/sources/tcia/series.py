"""The series list of a collection: which ``getSeries`` records are chosen (abnormality
type, patients) and the NBIA-retriever-like folder each one is installed in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_PATIENT = re.compile(r"P_(\d+)", re.IGNORECASE)
_PREFIX = {"mass": "mass-", "calc": "calc-"}
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9 ._()+,=-]")


@dataclass(frozen=True)
class SeriesInfo:
    """One series of ``getSeries``, with the folder it is installed in.

    Attributes:
        uid: SeriesInstanceUID.
        patient_id: the subject (``Mass-Training_P_00001_LEFT_CC``, ROI series ``…_1``).
        image_count: ``ImageCount``, or None where the server did not say.
        file_size: ``FileSize`` in bytes (all files of the series), or None.
        folder: install folder relative to ``out_dir`` (POSIX separators).
    """

    uid: str
    patient_id: str
    image_count: int | None
    file_size: int | None
    folder: str


def patient_number(patient_id: str) -> int | None:
    """The patient number of a CBIS-DDSM subject, e.g. ``Calc-Test_P_00038_LEFT_CC_1`` → 38."""
    m = _PATIENT.search(patient_id)
    return int(m.group(1)) if m else None


def select_series(
    records: Iterable[dict[str, Any]], abnormality: str = "all", max_patients: int = 0
) -> list[dict[str, Any]]:
    """Picks the ``getSeries`` records of the wanted abnormality type and patients.

    Args:
        records: ``getSeries`` JSON objects (``SeriesInstanceUID``, ``PatientID``, …).
        abnormality: ``all``, ``mass`` (PatientID ``Mass-…``) or ``calc`` (``Calc-…``).
        max_patients: ``0`` for all, else the N lowest patient numbers among the series of
            that type; a patient's full-image and ROI series (``…_1``, ``…_2``) all count
            as one patient, and the same number in mass and calc subjects is one patient.

    Returns:
        The chosen records, sorted by SeriesInstanceUID, duplicates dropped.
    """
    chosen: dict[str, dict[str, Any]] = {}
    for rec in records:
        subject = str(rec.get("PatientID", ""))
        if abnormality != "all" and not subject.lower().startswith(_PREFIX[abnormality]):
            continue
        chosen.setdefault(str(rec["SeriesInstanceUID"]), rec)
    if max_patients:
        numbers = {patient_number(str(r.get("PatientID", ""))) for r in chosen.values()}
        unnumbered = sum(
            1 for r in chosen.values() if patient_number(str(r.get("PatientID", ""))) is None
        )
        if unnumbered:
            log.warning("%d series have no P_nnnnn patient number; left out", unnumbered)
        keep = set(sorted(n for n in numbers if n is not None)[:max_patients])
        chosen = {
            uid: r
            for uid, r in chosen.items()
            if patient_number(str(r.get("PatientID", ""))) in keep
        }
    return [chosen[uid] for uid in sorted(chosen)]


def _safe_component(text: str, fallback: str) -> str:
    """A path component from server text: no separators, no ``..``, bounded length."""
    clean = _UNSAFE_CHARS.sub("_", text).strip(" .")[:120]
    return clean if clean and clean not in (".", "..") else fallback


def _study_folder(rec: dict[str, Any]) -> str:
    """NBIA retriever-like study folder, e.g. ``08-07-2016-DDSM-74994``."""
    uid = str(rec.get("StudyInstanceUID", "") or "")
    date = re.search(r"(\d{4})-?(\d{2})-?(\d{2})", str(rec.get("StudyDate", "") or ""))
    parts = [f"{date[2]}-{date[3]}-{date[1]}"] if date else []
    parts.append(str(rec.get("StudyDescription") or rec.get("StudyDesc") or "DDSM"))
    parts.append(uid[-5:] if uid else "NA")
    return _safe_component("-".join(parts), "study")


def _series_folder(rec: dict[str, Any]) -> str:
    """NBIA retriever-like series folder, e.g. ``1.000000-full mammogram images-24515``."""
    try:
        number = f"{float(rec.get('SeriesNumber', 1)):.6f}"
    except (TypeError, ValueError):
        number = "1.000000"
    description = str(rec.get("SeriesDescription", "") or "series")
    uid = str(rec["SeriesInstanceUID"])
    return _safe_component(f"{number}-{description}-{uid[-5:]}", uid)


def _to_int(value: Any) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def plan_series(records: Iterable[dict[str, Any]], collection: str) -> list[SeriesInfo]:
    """Assigns each chosen series its install folder below ``out_dir``.

    Folders follow the NBIA retriever
    (``<collection>/<PatientID>/<study folder>/<series folder>``); two series that would
    share one get the full SeriesInstanceUID appended.
    """
    out: list[SeriesInfo] = []
    used: set[str] = set()
    root = _safe_component(collection, "collection")
    for rec in records:
        uid = str(rec["SeriesInstanceUID"])
        subject = _safe_component(str(rec.get("PatientID", "")), "unknown-subject")
        folder = f"{root}/{subject}/{_study_folder(rec)}/{_series_folder(rec)}"
        if folder in used:
            folder = f"{folder}-{_safe_component(uid, 'series')}"
        used.add(folder)
        out.append(
            SeriesInfo(
                uid=uid,
                patient_id=str(rec.get("PatientID", "")),
                image_count=_to_int(rec.get("ImageCount")),
                file_size=_to_int(rec.get("FileSize")),
                folder=folder,
            )
        )
    return out
