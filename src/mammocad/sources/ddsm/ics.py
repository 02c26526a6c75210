"""DDSM ``.ics`` case files: the case header (age, study date, density, digitizer) and
one line per image (view, rows, columns, bit depth, resolution, overlay flag).

The format is described in :mod:`mammocad.sources.ddsm`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path


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
    ``OVERLAY``/``NON_OVERLAY`` (see :mod:`mammocad.sources.ddsm`). Keywords are matched
    whatever their case; unknown lines are ignored.

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
