"""Decoding a DDSM ``.LJPEG`` file (:func:`decode_ljpeg`): checks, backend choice, layout."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from mammocad.codecs.ljpeg.libjpeg_decoder import _decode_libjpeg
from mammocad.codecs.ljpeg.numpy_decoder import _decode_python
from mammocad.codecs.ljpeg.stream import LjpegError, _parse_stream

log = logging.getLogger(__name__)


def decode_ljpeg(
    path: str | os.PathLike, rows: int, cols: int, bits: int, backend: str = "auto"
) -> np.ndarray:
    """Decodes a DDSM ``.LJPEG`` image (lossless JPEG, T.81 process 14) to raw values.

    The stream is parsed leniently (see the module notes). The frame is decoded as the
    stream's header states it and the pixel sequence is then laid out as ``rows`` ×
    ``cols`` (the ``.ics`` frame), which is how the PVRG files with transposed header
    dimensions decode correctly. Without an SOF segment, the ``.ics`` frame and ``bits``
    are used to decode. Values are returned as decoded (no calibration, no scaling).

    Args:
        path: the ``.LJPEG`` file.
        rows: image rows (``LINES`` of the ``.ics``).
        cols: image columns (``PIXELS_PER_LINE``).
        bits: bit depth (``BITS_PER_PIXEL``); used for decoding only when the stream has
            no SOF segment.
        backend: ``auto`` (libjpeg, checked, else the numpy decoder), ``libjpeg`` or
            ``python``.

    Returns:
        A ``uint16`` array of shape ``(rows, cols)``.

    Raises:
        LjpegError: for a stream that cannot be decoded, with the reason (not lossless,
            no Huffman table, truncated scan, invalid code, pixel count not matching the
            ``.ics`` frame, or libjpeg refusing it with ``backend="libjpeg"``).
        OSError: if the file cannot be read.
    """
    if backend not in ("auto", "libjpeg", "python"):
        raise ValueError(f"backend must be auto, libjpeg or python, got {backend!r}")
    data = Path(path).read_bytes()
    stream = _parse_stream(data)
    if not stream.scan and not stream.tables and not stream.has_sof:
        raise LjpegError("no JPEG markers found: not a lossless JPEG stream")
    if not stream.has_sof:
        stream.precision, stream.height, stream.width = bits, rows, cols
        stream.components = 1
    if stream.components != 1:
        raise LjpegError(f"{stream.components} components; a mammogram has 1")
    if not 2 <= stream.precision <= 16:
        raise LjpegError(f"sample precision {stream.precision} not in 2..16")
    if stream.table_id not in stream.tables:
        raise LjpegError(f"no Huffman table {stream.table_id} (DHT segment missing)")
    if not stream.scan:
        raise LjpegError("no scan data (SOS segment missing or empty)")
    if not 1 <= stream.predictor <= 7:
        raise LjpegError(f"lossless predictor {stream.predictor} not in 1..7")
    if stream.point_transform >= stream.precision - 1:
        raise LjpegError(
            f"point transform {stream.point_transform} too large for precision {stream.precision}"
        )
    width = stream.width or cols
    height = stream.height or stream.dnl_height
    if not height:
        height = rows * cols // width if (rows * cols) % width == 0 else 0
    if height * width != rows * cols:
        raise LjpegError(
            f"stream frame {height}x{width} does not hold the .ics frame {rows}x{cols}"
        )
    image = None
    if backend in ("auto", "libjpeg"):
        image = _decode_libjpeg(stream, height, width)
        if image is None and backend == "libjpeg":
            raise LjpegError("libjpeg could not decode the stream consistently")
    if image is None:
        image = _decode_python(stream, height, width)
    if stream.point_transform:
        image = (image.astype(np.int64) << stream.point_transform) & 0xFFFF
    if (height, width) != (rows, cols):
        log.debug("%s: stream frame %dx%d laid out as %dx%d", path, height, width, rows, cols)
    return image.reshape(rows, cols).astype(np.uint16)
