"""Model size and batch-1 latency, the deployment argument of paper §4.3.

torch is imported where a model is timed, not with the module: the report stage reads
file sizes through :mod:`mammocad.evaluate` and needs no torch (2 s of its start-up).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mammocad.timing import time_calls

if TYPE_CHECKING:
    from torch import nn


def latency_ms(
    model: nn.Module,
    input_shape: Sequence[int],
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, Any]:
    """Batch-1 inference latency, the deployment argument of paper §4.3 for MobileNet.

    Times ``repeats`` forward passes of one random image (after ``warmup`` untimed ones)
    in eval mode on the model's device; the model's mode and the thread count are
    restored afterwards.

    Args:
        model: the classifier.
        input_shape: ``(C, H, W)`` of one image, or ``(1, C, H, W)``.
        repeats: timed passes.
        warmup: untimed passes first (allocations, kernel selection).
        threads: CPU threads during timing; ``None`` keeps the current setting.

    Returns:
        ``{"median_ms", "p90_ms", "mean_ms", "repeats", "threads"}``.

    Raises:
        ValueError: for a batch other than 1, ``repeats < 1`` or ``warmup < 0``.
    """
    import torch

    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"input_shape must be (C, H, W) or (1, C, H, W), got {input_shape}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device = next(model.parameters(), torch.zeros(0)).device
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    was_training = model.training
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    model.eval()
    try:
        with torch.inference_mode():
            timed = time_calls(lambda: model(x), repeats, warmup, sync)
        used_threads = torch.get_num_threads()
    finally:
        model.train(was_training)
        torch.set_num_threads(previous_threads)
    return {**timed, "threads": used_threads}


def model_file_mb(path: str | os.PathLike) -> float:
    """Size of a saved model file in MiB (2^20 bytes), for the memory claim of paper §4.3.

    Raises:
        FileNotFoundError: if the file is missing.
    """
    return os.path.getsize(path) / 2**20
