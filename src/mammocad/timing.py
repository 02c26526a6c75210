"""Timings and machine facts kept apart from the science in metrics files.

Two runs of the same params on one machine give the same weights and the same metrics, but
never the same seconds. Stages write a metrics record in two files: the science (declared
as DVC ``metrics:``, compared by ``dvc metrics diff``) and, under ``metrics/timing/``, the
keys named in :data:`TIMING_KEYS` (not declared, so that DVC neither reports nor locks
them). :func:`read_metrics` puts the two back together for readers that want both, such
as the deployment report.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mammocad.io import write_json

#: Keys whose values depend on the machine's speed or load, wherever they occur.
TIMING_KEYS = frozenset(
    {
        "latency",
        "seconds",
        "train_seconds",
        "images_per_second",
        "heatmap_seconds",
        "speedup_int8_vs_eager",
        "speedup_onnx_vs_eager",
    }
)

#: Folder of the timing files, relative to the project root.
TIMING_DIR = Path("metrics/timing")


def split_timing(record: Any, keys: frozenset[str] = TIMING_KEYS) -> tuple[Any, Any]:
    """Splits a nested record into its science and its timings.

    Mappings lose the keys in ``keys`` (at any depth) to the timing part; lists of
    mappings (per-epoch histories) keep their length in both parts, the timing part's
    entries holding ``epoch`` where the science has it.

    Returns:
        ``(science, timing)``; ``timing`` is ``None`` where nothing was removed.
    """
    if isinstance(record, Mapping):
        science, timing = {}, {}
        for key, value in record.items():
            if key in keys:
                timing[key] = value
                continue
            kept, moved = split_timing(value, keys)
            science[key] = kept
            if moved is not None:
                timing[key] = moved
        return science, (timing or None)
    if isinstance(record, list) and record and all(isinstance(v, Mapping) for v in record):
        parts = [split_timing(v, keys) for v in record]
        if all(t is None for _, t in parts):
            return [s for s, _ in parts], None
        timing = [
            {**({"epoch": v["epoch"]} if "epoch" in v else {}), **(t or {})}
            for v, (_, t) in zip(record, parts, strict=True)
        ]
        return [s for s, _ in parts], timing
    return record, None


def merge_timing(science: Any, timing: Any) -> Any:
    """The inverse of :func:`split_timing`: the timing part merged back into the science."""
    if timing is None:
        return science
    if isinstance(science, Mapping) and isinstance(timing, Mapping):
        out = dict(science)
        for key, value in timing.items():
            out[key] = merge_timing(science[key], value) if key in science else value
        return out
    if isinstance(science, list) and isinstance(timing, list) and len(science) == len(timing):
        return [merge_timing(s, t) for s, t in zip(science, timing, strict=True)]
    return science


def timing_path(root: str | os.PathLike, metrics_path: str | os.PathLike) -> Path:
    """Where the timings of ``root/metrics/<rel>`` go: ``root/metrics/timing/<rel>``."""
    root, path = Path(root), Path(metrics_path)
    rel = path.relative_to(root / "metrics") if path.is_absolute() else path
    if rel.parts and rel.parts[0] == "metrics":
        rel = Path(*rel.parts[1:])
    return root / TIMING_DIR / rel


def write_metrics(
    path: str | os.PathLike, record: Mapping[str, Any], root: str | os.PathLike
) -> dict[str, Any]:
    """Writes a metrics record's science to ``path`` and its timings beside it.

    Args:
        path: the metrics JSON under ``root/metrics/``.
        record: the whole record.
        root: the project root.

    Returns:
        The science part, as written.
    """
    science, timing = split_timing(dict(record))
    write_json(path, science)
    if timing is not None:
        write_json(timing_path(root, path), timing)
    return science


def read_metrics(path: str | os.PathLike, root: str | os.PathLike) -> dict[str, Any]:
    """A metrics record with its timings merged back where the timing file exists."""
    science = json.loads(Path(path).read_text())
    extra = timing_path(root, path)
    if extra.is_file():
        return merge_timing(science, json.loads(extra.read_text()))
    return science


def time_calls(
    call: Callable[[], object],
    repeats: int,
    warmup: int = 3,
    sync: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Wall-clock milliseconds of ``repeats`` calls after ``warmup`` untimed ones.

    The one latency timer of the pipeline (the evaluate stage's batch-1 latency, the
    export stage's deployment table). ``sync`` (e.g. ``torch.cuda.synchronize``) runs
    after the warm-up and after each timed call, so asynchronous work is counted.

    Returns:
        ``{"median_ms", "p90_ms", "mean_ms", "repeats"}``.
    """
    for _ in range(warmup):
        call()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if sync is not None:
            sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "median_ms": statistics.median(times),
        "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": statistics.fmean(times),
        "repeats": repeats,
    }
