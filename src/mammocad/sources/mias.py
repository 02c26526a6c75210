"""The ``mias`` source: the mini-MIAS database wrapped into the CBIS-DDSM layout.

mini-MIAS (J Suckling et al. 1994, "The Mammographic Image Analysis Society Digital
Mammogram Database", Excerpta Medica International Congress Series 1069 pp 375-378) holds
322 digitised films as 8-bit binary PGMs (P5) of 1024 x 1024 pixels at 200 microns, and one
``Info.txt`` that describes them. It is distributed as ``all-mias.tar.gz`` by the Pilot
European Image Processing Archive, for research use only (see its ``Licence.txt``); any
publication must cite the reference above.

The paper reproduced here reads CBIS-DDSM (paper §3.1). Every later stage reads the
CBIS-DDSM layout only, so this source wraps each film into uncompressed Secondary Capture
DICOMs and writes the case-description CSVs that ``convert`` expects:

* per film, a "full mammogram images" series (8-bit, the PGM's pixel values unchanged);
* per lesion with coordinates, one "ROI mask images" series holding a square crop around
  the lesion (``000000.dcm``, InstanceNumber 1) and a full-size disc mask (0/255,
  ``000001.dcm``, InstanceNumber 2);
* per lesion without coordinates, a CSV row with empty crop and mask paths, so the full
  image keeps its pathology while ``convert`` records the ROI as skipped;
* per normal film, a row of the ``normal_*`` files.

``Info.txt`` rows read ``ref tissue class [severity x y radius]``. The coordinates are in
pixels with the origin at the BOTTOM-LEFT corner of the image, so the image row of a centre
is ``height - y`` (``1024 - y`` for every mini-MIAS film) and its column is ``x``. A film
may have several rows (several lesions). Some rows give no coordinates: calcifications
"widely distributed throughout the image" (note 4 of ``Info.txt``; three such rows say
``*NOTE 3*`` where the coordinates would be) and one circumscribed mass (``mdb059``).

Films come in pairs, one patient per pair (``mdb001`` + ``mdb002`` is patient 1, written
``MIAS_P_001``): odd numbers are right breasts, even numbers left ones. Every mini-MIAS
film is a medio-lateral oblique (MLO) view: the database holds one film per breast, and the
pectoral muscle shows on all of them.

Labels, mapped onto CBIS-DDSM's vocabulary:

======  ==================  =========================  =================================
class   CSV file            mass shape / calc type      mass margins / calc distribution
======  ==================  =========================  =================================
CIRC    mass                OVAL                        CIRCUMSCRIBED
SPIC    mass                IRREGULAR                   SPICULATED
MISC    mass                IRREGULAR                   ILL_DEFINED
ARCH    mass                ARCHITECTURAL_DISTORTION    ILL_DEFINED
ASYM    mass                ASYMMETRIC_BREAST_TISSUE    ILL_DEFINED
CALC    calc                (blank)                     CLUSTERED, or DIFFUSELY_SCATTERED
                                                        when the row has no coordinates
NORM    normal              -                           -
======  ==================  =========================  =================================

mini-MIAS names the margin of a mass (circumscribed, spiculated, ill-defined) but not its
shape; the shape column carries CBIS-DDSM's usual companion of that margin (OVAL for
circumscribed, IRREGULAR otherwise) and the distortion and asymmetry classes their own
CBIS-DDSM shape words. Calcification rows with coordinates describe clusters (note 3 of
``Info.txt``); the others widely distributed calcifications (note 4). Severity B → BENIGN,
M → MALIGNANT, per lesion; NORM → NORMAL. Background tissue F (fatty), G (fatty-glandular),
D (dense-glandular) → breast density 1, 2, 3: mini-MIAS has three classes where BI-RADS has
four, and dense-glandular is read as BI-RADS 3 (heterogeneously dense) because nothing in
``Info.txt`` singles out extremely dense breasts. BI-RADS assessment and subtlety are not
part of mini-MIAS and are left blank.

mini-MIAS has no official train/test split. Patients are assigned to the ``*_test_set``
files by a seeded draw over every patient ``Info.txt`` lists, stratified by the patient's
worst pathology (normal, benign, malignant), so a subset of the films (as the 60-film
sample) lands in the same files as in the full archive.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np

from mammocad.errors import InputError, InputNotFound
from mammocad.parallel import imap
from mammocad.progress import progress
from mammocad.sources.layout import (
    KIND_FILE,
    SPLIT_PREFIX,
    subject_id,
    write_case_csvs,
    write_series,
)

log = logging.getLogger(__name__)

#: Where the Pilot European Image Processing Archive serves the database.
MIAS_URL = "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"
#: The ``dataset`` named on every CSV row.
DATASET = "mias"
#: Every mini-MIAS film is an MLO view (one film per breast, pectoral muscle visible).
VIEW = "MLO"
#: Side length of a mini-MIAS film, in pixels.
IMAGE_SIZE = 1024
#: Smallest half-side of a ROI crop, so that tiny calcification clusters (radius 3 pixels)
#: still give a crop with some surrounding tissue.
MIN_HALF_SIDE = 16
#: Timeout of one network read while downloading, in seconds.
TIMEOUT_S = 60.0

TISSUES: dict[str, str] = {"F": "fatty", "G": "fatty-glandular", "D": "dense-glandular"}
#: Background tissue → CBIS-DDSM breast density (BI-RADS 1-4; see the module notes).
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

_PATHOLOGY_RANK = {"NORMAL": 0, "BENIGN": 1, "MALIGNANT": 2}
_REF = re.compile(r"mdb\d{3}", re.IGNORECASE)
#: ``*NOTE 3*`` stands where the coordinates of widely distributed calcifications would be.
_NOTE = re.compile(r"\*?\s*NOTE\s*\d*\s*\*?", re.IGNORECASE)
_WANTED = re.compile(r"(info\.txt|licence\.txt|license\.txt|mdb\d{3}\.pgm)", re.IGNORECASE)
_SPLIT_STREAM = 0x4D494153  # "MIAS": keeps the split's random stream apart from others
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class MiasConfig:
    """The ``data.mias`` params section.

    Attributes:
        archive: local path of ``all-mias.tar.gz`` (or of a sample of it, or of a folder
            holding its extracted files); empty to download it from ``url``.
        url: where to download the archive from when ``archive`` is empty.
        sha256: expected SHA-256 of the archive (hex); empty to skip the check (the
            computed checksum is logged and recorded in the summary).
        roi_margin: half-side of a ROI crop as a multiple of the lesion radius (at least
            :data:`MIN_HALF_SIDE` pixels); at least 1 so the crop holds the whole circle.
        test_fraction: share of patients in the ``*_test_set`` files (mini-MIAS has no
            official split: a seeded, patient-level draw).
    """

    archive: str = ""
    url: str = MIAS_URL
    sha256: str = ""
    roi_margin: float = 1.2
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("roi_margin", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"MiasConfig.{name} must be a number, got {value!r}")
        if not 1.0 <= self.roi_margin <= 10.0:
            raise ValueError(f"MiasConfig.roi_margin must be in [1, 10], got {self.roi_margin}")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise ValueError(
                f"MiasConfig.test_fraction must be in [0, 1], got {self.test_fraction}"
            )
        if self.sha256 and not _SHA256.fullmatch(self.sha256.strip().lower()):
            raise ValueError(
                f"MiasConfig.sha256 must be 64 hexadecimal digits or empty, got {self.sha256!r}"
            )
        if not self.archive and not self.url:
            raise ValueError("MiasConfig: give an archive path or a url to download it from")


# --------------------------------------------------------------------------------------
# Info.txt


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
    ``round(test_fraction × size)`` patients, drawn with ``seed``, to ``test``.

    Returns:
        Patient number → ``"train"`` or ``"test"``, in patient order.
    """
    worst: dict[int, int] = {}
    for row in rows:
        rank = _PATHOLOGY_RANK[row.pathology]
        worst[row.patient_number] = max(worst.get(row.patient_number, 0), rank)
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    split: dict[int, str] = {}
    for rank in sorted(_PATHOLOGY_RANK.values()):
        members = sorted(p for p, w in worst.items() if w == rank)
        n_test = math.floor(test_fraction * len(members) + 0.5)
        chosen = {members[i] for i in rng.permutation(len(members))[:n_test]}
        split.update({p: "test" if p in chosen else "train" for p in members})
    return dict(sorted(split.items()))


