"""mini-MIAS ``Info.txt``: its rows parsed, their labels mapped onto CBIS-DDSM's vocabulary,
and the seeded, stratified patient split (see :mod:`mammocad.sources.mias`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mammocad.manifest import SEVERITY
from mammocad.split import draw_test_patients

#: Side length of a mini-MIAS film, in pixels.
IMAGE_SIZE = 1024
TISSUES: dict[str, str] = {"F": "fatty", "G": "fatty-glandular", "D": "dense-glandular"}
#: Background tissue → CBIS-DDSM breast density (BI-RADS 1-4; see :mod:`mammocad.sources.mias`).
BREAST_DENSITY: dict[str, int] = {"F": 1, "G": 2, "D": 3}
CLASSES: dict[str, str] = {
    "CALC": "calcification",
    "CIRC": "well-defined/circumscribed mass",
    "SPIC": "spiculated mass",
    "MISC": "other, ill-defined mass",
    "ARCH": "architectural distortion",
    "ASYM": "asymmetry",
    "NORM": "normal",
}
SEVERITIES: dict[str, str] = {"B": "BENIGN", "M": "MALIGNANT"}
#: Mass class → (CBIS-DDSM ``mass shape``, ``mass margins``).
MASS_DESCRIPTORS: dict[str, tuple[str, str]] = {
    "CIRC": ("OVAL", "CIRCUMSCRIBED"),
    "SPIC": ("IRREGULAR", "SPICULATED"),
    "MISC": ("IRREGULAR", "ILL_DEFINED"),
    "ARCH": ("ARCHITECTURAL_DISTORTION", "ILL_DEFINED"),
    "ASYM": ("ASYMMETRIC_BREAST_TISSUE", "ILL_DEFINED"),
}
#: CBIS-DDSM ``calc distribution`` of a calcification row with / without coordinates.
CALC_DISTRIBUTION: dict[bool, str] = {True: "CLUSTERED", False: "DIFFUSELY_SCATTERED"}
_REF = re.compile(r"mdb\d{3}", re.IGNORECASE)
#: ``*NOTE 3*`` stands where the coordinates of widely distributed calcifications would be.
_NOTE = re.compile(r"\*?\s*NOTE\s*\d*\s*\*?", re.IGNORECASE)
_SPLIT_STREAM = 0x4D494153  # "MIAS": keeps the split's random stream apart from others


@dataclass(frozen=True)
class MiasRow:
    """One data row of ``Info.txt``: a film and (at most) one of its lesions.

    Attributes:
        ref: the film, e.g. ``mdb001`` (lower case).
        tissue: background tissue, ``F``, ``G`` or ``D``.
        abnormality_class: ``CALC``, ``CIRC``, ``SPIC``, ``MISC``, ``ARCH``, ``ASYM`` or
            ``NORM``.
        severity: ``B`` or ``M``; ``None`` for ``NORM``.
        x: column of the lesion centre in pixels (origin bottom-left), or ``None``.
        y: height of the lesion centre above the bottom edge in pixels, or ``None``.
        radius: radius of a circle enclosing the lesion in pixels, or ``None``.
        line: 1-based line number in ``Info.txt``.
    """

    ref: str
    tissue: str
    abnormality_class: str
    severity: str | None = None
    x: int | None = None
    y: int | None = None
    radius: int | None = None
    line: int = 0

    @property
    def number(self) -> int:
        """The film number (``mdb005`` → 5)."""
        return int(self.ref[3:])

    @property
    def patient_number(self) -> int:
        """The patient: films come in pairs (``mdb001`` + ``mdb002`` → 1)."""
        return (self.number + 1) // 2

    @property
    def side(self) -> str:
        """``RIGHT`` for odd film numbers, ``LEFT`` for even ones."""
        return "RIGHT" if self.number % 2 else "LEFT"

    @property
    def has_coordinates(self) -> bool:
        return self.radius is not None

    @property
    def kind(self) -> str:
        """``normal``, ``calcification`` or ``mass`` (the CBIS-DDSM finding type)."""
        if self.abnormality_class == "NORM":
            return "normal"
        return "calcification" if self.abnormality_class == "CALC" else "mass"

    @property
    def pathology(self) -> str:
        """``NORMAL``, ``BENIGN`` or ``MALIGNANT``."""
        return "NORMAL" if self.severity is None else SEVERITIES[self.severity]

    def centre(self, height: int = IMAGE_SIZE) -> tuple[int, int] | None:
        """``(row, col)`` of the lesion centre in an image of ``height`` rows.

        ``Info.txt`` measures ``y`` upwards from the bottom-left corner, so the row counted
        from the top is ``height - y``.
        """
        if self.x is None or self.y is None:
            return None
        return height - self.y, self.x


def _looks_like_row(tokens: list[str]) -> bool:
    """A data row starts with a film reference, or has a tissue and a class after one."""
    if not tokens:
        return False
    if tokens[0].lower().startswith("mdb"):
        return True
    return len(tokens) >= 3 and tokens[1] in TISSUES and tokens[2] in CLASSES


def _parse_line(tokens: list[str], number: int, text: str) -> MiasRow:
    def bad(why: str) -> ValueError:
        return ValueError(f"Info.txt line {number}: {why}: {text.strip()!r}")

    if not _REF.fullmatch(tokens[0]):
        raise bad(f"bad film reference {tokens[0]!r} (expected mdbNNN)")
    if len(tokens) < 3:
        raise bad("expected 'ref tissue class [severity x y radius]'")
    ref, tissue, klass = tokens[0].lower(), tokens[1].upper(), tokens[2].upper()
    if tissue not in TISSUES:
        raise bad(f"unknown tissue {tokens[1]!r} (expected one of {sorted(TISSUES)})")
    if klass not in CLASSES:
        raise bad(f"unknown class {tokens[2]!r} (expected one of {sorted(CLASSES)})")
    if klass == "NORM":
        if len(tokens) != 3:
            raise bad("a NORM row has no severity or coordinates")
        return MiasRow(ref, tissue, klass, line=number)
    if len(tokens) < 4:
        raise bad(f"a {klass} row needs a severity (B or M)")
    severity = tokens[3].upper()
    if severity not in SEVERITIES:
        raise bad(f"unknown severity {tokens[3]!r} (expected B or M)")
    rest = tokens[4:]
    if not rest or _NOTE.fullmatch(" ".join(rest)):
        return MiasRow(ref, tissue, klass, severity, line=number)
    if len(rest) != 3:
        raise bad("expected three coordinates 'x y radius' or none")
    try:
        x, y, radius = (int(v) for v in rest)
    except ValueError:
        raise bad("coordinates must be whole numbers of pixels") from None
    if x < 0 or y < 0 or radius < 0:
        raise bad("coordinates must not be negative")
    return MiasRow(ref, tissue, klass, severity, x, y, radius, line=number)


def parse_info(text: str) -> list[MiasRow]:
    """Parses the data rows of mini-MIAS's ``Info.txt``.

    Rows read ``ref tissue class [severity x y radius]``. Header prose, blank lines and
    extra whitespace are ignored; a line that starts with a film reference (or has a tissue
    and a class in its second and third columns) must be a well-formed row. Rows without
    coordinates (or with ``*NOTE 3*`` in their place) get ``None`` coordinates.

    Args:
        text: the file's text.

    Returns:
        The rows in file order; a film with several lesions has several rows.

    Raises:
        ValueError: for a malformed row, naming its line number and content.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if _looks_like_row(tokens):
            rows.append(_parse_line(tokens, number, line))
    return rows


def patient_id(patient_number: int) -> str:
    """The CSV patient id of a mini-MIAS patient, e.g. ``MIAS_P_001``."""
    return f"MIAS_P_{patient_number:03d}"


def split_patients(rows: Sequence[MiasRow], test_fraction: float, seed: int) -> dict[int, str]:
    """Draws the ``train``/``test`` file of every patient, stratified by worst pathology.

    Each stratum (patients whose worst finding is normal, benign or malignant) sends
    ``round(test_fraction × size)`` patients (halves up), drawn with ``seed``, to ``test``
    (:func:`mammocad.split.draw_test_patients`, rule ``half_up``).

    Returns:
        Patient number → ``"train"`` or ``"test"``, in patient order.
    """
    worst: dict[int, int] = {}
    for row in rows:
        rank = SEVERITY[row.pathology]
        worst[row.patient_number] = max(worst.get(row.patient_number, 0), rank)
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    test = draw_test_patients(worst, test_fraction, rng, rule="half_up")
    return {p: "test" if p in test else "train" for p in sorted(worst)}
