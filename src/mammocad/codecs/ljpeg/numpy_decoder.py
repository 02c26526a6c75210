"""The vectorised pure-numpy decoder: Huffman symbols by table look-up, predictors by sums."""

from __future__ import annotations

import numpy as np

from mammocad.codecs.ljpeg.stream import LjpegError, _rows_per_interval, _split_scan, _Stream


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