# --------------------------------------------------------------------------------------
# PGM images and lesion geometry


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


def disc_mask(shape: tuple[int, int], row: int, col: int, radius: int) -> np.ndarray:
    """A 0/255 ``uint8`` mask of the pixels within ``radius`` of ``(row, col)``."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    inside = (yy - row) ** 2 + (xx - col) ** 2 <= radius * radius
    return np.where(inside, np.uint8(255), np.uint8(0))


def crop_box(
    shape: tuple[int, int], row: int, col: int, radius: int, margin: float
) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` (ends exclusive) of the square ROI crop.

    The square is centred on the lesion with half-side ``radius × margin`` (at least
    :data:`MIN_HALF_SIDE`), clipped to the image; it may be empty for a centre far outside.
    """
    half = max(math.ceil(radius * margin), MIN_HALF_SIDE)
    height, width = shape
    r0, r1 = max(row - half, 0), min(row + half + 1, height)
    c0, c1 = max(col - half, 0), min(col + half + 1, width)
    return r0, max(r1, r0), c0, max(c1, c0)


# --------------------------------------------------------------------------------------
# the archive


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _archive_name(url: str) -> str:
    name = PurePosixPath(urlparse(url).path).name
    return name or "all-mias.tar.gz"


def download_archive(
    url: str, dest: str | os.PathLike, sha256: str = "", timeout: float = TIMEOUT_S
) -> Path:
    """Downloads ``url`` to ``dest``, resuming a partial ``dest.part`` and checking SHA-256.

    An existing ``dest`` is reused when it matches ``sha256`` (or none is given). The body
    streams to ``<dest>.part`` with a bytes progress bar and is renamed to ``dest`` only once
    complete and verified; an interrupted download leaves the ``.part`` file, and the next
    call asks the server for the rest (HTTP Range) or starts over if it does not support it.

    Args:
        url: HTTP(S) address of the archive.
        dest: where to keep the archive.
        sha256: expected checksum (hex), or empty.
        timeout: seconds to wait for the server on connect and on each read.

    Returns:
        ``dest``.

    Raises:
        ConnectionError: when the server cannot be reached, answers with an error, or the
            transfer stops early (the partial file is kept for a resume).
        ValueError: when the downloaded file does not match ``sha256`` (it is deleted).
    """
    dest = Path(dest)
    expected = sha256.strip().lower()
    if dest.exists():
        if not expected or sha256_file(dest) == expected:
            log.info("using %s, downloaded before", dest)
            return dest
        log.warning("%s does not match sha256 %s; downloading it again", dest, expected)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_to(url, part, timeout, resume=True)
    digest = sha256_file(part)
    if expected and digest != expected:
        part.unlink()
        raise InputError(
            f"sha256 mismatch for {url}: expected {expected}, got {digest} "
            "(the download was deleted)"
        )
    os.replace(part, dest)
    log.info("downloaded %s to %s (sha256 %s)", url, dest, digest)
    return dest


