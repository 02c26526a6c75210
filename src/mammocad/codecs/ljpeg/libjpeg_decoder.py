"""libjpeg's decode, accepted only when re-coding its residuals fills the scan exactly."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from mammocad.codecs.ljpeg.stream import (
    LjpegError,
    _canonical,
    _rows_per_interval,
    _split_scan,
    _Stream,
)

log = logging.getLogger(__name__)


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
