"""int8 ONNX: static quantization with activation ranges calibrated on a seeded subset of
training patches, or dynamic quantization (weights only) where static is not asked for or
fails.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mammocad.models.data import ImageSet

log = logging.getLogger(__name__)


class _Calibration:
    """ONNX Runtime's calibration reader over batches of training patches."""

    def __init__(self, batches_: Sequence[np.ndarray]) -> None:
        self._batches = list(batches_)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {"patch": self._batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter({"patch": b} for b in self._batches)


def quantize_onnx(
    fp32_path: Path,
    int8_path: Path,
    method: Literal["auto", "static", "dynamic"],
    calibration: Sequence[np.ndarray] | None,
    calibration_method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool = True,
) -> dict[str, Any]:
    """Writes an int8 version of an FP32 ONNX graph.

    The graph is first pre-processed (shape inference and graph optimisation), as ONNX
    Runtime advises before quantization. Static quantization inserts QDQ pairs with
    per-channel int8 weights and uint8 activations whose ranges come from the calibration
    batches; dynamic quantization stores int8 weights and quantizes activations per
    batch at run time.

    Args:
        fp32_path: the FP32 graph.
        int8_path: where the int8 graph goes.
        method: ``static``, ``dynamic`` or ``auto`` (static, else dynamic).
        calibration: ``(B, 1, H, W)`` float32 batches of training patches; required for
            ``static``. ``auto`` without them quantizes dynamically.
        calibration_method: ``minmax``, ``entropy`` or ``percentile``.
        per_channel: per-channel weight scales.
        reduce_range: 7-bit weights (int8 values in [-64, 64]), which the uint8 × int8
            products of x86 CPUs without VNNI cannot saturate
            (:class:`~mammocad.export.config.ExportConfig`).

    Returns:
        ``{"method", "fallback_reason", "calibration_images", "calibration_method",
        "per_channel", "reduce_range"}``: what was actually done.

    Raises:
        ValueError: for ``static`` without calibration data.
        RuntimeError: if quantization fails (for ``auto``: if dynamic fails too).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method == "static" and not calibration:
        raise ValueError("static quantization needs calibration images")
    info: dict[str, Any] = {
        "method": None,
        "fallback_reason": None,
        "calibration_images": 0,
        "calibration_method": None,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
    }
    with tempfile.TemporaryDirectory(prefix="mammocad-quant-") as tmp, _quiet_quantizer():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        # The softmax stays in float: a uint8 probability has a resolution of 1/255,
        # coarser than the margins by which patches clear a decision threshold.
        keep_float = _nodes_of_type(prepared, "Softmax")
        if method in ("static", "auto") and calibration:
            try:
                quantize_static(
                    str(prepared),
                    str(int8_path),
                    _Calibration(calibration),
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=_CALIBRATION[calibration_method](CalibrationMethod),
                    nodes_to_exclude=keep_float,
                    reduce_range=reduce_range,
                    extra_options={"CalibTensorRangeSymmetric": False},
                )
                info.update(
                    method="static",
                    calibration_images=int(sum(len(b) for b in calibration)),
                    calibration_method=calibration_method,
                )
                return info
            except Exception as exc:  # auto falls back, static re-raises
                if method == "static":
                    raise RuntimeError(
                        f"{fp32_path}: static quantization failed: {type(exc).__name__}: {exc}"
                    ) from exc
                info["fallback_reason"] = f"static failed: {type(exc).__name__}: {exc}"
                log.warning("%s: %s; quantizing dynamically", fp32_path, info["fallback_reason"])
        elif method == "auto":
            info["fallback_reason"] = "no calibration images"
        try:
            quantize_dynamic(
                str(prepared),
                str(int8_path),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
            )
        except Exception as exc:  # reported with the file's name
            raise RuntimeError(
                f"{fp32_path}: dynamic quantization failed: {type(exc).__name__}: {exc}"
            ) from exc
        info["method"] = "dynamic"
        return info


def _nodes_of_type(path: Path, op_type: str) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == op_type]


_CALIBRATION: dict[str, Callable[[Any], Any]] = {
    "minmax": lambda m: m.MinMax,
    "entropy": lambda m: m.Entropy,
    "percentile": lambda m: m.Percentile,
}


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silences ONNX Runtime's per-node notices, which go to the root logger."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)


def calibration_batches(
    patches: ImageSet, n: int, seed: int, batch_size: int = 16
) -> list[np.ndarray]:
    """A seeded random subset of ``n`` training patches as float32 batches."""
    order = np.random.default_rng(seed).permutation(len(patches))[: min(n, len(patches))]
    order = np.sort(order)
    return [
        patches.get_batch(torch.as_tensor(order[i : i + batch_size]))[0].numpy()
        for i in range(0, len(order), batch_size)
    ]