def _fetch_to(url: str, part: Path, timeout: float, resume: bool) -> None:
    """Streams ``url`` into ``part``, appending to what is there when the server allows."""
    offset = part.stat().st_size if resume and part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mammocad"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The partial file is as long as (or longer than) the resource: start over.
            part.unlink()
            _fetch_to(url, part, timeout, resume=False)
            return
        raise ConnectionError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"cannot download {url}: {exc}") from exc
    with response:
        if offset and response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                # A range other than the one asked for cannot be appended: start over.
                response.close()
                part.unlink()
                _fetch_to(url, part, timeout, resume=False)
                return
            log.info("resuming the download of %s at byte %d", url, offset)
        elif offset:
            offset = 0  # the server ignored the range and sends the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        try:
            with (
                open(part, "ab" if offset else "wb") as fh,
                progress(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"download {part.name[: -len('.part')]}",
                ) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
        except OSError as exc:
            raise ConnectionError(
                f"download of {url} interrupted ({exc}); run again to resume from {part}"
            ) from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise ConnectionError(
            f"download of {url} stopped at {size} of {total} bytes; run again to resume "
            f"from {part}"
        )


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike) -> dict[str, Path]:
    """Extracts ``Info.txt``, the licence and the ``mdbNNN.pgm`` files of a mini-MIAS tar.

    Safe by construction: only regular files are extracted, each to ``target/<base name>``
    whatever folder it sits in inside the archive, so nothing can land outside ``target``;
    links and other entries are skipped. An archive naming an absolute path or a ``..``
    component is refused outright.

    Args:
        archive: a tar file, compressed or not.
        target: folder to extract into (created).

    Returns:
        Lower-case base name → extracted file.

    Raises:
        ValueError: for a file that is not a tar archive, an unsafe entry name, or two
            wanted entries with the same base name, naming the archive and the entry.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{archive}: not a readable tar archive ({exc})") from exc
    with tar, progress(desc=f"extract {archive.name}", unit="file") as bar:
        for member in tar:
            name = member.name.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                raise InputError(f"{archive}: unsafe entry {member.name!r} (outside the target)")
            base = parts[-1] if parts else ""
            if not _WANTED.fullmatch(base):
                continue
            if not member.isfile():
                log.warning("%s: skipping %s, not a regular file", archive, member.name)
                continue
            key = base.lower()
            if key in found:
                raise InputError(f"{archive}: two entries named {base!r} ({member.name!r})")
            out = target / key
            source = tar.extractfile(member)
            if source is None:  # pragma: no cover - regular files always have a stream
                continue
            with source, open(out, "wb") as fh:
                shutil.copyfileobj(source, fh, _CHUNK)
            found[key] = out
            bar.update()
    return found


def _index_folder(folder: Path) -> dict[str, Path]:
    """Lower-case base name → file, for an archive extracted beforehand."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and _WANTED.fullmatch(path.name):
            if path.name.lower() in found:
                raise InputError(f"{folder}: two files named {path.name!r}")
            found[path.name.lower()] = path
    return found


