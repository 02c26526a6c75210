"""mammocad.parallel.imap: order, and pools that end without hanging or leaking workers."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from mammocad.parallel import imap, resolve_workers


def _square(x: int) -> int:
    return x * x


def _pid(_: int) -> int:
    return os.getpid()


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_input_order(workers):
    assert list(imap(_square, range(50), workers=workers)) == [x * x for x in range(50)]


def test_finished_pool_leaves_no_worker_behind():
    pids = set(imap(_pid, range(40), workers=2))
    assert os.getpid() not in pids  # the work ran in worker processes
    assert mp.active_children() == []  # closed and joined, none left running


def test_abandoned_or_failed_pool_is_terminated():
    results = imap(_square, range(1000), workers=2)
    assert next(results) == 0
    results.close()  # the consumer stops early: the pool is terminated and joined
    assert mp.active_children() == []
    with pytest.raises(ValueError, match="three"):
        list(imap(_fail_on_three, range(10), workers=2))
    assert mp.active_children() == []


def test_resolve_workers():
    assert resolve_workers(3) == 3
    assert resolve_workers(0) >= 1
    with pytest.raises(ValueError):
        resolve_workers(-1)
