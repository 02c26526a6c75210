"""The one reader of image files: DICOM, PNG and PGM decoded into the pipeline's 16-bit form.

Every image a user hands the pipeline is read here: the ``local`` source's images and masks
(which ``convert`` then reads back through :func:`mammocad.dicom.read_pixels`, the DICOM
decoder this module uses too). The result is a 2-D ``uint16`` array over the full
``0..65535`` range, bright = dense: DICOM as :func:`~mammocad.dicom.read_pixels` gives it,
8-bit PNG values multiplied by 257, 16-bit PNG values kept, PGM values stretched from
``0..maxval``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom

from mammocad.dicom import SkipImage, read_pixels
from mammocad.manifest import VIEWS

#: Laterality as written in labels or DICOM headers → the manifest's value.
LATERALITY_ALIASES = {"LEFT": "LEFT", "L": "LEFT", "RIGHT": "RIGHT", "R": "RIGHT"}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".dic"}


@dataclass(frozen=True)
class Image:
    """One decoded image.

    Attributes:
        pixels: 2-D ``uint16``, full ``0..65535`` range, bright = dense.
        kind: ``dicom``, ``png`` or ``pgm``.
        laterality: ``LEFT``/``RIGHT`` from a DICOM header, else ``""``.
        view: ``CC``/``MLO`` from a DICOM header, else ``""``.
    """

    pixels: np.ndarray
    kind: str
    laterality: str = ""
    view: str = ""


def _sniff(path: Path) -> str:
    """``png``, ``pgm``, ``dicom`` or ``""`` from the file's first bytes (and suffix)."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head.startswith(_PNG_MAGIC):
        return "png"
    if re.match(rb"^P[25]\s", head):
        return "pgm"
    if head[128:132] == b"DICM" or path.suffix.lower() in _DICOM_SUFFIXES:
        return "dicom"
    return ""


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SkipImage("unreadable PNG: cannot decode")
    if image.ndim == 3 and image.shape[2] > 1:
        raise SkipImage(f"not greyscale: PNG with {image.shape[2]} channels")
    image = image.reshape(image.shape[:2])
    if image.dtype == np.uint8:
        return image.astype(np.uint16) * 257
    if image.dtype == np.uint16:
        return image
    raise SkipImage(f"unsupported PNG sample type {image.dtype}")


def _read_pgm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    fields: list[bytes] = []
    pos = 0
    # Header: magic, width, height, maxval, separated by whitespace and # comments.
    while len(fields) < 4:
        match = re.compile(rb"\s*(#[^\n]*\n\s*)*([^\s#]+)").match(data, pos)
        if match is None:
            raise SkipImage("unreadable PGM: incomplete header")
        fields.append(match.group(2))
        pos = match.end()
    magic = fields[0]
    try:
        width, height, maxval = (int(f) for f in fields[1:])
    except ValueError:
        raise SkipImage("unreadable PGM: non-numeric header field") from None
    if width <= 0 or height <= 0 or not 0 < maxval < 65536:
        raise SkipImage(f"unreadable PGM: header {width}x{height} maxval {maxval}")
    count = width * height
    if magic == b"P5":
        body = data[pos + 1 :]  # one whitespace byte ends the header
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        if len(body) < count * dtype.itemsize:
            raise SkipImage("unreadable PGM: truncated pixel data")
        values = np.frombuffer(body, dtype=dtype, count=count).astype(np.int64)
    else:
        tokens = data[pos:].split()
        if len(tokens) < count:
            raise SkipImage("unreadable PGM: truncated pixel data")
        try:
            values = np.array([int(t) for t in tokens[:count]], dtype=np.int64)
        except ValueError:
            raise SkipImage("unreadable PGM: non-numeric pixel value") from None
    if values.max(initial=0) > maxval:
        raise SkipImage(f"unreadable PGM: values above maxval {maxval}")
    scaled = np.rint(values * (65535 / maxval)).astype(np.uint16)
    return scaled.reshape(height, width)


def _dicom_side_view(path: Path) -> tuple[str, str]:
    """``(laterality, view)`` from a DICOM header, ``""`` where it says nothing usable."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        side = str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "")
        view = str(ds.get("ViewPosition", "") or "")
    except Exception:  # only hints; read_pixels already accepted the file
        return "", ""
    side = LATERALITY_ALIASES.get(side.strip().upper(), "")
    view = view.strip().upper()
    return side, view if view in VIEWS else ""


def read_image(path: str | os.PathLike, expect_mammogram: bool = True) -> Image:
    """Reads a DICOM, PNG or PGM image into the pipeline's 16-bit representation.

    Args:
        path: the image file; its type is told by content (and ``.dcm``-like suffixes).
        expect_mammogram: for DICOM, refuse other modalities (off for mask files).

    Returns:
        The :class:`Image`.

    Raises:
        SkipImage: with a one-line reason (``not greyscale: …``, ``not a mammogram: …``,
            ``unreadable PNG: …``, ``unsupported or corrupt file: …`` …).
    """
    path = Path(path)
    try:
        kind = _sniff(path)
        if kind == "png":
            return Image(_read_png(path), "png")
        if kind == "pgm":
            return Image(_read_pgm(path), "pgm")
    except OSError as exc:
        raise SkipImage(f"unreadable file: {exc.strerror or exc}") from None
    if kind == "dicom":
        image = read_pixels(path, expect_mammogram=expect_mammogram)
        side, view = _dicom_side_view(path)
        return Image(image.pixels, "dicom", side, view)
    raise SkipImage("unsupported or corrupt file: not a DICOM, PNG or PGM image")
