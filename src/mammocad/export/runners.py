"""Checks and latency of the exports: PyTorch and ONNX Runtime runners over the same
patches, their probabilities compared with eager PyTorch, and batch-1 timing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mammocad.evaluate import binary_metrics
from mammocad.models.data import ImageSet, batches
from mammocad.timing import time_calls


def ort_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and full optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


Runner = Callable[[np.ndarray], np.ndarray]


def torch_runner(model: nn.Module) -> Runner:
    """Runs an eval-mode PyTorch (or TorchScript) module on a float32 batch."""
    model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def onnx_runner(session: Any) -> Runner:
    """Runs an ONNX Runtime session on a float32 batch."""
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


def malignant_probability(run: Runner, patches: ImageSet, batch_size: int = 32) -> np.ndarray:
    """Class-1 probability of every patch of a grey [0, 1] set, in order."""
    out = [run(x.numpy())[:, 1] for x, _ in batches(patches, batch_size)]
    return np.concatenate(out).astype(np.float64)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's intra-op thread count for the duration of the block."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_runner(run: Runner, example: np.ndarray, repeats: int, warmup: int = 3) -> dict:
    """Batch-1 latency of a runner: median, 90th percentile and mean in milliseconds."""
    return time_calls(lambda: run(example), repeats, warmup)


def compare(
    reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, Any]:
    """How a variant's malignancy probabilities agree with PyTorch's on the same patches.

    Returns:
        ``max_prob_diff`` and ``mean_prob_diff`` (absolute), ``decision_agreement`` (share
        of patches on the same side of ``threshold``), and the variant's ``accuracy`` and
        ``roc_auc`` at that threshold.
    """
    diff = np.abs(probs - reference)
    metrics = binary_metrics(labels, probs, threshold)
    return {
        "max_prob_diff": float(diff.max()),
        "mean_prob_diff": float(diff.mean()),
        "decision_agreement": float(np.mean((probs >= threshold) == (reference >= threshold))),
        "accuracy": metrics["accuracy"],
        "roc_auc": metrics["roc_auc"],
    }
