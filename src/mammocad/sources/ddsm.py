"""The original DDSM (USF) as a raw-data source in the CBIS-DDSM layout.

CBIS-DDSM, the paper's data set (§3.1), is a curated subset of the Digital Database for
Screening Mammography (Heath et al., "The Digital Database for Screening Mammography",
Proc. IWDM 2000). This source reads a local copy of the original DDSM and writes the
layout every other source writes (:mod:`mammocad.sources.layout`), so ``convert`` and the
later stages run unchanged on it.

Where the files come from: USF published DDSM by FTP and HTTP, one folder per case below
``cases/<kind>s/<kind>_<nn>/`` (``normals/normal_01``, ``cancers/cancer_05``,
``benigns/benign_02``, ``benign_without_callbacks/benign_without_callback_01``), e.g.
``cases/benigns/benign_01/case0029/``. Nothing is downloaded here: ``root`` is a folder
holding such case folders at any depth (``cases/<volume>/<case>/`` works as well as the
full tree); every ``*.ics`` file below it is one case.

Files of a case (USF "case description" page; the same facts are relied on by the public
converters ``aaalgo/ljpeg``, ``trane293/DDSMUtility`` and ``multinormal/ddsm``):

* ``A-0001-1.ics``: text, one ``KEY value...`` per line: ``filename A-0001-1``,
  ``DATE_OF_STUDY 2 7 1995`` (month day year), ``PATIENT_AGE 42``, ``FILM_TYPE REGULAR``,
  ``DENSITY 3`` (ACR breast density), ``DATE_DIGITIZED 7 22 1997``, ``DIGITIZER LUMISYS
  LASER`` (or ``DBA 21``, ``HOWTEK ...``), then after ``SEQUENCE`` one line per image:
  ``LEFT_CC LINES 4696 PIXELS_PER_LINE 3024 BITS_PER_PIXEL 12 RESOLUTION 50 OVERLAY``
  (``NON_OVERLAY`` when the image has no outlined finding). LINES is the number of rows,
  PIXELS_PER_LINE the number of columns, RESOLUTION the pixel size in microns.
* ``A_0001_1.LEFT_CC.LJPEG`` (note the underscores): the image, a lossless JPEG (ITU-T T.81
  process 14, SOF3) written by the Stanford PVRG codec (``jpeg -d -s`` decodes it).
* ``A_0001_1.LEFT_CC.OVERLAY``: the outlined findings of that image::

      TOTAL_ABNORMALITIES 1
      ABNORMALITY 1
      LESION_TYPE MASS SHAPE IRREGULAR MARGINS SPICULATED
      ASSESSMENT 4
      SUBTLETY 3
      PATHOLOGY MALIGNANT
      TOTAL_OUTLINES 1
      BOUNDARY
      1420 2237 4 4 4 5 4 ... 0 0 #

  ``LESION_TYPE CALCIFICATION TYPE PLEOMORPHIC DISTRIBUTION CLUSTERED`` for
  calcifications; an abnormality may carry two ``LESION_TYPE`` lines (e.g. a calcification
  and an architectural distortion); descriptors use the BI-RADS terms of CBIS-DDSM, with
  ``N/A`` where CBIS-DDSM writes ``NA``. PATHOLOGY is ``MALIGNANT``, ``BENIGN``,
  ``BENIGN_WITHOUT_CALLBACK`` or ``UNPROVEN``. Each outline is a chain code: after the
  keyword ``BOUNDARY`` (the first outline, which contains the others) or ``CORE`` come the
  starting column and row, then one direction per step, then ``#``. Directions (USF case
  description page; the same table is used by the converters named above)::

      7 0 1        0 N (row - 1)     1 NE (col + 1, row - 1)   2 E (col + 1)
      6 X 2        3 SE (col + 1, row + 1)   4 S (row + 1)     5 SW (col - 1, row + 1)
      5 4 3        6 W (col - 1)     7 NW (col - 1, row - 1)

  ``TOTAL_OUTLINES`` is wrong in a few files, so outlines are read by keyword, not count.
  Normal cases have no overlay files.

Case names: folder names (``case0029``) repeat across volumes; the ``.ics`` name does not,
so a case is named by it with underscores (``A_0001_1``) and its patient id is
``DDSM_A_0001_1``.

Decoding (:func:`decode_ljpeg`): the stream is parsed here, tolerating what the PVRG
files lack or get wrong (no SOI or EOI, a missing SOF when the ``.ics`` gives the frame,
trailing bytes), and rebuilt as a canonical SOF3 stream. pylibjpeg-libjpeg (already a
dependency, for JPEG-Lossless DICOM) decodes it; a vectorised pure-numpy decoder
(Huffman symbols by table look-up on 16-bit windows, predictors 1-7 by cumulative sums) is
the fallback and the reference. A libjpeg result is accepted only if re-coding its
residuals with the file's Huffman table yields exactly the scan's length: libjpeg returns
garbage instead of an error for a truncated scan. The ``.ics`` rows and columns override
the stream header: some PVRG headers hold the two transposed (noted by ``aaalgo/ljpeg``),
and the decoded sequence is then reshaped to the ``.ics`` frame, as the original tool
chain (``jpeg -d`` output read with the ``.ics`` size) did.

Grey levels: the raw digital values are kept. Mapping them to optical density needs a
per-digitizer calibration (DBA, HOWTEK at MGH or ISMD, LUMISYS), published by USF; that is
out of scope here. For the pipeline's 16-bit representation (:mod:`mammocad.dicom`) the
``BITS_PER_PIXEL`` range is stretched linearly onto ``0..65535`` (12-bit values times
65535/4095), exactly as a 12-bit DICOM would be read; higher values mean denser tissue on
every DDSM digitizer, so no inversion is needed.

Output: per image a 16-bit "full mammogram images" series, and per usable abnormality one
"ROI mask images" series holding the crop (outline bounding box plus a margin) and the
binary mask (filled BOUNDARY outline, 0/255, full size); case-description rows with
``dataset`` = ``ddsm``. An image with mass and calcification findings is written once
under each subject (``Mass-…`` and ``Calc-…``), as CBIS-DDSM does. Images of cases without
any overlay (the DDSM normal volumes) are NORMAL; the unmarked breast of a case with
findings is not, as no follow-up verified it, and is skipped. UNPROVEN abnormalities,
unknown lesion types and undecodable images are skipped too, each with a reason (counted
in the summary, listed in ``ddsm_skipped.csv``). An outline that falls outside its image
leaves the image with its pathology but without ROI paths.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from mammocad.errors import InputNotFound, ParamsError
from mammocad.io import write_csv
from mammocad.parallel import imap
from mammocad.sources.layout import (
    KIND_FILE,
    check_test_fraction,
    subject_id,
    write_case_csvs,
    write_series,
)

log = logging.getLogger(__name__)

DATASET = "ddsm"
#: Columns of ``ddsm_skipped.csv`` and of the summary's ``skipped`` rows.
SKIPPED_COLUMNS = ("file", "case", "image", "reason")
#: At most this many skipped items are listed in the summary (all are in the CSV).
SUMMARY_SKIPS = 200
_VIEWS = {"LEFT_CC", "LEFT_MLO", "RIGHT_CC", "RIGHT_MLO"}
_PATHOLOGIES = {"MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK"}
_PATHOLOGY_RANK = {"NORMAL": 0, "BENIGN_WITHOUT_CALLBACK": 1, "BENIGN": 1, "MALIGNANT": 2}
#: Crop = outline bounding box widened by this share of its side on every side (and at
#: least ``_CROP_MIN_MARGIN`` pixels), clipped to the image.
_CROP_MARGIN = 0.1
_CROP_MIN_MARGIN = 4
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


# --------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class DdsmConfig:
    """The ``data.ddsm`` params section.

    Attributes:
        root: local folder holding DDSM case folders (each with its ``.ics``, ``.LJPEG``
            and ``.OVERLAY`` files) at any depth, e.g. a copy of USF's ``cases/`` tree.
            Nothing is downloaded.
        test_fraction: share of cases (patients) put in the ``*_test_set`` files, drawn
            with the run's seed within each case class (normal, benign, malignant).
    """

    root: str = ""
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.root, str):
            raise ValueError(f"DdsmConfig.root must be a string, got {self.root!r}")
        check_test_fraction("DdsmConfig", self.test_fraction)


# --------------------------------------------------------------------------------------
# .ics files


@dataclass(frozen=True)
class IcsImage:
    """One image line of an ``.ics`` file.

    Attributes:
        view: ``LEFT_CC``, ``LEFT_MLO``, ``RIGHT_CC`` or ``RIGHT_MLO``.
        lines: rows of the image.
        pixels_per_line: columns of the image.
        bits_per_pixel: bit depth of the digital values (12 or 16).
        resolution: pixel size in microns (None when absent).
        overlay: whether the line says ``OVERLAY`` (an outlined finding exists).
    """

    view: str
    lines: int
    pixels_per_line: int
    bits_per_pixel: int
    resolution: float | None
    overlay: bool


@dataclass(frozen=True)
class IcsInfo:
    """What a case's ``.ics`` file says.

    Attributes:
        filename: the ``filename`` value (``A-0001-1``), or the file stem when absent.
        case_name: ``filename`` with underscores (``A_0001_1``), the prefix of the image
            files and the unique case name.
        patient_age: age in years, None when absent.
        date_of_study: ``YYYYMMDD`` or ``""`` when absent or unparseable.
        density: ACR breast density 1-4, None when absent.
        digitizer: e.g. ``LUMISYS LASER`` (which calibration the values need).
        film_type: e.g. ``REGULAR``.
        images: view → :class:`IcsImage`, in file order.
    """

    filename: str
    case_name: str
    patient_age: int | None
    date_of_study: str
    density: int | None
    digitizer: str
    film_type: str
    images: dict[str, IcsImage] = field(default_factory=dict)


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _ics_date(tokens: list[str]) -> str:
    """``['2', '7', '1995']`` (month day year) → ``'19950207'``; ``''`` if not a date."""
    if len(tokens) < 3:
        return ""
    month, day, year = (_int_or_none(t) for t in tokens[:3])
    if month is None or day is None or year is None:
        return ""
    if year < 100:
        year += 1900
    if not (1 <= month <= 12 and 1 <= day <= 31 and 1900 <= year <= 2100):
        return ""
    return f"{year:04d}{month:02d}{day:02d}"


def _ics_image(path: Path, number: int, tokens: list[str]) -> IcsImage:
    view = tokens[0].upper()
    values: dict[str, str] = {}
    flags = set()
    i = 1
    while i < len(tokens):
        key = tokens[i].upper()
        if key in ("LINES", "PIXELS_PER_LINE", "BITS_PER_PIXEL", "RESOLUTION"):
            if i + 1 >= len(tokens):
                raise ValueError(f"{path} line {number}: {key} has no value")
            values[key] = tokens[i + 1]
            i += 2
        else:
            flags.add(key)
            i += 1
    numbers = {}
    for key in ("LINES", "PIXELS_PER_LINE", "BITS_PER_PIXEL"):
        value = _int_or_none(values.get(key, ""))
        if value is None or value <= 0:
            raise ValueError(f"{path} line {number}: {view} lacks a valid {key}")
        numbers[key] = value
    if not 1 <= numbers["BITS_PER_PIXEL"] <= 16:
        raise ValueError(
            f"{path} line {number}: BITS_PER_PIXEL {numbers['BITS_PER_PIXEL']} not in 1..16"
        )
    try:
        resolution: float | None = float(values["RESOLUTION"])
    except (KeyError, ValueError):
        resolution = None
    return IcsImage(
        view=view,
        lines=numbers["LINES"],
        pixels_per_line=numbers["PIXELS_PER_LINE"],
        bits_per_pixel=numbers["BITS_PER_PIXEL"],
        resolution=resolution,
        overlay="OVERLAY" in flags and "NON_OVERLAY" not in flags,
    )


def read_ics(path: str | os.PathLike) -> IcsInfo:
    """Parses a DDSM ``.ics`` case file.

    Header lines are ``KEY value...``; image lines start with ``LEFT_``/``RIGHT_`` and
    hold ``LINES``, ``PIXELS_PER_LINE``, ``BITS_PER_PIXEL``, ``RESOLUTION`` and
    ``OVERLAY``/``NON_OVERLAY`` (see the module notes). Keywords are matched whatever
    their case; unknown lines are ignored.

    Args:
        path: the ``.ics`` file.

    Returns:
        The parsed :class:`IcsInfo`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and line for an image line without valid LINES,
            PIXELS_PER_LINE or BITS_PER_PIXEL, a view listed twice, or no image line.
    """
    path = Path(path)
    text = path.read_text(encoding="latin-1")
    filename = ""
    age: int | None = None
    date = ""
    density: int | None = None
    digitizer = film_type = ""
    images: dict[str, IcsImage] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        key = tokens[0].upper()
        rest = tokens[1:]
        if key == "FILENAME" and rest:
            filename = rest[0]
        elif key == "PATIENT_AGE":
            age = _int_or_none(rest[0]) if rest else None
        elif key == "DATE_OF_STUDY":
            date = _ics_date(rest)
        elif key == "DENSITY":
            density = _int_or_none(rest[0]) if rest else None
        elif key == "DIGITIZER":
            digitizer = " ".join(rest)
        elif key == "FILM_TYPE":
            film_type = " ".join(rest)
        elif re.match(r"^(LEFT|RIGHT)_", key):
            image = _ics_image(path, number, tokens)
            if image.view in images:
                raise ValueError(f"{path} line {number}: {image.view} listed twice")
            images[image.view] = image
    if not images:
        raise ValueError(f"{path}: no image line (LEFT_CC LINES ... PIXELS_PER_LINE ...)")
    filename = filename or path.stem
    return IcsInfo(
        filename=filename,
        case_name=filename.replace("-", "_"),
        patient_age=age,
        date_of_study=date,
        density=density,
        digitizer=digitizer,
        film_type=film_type,
        images=images,
    )


# --------------------------------------------------------------------------------------
# .OVERLAY files and chain codes


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


# --------------------------------------------------------------------------------------
# lossless JPEG (T.81 process 14) decoding


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
    except Exception as exc:  # noqa: BLE001 - any failure means: use the reference decoder
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


def to_uint16(raw: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """Stretches ``bits``-bit values linearly onto ``0..65535`` (as a DICOM reader does).

    When values exceed the ``bits`` range (an ``.ics`` understating the depth), the
    smallest depth that holds them is used instead.

    Returns:
        ``(pixels, bits_used)``.
    """
    top = int(raw.max()) if raw.size else 0
    used = bits
    while used < 16 and top >= 1 << used:
        used += 1
    if used == 16:
        return raw.astype(np.uint16, copy=False), used
    lut = np.rint(np.arange(1 << used) * (65535 / ((1 << used) - 1))).astype(np.uint16)
    return lut[raw], used


# --------------------------------------------------------------------------------------
# the source


@dataclass(frozen=True)
class _ImageTask:
    """One image to decode and write, with its labels."""

    out_dir: Path
    case_name: str
    patient_id: str
    split: str
    density: str
    study_date: str
    view: str
    ljpeg: Path
    ics: IcsImage
    abnormalities: tuple[tuple[int, Abnormality], ...]  # (abnormality id, block)
    normal: bool


def _find_file(folder: Path, view: str, suffix: str) -> Path | None:
    """``<name>.<VIEW>.<SUFFIX>`` in a case folder, matched case-insensitively."""
    ending = f".{view}.{suffix}".upper()
    matches = sorted(p for p in folder.iterdir() if p.name.upper().endswith(ending))
    return matches[0] if matches else None


def _skip(file: Path | str, case: str, image: str, reason: str, root: Path) -> dict[str, str]:
    try:
        shown = Path(file).relative_to(root).as_posix()
    except ValueError:
        shown = str(file)
    return {"file": shown, "case": case, "image": image, "reason": reason}


def _study_folder(date: str, study_uid: str) -> str:
    """NBIA-style study folder name, e.g. ``02-07-1995-DDSM-74994``."""
    if date:
        return f"{date[4:6]}-{date[6:8]}-{date[:4]}-DDSM-{study_uid[-5:]}"
    return f"DDSM-{study_uid[-5:]}"


def _write_series(
    task: _ImageTask, subject: str, description: str, images: list[np.ndarray]
) -> list[str]:
    """Writes one series of ``images``; returns their case-description paths."""
    side, view = task.view.split("_")
    return write_series(
        task.out_dir / "CBIS-DDSM" / subject,
        DATASET,
        subject,
        description,
        images,
        side=side,
        view=view,
        study_date=task.study_date,
        study_folder=lambda uid: _study_folder(task.study_date, uid),
    )


def crop_box(
    mask: np.ndarray, margin: float = _CROP_MARGIN, min_margin: int = _CROP_MIN_MARGIN
) -> tuple[int, int, int, int]:
    """Bounding box of a non-empty mask widened on every side, clipped to the image.

    Args:
        mask: 2-D array, non-zero on the lesion.
        margin: share of the box's width (height) added left and right (top and bottom).
        min_margin: the least number of pixels added on each side.

    Returns:
        ``(x0, y0, x1, y1)``, x1/y1 exclusive.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
    mx = max(min_margin, int(round(margin * (x1 - x0))))
    my = max(min_margin, int(round(margin * (y1 - y0))))
    h, w = mask.shape
    return max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)


