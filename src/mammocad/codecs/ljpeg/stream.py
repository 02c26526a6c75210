"""The LJPEG stream: markers parsed leniently, its restart intervals, a canonical SOF3 rebuild."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


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


def _split_scan(scan: bytes) -> list[bytes]:
    """Entropy-coded segments between restart markers, with byte stuffing removed."""
    parts = re.split(rb"\xff[\xd0-\xd7]", scan)
    return [p.replace(b"\xff\x00", b"\xff") for p in parts]


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
