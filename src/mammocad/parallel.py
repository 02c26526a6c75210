"""Streaming, order-preserving parallel map with a progress bar (log lines without a TTY).

Workers receive one task at a time (``chunksize=1``) and results are consumed as they
arrive, so memory stays bounded by the number of workers rather than the dataset size.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from mammocad.progress import progress

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


def resolve_workers(workers: int) -> int:
    """Turns a ``workers`` param into a process count: ``0`` means every available core."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)
    return workers


def imap(
    func: Callable[[T], R],
    tasks: Iterable[T],
    workers: int = 0,
    desc: str = "",
    total: int | None = None,
    unit: str = "img",
) -> Iterator[R]:
    """Applies ``func`` to each task in worker processes, yielding results in order.

    Args:
        func: a picklable top-level function.
        tasks: the inputs; consumed lazily.
        workers: process count, ``0`` for all cores, ``1`` to run in this process.
        desc: progress-bar label.
        total: number of tasks, for the bar when ``tasks`` has no length.
        unit: progress-bar unit.

    Yields:
        ``func(task)`` for each task, in input order.
    """
    n = resolve_workers(workers)
    if total is None and hasattr(tasks, "__len__"):
        total = len(tasks)  # type: ignore[arg-type]
    bar = progress(total=total, desc=desc, unit=unit)
    try:
        if n == 1:
            for task in tasks:
                yield func(task)
                bar.update()
            return
        # fork is cheap and inherits imported modules; spawn would re-import torch per worker.
        ctx = mp.get_context("fork")
        pool = ctx.Pool(n, maxtasksperchild=200)
        done = False
        try:
            for result in pool.imap(func, tasks, chunksize=1):
                yield result
                bar.update()
            done = True
        finally:
            # After the last result the workers are told to stop and leave on their own.
            # Terminating them instead (what ``with Pool()`` does) signals workers that may
            # be waiting on the task queue's lock; one that dies holding it, or whose signal
            # lands on another of its threads, leaves a sibling blocked and the join hangs.
            if done:
                pool.close()
            else:
                pool.terminate()
            pool.join()
    finally:
        bar.close()
