"""Paths taken from users' files and params, resolved and kept inside their root.

A labels CSV or a params value is data, not code, yet a path in it is opened and copied
into DVC outputs: ``../outside/x.png``, an absolute path or a symbolic link pointing out of
the folder would pull in files the user never meant to share (``../../../etc/passwd`` is
read and parsed like an image). Every such path is resolved (symbolic links followed)
and refused when it leaves its root.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath


class PathEscape(ValueError):
    """A path that leaves its root; the message says how."""


def resolve_inside(root: str | os.PathLike, cell: str) -> Path:
    """Resolves a relative path written in a file (``/`` or ``\\`` separators) below ``root``.

    Args:
        root: the folder the path must stay in (resolved here too).
        cell: the path as written, relative to ``root``.

    Returns:
        The resolved absolute path (it need not exist).

    Raises:
        PathEscape: for an absolute path (POSIX or Windows), or one that leaves ``root``
            through ``..`` components or symbolic links.
    """
    text = cell.replace("\\", "/")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(cell).drive:
        raise PathEscape(f"absolute path {cell!r}: paths must be relative to the root")
    base = Path(root).resolve()
    path = (base / text).resolve()
    if not path.is_relative_to(base):
        how = "a symbolic link" if ".." not in PurePosixPath(text).parts else "'..'"
        raise PathEscape(f"path {cell!r} leaves the root {base} (through {how})")
    return path


def is_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` (symbolic links followed) lies within ``root``."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())
