"""Reading a mammogram file (DICOM, PNG, PGM) as a 16-bit image, or refusing it with a reason.

Inputs are refused with :class:`NotAMammogram` and a one-line reason when they cannot be a
mammogram: a DICOM file of another modality, colour, multi-frame or corrupt (see
:func:`mammocad.dicom.read_pixels`), a colour or undecodable PNG/PGM, a blank image, or
one much too small.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from mammocad.dicom import SkipImage, read_pixels
from mammocad.image_rules import image_problem
from mammocad.imaging import read_image as read_image_file

#: File name suffixes read as images besides DICOM.
IMAGE_SUFFIXES = (".png", ".pgm")


class NotAMammogram(Exception):
    """An input that cannot be read as a greyscale mammogram, with a one-line ``reason``."""

    def __init__(self, reason: str) -> None:
        reason = " ".join(str(reason).split())
        super().__init__(reason)
        self.reason = reason


def has_dicom_preamble(path: str | os.PathLike) -> bool:
    """Whether a file carries the DICOM Part 10 marker ``DICM`` after its 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silences OpenCV's own messages, which a corrupt PNG prints straight to stderr."""
    logging_ = cv2.utils.logging
    level = logging_.getLogLevel()
    logging_.setLogLevel(logging_.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_.setLogLevel(level)


def _is_pgm(path: Path) -> bool:
    """Whether the file starts like a binary or plain PGM (``P5``/``P2``)."""
    with open(path, "rb") as fh:
        return re.match(rb"^P[25]\s", fh.read(3)) is not None


def _decode_raster(path: Path) -> np.ndarray:
    """A PNG (or other OpenCV-readable raster) as a 2-D ``uint16`` image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise NotAMammogram(f"cannot read file: {exc.strerror or exc}") from None
    with _quiet_opencv():
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise NotAMammogram("cannot decode image")
    if image.ndim == 3:
        colour = image[..., :3] if image.shape[2] >= 3 else image[..., :1]
        if not all(
            np.array_equal(colour[..., 0], colour[..., c]) for c in range(1, colour.shape[2])
        ):
            raise NotAMammogram("not a greyscale mammogram: colour image")
        image = np.ascontiguousarray(colour[..., 0])
    if image.dtype == np.uint8:
        return image.astype(np.uint16) * 257
    if image.dtype != np.uint16:
        raise NotAMammogram(f"unsupported pixel type {image.dtype} (expected 8 or 16 bits)")
    return image


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Reads a mammogram file as a 2-D ``uint16`` image using the full 16-bit range.

    DICOM (by its ``DICM`` marker or a ``.dcm`` suffix) goes through
    :func:`mammocad.dicom.read_pixels`; other files are decoded by OpenCV, 8-bit grey
    multiplied by 257 and 16-bit grey kept; PGMs are read by :mod:`mammocad.imaging`, as the
    training pipeline reads them (stretched from ``0..maxval``).

    Returns:
        The image and its format (``dicom``, ``png``, ``pgm`` or the file's suffix).

    Raises:
        NotAMammogram: with the reason the file is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise NotAMammogram("no such file" if not path.exists() else "not a file")
    suffix = path.suffix.lower()
    if has_dicom_preamble(path) or suffix == ".dcm":
        try:
            image, kind = read_pixels(path).pixels, "dicom"
        except SkipImage as exc:
            raise NotAMammogram(exc.reason) from None
    else:
        try:
            if _is_pgm(path):
                # PGMs as training reads them: stretched from 0..maxval (mammocad.imaging)
                try:
                    image, kind = read_image_file(path).pixels, "pgm"
                except SkipImage as exc:
                    raise NotAMammogram(exc.reason) from None
            else:
                image, kind = _decode_raster(path), suffix.lstrip(".") or "raster"
        except NotAMammogram:
            if suffix in IMAGE_SUFFIXES:
                raise
            try:  # a DICOM without the Part 10 preamble and without a suffix
                image, kind = read_pixels(path).pixels, "dicom"
            except SkipImage:
                raise NotAMammogram("cannot decode image") from None
    check_image(image)
    return image, kind


def check_image(image: np.ndarray) -> None:
    """Refuses images that cannot be full mammograms (:mod:`mammocad.image_rules`).

    Raises:
        NotAMammogram: with the reason (too small, blank).
    """
    problem = image_problem(image)
    if problem:
        raise NotAMammogram(problem)
