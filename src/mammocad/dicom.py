"""Reading mammography DICOM files into 16-bit greyscale arrays.

The pipeline works on one consistent representation (paper §3.1 feeds CBIS-DDSM images to
the models; §3.2 enhances them): a 2-D ``uint16`` array whose full range ``0..65535`` is
used whatever the stored bit depth, with bright meaning dense tissue. :func:`read_pixels`
produces it from any greyscale DICOM, in the order the DICOM display pipeline prescribes
(PS3.4 N.2): stored values → Modality LUT (RescaleSlope/Intercept) → VOI LUT or window →
MONOCHROME1 inversion.

VOI decision: a VOI LUT (``VOILUTSequence``) or window (``WindowCenter``/``WindowWidth``),
when present, is applied (``apply_voi=True``, the default), because it is how the producer
says the image is meant to be seen; "for presentation" mammograms depend on it. Its output
is stretched to ``0..65535``. Without VOI, the range of values the stored bits can hold
(after the modality LUT) is mapped linearly onto ``0..65535``: 8-bit data is multiplied by
257, 12-bit data by 65535/4095, signed data is shifted by ``2**(BitsStored-1)`` first, and
16-bit unsigned data is unchanged. CBIS-DDSM files carry neither a VOI nor a rescale, so for
them the pixels pass through untouched.

Anything that is not a usable single-frame greyscale mammogram raises :class:`SkipImage`
with a one-line reason; no pydicom or numpy exception escapes for a bad file.

Privacy: only the fields named in :data:`SAFE_FIELDS` may leave this module in outputs.
``PatientID`` is read so callers can check a file against its case-description row, but
it is not in :data:`SAFE_FIELDS`; names, birth dates, accession numbers and institutions
are never read into the returned objects at all.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_windowing
from pydicom.pixels import apply_voi as apply_voi_sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

log = logging.getLogger(__name__)

UINT16_MAX = 65535

#: Header fields that may be written to outputs (manifest, logs, metrics). Everything else a
#: DICOM file holds is treated as potentially identifying and stays inside this module.
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


@dataclass(frozen=True)
class DicomImage:
    """Decoded pixels of one greyscale DICOM image.

    Attributes:
        pixels: 2-D ``uint16`` array using the full ``0..65535`` range, bright = dense.
        bits_stored: the file's ``BitsStored`` (precision before mapping to 16 bits).
        header: the file's :class:`HeaderInfo`.
        voi_applied: whether a VOI LUT or window shaped ``pixels``.
    """

    pixels: np.ndarray
    bits_stored: int
    header: HeaderInfo
    voi_applied: bool = False


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


def decode_array(ds: Dataset) -> np.ndarray:
    """Decodes the stored pixel values, whatever the transfer syntax.

    Compressed syntaxes (RLE Lossless, JPEG Lossless, JPEG-LS, JPEG 2000) are decoded by
    pydicom's own decoders or the installed pylibjpeg plugins.

    Raises:
        SkipImage: ``no pixel data`` or ``undecodable pixel data: …`` (truncated data, a
            missing decoder, a corrupt stream).
    """
    if "PixelData" not in ds:
        raise SkipImage("no pixel data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:  # every decoder failure means unusable file
        raise SkipImage(f"undecodable pixel data: {_one_line(exc)}") from None
    return arr


def _stored_range(header: HeaderInfo) -> tuple[int, int]:
    bits = header.bits_stored or header.bits_allocated or 16
    if header.pixel_representation == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _modality_range(ds: Dataset, lo: int, hi: int) -> tuple[float, float]:
    """The interval the modality LUT maps the stored range ``[lo, hi]`` onto."""
    if ds.get("ModalityLUTSequence"):
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    ends = np.asarray(apply_modality_lut(np.array([lo, hi]), ds), dtype=np.float64)
    return float(ends.min()), float(ends.max())


def _stretch(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Maps ``[lo, hi]`` linearly onto ``0..65535``, rounding to nearest and clipping."""
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint16)
    if arr.dtype.kind in "iu" and lo == 0 and hi == UINT16_MAX:
        # The common 16-bit unsigned case is an identity: skip the float round trip.
        if arr.dtype == np.uint16:
            return arr
        return np.clip(arr, 0, UINT16_MAX).astype(np.uint16)
    out = (arr.astype(np.float64) - lo) * (UINT16_MAX / (hi - lo))
    np.rint(out, out=out)
    np.clip(out, 0, UINT16_MAX, out=out)
    return out.astype(np.uint16)


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Applies the first VOI LUT or window, returning ``uint16`` or None when absent."""
    item = ds.VOILUTSequence[0] if ds.get("VOILUTSequence") else None
    if item is not None and "LUTDescriptor" in item and "LUTData" in item:
        depth = int(item.LUTDescriptor[2])
        # A LUT indexes with integers; rescaled values are floats.
        index = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values
        out = apply_voi_sequence(index, ds, 0)
        return _stretch(out, 0, 2**depth - 1)
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        # A fresh 16-bit unsigned context makes pydicom's window output span 0..65535
        # directly (it derives the output range from BitsStored and any rescale).
        ctx = Dataset()
        ctx.BitsStored = 16
        ctx.PixelRepresentation = 0
        ctx.PhotometricInterpretation = "MONOCHROME2"  # inversion is done afterwards
        ctx.WindowCenter = ds.WindowCenter
        ctx.WindowWidth = ds.WindowWidth
        if "VOILUTFunction" in ds:
            ctx.VOILUTFunction = ds.VOILUTFunction
        out = apply_windowing(np.asarray(values, dtype=np.float64), ctx, 0)
        return _stretch(out, 0, UINT16_MAX)
    return None


def to_uint16(
    arr: np.ndarray, ds: Dataset, header: HeaderInfo, apply_voi: bool = True
) -> tuple[np.ndarray, bool]:
    """Maps decoded stored values to the pipeline's ``uint16`` representation.

    Order per PS3.4 N.2: modality LUT, then VOI (when present and ``apply_voi``), then
    MONOCHROME1 inversion.

    Returns:
        ``(pixels, voi_applied)``.
    """
    lo, hi = _stored_range(header)
    stored = arr
    if arr.dtype.kind in "iu" and (arr.min() < lo or arr.max() > hi):
        # Junk above the stored bits would otherwise wrap around after stretching.
        stored = np.clip(arr, lo, hi)
    values = apply_modality_lut(stored, ds)
    out: np.ndarray | None = None
    if apply_voi:
        try:
            out = _apply_voi(values, ds)
        except Exception as exc:  # a broken window must not lose the image
            log.warning("ignoring unusable VOI LUT/window (%s); using the full range", exc)
            out = None
    voi_applied = out is not None
    if out is None:
        out = _stretch(values, *_modality_range(ds, lo, hi))
    if header.photometric == "MONOCHROME1":
        # MONOCHROME1 shows low values bright; invert so bright always means dense.
        out = UINT16_MAX - out
    return out, voi_applied


def read_pixels(
    path: str | os.PathLike, expect_mammogram: bool = True, apply_voi: bool = True
) -> DicomImage:
    """Reads one DICOM file as a 2-D ``uint16`` image (see the module notes).

    Args:
        path: the DICOM file.
        expect_mammogram: refuse non-mammographic modalities (CT, MR, US, …).
        apply_voi: apply a VOI LUT / window when the file has one.

    Returns:
        The decoded :class:`DicomImage`.

    Raises:
        SkipImage: with one of the reasons ``not a DICOM file: …``, ``no pixel data``,
            ``not a mammogram: modality …``, ``not greyscale: …``,
            ``multi-frame volume: …``, ``undecodable pixel data: …``.
    """
    ds = _dcmread(path, stop_before_pixels=False)
    try:
        header = _header(ds)
    except SkipImage:
        # pydicom returns an empty dataset when encapsulated pixel data is cut short;
        # an intact header then means the pixel data, not the file type, is the problem.
        try:
            read_header(path)
        except SkipImage:
            raise
        raise SkipImage("undecodable pixel data: file ends inside the pixel data") from None
    if "PixelData" not in ds:
        raise SkipImage("no pixel data")
    if expect_mammogram:
        check_mammogram(header)
    check_greyscale_2d(header)
    arr = decode_array(ds)
    if arr.ndim != 2:
        raise SkipImage(f"undecodable pixel data: expected a 2-D frame, got shape {arr.shape}")
    try:
        pixels, voi_applied = to_uint16(arr, ds, header, apply_voi=apply_voi)
    except SkipImage:
        raise
    except Exception as exc:  # e.g. a malformed modality LUT
        raise SkipImage(f"undecodable pixel data: {_one_line(exc)}") from None
    bits = header.bits_stored or header.bits_allocated
    return DicomImage(pixels=pixels, bits_stored=bits, header=header, voi_applied=voi_applied)
