"""Decoding DICOM pixel data into the pipeline's 16-bit greyscale representation.

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
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_windowing
from pydicom.pixels import apply_voi as apply_voi_sequence

from mammocad.dicom.header import (
    HeaderInfo,
    SkipImage,
    _dcmread,
    _header,
    _one_line,
    check_greyscale_2d,
    check_mammogram,
    read_header,
)

log = logging.getLogger("mammocad.dicom")  # the package's logger, named in the log lines

UINT16_MAX = 65535


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
