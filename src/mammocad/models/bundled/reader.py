"""Reads the weighted layers of a TFLite flatbuffer, dequantized to float."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mammocad.models.backbones.spec import WeightsUnavailable

_CONV_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


class BundledWeightsUnavailable(WeightsUnavailable):
    """A bundled weight file is missing or cannot be read as a TFLite model."""


@dataclass(frozen=True)
class TFLiteLayer:
    """One weighted layer of a TFLite graph, dequantized to float.

    Attributes:
        name: the weight tensor's name (its first ``;``-separated part).
        op_index: position of the operator in the graph.
        op: ``"CONV_2D"``, ``"DEPTHWISE_CONV_2D"`` or ``"FULLY_CONNECTED"``.
        weight: float32, in PyTorch's layout: ``(out, in / groups, kh, kw)`` for
            convolutions, ``(out, in)`` for fully connected layers.
        bias: float32 ``(out,)``, or None.
        stride: ``(height, width)``.
        same_padding: whether the op pads SAME (else VALID).
    """

    name: str
    op_index: int
    op: str
    weight: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, int]
    same_padding: bool


def _op_names() -> dict[int, str]:
    from tflite.BuiltinOperator import BuiltinOperator

    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}


def _dtype(tensor_type: int) -> np.dtype:
    from tflite.TensorType import TensorType as T

    types = {
        T.FLOAT32: np.float32,
        T.FLOAT16: np.float16,
        T.INT32: np.int32,
        T.UINT8: np.uint8,
        T.INT8: np.int8,
        T.INT16: np.int16,
        T.INT64: np.int64,
    }
    if tensor_type not in types:
        raise ValueError(f"unsupported tensor type {tensor_type}")
    return np.dtype(types[tensor_type])


def _quantization(tensor) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(scale, zero_point, quantized_dimension)`` of a tensor, None where it is float."""
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    scale = q.ScaleAsNumpy().astype(np.float64)
    zero = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(1)
    return scale, np.asarray(zero, dtype=np.float64), int(q.QuantizedDimension())


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """Reshapes per-channel ``values`` to broadcast along ``axis`` of an ``ndim`` array."""
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def _raw(model, buf: bytes, tensor) -> np.ndarray:
    """The stored values of a constant tensor, in its own dtype and shape."""
    buffer = model.Buffers(tensor.Buffer())
    dtype = _dtype(tensor.Type())
    shape = tuple(int(s) for s in tensor.ShapeAsNumpy())
    count = int(np.prod(shape)) if shape else 1
    # Models over 2 GB keep tensor data after the flatbuffer, addressed by offset and size.
    offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
    if offset > 1:
        data = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    else:
        data = buffer.DataAsNumpy()
        if not isinstance(data, np.ndarray):
            raise ValueError(f"tensor {_short(tensor)!r} has no data")
        data = data.view(dtype)
    if data.size != count:
        raise ValueError(f"tensor {_short(tensor)!r} holds {data.size} values, not {count}")
    return data.reshape(shape)


def _dequantize(raw: np.ndarray, quant, scale_override: np.ndarray | None = None) -> np.ndarray:
    """Real values of a quantized tensor: ``(q - zero_point) * scale``, per tensor or channel."""
    if quant is None:
        return raw.astype(np.float32)
    scale, zero, axis = quant
    if scale_override is not None:
        scale, zero = scale_override, np.zeros(1)
    values = raw.astype(np.float64)
    values = (values - _along(zero, axis, raw.ndim)) * _along(scale, axis, raw.ndim)
    return values.astype(np.float32)


def _short(tensor) -> str:
    return tensor.Name().decode("utf-8", "replace").split(";", 1)[0]


def _options(op, op_name: str) -> tuple[tuple[int, int], bool]:
    """``(stride, same_padding)`` of a convolution operator."""
    import tflite

    if op_name == "FULLY_CONNECTED":
        return (1, 1), False
    table = op.BuiltinOptions()
    opts = tflite.Conv2DOptions() if op_name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
    opts.Init(table.Bytes, table.Pos)
    return (opts.StrideH(), opts.StrideW()), opts.Padding() == tflite.Padding.SAME