# --------------------------------------------------------------------------------------
# per-film work (runs in worker processes)


@dataclass(frozen=True)
class _FilmTask:
    ref: str
    pgm: Path
    rows: tuple[MiasRow, ...]
    split: str
    root: Path  # where the DICOM tree goes
    roi_margin: float


@dataclass
class _FilmResult:
    ref: str
    error: str = ""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)


def _study_folder(study_uid: str) -> str:
    """Study folder in the NBIA retriever's style, without a date (mini-MIAS has none)."""
    return f"MIAS-{study_uid[-5:]}"


def _write_series(
    root: Path, subject: str, description: str, side: str, images: list[np.ndarray]
) -> list[str]:
    """Writes one series under ``root/<subject>/``; returns the CSV path of each image."""
    return write_series(
        root / subject,
        DATASET,
        subject,
        description,
        images,
        side=side,
        view=VIEW,
        study_folder=_study_folder,
    )


def _lesion_fields(row: MiasRow) -> dict[str, Any]:
    if row.kind == "mass":
        shape, margins = MASS_DESCRIPTORS[row.abnormality_class]
        return {"mass shape": shape, "mass margins": margins}
    return {"calc type": "", "calc distribution": CALC_DISTRIBUTION[row.has_coordinates]}


def _convert_film(task: _FilmTask) -> _FilmResult:
    """Reads one PGM and writes its series; returns its CSV rows and counts."""
    result = _FilmResult(task.ref)
    try:
        image = read_pgm(task.pgm.read_bytes())
    except (PgmError, OSError) as exc:
        result.error = str(exc)
        return result
    first = task.rows[0]
    pid = patient_id(first.patient_number)
    counts = result.counts
    # A film whose rows mix calcifications and masses appears, as in CBIS-DDSM, once per
    # finding type (a Calc- and a Mass- subject sharing the pixels).
    by_kind: dict[str, list[MiasRow]] = {}
    for row in task.rows:
        by_kind.setdefault(row.kind, []).append(row)
    for kind, rows in by_kind.items():
        file = KIND_FILE[kind]
        subject = subject_id(kind, task.split, pid, first.side, VIEW)
        (image_path,) = _write_series(
            task.root, subject, "full mammogram images", first.side, [image]
        )
        counts["full_series"] += 1
        counts["dicom_files"] += 1
        density_column = "breast density" if file == "calc" else "breast_density"
        common = {
            "patient_id": pid,
            density_column: BREAST_DENSITY[first.tissue],
            "left or right breast": first.side,
            "image view": VIEW,
            "image file path": image_path,
            "assessment": "",
            "subtlety": "",
            "dataset": DATASET,
        }
        out = result.rows.setdefault((file, task.split), [])
        if kind == "normal":
            out.append(
                {
                    **common,
                    "abnormality id": 0,
                    "abnormality type": "normal",
                    "pathology": "NORMAL",
                    "cropped image file path": "",
                    "ROI mask file path": "",
                }
            )
            continue
        for number, row in enumerate(rows, start=1):
            crop_path = mask_path = ""
            centre = row.centre(image.shape[0])
            if centre is None or row.radius is None:
                counts["lesions_without_coordinates"] += 1
            else:
                r0, r1, c0, c1 = crop_box(image.shape, *centre, row.radius, task.roi_margin)
                mask = disc_mask(image.shape, *centre, row.radius)
                if r1 <= r0 or c1 <= c0 or not mask.any():
                    log.warning(
                        "%s (Info.txt line %d): lesion centre %s lies outside the %dx%d "
                        "image; kept without ROI",
                        task.ref,
                        row.line,
                        centre,
                        *image.shape,
                    )
                    counts["lesions_outside_image"] += 1
                else:
                    crop = np.ascontiguousarray(image[r0:r1, c0:c1])
                    crop_path, mask_path = _write_series(
                        task.root,
                        f"{subject}_{number}",
                        "ROI mask images",
                        first.side,
                        [crop, mask],
                    )
                    counts["lesions_with_coordinates"] += 1
                    counts["roi_series"] += 1
                    counts["dicom_files"] += 2
            out.append(
                {
                    **common,
                    "abnormality id": number,
                    "abnormality type": kind,
                    **_lesion_fields(row),
                    "pathology": row.pathology,
                    "cropped image file path": crop_path,
                    "ROI mask file path": mask_path,
                }
            )
    return result


