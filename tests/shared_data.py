"""Where the tests find the real data of ``../shared/data``.

Tests that need it skip with the reason where it is absent (a user's clone) and fail where
``CI=true``, so that CI never passes by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_dir() -> Path:
    """The shared folder: ``$MAMMOCAD_SHARED`` or ``../shared`` beside the repository."""
    override = os.environ.get("MAMMOCAD_SHARED")
    return Path(override) if override else REPO_ROOT.parent / "shared"


def require(path: Path, what: str) -> Path:
    """Returns ``path``; skips the test (fails it under ``CI=true``) when it is absent."""
    if not path.exists():
        message = f"{what} not found at {path} (set MAMMOCAD_SHARED to the shared folder)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
