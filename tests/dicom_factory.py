"""Builders for tiny DICOM files and CBIS-DDSM-format trees used by the tests.

Independent of the synthetic data source so the reader is tested against files whose every
tag the test controls.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    SecondaryCaptureImageStorage,
    generate_uid,
)

_counter = itertools.count(1)

CSV_COLUMNS = {
    "mass": [
        "patient_id",
        "breast_density",
        "left or right breast",
        "image view",
        "abnormality id",
        "abnormality type",
        "mass shape",
        "mass margins",
        "assessment",
        "pathology",
        "subtlety",
        "image file path",
        "cropped image file path",
        "ROI mask file path",
    ],
    "calc": [
        "patient_id",
        "breast density",
        "left or right breast",
        "image view",
        "abnormality id",
        "abnormality type",
        "calc type",
        "calc distribution",
        "assessment",
        "pathology",
        "subtlety",
        "image file path",
        "cropped image file path",
        "ROI mask file path",
    ],
}


def uid() -> str:
    """A fresh DICOM UID."""
    return generate_uid(prefix="1.2.826.0.1.3680043.10.1234.")


def make_dataset(
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    modality: str | None = "MG",
    series_uid: str | None = None,
    patient_id: str = "TEST_PATIENT",
    patient_name: str = "SECRET^NAME",
    birth_date: str = "19450317",
    series_description: str = "full mammogram images",
    body_part: str | None = "BREAST",
    instance_number: int = 1,
    **extra: object,
) -> FileDataset:
    """A Secondary Capture dataset holding ``pixels`` uncompressed (explicit VR LE).

    ``pixels`` may be uint8/uint16/int16 (2-D) or uint8 (H, W, 3) for RGB. ``extra`` sets
    further keywords (``RescaleSlope=2`` …).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid()
    ds.SeriesInstanceUID = series_uid or uid()
    if modality is not None:
        ds.Modality = modality
    ds.SeriesDescription = series_description
    if body_part is not None:
        ds.BodyPartExamined = body_part
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = birth_date
    ds.AccessionNumber = "SECRETACC1"
    ds.InstitutionName = "SECRET HOSPITAL"
    ds.InstanceNumber = instance_number
    colour = pixels.ndim == 3
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def save(ds: FileDataset, path: str | os.PathLike) -> Path:
    """Writes ``ds`` as a DICOM file (creating folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# --- a minimal lossless JPEG (ITU-T T.81 process 14, selection value 1) encoder ----------
# Neither pydicom nor the pylibjpeg plugins encode lossless JPEG, and real archives hold
# such files, so the tests make their own to check the decode path with exact pixels.


def _ssss(diff: int) -> int:
    return 0 if diff == 0 else int(abs(diff)).bit_length()


def encode_jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """Encodes a 2-D unsigned array as a baseline lossless JPEG (SOF3, predictor 1).

    Every difference category 0..16 gets a 5-bit Huffman code, which is valid if not
    compact; the tiny test images make the size irrelevant.
    """
    rows, cols = pixels.shape
    img = pixels.astype(np.int64)
    pred = np.empty_like(img)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = img[0, :-1]  # first row: left neighbour
    pred[1:, 0] = img[:-1, 0]  # first column: pixel above
    pred[1:, 1:] = img[1:, :-1]  # predictor 1 (Ra) elsewhere
    diffs = ((img - pred) % 65536).ravel()
    diffs = np.where(diffs >= 32768, diffs - 65536, diffs)

    bits: list[str] = []
    for d in diffs.tolist():
        cat = 16 if d == -32768 else _ssss(d)
        bits.append(format(cat, "05b"))
        if 0 < cat < 16:
            extra = d if d >= 0 else d + (1 << cat) - 1
            bits.append(format(extra, f"0{cat}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad with 1-bits per F.1.2.3
    data = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i : i + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    sof = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
    sof += bytes([1, 1, 0x11, 0])
    counts = [0] * 16
    counts[4] = 17  # 17 codes of length 5
    dht = bytes([0x00]) + bytes(counts) + bytes(range(17))
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # Ns=1, Cs=1, Td=0, Ss=predictor 1, Se=0, Ah/Al=0
    return (
        b"\xff\xd8"
        + segment(0xC3, sof)
        + segment(0xC4, dht)
        + segment(0xDA, sos)
        + bytes(data)
        + b"\xff\xd9"
    )


def to_jpeg_lossless(ds: FileDataset, pixels: np.ndarray) -> FileDataset:
    """Re-encodes ``ds`` in place as JPEG Lossless SV1 holding ``pixels``."""
    frame = encode_jpeg_lossless(pixels, int(ds.BitsStored))
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    return ds


# --- CBIS-DDSM-format trees -----------------------------------------------------------------


def csv_path(subject: str, study_uid: str, series_uid: str, index: int = 0) -> str:
    """A path as the case-description CSVs spell it."""
    return f"{subject}/{study_uid}/{series_uid}/{index:06d}.dcm"


def nbia_dir(raw: Path, subject: str, description: str) -> Path:
    """A folder named the way the NBIA retriever names series folders."""
    n = next(_counter)
    return raw / "CBIS-DDSM" / subject / f"07-20-2016-DDSM-{n:05d}" / f"1.000000-{description}-{n}"


def write_case_csv(raw: Path, kind: str, split: str, rows: list[dict]) -> Path:
    """Writes ``raw/csv/<kind>_case_description_<split>_set.csv`` with real column names."""
    path = raw / "csv" / f"{kind}_case_description_{split}_set.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=CSV_COLUMNS[kind]).to_csv(path, index=False)
    return path
