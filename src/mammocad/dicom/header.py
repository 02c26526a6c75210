"""DICOM headers: reading them, checking a file is a usable mammogram, the fields safe to output.

Privacy: only the fields named in :data:`SAFE_FIELDS` may leave this package in outputs.
``PatientID`` is read so callers can check a file against its case-description row, but
it is not in :data:`SAFE_FIELDS`; names, birth dates, accession numbers and institutions
are never read into the returned objects at all.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

#: Header fields that may be written to outputs (manifest, logs, metrics). Everything else a
#: DICOM file holds is treated as potentially identifying and stays inside this package.
SAFE_FIELDS: tuple[str, ...] = (
    "series_uid",
    "sop_uid",
    "modality",
    "series_description",
    "body_part",
    "rows",
    "columns",
    "photometric",
    "bits_allocated",
    "bits_stored",
    "pixel_representation",
    "samples_per_pixel",
    "number_of_frames",
    "instance_number",
    "transfer_syntax",
)

#: SeriesDescription words that mark a Secondary Capture without Modality as mammographic.
_MAMMO_DESCRIPTION = re.compile(r"mammo|\broi\b|crop|mask", re.IGNORECASE)
_GREYSCALE = ("MONOCHROME1", "MONOCHROME2")


class SkipImage(Exception):
    """A file that cannot be used as a mammogram, with a one-line ``reason``."""

    def __init__(self, reason: str) -> None:
        reason = " ".join(str(reason).split())  # one line, whatever the cause text held
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class HeaderInfo:
    """Header fields of one DICOM file needed to index, join and check it.

    ``patient_id`` is the only field not in :data:`SAFE_FIELDS`: use it for checks, never
    write it out.
    """

    series_uid: str
    sop_uid: str
    patient_id: str
    modality: str
    series_description: str
    rows: int
    columns: int
    photometric: str
    bits_stored: int
    samples_per_pixel: int
    bits_allocated: int = 0
    pixel_representation: int = 0
    number_of_frames: int = 1
    instance_number: int | None = None
    body_part: str = ""
    transfer_syntax: str = ""

    def safe_dict(self) -> dict[str, Any]:
        """Returns only the :data:`SAFE_FIELDS`, the part that may reach an output."""
        full = asdict(self)
        return {name: full[name] for name in SAFE_FIELDS}


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword, None)
        return default if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return default


def _str(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, None)
    except Exception:  # a malformed element reads as absent
        return ""
    return "" if value is None else " ".join(str(value).split())


def _set_transfer_syntax(ds: Dataset) -> None:
    """Records the encoding a bare dataset was parsed with, which decoding needs."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _dcmread(path: str | os.PathLike, stop_before_pixels: bool) -> Dataset:
    """Reads a dataset; files without the 128-byte preamble are retried leniently."""
    with warnings.catch_warnings():
        # pydicom warns about every odd element; the checks below decide what matters.
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            # pydicom's message advises force=True, no help to a reader of skipped.csv.
            # Some archives write bare datasets without preamble; accept one only if it
            # parses to something with the UIDs a DICOM image must have.
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
                if "SOPInstanceUID" in ds and "SeriesInstanceUID" in ds:
                    _set_transfer_syntax(ds)
                    return ds
            except Exception:  # reported as "not a DICOM file" below
                pass
            if os.path.getsize(path) == 0:
                raise SkipImage("not a DICOM file: empty file") from None
            raise SkipImage("not a DICOM file: no 'DICM' preamble or file meta header") from None
        except SkipImage:
            raise
        except Exception as exc:  # any parse failure means unusable file
            raise SkipImage(f"not a DICOM file: {_one_line(exc)}") from None


def _header(ds: Dataset) -> HeaderInfo:
    try:
        series_uid = _str(ds, "SeriesInstanceUID")
        sop_uid = _str(ds, "SOPInstanceUID")
        if not series_uid:
            raise SkipImage("not a DICOM image: no SeriesInstanceUID (truncated or not an image)")
        file_meta = getattr(ds, "file_meta", None)
        transfer = ""
        if file_meta is not None and "TransferSyntaxUID" in file_meta:
            transfer = str(file_meta.TransferSyntaxUID)
        instance = _int(ds, "InstanceNumber", -1)
        return HeaderInfo(
            series_uid=series_uid,
            sop_uid=sop_uid,
            patient_id=_str(ds, "PatientID"),
            modality=_str(ds, "Modality").upper(),
            series_description=_str(ds, "SeriesDescription"),
            rows=_int(ds, "Rows", 0),
            columns=_int(ds, "Columns", 0),
            photometric=_str(ds, "PhotometricInterpretation").upper(),
            bits_stored=_int(ds, "BitsStored", 0),
            samples_per_pixel=_int(ds, "SamplesPerPixel", 1),
            bits_allocated=_int(ds, "BitsAllocated", 0),
            pixel_representation=_int(ds, "PixelRepresentation", 0),
            number_of_frames=_int(ds, "NumberOfFrames", 1),
            instance_number=None if instance < 0 else instance,
            body_part=_str(ds, "BodyPartExamined").upper(),
            transfer_syntax=transfer,
        )
    except SkipImage:
        raise
    except Exception as exc:  # malformed header elements
        raise SkipImage(f"unreadable DICOM header: {_one_line(exc)}") from None


def read_header_dataset(path: str | os.PathLike) -> tuple[HeaderInfo, Dataset]:
    """Reads the header of a DICOM file without its pixel data, with the dataset itself.

    For callers that must look at more than :class:`HeaderInfo` holds (e.g. whether the
    file carries identifying fields, :func:`mammocad.deid.identifying_fields`).

    Raises:
        SkipImage: as :func:`read_header`.
    """
    ds = _dcmread(path, stop_before_pixels=True)
    return _header(ds), ds


def read_header(path: str | os.PathLike) -> HeaderInfo:
    """Reads the header of a DICOM file without its pixel data.

    Args:
        path: the file.

    Returns:
        The file's :class:`HeaderInfo`.

    Raises:
        SkipImage: ``not a DICOM file: …`` when the file cannot be parsed as DICOM, or
            ``not a DICOM image: no SeriesInstanceUID``.
    """
    return _header(_dcmread(path, stop_before_pixels=True))


def check_mammogram(header: HeaderInfo) -> None:
    """Raises :class:`SkipImage` unless the header describes a mammographic image.

    Accepted: Modality ``MG``; or a Secondary Capture without Modality (or ``OT``) whose
    BodyPartExamined is ``BREAST`` or whose SeriesDescription names a mammogram, ROI, crop
    or mask (how CBIS-DDSM-like exports label their series).
    """
    modality = header.modality
    if modality == "MG":
        return
    if modality in ("", "OT") and (
        header.body_part == "BREAST" or _MAMMO_DESCRIPTION.search(header.series_description)
    ):
        return
    raise SkipImage(f"not a mammogram: modality {modality or 'missing'}")


def check_greyscale_2d(header: HeaderInfo) -> None:
    """Raises :class:`SkipImage` for colour images and multi-frame volumes."""
    if header.samples_per_pixel != 1 or header.photometric not in _GREYSCALE:
        raise SkipImage(
            f"not greyscale: SamplesPerPixel {header.samples_per_pixel}, "
            f"PhotometricInterpretation {header.photometric or 'missing'}"
        )
    if header.number_of_frames > 1:
        raise SkipImage(f"multi-frame volume: {header.number_of_frames} frames")
