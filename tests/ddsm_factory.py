"""Builders for tiny DDSM case folders (.ics, .LJPEG, .OVERLAY) used by the tests.

The LJPEG streams come from the lossless JPEG encoder of ``dicom_factory`` (predictor 1);
:func:`encode_lossless` adds the other predictors and restart intervals, written from
T.81 Annex H independently of the decoder under test. :func:`pvrg_variant` re-creates the
deviations of the PVRG-written DDSM files the decoder must accept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dicom_factory import encode_jpeg_lossless

VIEWS = ("LEFT_CC", "LEFT_MLO", "RIGHT_CC", "RIGHT_MLO")


def _residuals(
    img: np.ndarray, precision: int, predictor: int, restart_rows: int, pt: int = 0
) -> list[int]:
    """Differences in coding order, per T.81 H.1.2.1 (plain Python, tiny images)."""
    rows, cols = img.shape
    x = (img.astype(np.int64) >> pt).tolist()
    out = []
    per = restart_rows or rows
    for r in range(rows):
        first_row = r % per == 0
        for c in range(cols):
            if first_row:
                px = (1 << (precision - pt - 1)) if c == 0 else x[r][c - 1]
            elif c == 0:
                px = x[r - 1][0]
            else:
                ra, rb, rc = x[r][c - 1], x[r - 1][c], x[r - 1][c - 1]
                px = {
                    1: ra,
                    2: rb,
                    3: rc,
                    4: ra + rb - rc,
                    5: ra + ((rb - rc) >> 1),
                    6: rb + ((ra - rc) >> 1),
                    7: (ra + rb) >> 1,
                }[predictor]
            d = (x[r][c] - px) % 65536
            out.append(d - 65536 if d >= 32768 else d)
    return out


def encode_lossless(
    pixels: np.ndarray,
    precision: int,
    predictor: int = 1,
    restart_rows: int = 0,
    point_transform: int = 0,
) -> bytes:
    """A lossless JPEG (SOF3) of ``pixels`` with any predictor, restarts, point transform.

    Predictor 1 without restarts or point transform is ``dicom_factory``'s encoder itself.
    Every difference category gets a 5-bit code, as there. A point transform drops the
    low bits (they must be zero for a lossless round trip).
    """
    if predictor == 1 and not restart_rows and not point_transform:
        return encode_jpeg_lossless(pixels, precision)
    rows, cols = pixels.shape
    diffs = _residuals(pixels, precision, predictor, restart_rows, point_transform)
    per = (restart_rows or rows) * cols
    scan = bytearray()
    for k, start in enumerate(range(0, len(diffs), per)):
        bits = []
        for d in diffs[start : start + per]:
            cat = 16 if d == -32768 else (0 if d == 0 else abs(d).bit_length())
            bits.append(format(cat, "05b"))
            if 0 < cat < 16:
                bits.append(format(d if d >= 0 else d + (1 << cat) - 1, f"0{cat}b"))
        stream = "".join(bits)
        stream += "1" * (-len(stream) % 8)
        for i in range(0, len(stream), 8):
            byte = int(stream[i : i + 8], 2)
            scan.append(byte)
            if byte == 0xFF:
                scan.append(0x00)
        if start + per < len(diffs):
            scan += bytes([0xFF, 0xD0 + k % 8])

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    sof = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
    sof += bytes([1, 1, 0x11, 0])
    counts = [0] * 16
    counts[4] = 17
    dht = bytes([0x00]) + bytes(counts) + bytes(range(17))
    dri = segment(0xDD, (restart_rows * cols).to_bytes(2, "big")) if restart_rows else b""
    sos = bytes([1, 1, 0x00, predictor, 0, point_transform])
    return (
        b"\xff\xd8"
        + segment(0xC3, sof)
        + segment(0xC4, dht)
        + dri
        + segment(0xDA, sos)
        + bytes(scan)
        + b"\xff\xd9"
    )


def pvrg_variant(
    stream: bytes,
    *,
    drop_soi: bool = False,
    drop_eoi: bool = False,
    drop_sof: bool = False,
    add_comment: bool = False,
    trailing: bytes = b"",
) -> bytes:
    """A stream altered the ways real DDSM files are (missing markers, extra bytes).

    Files whose header holds the frame transposed are made by encoding the transposed
    frame itself (see the test using it).
    """
    out = bytearray(stream)
    sof = out.index(b"\xff\xc3")
    if drop_sof:
        length = int.from_bytes(out[sof + 2 : sof + 4], "big")
        del out[sof : sof + 2 + length]
    if add_comment:
        text = b"PVRG lossless"
        out[2:2] = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    if drop_eoi:
        assert out[-2:] == b"\xff\xd9"
        del out[-2:]
    if drop_soi:
        del out[:2]
    return bytes(out) + trailing


def ics_text(
    filename: str,
    images: dict[str, tuple[int, int, int, bool]],
    *,
    date: str = "2 7 1995",
    age: int | None = 42,
    density: int | None = 3,
    digitizer: str = "LUMISYS LASER",
) -> str:
    """An .ics file; ``images``: view → (lines, pixels per line, bits, overlay)."""
    lines = ["ics_version 1.0", f"filename {filename}", f"DATE_OF_STUDY {date}"]
    if age is not None:
        lines.append(f"PATIENT_AGE {age}")
    lines += ["FILM", "FILM_TYPE REGULAR"]
    if density is not None:
        lines.append(f"DENSITY {density}")
    lines += ["DATE_DIGITIZED 7 22 1997", f"DIGITIZER {digitizer}", "SELECTED", "SEQUENCE"]
    for view, (rows, cols, bits, overlay) in images.items():
        flag = "OVERLAY" if overlay else "NON_OVERLAY"
        lines.append(
            f"{view} LINES {rows} PIXELS_PER_LINE {cols} BITS_PER_PIXEL {bits} "
            f"RESOLUTION 50 {flag}"
        )
    return "\n".join(lines) + "\n"


def square_chain(side: int) -> list[int]:
    """Chain code of the outline of a ``side``-pixel square, clockwise from its top-left."""
    n = side - 1
    return [2] * n + [4] * n + [6] * n + [0] * n


def chain_line(start_col: int, start_row: int, codes: list[int]) -> str:
    return " ".join(str(v) for v in [start_col, start_row, *codes]) + " #"


def abnormality_text(
    number: int,
    lesion: str,
    pathology: str,
    outlines: list[tuple[str, int, int, list[int]]],
    assessment: int = 4,
    subtlety: int = 3,
) -> str:
    """One ABNORMALITY block; ``outlines``: (BOUNDARY|CORE, start col, start row, codes)."""
    lines = [
        f"ABNORMALITY {number}",
        f"LESION_TYPE {lesion}",
        f"ASSESSMENT {assessment}",
        f"SUBTLETY {subtlety}",
        f"PATHOLOGY {pathology}",
        f"TOTAL_OUTLINES {len(outlines)}",
    ]
    for kind, col, row, codes in outlines:
        lines += [kind, chain_line(col, row, codes)]
    return "\n".join(lines)


def overlay_text(blocks: list[str]) -> str:
    return f"TOTAL_ABNORMALITIES {len(blocks)}\n" + "\n".join(blocks) + "\n"


def smooth_image(rows: int, cols: int, bits: int, seed: int) -> np.ndarray:
    """A smooth gradient with noise over most of the ``bits`` range (never binary)."""
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    yy, xx = np.mgrid[0:rows, 0:cols]
    base = 0.2 + 0.6 * (xx / max(cols - 1, 1)) * (0.5 + 0.5 * yy / max(rows - 1, 1))
    noisy = base * top + rng.normal(0, top * 0.02, (rows, cols))
    return np.clip(np.rint(noisy), 0, top).astype(np.uint16)


def write_case(
    folder: Path,
    filename: str,
    images: dict[str, np.ndarray],
    bits: int = 12,
    overlays: dict[str, str] | None = None,
    streams: dict[str, bytes] | None = None,
    **ics: object,
) -> Path:
    """Writes a case folder: ``<filename>.ics`` and per view its LJPEG (and overlay).

    Args:
        folder: the case folder (created).
        filename: the .ics name with dashes (``A-0001-1``); images use underscores.
        images: view → pixels (encoded with ``bits`` precision).
        bits: BITS_PER_PIXEL and the LJPEG precision.
        overlays: view → overlay text; those views are flagged OVERLAY.
        streams: view → bytes to write instead of the encoded image (corrupt files).
        **ics: passed to :func:`ics_text`.

    Returns:
        The .ics path.
    """
    overlays = overlays or {}
    streams = streams or {}
    folder.mkdir(parents=True, exist_ok=True)
    stem = filename.replace("-", "_")
    spec = {view: (*px.shape, bits, view in overlays) for view, px in images.items()}
    ics_path = folder / f"{filename}.ics"
    ics_path.write_text(ics_text(filename, spec, **ics))  # type: ignore[arg-type]
    for view, pixels in images.items():
        data = streams.get(view)
        if data is None:
            data = encode_lossless(pixels, bits)
        (folder / f"{stem}.{view}.LJPEG").write_bytes(data)
    for view, text in overlays.items():
        (folder / f"{stem}.{view}.OVERLAY").write_text(text)
    return ics_path
