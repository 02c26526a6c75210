"""DDSM ``.OVERLAY`` files: abnormality blocks, their chain-coded outlines, and the
masks those outlines fill.

The format and the chain-code directions are described in :mod:`mammocad.sources.ddsm`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mammocad.sources.ddsm.ics import _int_or_none

#: Chain-code direction → (column step, row step); 0 is north, clockwise.
CHAIN_STEPS: dict[int, tuple[int, int]] = {
    0: (0, -1),
    1: (1, -1),
    2: (1, 0),
    3: (1, 1),
    4: (0, 1),
    5: (-1, 1),
    6: (-1, 0),
    7: (-1, -1),
}
_DX = np.array([CHAIN_STEPS[k][0] for k in range(8)], dtype=np.int64)
_DY = np.array([CHAIN_STEPS[k][1] for k in range(8)], dtype=np.int64)


@dataclass(frozen=True)
class LesionType:
    """One ``LESION_TYPE`` line.

    Attributes:
        kind: ``mass`` or ``calcification`` (CBIS-DDSM's ``abnormality type``), else the
            raw type in lower case (``other`` …).
        shape: mass SHAPE or calcification TYPE (CBIS-DDSM vocabulary, ``NA`` if absent).
        margins: mass MARGINS or calcification DISTRIBUTION (``NA`` if absent).
        raw: the line after ``LESION_TYPE``.
    """

    kind: str
    shape: str
    margins: str
    raw: str


@dataclass(frozen=True)
class Outline:
    """One chain-coded outline.

    Attributes:
        kind: ``BOUNDARY`` (the lesion's outline) or ``CORE`` (an inner outline).
        start_col: column of the first pixel.
        start_row: row of the first pixel.
        codes: directions 0-7 (0 north, clockwise; see :data:`CHAIN_STEPS`).
    """

    kind: str
    start_col: int
    start_row: int
    codes: tuple[int, ...]


@dataclass(frozen=True)
class Abnormality:
    """One ``ABNORMALITY`` block of an overlay.

    Attributes:
        number: the ``ABNORMALITY`` number (1-based).
        lesion_types: every ``LESION_TYPE`` line, in file order.
        assessment: BI-RADS assessment, None when absent.
        subtlety: subtlety rating 1-5, None when absent.
        pathology: ``MALIGNANT``, ``BENIGN``, ``BENIGN_WITHOUT_CALLBACK``, ``UNPROVEN`` …
            (upper case, as written).
        total_outlines: the ``TOTAL_OUTLINES`` value (may disagree with ``outlines``).
        outlines: the outlines in file order.
    """

    number: int
    lesion_types: tuple[LesionType, ...]
    assessment: int | None
    subtlety: int | None
    pathology: str
    total_outlines: int | None
    outlines: tuple[Outline, ...]

    @property
    def kind(self) -> str:
        """The first lesion type's kind (``""`` when there is none)."""
        return self.lesion_types[0].kind if self.lesion_types else ""

    @property
    def boundaries(self) -> tuple[Outline, ...]:
        """The ``BOUNDARY`` outlines (the first outline when none is so labelled)."""
        found = tuple(o for o in self.outlines if o.kind == "BOUNDARY")
        return found or self.outlines[:1]


def _cbis_term(tokens: list[str]) -> str:
    """A descriptor in CBIS-DDSM spelling: upper case, ``N/A`` or nothing → ``NA``."""
    value = "_".join(t.upper() for t in tokens)
    return "NA" if value in ("", "N/A", "NONE") else value


def _lesion_type(tokens: list[str]) -> LesionType:
    raw = " ".join(tokens)
    if not tokens:
        return LesionType(kind="", shape="NA", margins="NA", raw=raw)
    name = tokens[0].upper()
    keys = {"MASS": ("SHAPE", "MARGINS"), "CALCIFICATION": ("TYPE", "DISTRIBUTION")}
    first, second = keys.get(name, ("SHAPE", "MARGINS"))
    values: dict[str, list[str]] = {}
    current = None
    for token in tokens[1:]:
        if token.upper() in (first, second):
            current = token.upper()
            values.setdefault(current, [])
        elif current is not None:
            values[current].append(token)
    kind = {"MASS": "mass", "CALCIFICATION": "calcification"}.get(name, name.lower())
    return LesionType(
        kind=kind,
        shape=_cbis_term(values.get(first, [])),
        margins=_cbis_term(values.get(second, [])),
        raw=raw,
    )


def parse_overlay(path: str | os.PathLike) -> list[Abnormality]:
    """Parses a DDSM ``.OVERLAY`` file into its abnormalities.

    Blocks start at ``ABNORMALITY n``; inside, ``LESION_TYPE`` (repeatable),
    ``ASSESSMENT``, ``SUBTLETY``, ``PATHOLOGY`` and ``TOTAL_OUTLINES`` lines, then
    ``BOUNDARY``/``CORE`` keywords each followed by a chain code
    ``start_col start_row d1 d2 ... #`` (which may wrap over lines).

    Args:
        path: the overlay file.

    Returns:
        The abnormalities in file order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file for a malformed chain code (a direction outside 0-7,
            a non-integer, a missing ``#`` or start point) or a line outside any block.
    """
    path = Path(path)
    tokens_by_line = [
        (n, line.split())
        for n, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1)
    ]
    blocks: list[dict[str, Any]] = []
    outline: dict[str, Any] | None = None  # the chain code being read
    for number, tokens in tokens_by_line:
        if not tokens:
            continue
        if outline is not None:
            for token in tokens:
                if token == "#":
                    blocks[-1]["outlines"].append(_finish_outline(path, outline))
                    outline = None
                    break
                outline["values"].append((number, token))
            continue
        key = tokens[0].upper()
        rest = tokens[1:]
        if key == "TOTAL_ABNORMALITIES":
            continue
        if key == "ABNORMALITY":
            blocks.append(
                {
                    "number": _int_or_none(rest[0]) if rest else None,
                    "lesion_types": [],
                    "assessment": None,
                    "subtlety": None,
                    "pathology": "",
                    "total_outlines": None,
                    "outlines": [],
                }
            )
            continue
        if not blocks:
            raise ValueError(f"{path} line {number}: {tokens[0]!r} before any ABNORMALITY")
        block = blocks[-1]
        if key == "LESION_TYPE":
            block["lesion_types"].append(_lesion_type(rest))
        elif key == "ASSESSMENT":
            block["assessment"] = _int_or_none(rest[0]) if rest else None
        elif key == "SUBTLETY":
            block["subtlety"] = _int_or_none(rest[0]) if rest else None
        elif key == "PATHOLOGY":
            block["pathology"] = "_".join(rest).upper()
        elif key == "TOTAL_OUTLINES":
            block["total_outlines"] = _int_or_none(rest[0]) if rest else None
        elif key in ("BOUNDARY", "CORE"):
            outline = {"kind": key, "line": number, "values": []}
            # A chain code may start on the keyword's own line.
            for token in rest:
                if token == "#":
                    block["outlines"].append(_finish_outline(path, outline))
                    outline = None
                    break
                outline["values"].append((number, token))
    if outline is not None:
        raise ValueError(
            f"{path} line {outline['line']}: {outline['kind']} chain code not ended by '#'"
        )
    abnormalities = []
    for i, block in enumerate(blocks, start=1):
        abnormalities.append(
            Abnormality(
                number=block["number"] if block["number"] is not None else i,
                lesion_types=tuple(block["lesion_types"]),
                assessment=block["assessment"],
                subtlety=block["subtlety"],
                pathology=block["pathology"],
                total_outlines=block["total_outlines"],
                outlines=tuple(block["outlines"]),
            )
        )
    return abnormalities


def _finish_outline(path: Path, outline: dict[str, Any]) -> Outline:
    values = []
    for number, token in outline["values"]:
        value = _int_or_none(token)
        if value is None:
            raise ValueError(f"{path} line {number}: chain code value {token!r} is not an int")
        values.append(value)
    if len(values) < 2:
        raise ValueError(f"{path} line {outline['line']}: chain code without a start point")
    codes = values[2:]
    bad = [c for c in codes if not 0 <= c <= 7]
    if bad:
        raise ValueError(f"{path} line {outline['line']}: chain code direction {bad[0]} not 0-7")
    return Outline(outline["kind"], values[0], values[1], tuple(codes))


def chain_to_points(start_col: int, start_row: int, codes: Any) -> tuple[np.ndarray, np.ndarray]:
    """The pixels a chain code visits, start included.

    Args:
        start_col: column of the first pixel.
        start_row: row of the first pixel.
        codes: directions 0-7 (0 north, clockwise; :data:`CHAIN_STEPS`).

    Returns:
        ``(cols, rows)``, two int64 arrays of ``len(codes) + 1`` entries.

    Raises:
        ValueError: for a direction outside 0-7.
    """
    steps = np.asarray(codes, dtype=np.int64).ravel()
    if steps.size and (steps.min() < 0 or steps.max() > 7):
        raise ValueError(f"chain code directions must be 0-7, got {sorted(set(steps.tolist()))}")
    cols = np.concatenate([[start_col], start_col + np.cumsum(_DX[steps])]).astype(np.int64)
    rows = np.concatenate([[start_row], start_row + np.cumsum(_DY[steps])]).astype(np.int64)
    return cols, rows


def chain_to_mask(
    start_col: int, start_row: int, codes: Any, shape: tuple[int, int]
) -> np.ndarray:
    """Fills the polygon a chain code traces (outline pixels included).

    The outline is closed from its last pixel back to its first; pixels outside
    ``shape`` are clipped (a few DDSM outlines run over the image edge).

    Args:
        start_col: column of the first pixel.
        start_row: row of the first pixel.
        codes: directions 0-7 (0 north, clockwise; :data:`CHAIN_STEPS`).
        shape: ``(rows, cols)`` of the mask.

    Returns:
        A ``bool`` array of ``shape``, True inside and on the outline.
    """
    cols, rows = chain_to_points(start_col, start_row, codes)
    mask = np.zeros(shape, dtype=np.uint8)
    points = np.stack([cols, rows], axis=1).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(mask, [points], 1)
    # fillPoly leaves out some outline pixels of non-convex shapes; draw them explicitly.
    cv2.polylines(mask, [points], True, 1)
    return mask.astype(bool)


def abnormality_mask(abnormality: Abnormality, shape: tuple[int, int]) -> np.ndarray:
    """Union of an abnormality's BOUNDARY outlines, filled, as a ``bool`` mask."""
    mask = np.zeros(shape, dtype=bool)
    for outline in abnormality.boundaries:
        mask |= chain_to_mask(outline.start_col, outline.start_row, outline.codes, shape)
    return mask
