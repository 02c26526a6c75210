"""Binary PGM (netpbm ``P5``) images, 8- or 16-bit, as mini-MIAS stores its films."""

from __future__ import annotations

import numpy as np


class PgmError(ValueError):
    """A file is not a usable 8-bit binary PGM."""


def read_pgm(data: bytes) -> np.ndarray:
    """Decodes an 8-bit binary PGM (``P5``, maxval at most 255) into a ``uint8`` array.

    The header (magic, width, height, maxval, with ``#`` comments) ends with one whitespace
    byte before the raster; bytes after the raster are ignored (the format allows several
    images in one file).

    Raises:
        PgmError: with a one-line reason for anything else.
    """
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if pos >= len(data):
            raise PgmError("truncated PGM header")
        if data[pos : pos + 1] == b"#":
            end = data.find(b"\n", pos)
            pos = len(data) if end < 0 else end + 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        tokens.append(data[start:pos])
        if tokens[0] != b"P5":
            raise PgmError(f"not a binary PGM: magic {tokens[0][:8]!r}, expected b'P5'")
    try:
        width, height, maxval = (int(t) for t in tokens[1:])
    except ValueError:
        raise PgmError(f"bad PGM header values {[t[:8] for t in tokens[1:]]}") from None
    if width < 1 or height < 1:
        raise PgmError(f"bad PGM size {width}x{height}")
    if not 1 <= maxval <= 255:
        raise PgmError(f"PGM maxval {maxval}: expected an 8-bit image (maxval 1..255)")
    pos += 1  # the single whitespace byte that ends the header
    need = width * height
    if len(data) - pos < need:
        raise PgmError(f"truncated PGM: {max(len(data) - pos, 0)} of {need} pixel bytes")
    pixels = np.frombuffer(data, dtype=np.uint8, count=need, offset=pos).reshape(height, width)
    if maxval < 255 and int(pixels.max()) > maxval:
        raise PgmError(f"PGM pixel value {int(pixels.max())} above maxval {maxval}")
    return pixels.copy()
