"""Freed tensor memory kept for reuse instead of handed back to the kernel (glibc only).

glibc's ``malloc`` serves a request above its mmap threshold (adjusted at run time, at most
32 MiB) with a fresh ``mmap`` and unmaps it again on ``free``. A training step allocates
and frees activations of tens of megabytes (the shallow CNN's first block holds
32 × 16 × 256 × 160 floats, 84 MB), so every step the kernel maps and zero-fills those
pages anew. On two CPU cores that was a third of the shallow CNN's stage: 33 s of system
time in 82 s, and 24 s in the 73 s of MobileNet-v2 from scratch.

:func:`keep_freed_memory` raises the mmap and trim thresholds, so such blocks come from the
heap and stay there once freed, ready for the next step. The arithmetic does not change
(the same checkpoints byte for byte); the process keeps its high-water mark of memory
until it exits (peak resident memory 0.3–0.4 GB higher in those two stages).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

#: ``mallopt`` parameter numbers, from glibc's ``<malloc.h>``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Environment variables through which a user sets glibc's allocator; where one is set
#: (for ``GLIBC_TUNABLES``, with a ``glibc.malloc.`` tunable) the user's choice stands.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

#: The highest mmap threshold that older glibc versions accept on 64-bit systems (half
#: their 64 MiB heap size); glibc 2.36 takes larger values.
OLD_GLIBC_MAX = 32 << 20


def _user_settings() -> list[str]:
    """The :data:`USER_SETTINGS` that set the allocator in this process's environment."""
    found = []
    for name in USER_SETTINGS:
        value = os.environ.get(name, "")
        if value and (name != "GLIBC_TUNABLES" or "glibc.malloc." in value):
            found.append(name)
    return found


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Keeps freed blocks of up to ``limit`` bytes in the heap for reuse.

    Sets glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to ``limit`` (a glibc that
    refuses so high an mmap threshold gets :data:`OLD_GLIBC_MAX`). Does nothing, and
    returns ``False``, off Linux, on a C library other than glibc, or where the
    environment already sets the allocator (:data:`USER_SETTINGS`).

    Returns:
        ``True`` if both thresholds were set.
    """
    if not sys.platform.startswith("linux"):
        return False
    user = _user_settings()
    if user:
        log.debug("allocator left as the environment sets it (%s)", ", ".join(user))
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    value = min(int(limit), 2**31 - 1)
    mmap_set = bool(mallopt(M_MMAP_THRESHOLD, value)) or (
        value > OLD_GLIBC_MAX and bool(mallopt(M_MMAP_THRESHOLD, OLD_GLIBC_MAX))
    )
    applied = mmap_set and bool(mallopt(M_TRIM_THRESHOLD, value))
    log.debug("allocator: mmap and trim thresholds raised to %d bytes: %s", value, applied)
    return applied