# --------------------------------------------------------------------------------------
# the source


def _counts(rows: Sequence[MiasRow]) -> dict[str, Any]:
    """Image and lesion counts of a set of ``Info.txt`` rows."""
    worst: dict[str, str] = {}
    for row in rows:
        old = worst.get(row.ref, "NORMAL")
        worst[row.ref] = max(old, row.pathology, key=_PATHOLOGY_RANK.__getitem__)
    lesions = [r for r in rows if r.abnormality_class != "NORM"]
    return {
        "images": len(worst),
        "images_by_pathology": dict(sorted(Counter(worst.values()).items())),
        "lesions": len(lesions),
        "lesions_with_coordinates": sum(r.has_coordinates for r in lesions),
        "lesions_without_coordinates": sum(not r.has_coordinates for r in lesions),
        "lesions_by_class": dict(sorted(Counter(r.abnormality_class for r in lesions).items())),
        "lesions_by_pathology": dict(sorted(Counter(r.pathology for r in lesions).items())),
    }


def _locate_archive(
    out_dir: Path, cfg: MiasConfig, download_dir: Path | None
) -> tuple[Path, str, bool]:
    """``(archive, url it came from or "", whether it is a scratch copy to delete)``."""
    if cfg.archive:
        archive = Path(cfg.archive)
        if not archive.exists():
            raise InputNotFound(
                f"mini-MIAS archive {archive} not found (MiasConfig.archive); give the path "
                f"of all-mias.tar.gz or leave it empty to download {cfg.url}"
            )
        return archive, "", False
    name = _archive_name(cfg.url)
    if download_dir is not None:
        dest = Path(download_dir) / "mias" / name
        return download_archive(cfg.url, dest, cfg.sha256), cfg.url, False
    scratch = out_dir / ".mias-download" / name
    return download_archive(cfg.url, scratch, cfg.sha256), cfg.url, True