def _write_image(task: _ImageTask) -> dict[str, Any]:
    """Decodes one LJPEG and writes its series; returns CSV rows, skips and counts."""
    result: dict[str, Any] = {"rows": [], "skipped": [], "counts": Counter()}
    image_name = f"{task.case_name}.{task.view}"
    try:
        raw = decode_ljpeg(
            task.ljpeg, task.ics.lines, task.ics.pixels_per_line, task.ics.bits_per_pixel
        )
    except Exception as exc:  # noqa: BLE001 - a bad image is skipped, never fatal
        detail = str(exc) if isinstance(exc, LjpegError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(f"undecodable LJPEG: {detail}".split())
        result["skipped"].append(
            {
                "file": str(task.ljpeg),
                "case": task.case_name,
                "image": image_name,
                "reason": reason,
            }
        )
        return result
    pixels, bits_used = to_uint16(raw, task.ics.bits_per_pixel)
    del raw
    if bits_used != task.ics.bits_per_pixel:
        result["counts"]["bits_per_pixel_understated"] += 1
    side, view = task.view.split("_")
    common = {
        "patient_id": task.patient_id,
        "left or right breast": side,
        "image view": view,
        "dataset": DATASET,
    }
    result["counts"]["full_images"] += 1
    if task.normal:
        subject = subject_id("normal", task.split, task.patient_id, side, view)
        (image_path,) = _write_series(task, subject, "full mammogram images", [pixels])
        result["counts"]["normal_images"] += 1
        result["rows"].append(
            (
                "normal",
                {
                    **common,
                    "breast_density": task.density,
                    "abnormality id": 0,
                    "abnormality type": "normal",
                    "assessment": 1,
                    "pathology": "NORMAL",
                    "subtlety": 0,
                    "image file path": image_path,
                    "cropped image file path": "",
                    "ROI mask file path": "",
                },
            )
        )
        return result

    by_kind: dict[str, list[tuple[int, Abnormality]]] = {}
    for number, abnormality in task.abnormalities:
        by_kind.setdefault(abnormality.kind, []).append((number, abnormality))
    for kind, items in by_kind.items():
        subject = subject_id(kind, task.split, task.patient_id, side, view)
        (image_path,) = _write_series(task, subject, "full mammogram images", [pixels])
        result["counts"]["full_image_series"] += 1
        file_kind = KIND_FILE[kind]
        for number, abnormality in items:
            lesion = abnormality.lesion_types[0]
            crop_path = mask_path = ""
            mask = abnormality_mask(abnormality, pixels.shape)
            if mask.any():
                x0, y0, x1, y1 = crop_box(mask)
                mask8 = np.where(mask, np.uint8(255), np.uint8(0))
                crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
                crop_path, mask_path = _write_series(
                    task, f"{subject}_{number}", "ROI mask images", [crop, mask8]
                )
                result["counts"][f"rois_{kind}"] += 1
                result["counts"][f"rois_{abnormality.pathology}"] += 1
            else:
                result["counts"]["rois_without_outline"] += 1
                result["skipped"].append(
                    {
                        "file": str(task.ljpeg),
                        "case": task.case_name,
                        "image": f"{image_name}#{number}",
                        "reason": "outline empty or outside the image: full image kept "
                        "without ROI",
                    }
                )
            descriptors = (
                {"mass shape": lesion.shape, "mass margins": lesion.margins}
                if kind == "mass"
                else {"calc type": lesion.shape, "calc distribution": lesion.margins}
            )
            density_key = "breast_density" if kind == "mass" else "breast density"
            row = {
                **common,
                density_key: task.density,
                "abnormality id": number,
                "abnormality type": kind,
                **descriptors,
                "assessment": "" if abnormality.assessment is None else abnormality.assessment,
                "pathology": abnormality.pathology,
                "subtlety": "" if abnormality.subtlety is None else abnormality.subtlety,
                "image file path": image_path,
                "cropped image file path": crop_path,
                "ROI mask file path": mask_path,
            }
            result["rows"].append((file_kind, row))
    return result


@dataclass
class _Case:
    ics_path: Path
    info: IcsInfo
    plans: list[dict[str, Any]]  # per usable image: view, ljpeg, ics, abnormalities, normal
    label: str = "NORMAL"  # worst pathology, for the stratified split


def _plan_case(
    ics_path: Path, root: Path, skipped: list[dict[str, str]], counts: Counter
) -> _Case | None:
    """Reads a case's text files and decides which images and findings to write."""
    try:
        info = read_ics(ics_path)
    except (OSError, ValueError, UnicodeError) as exc:
        skipped.append(_skip(ics_path, ics_path.stem, "", f"unreadable .ics: {exc}", root))
        return None
    folder = ics_path.parent
    overlays: dict[str, Path | None] = {
        view: _find_file(folder, view, "OVERLAY") for view in info.images
    }
    # Only cases with no outlined finding at all are normal: the unmarked breast of a case
    # with findings was not verified by follow-up.
    normal_case = not any(overlays.values()) and not any(
        image.overlay for image in info.images.values()
    )
    case = _Case(ics_path=ics_path, info=info, plans=[])
    worst = "NORMAL"
    for view, image in info.images.items():
        name = f"{info.case_name}.{view}"
        if view not in _VIEWS:
            skipped.append(_skip(ics_path, info.case_name, name, f"unsupported view {view}", root))
            continue
        ljpeg = _find_file(folder, view, "LJPEG")
        if ljpeg is None:
            skipped.append(
                _skip(folder, info.case_name, name, f"no *.{view}.LJPEG file in the case", root)
            )
            continue
        overlay = overlays[view]
        if overlay is None:
            if normal_case:
                case.plans.append(
                    {"view": view, "ljpeg": ljpeg, "ics": image, "abn": (), "normal": True}
                )
            elif image.overlay:
                skipped.append(
                    _skip(folder, info.case_name, name, "overlay listed in .ics not found", root)
                )
            else:
                counts["unmarked_images_of_abnormal_cases"] += 1
                skipped.append(
                    _skip(
                        ljpeg,
                        info.case_name,
                        name,
                        "no overlay in a case with findings: not verified normal",
                        root,
                    )
                )
            continue
        try:
            abnormalities = parse_overlay(overlay)
        except (OSError, ValueError, UnicodeError) as exc:
            skipped.append(
                _skip(overlay, info.case_name, name, f"unreadable overlay: {exc}", root)
            )
            continue
        usable: list[tuple[int, Abnormality]] = []
        numbers = [a.number for a in abnormalities]
        for position, abnormality in enumerate(abnormalities, start=1):
            number = abnormality.number if numbers.count(abnormality.number) == 1 else position
            where = f"{name}#{number}"
            reason = ""
            if abnormality.pathology == "UNPROVEN":
                reason = "pathology UNPROVEN"
            elif abnormality.pathology not in _PATHOLOGIES:
                reason = f"unknown pathology {abnormality.pathology or 'missing'!r}"
            elif abnormality.kind not in ("mass", "calcification"):
                reason = f"unsupported lesion type {abnormality.kind or 'missing'!r}"
            elif not abnormality.outlines:
                reason = "no outline"
            if reason:
                counts["abnormalities_skipped"] += 1
                skipped.append(_skip(overlay, info.case_name, where, reason, root))
                continue
            if len(abnormality.lesion_types) > 1:
                counts["abnormalities_with_several_lesion_types"] += 1
            usable.append((number, abnormality))
            if _PATHOLOGY_RANK[abnormality.pathology] > _PATHOLOGY_RANK[worst]:
                worst = abnormality.pathology
        if not usable:
            skipped.append(
                _skip(ljpeg, info.case_name, name, "no usable abnormality in the overlay", root)
            )
            continue
        case.plans.append(
            {"view": view, "ljpeg": ljpeg, "ics": image, "abn": tuple(usable), "normal": False}
        )
    case.label = "BENIGN" if worst == "BENIGN_WITHOUT_CALLBACK" else worst
    return case


def split_patients(labels: dict[str, str], fraction: float, seed: int) -> dict[str, str]:
    """Patient → ``train``/``test``: a seeded draw stratified by each patient's label.

    Patients are shuffled within each label, the labels are laid end to end, and every
    ``1/fraction``-th patient (from a random offset) goes to test, so each label's test
    share is within one patient of ``fraction`` and small labels are not left out.

    Args:
        labels: patient id → class label (e.g. the worst pathology).
        fraction: share of patients in the test split, in [0, 1).
        seed: seed of the draw; the result does not depend on the dict's order.
    """
    rng = np.random.default_rng([seed, 0x0DD5])
    ordered: list[str] = []
    for label in sorted(set(labels.values())):
        names = sorted(p for p, lab in labels.items() if lab == label)
        ordered.extend(names[i] for i in rng.permutation(len(names)))
    offset = rng.random()
    return {
        name: "test" if int((i + 1) * fraction + offset) > int(i * fraction + offset) else "train"
        for i, name in enumerate(ordered)
    }


def fetch_ddsm(out_dir: Path, cfg: DdsmConfig, seed: int, workers: int = 0) -> dict[str, Any]:
    """Writes a local DDSM copy into ``out_dir`` in the CBIS-DDSM layout.

    Every ``*.ics`` below ``cfg.root`` is a case (see the module notes for the formats).
    Cases are split train/test by patient (one case = one patient), seeded and
    stratified by the case's worst pathology. Images are decoded and written in worker
    processes, one image per task.

    Args:
        out_dir: the raw-data folder (``csv/``, ``CBIS-DDSM/`` and ``ddsm_skipped.csv`` are
            written; ``source.json`` is left to the caller).
        cfg: the ``data.ddsm`` section.
        seed: seed of the train/test draw.
        workers: processes, 0 for every core.

    Returns:
        A summary: case, patient, image and ROI counts, ``skipped_by_reason``,
        ``skipped_total`` and the first :data:`SUMMARY_SKIPS` ``skipped`` rows
        (``file, case, image, reason``; all of them are in ``ddsm_skipped.csv``).

    Raises:
        ValueError: if ``cfg.root`` is empty.
        FileNotFoundError: if ``cfg.root`` is not a folder or holds no ``.ics`` file.
    """
    if not cfg.root:
        raise ParamsError("data.ddsm.root is empty: set it to the folder holding the DDSM cases")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise InputNotFound(f"data.ddsm.root {root} is not a folder")
    out_dir = Path(out_dir)
    ics_files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".ics" and p.is_file())
    if not ics_files:
        raise InputNotFound(f"no DDSM case (*.ics file) under {root}")

    skipped: list[dict[str, str]] = []
    counts: Counter = Counter()
    cases: list[_Case] = []
    seen: dict[str, Path] = {}
    for ics_path in ics_files:
        case = _plan_case(ics_path, root, skipped, counts)
        if case is None:
            continue
        name = case.info.case_name
        if name in seen:
            first = seen[name]
            skipped.append(
                _skip(ics_path, name, "", f"duplicate case {name} (first: {first})", root)
            )
            continue
        seen[name] = ics_path
        if case.plans:
            cases.append(case)
    split = split_patients({c.info.case_name: c.label for c in cases}, cfg.test_fraction, seed)

    tasks = [
        _ImageTask(
            out_dir=out_dir,
            case_name=case.info.case_name,
            patient_id=f"DDSM_{case.info.case_name}",
            split=split[case.info.case_name],
            density="" if case.info.density is None else str(case.info.density),
            study_date=case.info.date_of_study,
            view=plan["view"],
            ljpeg=plan["ljpeg"],
            ics=plan["ics"],
            abnormalities=plan["abn"],
            normal=plan["normal"],
        )
        for case in cases
        for plan in case.plans
    ]
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    written_patients: dict[str, str] = {}
    results = imap(_write_image, tasks, workers=workers, desc="ddsm", unit="img")
    for task, result in zip(tasks, results, strict=True):
        counts.update(result["counts"])
        for skip in result["skipped"]:
            skipped.append(_skip(skip["file"], skip["case"], skip["image"], skip["reason"], root))
        for file_kind, row in result["rows"]:
            rows.setdefault((file_kind, task.split), []).append(row)
            written_patients[task.patient_id] = task.split
    csv_counts = write_case_csvs(out_dir, rows)
    write_csv(out_dir / "ddsm_skipped.csv", pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS)))

    by_reason = Counter(_reason_key(s["reason"]) for s in skipped)
    summary = {
        "root": str(root),
        "cases_found": len(ics_files),
        "cases_used": len({t.case_name for t in tasks}),
        "patients_train": sum(v == "train" for v in written_patients.values()),
        "patients_test": sum(v == "test" for v in written_patients.values()),
        "full_images": counts["full_images"],
        "normal_images": counts["normal_images"],
        "rois": counts["rois_mass"] + counts["rois_calcification"],
        "rois_by_type": {k: counts[f"rois_{k}"] for k in ("mass", "calcification")},
        "rois_by_pathology": {
            k: counts[f"rois_{k}"] for k in ("BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT")
        },
        "rois_without_outline": counts["rois_without_outline"],
        "abnormalities_skipped": counts["abnormalities_skipped"],
        "abnormalities_with_several_lesion_types": counts[
            "abnormalities_with_several_lesion_types"
        ],
        "unmarked_images_of_abnormal_cases": counts["unmarked_images_of_abnormal_cases"],
        "bits_per_pixel_understated": counts["bits_per_pixel_understated"],
        "csv_rows": csv_counts,
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "skipped_total": len(skipped),
        # The full list is in ddsm_skipped.csv; a whole DDSM copy skips thousands of
        # unmarked images, too many for source.json.
        "skipped": skipped[:SUMMARY_SKIPS],
    }
    log.info(
        "DDSM from %s: %d cases, %d images (%d normal), %d ROIs; %d items skipped",
        root,
        summary["cases_used"],
        summary["full_images"],
        summary["normal_images"],
        summary["rois"],
        len(skipped),
    )
    return summary


def _reason_key(reason: str) -> str:
    """A skip reason without its variable details, for counting."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip()
