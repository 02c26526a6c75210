"""Lossless JPEG (ITU-T T.81 process 14, SOF3) decoding, lenient enough for DDSM's files.

The stream is parsed here (:func:`decode_ljpeg`), tolerating what the PVRG files of DDSM
(:mod:`mammocad.sources.ddsm`) lack or get wrong (no SOI or EOI, a missing SOF when the
``.ics`` gives the frame, trailing bytes), and rebuilt as a canonical SOF3 stream. pylibjpeg-libjpeg (already a
dependency, for JPEG-Lossless DICOM) decodes it; a vectorised pure-numpy decoder
(Huffman symbols by table look-up on 16-bit windows, predictors 1-7 by cumulative sums) is
the fallback and the reference. A libjpeg result is accepted only if re-coding its
residuals with the file's Huffman table yields exactly the scan's length: libjpeg returns
garbage instead of an error for a truncated scan. The ``.ics`` rows and columns override
the stream header: some PVRG headers hold the two transposed (noted by ``aaalgo/ljpeg``),
and the decoded sequence is then reshaped to the ``.ics`` frame, as the original tool
chain (``jpeg -d`` output read with the ``.ics`` size) did.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class LjpegError(ValueError):
    """An LJPEG stream that cannot be decoded, with the reason."""


@dataclass
class _Stream:
    """The parts of a lossless JPEG stream needed to decode it."""

    precision: int = 0
    height: int = 0
    width: int = 0
    components: int = 0
    has_sof: bool = False
    tables: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # id → (counts, vals)
    restart: int = 0
    table_id: int = 0
    predictor: int = 0
    point_transform: int = 0
    scan: bytes = b""  # the entropy-coded bytes as stored (stuffing and RSTn kept)
    dnl_height: int = 0


_SOF_OTHER = {0xC0, 0xC1, 0xC2, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _segment(data: bytes, pos: int, name: str) -> tuple[bytes, int]:
    """The payload of the marker segment whose length field starts at ``pos``."""
    if pos + 2 > len(data):
        raise LjpegError(f"stream ends inside the {name} segment")
    length = int.from_bytes(data[pos : pos + 2], "big")
    if length < 2 or pos + length > len(data):
        raise LjpegError(f"{name} segment length {length} runs past the end of the stream")
    return data[pos + 2 : pos + length], pos + length


def _scan_end(data: bytes, pos: int) -> int:
    """Index of the marker ending the entropy-coded data that starts at ``pos``."""
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= len(data):
            return len(data)
        nxt = data[i + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
            pos = i + 2  # stuffed byte or restart marker: still inside the scan
        elif nxt == 0xFF:
            pos = i + 1  # fill byte before a marker
        else:
            return i


def _parse_stream(data: bytes) -> _Stream:
    """Parses markers up to the first scan's entropy-coded data, leniently."""
    stream = _Stream()
    pos = 0
    n = len(data)
    while pos < n:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            break
        marker = data[i + 1]
        pos = i + 2
        if marker in (0xFF, 0x00, 0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            if marker == 0xFF:
                pos = i + 1
            continue
        if marker == 0xD9:
            break
        if marker == 0xC3:
            payload, pos = _segment(data, pos, "SOF3")
            if len(payload) < 6:
                raise LjpegError("SOF3 segment too short")
            stream.precision = payload[0]
            stream.height = int.from_bytes(payload[1:3], "big")
            stream.width = int.from_bytes(payload[3:5], "big")
            stream.components = payload[5]
            stream.has_sof = True
        elif marker in _SOF_OTHER:
            raise LjpegError(f"not a lossless JPEG: SOF marker 0xFF{marker:02X}")
        elif marker == 0xC4:
            payload, pos = _segment(data, pos, "DHT")
            k = 0
            while k < len(payload):
                if k + 17 > len(payload):
                    raise LjpegError("DHT segment too short")
                ident = payload[k] & 0x0F
                counts = payload[k + 1 : k + 17]
                total = sum(counts)
                values = payload[k + 17 : k + 17 + total]
                if len(values) < total:
                    raise LjpegError("DHT segment too short for its code counts")
                if payload[k] >> 4 == 0:  # DC tables are the lossless ones
                    stream.tables[ident] = (bytes(counts), bytes(values))
                k += 17 + total
        elif marker == 0xDD:
            payload, pos = _segment(data, pos, "DRI")
            stream.restart = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
        elif marker == 0xDA:
            payload, pos = _segment(data, pos, "SOS")
            if len(payload) < 6 or payload[0] != 1:
                count = payload[0] if payload else 0
                raise LjpegError(f"scans with {count} components are not supported")
            stream.table_id = payload[2] >> 4
            stream.predictor = payload[3]
            stream.point_transform = payload[5] & 0x0F
            end = _scan_end(data, pos)
            stream.scan = data[pos:end]
            # A height of 0 in the SOF is given by a DNL marker after the scan.
            if end + 6 <= n and data[end + 1] == 0xDC:
                stream.dnl_height = int.from_bytes(data[end + 4 : end + 6], "big")
            break
        else:
            # APPn, COM, DQT, DNL and other segments with a length field.
            _, pos = _segment(data, pos, f"0xFF{marker:02X}")
    return stream


def _huffman_lut(counts: bytes, values: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Per 16-bit window: the code length (0 = no code) and the symbol (T.81 Annex C)."""
    lengths = np.zeros(1 << 16, dtype=np.uint8)
    symbols = np.zeros(1 << 16, dtype=np.uint8)
    code = 0
    k = 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            if code >= 1 << length:
                raise LjpegError("invalid Huffman table: too many codes of one length")
            lo, hi = code << (16 - length), (code + 1) << (16 - length)
            value = values[k]
            if value > 16:
                raise LjpegError(f"invalid lossless Huffman symbol {value} (> 16)")
            lengths[lo:hi] = length
            symbols[lo:hi] = value
            k += 1
            code += 1
        code <<= 1
    return lengths, symbols


def _code_lengths(counts: bytes, values: bytes) -> np.ndarray:
    """Code length per difference category 0..16 (0 where the table has no code)."""
    out = np.zeros(17, dtype=np.int64)
    k = 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            if values[k] <= 16:
                out[values[k]] = length
            k += 1
    return out


def _split_scan(scan: bytes) -> list[bytes]:
    """Entropy-coded segments between restart markers, with byte stuffing removed."""
    parts = re.split(rb"\xff[\xd0-\xd7]", scan)
    return [p.replace(b"\xff\x00", b"\xff") for p in parts]


#: Bytes of entropy-coded data handled per vectorised step (bounded memory).
_CHUNK_BYTES = 1 << 18


def _decode_symbols(
    data: bytes, lengths: np.ndarray, symbols: np.ndarray, count: int
) -> np.ndarray:
    """Decodes ``count`` lossless differences from one entropy-coded segment.

    Every bit position gets its 16-bit window, hence (by table look-up) the length of the
    code starting there plus its extra bits; only walking from one symbol start to the
    next is a Python loop, over plain integers.
    """
    nbits = len(data) * 8
    buf = np.frombuffer(data + b"\x00" * 8, dtype=np.uint8).astype(np.uint32)
    shifts = (8 - np.arange(8, dtype=np.uint32))[None, :]
    diffs = np.empty(count, dtype=np.int64)
    done = 0
    p = 0  # absolute bit position of the next symbol
    for first in range(0, len(data), _CHUNK_BYTES):
        if done >= count:
            break
        last = min(len(data), first + _CHUNK_BYTES)
        if p >= last * 8:
            continue
        # Windows for every bit of the chunk plus 32 bits of look-ahead (a symbol is at
        # most 16 code bits and 16 extra bits).
        stop = last + 5
        w24 = (
            (buf[first:stop] << 16) | (buf[first + 1 : stop + 1] << 8) | buf[first + 2 : stop + 2]
        )
        window = ((w24[:, None] >> shifts) & 0xFFFF).ravel()
        code = lengths[window]
        ssss = symbols[window]
        step = code.astype(np.int64) + np.where(ssss == 16, 0, ssss)
        step[code == 0] = 64  # an invalid code: jump out of the chunk, reported below
        jumps = step.tolist()
        base = first * 8
        limit = min(last * 8, nbits) - base
        q = p - base
        starts = []
        append = starts.append
        while q < limit:
            append(q)
            q += jumps[q]
        p = q + base
        if not starts:
            continue
        at = np.asarray(starts[: count - done], dtype=np.int64)
        c = code[at].astype(np.int64)
        if (c == 0).any():
            bad = int(at[np.argmax(c == 0)]) + base
            raise LjpegError(f"invalid Huffman code at bit {bad} of the scan")
        s = ssss[at].astype(np.int64)
        extra = window[at + c].astype(np.int64) >> np.clip(16 - s, 0, 16)
        half = np.left_shift(1, np.maximum(s - 1, 0))
        value = np.where(extra >= half, extra, extra - (np.left_shift(1, s) - 1))
        value = np.where(s == 0, 0, np.where(s == 16, 32768, value))
        ends = at + c + np.where(s == 16, 0, s) + base
        if ends[-1] > nbits:
            raise LjpegError("truncated scan: the data end inside a symbol")
        diffs[done : done + len(at)] = value
        done += len(at)
    if done < count:
        raise LjpegError(f"truncated scan: {done} of {count} pixels coded")
    return diffs


def _predict_rows(diffs: np.ndarray, predictor: int, initial: int) -> np.ndarray:
    """Reconstructs one restart interval (whole rows) from its differences (T.81 H.1.2).

    The first row uses ``initial`` then the left neighbour; every later row starts from
    the pixel above; the predictor applies elsewhere. Values are kept modulo 2**16.
    """
    rows, cols = diffs.shape
    out = np.empty((rows, cols), dtype=np.int64)
    out[0] = (initial + np.cumsum(diffs[0])) & 0xFFFF
    if rows == 1:
        return out
    first_col = (out[0, 0] + np.cumsum(diffs[1:, 0])) & 0xFFFF
    if predictor == 1:
        body = np.concatenate([first_col[:, None], diffs[1:, 1:]], axis=1)
        out[1:] = np.cumsum(body, axis=1) & 0xFFFF
        return out
    if predictor == 2:
        out[1:, 0] = first_col
        out[1:, 1:] = (out[0, 1:] + np.cumsum(diffs[1:, 1:], axis=0)) & 0xFFFF
        return out
    for r in range(1, rows):
        above = out[r - 1]
        d = diffs[r]
        row = out[r]
        row[0] = first_col[r - 1]
        if predictor == 3:
            row[1:] = (above[:-1] + d[1:]) & 0xFFFF
        elif predictor in (4, 5):
            slope = above[1:] - above[:-1]
            if predictor == 5:
                slope = slope >> 1
            row[1:] = (row[0] + np.cumsum(slope + d[1:])) & 0xFFFF
        elif predictor in (6, 7):
            # The halving involves the left neighbour: sequential within the row.
            up, dd = above.tolist(), d.tolist()
            left = int(row[0])
            values = row.tolist()
            six = predictor == 6
            for c in range(1, cols):
                px = up[c] + ((left - up[c - 1]) >> 1) if six else (left + up[c]) >> 1
                left = (px + dd[c]) & 0xFFFF
                values[c] = left
            row[:] = values
        else:
            raise LjpegError(f"lossless predictor {predictor} not in 1..7")
    return out


def _residuals(
    image: np.ndarray, predictor: int, initial: int, rows_per_interval: int
) -> np.ndarray:
    """Predictor residuals of a decoded image, signed, as the encoder computed them."""
    x = image.astype(np.int32)  # 16-bit values: every predictor fits in int32
    px = np.empty_like(x)
    px[:, 1:] = x[:, :-1]  # default Ra
    px[1:, 0] = x[:-1, 0]
    if predictor != 1:
        a, b, c = x[1:, :-1], x[:-1, 1:], x[:-1, :-1]
        pred = {
            2: b,
            3: c,
            4: a + b - c,
            5: a + ((b - c) >> 1),
            6: b + ((a - c) >> 1),
            7: (a + b) >> 1,
        }.get(predictor)
        if pred is None:
            raise LjpegError(f"lossless predictor {predictor} not in 1..7")
        px[1:, 1:] = pred
    for r in range(0, x.shape[0], rows_per_interval):
        px[r, 0] = initial
        px[r, 1:] = x[r, :-1]
    x -= px
    del px
    x &= 0xFFFF
    x[x >= 32768] -= 65536
    return x


#: SSSS difference category of a magnitude 0..32768 (T.81 Table H.2).
_CATEGORY = np.array([0] + [int(m).bit_length() for m in range(1, 32769)], dtype=np.uint8)


def _categories(residuals: np.ndarray) -> np.ndarray:
    """SSSS difference category of each residual (16 for -32768)."""
    return _CATEGORY[np.abs(residuals)]


def _rows_per_interval(stream: _Stream, height: int, width: int) -> int:
    if not stream.restart:
        return height
    if stream.restart % width:
        raise LjpegError(
            f"restart interval {stream.restart} is not a whole number of rows ({width} pixels)"
        )
    return stream.restart // width


def _canonical(stream: _Stream, height: int, width: int) -> bytes:
    """A standard SOF3 stream holding the parsed parts (for libjpeg)."""

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    sof = bytes([stream.precision]) + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    sof += bytes([1, 1, 0x11, 0])
    dht = b"".join(bytes([i]) + c + v for i, (c, v) in sorted(stream.tables.items()))
    out = b"\xff\xd8" + segment(0xC3, sof) + segment(0xC4, dht)
    if stream.restart:
        out += segment(0xDD, stream.restart.to_bytes(2, "big"))
    sos = bytes([1, 1, stream.table_id << 4, stream.predictor, 0, stream.point_transform])
    return out + segment(0xDA, sos) + stream.scan + b"\xff\xd9"


def _decode_python(stream: _Stream, height: int, width: int) -> np.ndarray:
    counts, values = stream.tables[stream.table_id]
    lengths, symbols = _huffman_lut(counts, values)
    per = _rows_per_interval(stream, height, width)
    parts = _split_scan(stream.scan)
    n_intervals = -(-height // per)
    if len(parts) < n_intervals:
        raise LjpegError(f"truncated scan: {len(parts)} of {n_intervals} restart intervals")
    initial = 1 << (stream.precision - stream.point_transform - 1)
    out = np.empty((height, width), dtype=np.int64)
    for k in range(n_intervals):
        r0, r1 = k * per, min(height, (k + 1) * per)
        diffs = _decode_symbols(parts[k], lengths, symbols, (r1 - r0) * width)
        out[r0:r1] = _predict_rows(diffs.reshape(r1 - r0, width), stream.predictor, initial)
    return out


def _decode_libjpeg(stream: _Stream, height: int, width: int) -> np.ndarray | None:
    """libjpeg's decode when its bit count matches the scan exactly, else None."""
    try:
        from libjpeg import decode as libjpeg_decode
    except ImportError:  # pragma: no cover - a dependency of the project
        return None
    if stream.point_transform or stream.predictor not in range(1, 8):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = np.asarray(libjpeg_decode(_canonical(stream, height, width)))
    except Exception as exc:  # any failure means: use the reference decoder
        log.debug("libjpeg could not decode the stream (%s)", exc)
        return None
    if image.shape != (height, width):
        return None
    # libjpeg fills a truncated scan with made-up pixels instead of failing; re-coding the
    # residuals must use exactly the bits the scan holds (up to 7 padding bits each).
    counts, values = stream.tables[stream.table_id]
    code = _code_lengths(counts, values)
    per = _rows_per_interval(stream, height, width)
    initial = 1 << (stream.precision - 1)
    cat = _categories(_residuals(image, stream.predictor, initial, per))
    # Bits per category: its code plus as many extra bits (none for category 16).
    cost = code + np.where(np.arange(17) == 16, 0, np.arange(17))
    cost[code == 0] = -(1 << 40)  # a category the table cannot code: fails the check
    parts = _split_scan(stream.scan)
    for k, r0 in enumerate(range(0, height, per)):
        used = int(np.bincount(cat[r0 : r0 + per].ravel(), minlength=17) @ cost)
        have = len(parts[k]) * 8 if k < len(parts) else 0
        if not have - 8 < used <= have:
            return None
    return image


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
