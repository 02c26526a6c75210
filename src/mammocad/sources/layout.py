"""Writing the CBIS-DDSM layout of a TCIA download, which every source produces.

``convert`` reads one layout: ``csv/`` with the case-description files and DICOM series
below, joined by SeriesInstanceUID. Sources whose data come in another form (the synthetic
generator, mini-MIAS PGMs, DDSM LJPEGs, a user's PNGs) write it through these helpers;
sources that download it as it is link their download cache in (:func:`link_tree`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage

from mammocad.deid import deidentify, install_file
from mammocad.io import write_csv

#: The DICOM UID root of CBIS-DDSM; generated UIDs use it too.
UID_PREFIX = "1.3.6.1.4.1.9590.100.1.2."

_COMMON_HEAD = ["patient_id"]
_COMMON_MID = ["left or right breast", "image view", "abnormality id", "abnormality type"]
_COMMON_TAIL = [
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]
#: Column order of each case-description file, as in the real CBIS-DDSM CSVs.
COLUMNS: dict[str, list[str]] = {
    "mass": [*_COMMON_HEAD, "breast_density", *_COMMON_MID, "mass shape", "mass margins"]
    + _COMMON_TAIL,
    "calc": [*_COMMON_HEAD, "breast density", *_COMMON_MID, "calc type", "calc distribution"]
    + _COMMON_TAIL,
    "normal": [*_COMMON_HEAD, "breast_density", *_COMMON_MID] + _COMMON_TAIL,
}
#: Subject-folder prefix of each kind of finding (``Mass-Training_P_00001_LEFT_CC``).
KIND_PREFIX = {"mass": "Mass", "calcification": "Calc", "normal": "Normal"}
#: Case-description file stem of each kind of finding.
KIND_FILE = {"mass": "mass", "calcification": "calc", "normal": "normal"}
SPLIT_PREFIX = {"train": "Training", "test": "Test"}


def check_test_fraction(owner: str, value: object) -> None:
    """Raises ``ValueError`` naming ``<owner>.test_fraction`` unless it is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{owner}.test_fraction must be a number, got {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}.test_fraction must be in [0, 1), got {value}")


def make_uid(namespace: Any, *parts: str) -> str:
    """A deterministic DICOM UID (at most 64 characters) from a namespace and parts."""
    digest = hashlib.sha256("|".join([str(namespace), *parts]).encode()).digest()
    return UID_PREFIX + str(int.from_bytes(digest[:16], "big") or 1)[:39]


def subject_id(kind: str, split: str, patient_id: str, side: str, view: str) -> str:
    """The CBIS-DDSM subject of a full image, e.g. ``Mass-Training_P_00001_LEFT_CC``."""
    return f"{KIND_PREFIX[kind]}-{SPLIT_PREFIX[split]}_{patient_id}_{side}_{view}"


def csv_path(subject: str, study_uid: str, series_uid: str, index: int = 0) -> str:
    """A case-description path in the CBIS-DDSM convention."""
    return f"{subject}/{study_uid}/{series_uid}/{index:06d}.dcm"


def series_folder(description: str, series_uid: str) -> str:
    """NBIA retriever series folder, e.g. ``1.000000-full mammogram images-24515``."""
    return f"1.000000-{description}-{series_uid[-5:]}"


def write_secondary_capture(
    path: Path,
    pixels: np.ndarray,
    *,
    subject: str,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    description: str,
    side: str,
    view: str,
    instance: int,
    study_date: str = "",
    identifying: Mapping[str, str] | None = None,
) -> None:
    """Writes one uncompressed, de-identified Secondary Capture mammogram (8/16-bit MONOCHROME2).

    pydicom 3 takes the encoding from the Transfer Syntax UID alone.

    Args:
        path: file to write (parents are created).
        pixels: 2-D ``uint8`` or ``uint16`` array.
        subject: ``PatientID``, the subject folder name of the CSV path.
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID (the CSV path's second UID).
        sop_uid: SOPInstanceUID.
        description: SeriesDescription (``full mammogram images``, ``ROI mask images``).
        side: ``LEFT`` or ``RIGHT``.
        view: ``CC`` or ``MLO``.
        instance: InstanceNumber (``00000N.dcm`` in the CSV is instance ``N + 1``).
        study_date: StudyDate, ``YYYYMMDD`` or empty.
        identifying: extra header keywords (e.g. a fake ``PatientName``); the synthetic
            source plants them so that every run exercises the de-identification
            (:func:`mammocad.deid.deidentify`), which removes them before writing.
    """
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"{path}: expected a 2-D uint8/uint16 image, got {pixels.dtype} {pixels.shape}"
        )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ImplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = "120000"
    ds.Modality = "MG"
    ds.ConversionType = "WSD"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = description
    ds.PatientID = subject
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.SecondaryCaptureDeviceManufacturer = "mammocad"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "DDSM"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.PatientOrientation = view
    ds.Laterality = side[0]
    for keyword, value in (identifying or {}).items():
        setattr(ds, keyword, value)
    # Every file a source writes is de-identified here, so data/raw (a DVC output that
    # `dvc push` ships) never holds an identifying field, whatever the source was given.
    deidentify(ds)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in pixels.shape)
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    data = np.ascontiguousarray(pixels, dtype="<u2" if bits == 16 else np.uint8).tobytes()
    ds.PixelData = data + b"\0" if len(data) % 2 else data  # values have even length
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)