def _layer(model, buf: bytes, graph, index: int, op_name: str) -> TFLiteLayer:
    op = graph.Operators(index)
    inputs = [int(i) for i in op.InputsAsNumpy()]
    x, w = graph.Tensors(inputs[0]), graph.Tensors(inputs[1])
    w_quant = _quantization(w)
    weight = _dequantize(_raw(model, buf, w), w_quant)
    if op_name == "CONV_2D":  # OHWI -> OIHW
        weight = weight.transpose(0, 3, 1, 2)
    elif op_name == "DEPTHWISE_CONV_2D":  # 1HW(C*M) -> (C*M)1HW
        weight = weight.transpose(3, 0, 1, 2)
    bias = None
    if len(inputs) > 2 and inputs[2] >= 0:
        b = graph.Tensors(inputs[2])
        raw = _raw(model, buf, b)
        override = None
        x_quant = _quantization(x)
        if raw.dtype.kind in "iu" and x_quant is not None and w_quant is not None:
            # TFLite's integer kernels take an int32 bias in units of input_scale *
            # weight_scale (per output channel), whatever scale the file records for it.
            override = x_quant[0].reshape(-1)[0] * w_quant[0].reshape(-1)
        bias = _dequantize(raw, _quantization(b), override)
    stride, same = _options(op, op_name)
    return TFLiteLayer(
        name=_short(w),
        op_index=index,
        op=op_name,
        weight=np.ascontiguousarray(weight),
        bias=bias,
        stride=stride,
        same_padding=same,
    )


def _parse(path: Path, sha256: str | None) -> tuple[TFLiteLayer, ...]:
    import tflite

    buf = path.read_bytes()
    if sha256 is not None and (digest := hashlib.sha256(buf).hexdigest()) != sha256:
        raise ValueError(f"SHA-256 {digest[:12]}... is not the expected {sha256[:12]}...")
    if len(buf) < 8 or not tflite.Model.ModelBufferHasIdentifier(buf, 0):
        raise ValueError("no TFLite file identifier (TFL3)")
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise ValueError("no subgraph")
    graph = model.Subgraphs(0)
    names = _op_names()
    layers = []
    for index in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(index).OpcodeIndex())
        # Schema v3a moved builtin codes past 127 into a new field; take the larger.
        op_name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
        if op_name in _CONV_OPS:
            layers.append(_layer(model, buf, graph, index, op_name))
    if not layers:
        raise ValueError("no convolution or fully connected layer")
    return tuple(layers)


@lru_cache(maxsize=4)
def _read_cached(
    path: str, mtime_ns: int, size: int, sha256: str | None
) -> tuple[TFLiteLayer, ...]:
    layers = _parse(Path(path), sha256)
    for layer in layers:  # shared between callers through the cache
        layer.weight.setflags(write=False)
        if layer.bias is not None:
            layer.bias.setflags(write=False)
    return layers


def read_tflite(path: str | os.PathLike, sha256: str | None = None) -> tuple[TFLiteLayer, ...]:
    """Reads the weighted layers of a TFLite model, dequantized to float, in graph order.

    Results are cached in memory per file (keyed by path, modification time and size).

    Args:
        path: the ``.tflite`` file.
        sha256: the file's expected SHA-256 (hex), checked before parsing; None skips it.

    Returns:
        One :class:`TFLiteLayer` per convolution or fully connected operator; their arrays
        are read-only.

    Raises:
        BundledWeightsUnavailable: if the file is missing or is not a readable TFLite model
            (truncated, corrupt, another format, another digest), naming the file.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as err:
        raise BundledWeightsUnavailable(
            f"bundled weights file {path} is missing ({err.strerror or err}); reinstall "
            "mammocad or restore it from the repository"
        ) from err
    try:
        return _read_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size, sha256)
    except Exception as err:  # a corrupt flatbuffer fails in many ways (struct, index, value)
        raise BundledWeightsUnavailable(
            f"bundled weights file {path} is not a readable TFLite model, truncated or "
            f"corrupt ({type(err).__name__}: {err}); reinstall mammocad or restore it"
        ) from err