def fetch_mias(
    out_dir: Path,
    cfg: MiasConfig,
    seed: int,
    workers: int = 0,
    download_dir: Path | None = None,
) -> dict[str, Any]:
    """Writes mini-MIAS into ``out_dir`` in the CBIS-DDSM layout (see the module notes).

    Writes ``csv/`` (mass, calc and normal case descriptions, train and test, each row
    naming ``dataset`` = ``mias``) and the ``MIAS/`` DICOM tree; ``source.json`` is left to
    the caller. Films that ``Info.txt`` lists but the archive lacks are reported in the
    summary, not fatal; unreadable PGMs are reported and skipped.

    Args:
        out_dir: the raw-data directory (created if absent; expected to be empty).
        cfg: archive location, checksum, ROI margin and test share.
        seed: non-negative seed of the patient-level train/test draw.
        workers: processes, ``0`` for every core; the output does not depend on it.
        download_dir: where a downloaded archive is kept between runs (an interrupted
            download resumes there); ``None`` downloads to a scratch folder in ``out_dir``
            that is removed afterwards.

    Returns:
        A summary: archive (its path, empty for a scratch download), url (empty for a local
        archive) and checksum; films listed, found, missing (count and names),
        corrupt (name → reason) and unlisted; patients per split; images, lesions with and
        without coordinates, by pathology and class (of the films written, and of all of
        ``Info.txt`` under ``listed``); series, DICOM files and CSV rows written.

    Raises:
        FileNotFoundError: when ``cfg.archive`` does not exist or the archive holds no
            ``Info.txt``.
        ValueError: for a bad seed, an archive that is not a (safe) tar, a checksum
            mismatch, or a malformed ``Info.txt`` line (naming its number).
        ConnectionError: when the download fails.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = [out_dir / ".mias-download", out_dir / ".mias-extract"]
    try:
        archive, url, scratch_copy = _locate_archive(out_dir, cfg, download_dir)
        digest = "" if archive.is_dir() else sha256_file(archive)
        expected = cfg.sha256.strip().lower()
        if expected and digest != expected:
            raise InputError(f"sha256 mismatch for {archive}: expected {expected}, got {digest}")
        if digest and not expected:
            log.info("sha256 of %s: %s (set MiasConfig.sha256 to check it)", archive, digest)
        files = (
            _index_folder(archive) if archive.is_dir() else extract_archive(archive, scratch[1])
        )
        if "info.txt" not in files:
            raise InputNotFound(f"no Info.txt in mini-MIAS archive {archive}")
        summary = _write_dataset(out_dir, cfg, seed, workers, files)
        summary = {
            "archive": "" if scratch_copy else str(archive),
            "url": url,
            "archive_sha256": digest,
            **summary,
        }
    finally:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
    log.info(
        "mini-MIAS written to %s: %d of %d films (%d missing, %d corrupt), %d ROI series",
        out_dir,
        summary["images_written"],
        summary["images_listed"],
        summary["images_missing"],
        summary["images_corrupt"],
        summary["series_written"]["roi"],
    )
    return summary


def _write_dataset(
    out_dir: Path, cfg: MiasConfig, seed: int, workers: int, files: dict[str, Path]
) -> dict[str, Any]:
    """Parses ``Info.txt``, converts the films found and writes the case descriptions."""
    info = files["info.txt"]
    rows = parse_info(info.read_text(encoding="latin-1"))
    if not rows:
        raise InputError(f"{info.name}: no data rows (expected 'mdbNNN tissue class ...')")
    by_ref: dict[str, list[MiasRow]] = {}
    for row in rows:
        by_ref.setdefault(row.ref, []).append(row)
    for ref, ref_rows in by_ref.items():
        if len({r.tissue for r in ref_rows}) > 1:
            log.warning(
                "%s: Info.txt rows disagree on the tissue; using line %d's", ref, ref_rows[0].line
            )
    split = split_patients(rows, cfg.test_fraction, seed)
    listed_pgms = {f"{ref}.pgm" for ref in by_ref}
    unlisted = sorted(k[:-4] for k in files if k.endswith(".pgm") and k not in listed_pgms)
    if unlisted:
        log.warning(
            "%d PGM files not listed in Info.txt are ignored: %s", len(unlisted), unlisted[:10]
        )
    missing = sorted(ref for ref in by_ref if f"{ref}.pgm" not in files)
    if missing:
        log.warning(
            "%d of %d films listed in Info.txt are not in the archive (e.g. %s)",
            len(missing),
            len(by_ref),
            ", ".join(missing[:5]),
        )
    root = out_dir / "MIAS"
    tasks = [
        _FilmTask(
            ref=ref,
            pgm=files[f"{ref}.pgm"],
            rows=tuple(ref_rows),
            split=split[ref_rows[0].patient_number],
            root=root,
            roi_margin=float(cfg.roi_margin),
        )
        for ref, ref_rows in sorted(by_ref.items())
        if f"{ref}.pgm" in files
    ]
    csv_rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    counts: Counter = Counter()
    corrupt: dict[str, str] = {}
    written: list[MiasRow] = []
    for task, result in zip(
        tasks, imap(_convert_film, tasks, workers=workers, desc="mias", unit="film"), strict=True
    ):
        if result.error:
            log.warning("%s.pgm skipped: %s", result.ref, result.error)
            corrupt[result.ref] = result.error
            continue
        written.extend(task.rows)
        counts.update(result.counts)
        for key, film_rows in result.rows.items():
            csv_rows.setdefault(key, []).extend(film_rows)
    csv_counts = write_case_csvs(out_dir, csv_rows)

    done = _counts(written)
    patients = {
        task.rows[0].patient_number: task.split for task in tasks if task.ref not in corrupt
    }
    return {
        "images_listed": len(by_ref),
        "rows_listed": len(rows),
        "patients_listed": len(split),
        "images_found": len(tasks),
        "images_missing": len(missing),
        "missing_images": missing,
        "images_corrupt": len(corrupt),
        "corrupt_images": corrupt,
        "images_unlisted": unlisted,
        "images_written": done["images"],
        "patients": {s: sum(v == s for v in patients.values()) for s in SPLIT_PREFIX},
        "images_by_pathology": done["images_by_pathology"],
        "lesions": done["lesions"],
        "lesions_with_coordinates": done["lesions_with_coordinates"],
        "lesions_without_coordinates": done["lesions_without_coordinates"],
        "lesions_outside_image": counts["lesions_outside_image"],
        "lesions_by_class": done["lesions_by_class"],
        "lesions_by_pathology": done["lesions_by_pathology"],
        "series_written": {"full": counts["full_series"], "roi": counts["roi_series"]},
        "dicom_files": counts["dicom_files"],
        "csv_rows": csv_counts,
        "listed": _counts(rows),
        "roi_margin": cfg.roi_margin,
        "test_fraction": cfg.test_fraction,
    }
