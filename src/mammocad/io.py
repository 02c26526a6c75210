"""File helpers: atomic outputs, lossless 16-bit PNG I/O and file checksums.

A stage that fails must leave no half-written output, so every output directory is built
under a temporary sibling and renamed into place only once complete, and single files are
written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd


def _fresh_name(parent: Path, prefix: str, make: Callable[[Path], Any]) -> Path:
    """Creates a new file or folder under a random name with ``make(path)``.

    Unlike ``tempfile``'s private 0600 and 0700, ``make`` creates it as ``open`` and
    ``mkdir`` create anything, so the umask, a default ACL and a set-group-id parent apply:
    renamed into place, outputs are as readable as any other file of a shared folder.
    """
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            make(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary name {prefix}* in {parent}")


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a fresh temporary directory that replaces ``target`` on success.

    On an exception the temporary directory is removed and ``target`` is left as it was.
    The folder is made as ``mkdir`` makes any (umask, default ACL, set-group-id parent),
    not private as ``mkdtemp`` makes it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_name(target.parent, f".{target.name}.tmp-", os.mkdir)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Opens a temporary file beside ``target`` and renames it over ``target`` on success.

    The file is made as ``open`` makes any (umask, default ACL, set-group-id parent), not
    private as ``mkstemp`` makes it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_name(target.parent, f".{target.name}.tmp-", _new_file)
    try:
        with open(tmp, mode) as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes ``data`` as indented, key-sorted JSON, atomically."""
    with atomic_file(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=_json_default)
        fh.write("\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Writes a data frame as CSV without its index, atomically."""
    with atomic_file(path) as fh:
        frame.to_csv(fh, index=False)


# Huffman-only deflate after the SUB filter: on 16-bit mammograms it encodes about 3× faster
# than zlib level 1 with adaptive filters, and the files come out no larger.
_PNG_FLAGS = [
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
    cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB,
]  # fmt: skip


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes an 8- or 16-bit single-channel image as a lossless PNG.

    Raises:
        ValueError: for another dtype or shape, naming the path.
        OSError: if OpenCV cannot encode or write the file.
    """
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"{path}: expected a 2-D uint8/uint16 image, got {image.dtype} {image.shape}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), _PNG_FLAGS)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    buf.tofile(str(path))


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Reads a PNG keeping its bit depth (8 or 16) as a 2-D array.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if it cannot be decoded as a single-channel image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: cannot decode image")
    if image.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel image, got shape {image.shape}")
    return image