def case_frame(kind: str, rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows of one case-description file in its real column order.

    Args:
        kind: file stem, ``mass``, ``calc`` or ``normal``.
        rows: dicts keyed by the CSV's column names; a ``dataset`` key is kept as an
            extra last column.
    """
    rows = list(rows)
    columns = list(COLUMNS[kind])
    if any("dataset" in r for r in rows):
        columns.append("dataset")
    return pd.DataFrame(rows, columns=columns)


def write_case_csvs(
    out_dir: Path, rows: Mapping[tuple[str, str], Iterable[Mapping[str, Any]]]
) -> dict[str, int]:
    """Writes all six case-description files (header-only where a pair has no rows).

    Args:
        out_dir: the raw folder; files go to ``out_dir/csv``.
        rows: ``(kind file stem, split)`` → rows, e.g. ``("mass", "train")``.

    Returns:
        Rows written per file name.
    """
    counts = {}
    for kind in COLUMNS:
        for split in ("train", "test"):
            name = f"{kind}_case_description_{split}_set.csv"
            frame = case_frame(kind, rows.get((kind, split), ()))
            write_csv(Path(out_dir) / "csv" / name, frame)
            counts[name] = len(frame)
    return counts


def write_series(
    subject_dir: Path,
    namespace: str,
    subject: str,
    description: str,
    images: Iterable[np.ndarray],
    *,
    side: str,
    view: str,
    study_folder: Callable[[str], str],
    study_date: str = "",
) -> list[str]:
    """Writes one DICOM series (files ``1-1.dcm``, ``1-2.dcm``, …) of a subject.

    UIDs derive from ``namespace``, the subject and the description, so a rerun writes
    identical files. Image ``i`` gets InstanceNumber ``i + 1``, which is how the
    case-description path ``00000i.dcm`` points to it.

    Args:
        subject_dir: the subject's folder (``<root>/<subject>``).
        namespace: UID namespace, e.g. the dataset name.
        subject: the subject (PatientID), e.g. ``Mass-Training_MIAS_P_001_RIGHT_MLO``.
        description: SeriesDescription (``full mammogram images``, ``ROI mask images``).
        images: the series' images in instance order.
        side: ``LEFT`` or ``RIGHT``.
        view: ``CC`` or ``MLO`` (or empty when unknown).
        study_folder: maps the StudyInstanceUID to the study folder's name.
        study_date: StudyDate, ``YYYYMMDD`` or empty.

    Returns:
        The case-description path of each image.
    """
    study_uid = make_uid(namespace, subject, "study")
    series_uid = make_uid(namespace, subject, description)
    folder = subject_dir / study_folder(study_uid) / series_folder(description, series_uid)
    paths = []
    for i, image in enumerate(images):
        write_secondary_capture(
            folder / f"1-{i + 1}.dcm",
            image,
            subject=subject,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=make_uid(namespace, subject, description, str(i)),
            description=description,
            side=side,
            view=view,
            instance=i + 1,
            study_date=study_date,
        )
        paths.append(csv_path(subject, study_uid, series_uid, i))
    return paths


def link_tree(src: Path, dst: Path, counts: dict[str, int] | None = None) -> int:
    """Mirrors ``src`` into ``dst`` with hard links, de-identifying DICOM files on the way.

    Files holding identifying fields are written as clean copies
    (:func:`mammocad.deid.install_file`); the others are hard-linked (copied across file
    systems). ``src`` is never modified. Hidden entries (download state, partial files)
    are left out.

    Args:
        src: the download cache.
        dst: the raw-data folder.
        counts: when given, receives ``files_deidentified`` (clean copies written).

    Returns:
        The number of files linked or copied.
    """
    n = 0
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            if name.startswith(".") or name.endswith(".part"):
                continue
            cleaned = install_file(Path(root) / name, dst / rel / name)
            if counts is not None:
                counts["files_deidentified"] = counts.get("files_deidentified", 0) + cleaned
            n += 1
    return n
