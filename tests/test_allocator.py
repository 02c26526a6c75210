"""Freed tensor memory is reused, not faulted in from the kernel again (glibc)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from mammocad.allocator import USER_SETTINGS, keep_freed_memory

#: Allocates, fills and frees a 64 MiB tensor: twenty rounds to settle (the heap first
#: grows by up to eight such blocks, which the padded requests of an aligned allocation
#: do not fit), then prints the minor page faults and the growth of resident memory over
#: ten more, and what the call returned.
CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import psutil, torch
    from mammocad.allocator import keep_freed_memory

    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def rounds(n):
        for _ in range(n):
            torch.empty(16 << 20).fill_(1.0)
    rounds(20)
    before, rss = faults(), psutil.Process().memory_info().rss
    rounds(10)
    grown = psutil.Process().memory_info().rss - rss
    print(json.dumps({"applied": applied, "faults": faults() - before, "grown": grown}))
    """
)

glibc_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt thresholds are glibc's (Linux)",
)

#: Faults of ten fresh 64 MiB mappings at least: one per page, or one per 2 MiB where the
#: kernel backs them with transparent huge pages.
FRESH = 10 * 32


def _child(mode: str, **env: str) -> dict:
    # torch's own huge-page option (THP_MEM_ALLOC_ENABLE) aligns large blocks to 2 MiB,
    # which changes how many faults a mapping costs and how the heap settles
    drop = (*USER_SETTINGS, "THP_MEM_ALLOC_ENABLE")
    clean = {k: v for k, v in os.environ.items() if k not in drop}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_linux
def test_freed_blocks_are_reused_without_page_faults():
    # 64 MiB is 16,384 pages of 4 KiB: mapped anew, ten rounds fault about 164,000 times
    default = _child("default")
    kept = _child("keep")
    assert default["faults"] >= FRESH, default
    assert kept["applied"] is True
    assert kept["faults"] * 10 < default["faults"], (kept, default)
    # reused, not leaked: the settled heap does not grow
    assert kept["grown"] < 16 << 20, kept


@glibc_linux
@pytest.mark.parametrize(
    "env",
    [{"MALLOC_MMAP_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}],
    ids=["MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"],
)
def test_the_environment_setting_stands(env):
    kept = _child("keep", **env)
    assert kept["applied"] is False
    assert kept["faults"] >= FRESH, kept


@glibc_linux
def test_tunables_of_other_parts_do_not_count():
    kept = _child("keep", GLIBC_TUNABLES="glibc.cpu.x86_ibt=on")
    assert kept["applied"] is True


def test_off_linux_nothing_happens(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
