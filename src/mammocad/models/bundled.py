"""ImageNet weights bundled with the package, for machines that cannot download any.

Paper §3 fine-tunes ImageNet-pretrained MobileNets. Where torchvision's and timm's float
weights cannot be had (no network: air-gapped hospital machines), the two MobileNets of
Table 1 take ImageNet weights from the Apache-2.0 int8 TFLite models shipped in
``weights/`` (origin and checksums in ``weights/NOTICE``): MobileNet-v2 1.0/224 with its
1001-class classifier, and the MobileNet-v1 1.0/224 embedding extractor (no classifier).

The flatbuffer is read with the ``tflite`` package and every weight is dequantized to float
at load time (nothing is written to disk). TensorFlow folds batch-norm into the
convolutions; the folded weight goes into the PyTorch convolution and the folded bias into
the following batch-norm, given identity statistics, so the state dict keeps the library's
own keys and an eval-mode model adds exactly that bias.

The float model reproduces TFLite only on TFLite's own architecture, which differs from the
libraries' in two places, both part of :func:`tf_architecture` and so of every model built
for these weights (training, checkpoint reloading, ONNX and TorchScript export):

* TensorFlow's SAME padding: a stride-2 convolution on an even size pads 0 before and 1
  after, PyTorch pads symmetrically (:class:`TFSamePadConv2d`).
* The input range: the TF models take pixels mapped to [-1, 1]; a backbone whose spec
  normalises with other statistics (torchvision's MobileNet-v2: ImageNet mean and std)
  gets a fixed affine map in its stem (:class:`TFInputConv2d`), so callers keep
  normalising as the spec says.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mammocad.models.backbones import WeightsUnavailable, get_spec

logger = logging.getLogger(__name__)

#: Folder of the bundled weight files, inside the installed package.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The 1001 ImageNet labels of the TF models, line 0 ``background``.
LABELS_FILE = "imagenet_labels.txt"
#: SHA-256 of each bundled model (as in ``weights/NOTICE``): a flipped bit in a weight
#: still parses, so only the digest tells a damaged file from a good one.
SHA256 = {
    "mobilenet_v2_1.0_224_quant.tflite": (
        "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
    ),
    "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite": (
        "f409ef4f73fcbb9667841965623c5c8524aac33d41b9bf5f3667161fb4a76319"
    ),
}

# Mean and std that map [0, 1] pixels to the [-1, 1] range the TF-slim MobileNets trained on.
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)

_CONV_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


class BundledWeightsUnavailable(WeightsUnavailable):
    """A bundled weight file is missing or cannot be read as a TFLite model."""


class BundledWeightsMismatch(ValueError):
    """A bundled weight file does not fit the architecture it is loaded into."""


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


# --------------------------------------------------------------------------- reading


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


def bundled_path(filename: str) -> Path:
    """Path of a bundled weight file (see ``weights/NOTICE``)."""
    return WEIGHTS_DIR / filename


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in torchvision's order (the TF background dropped)."""
    lines = (WEIGHTS_DIR / LABELS_FILE).read_text(encoding="utf-8").splitlines()
    return lines[1:1001]


# --------------------------------------------------------------------------- architecture


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total padding of TensorFlow's SAME rule along one axis."""
    out = -(-size // stride)
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def _tf_same_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    ph = _same_pad(x.shape[-2], conv.kernel_size[0], conv.stride[0], conv.dilation[0])
    pw = _same_pad(x.shape[-1], conv.kernel_size[1], conv.stride[1], conv.dilation[1])
    if ph > 0 or pw > 0:
        # TensorFlow puts the odd pixel after (bottom, right); PyTorch has no such mode.
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


class TFSamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` padding like TensorFlow's SAME, for any input size.

    Its parameters are ``weight`` (and ``bias``), as for ``nn.Conv2d``, so state dicts are
    interchangeable; only the padding differs (0 before, 1 after for stride 2 on even
    sizes, where ``nn.Conv2d(padding=1)`` pads 1 on both sides).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _tf_same_conv(self, x)


class TFInputConv2d(TFSamePadConv2d):
    """The stem of a TF model, fed with input normalised by other statistics.

    Maps the caller's normalised input back to the TF range ``[-1, 1]`` before padding (TF
    pads zeros in its own range). The map is held in non-persistent buffers: it is part of
    the architecture, not of the state dict.
    """

    def __init__(self, *args, mean: Sequence[float], std: Sequence[float], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # x_norm = (x01 - mean) / std and x_tf = 2 * x01 - 1, so x_tf = 2 std x_norm + 2 mean - 1.
        scale = 2.0 * torch.tensor(std, dtype=torch.float32)
        shift = 2.0 * torch.tensor(mean, dtype=torch.float32) - 1.0
        self.register_buffer("input_scale", scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_shift", shift.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _tf_same_conv(self, x * self.input_scale + self.input_shift)


def _convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _swap(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, last, new)


def _rebuilt(conv: nn.Conv2d, cls: type[nn.Conv2d], **extra) -> nn.Conv2d:
    new = cls(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=0,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        **extra,
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def tf_architecture(
    model: nn.Module, mean: Sequence[float] = TF_MEAN, std: Sequence[float] = TF_STD
) -> nn.Module:
    """Turns a MobileNet into the architecture of its TFLite counterpart, in place.

    Strided convolutions with a kernel over 1 become :class:`TFSamePadConv2d` (stride-1
    ones already pad as SAME does: symmetrically). Where ``mean``/``std`` are not the TF
    models' own (0.5), the stem becomes a :class:`TFInputConv2d` that maps input normalised
    with them to ``[-1, 1]``. Parameter and buffer names in the state dict are unchanged.

    Args:
        model: a freshly built MobileNet (torchvision's or timm's).
        mean: per-channel mean the caller normalises input with.
        std: per-channel standard deviation the caller normalises input with.

    Returns:
        The same model.
    """
    convs = _convs(model)
    tf_input = not (np.allclose(mean, TF_MEAN) and np.allclose(std, TF_STD))
    for index, (path, conv) in enumerate(convs):
        strided = max(conv.stride) > 1 and max(conv.kernel_size) > 1
        if index == 0 and tf_input:
            _swap(model, path, _rebuilt(conv, TFInputConv2d, mean=mean, std=std))
        elif strided:
            _swap(model, path, _rebuilt(conv, TFSamePadConv2d))
    return model


# --------------------------------------------------------------------------- loading


def build_bundled(name: str) -> nn.Module:
    """A backbone with its bundled ImageNet weights and original head (paper §3).

    The TFLite architecture (:func:`tf_architecture`, for the spec's normalisation) with
    the dequantized weights; MobileNet-v2 gets its 1000-class classifier, MobileNet-v1
    (an embedding extractor) keeps a randomly initialised one.

    Args:
        name: a registered backbone with a bundled file (``mobilenet_v1``, ``mobilenet_v2``).

    Raises:
        KeyError: for an unknown backbone name.
        BundledWeightsUnavailable: if the backbone has no bundled weights, or their file is
            missing or unreadable.
        BundledWeightsMismatch: if the file does not fit the architecture.
    """
    spec = get_spec(name)
    if spec.bundled is None:
        raise BundledWeightsUnavailable(f"backbone {name!r} has no bundled ImageNet weights")
    model = tf_architecture(spec.builder(False), spec.mean, spec.std)
    load_tflite_weights(
        model,
        bundled_path(spec.bundled),
        spec.classifier,
        label=name,
        sha256=SHA256.get(spec.bundled),
    )
    return model


def weighted_layers(
    model: nn.Module, classifier: str | None = None
) -> list[tuple[str, nn.Module, nn.Module | None]]:
    """``(path, module, batch-norm or None)`` for each weighted layer, in forward order.

    Each convolution is paired with the next batch-norm over as many channels, before the
    next convolution: where TF folded it.
    """
    targets: list[list] = []
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            targets.append([path, module, None])
        elif (
            isinstance(module, nn.modules.batchnorm._BatchNorm)
            and targets
            and targets[-1][2] is None
            and isinstance(targets[-1][1], nn.Conv2d)
            and module.num_features == targets[-1][1].out_channels
        ):
            targets[-1][2] = module
    if classifier is not None:
        targets.append([classifier, model.get_submodule(classifier), None])
    return [tuple(t) for t in targets]


def load_tflite_weights(
    model: nn.Module,
    path: str | os.PathLike,
    classifier: str | None = None,
    label: str | None = None,
    sha256: str | None = None,
) -> int:
    """Loads a TFLite model's dequantized weights into the matching PyTorch model.

    The file's convolution layers map, in order, onto the model's ``nn.Conv2d`` modules;
    a final layer of the file with ``1 + out_features`` outputs maps onto the ``classifier``
    ``nn.Linear`` without its first row (TF's background class), giving torchvision's 1000
    ImageNet classes. A file that ends before the classifier (a feature extractor) leaves
    it as it is. Folded batch-norm: the weight goes into the convolution, the bias into the
    following batch-norm with identity statistics (mean 0, variance ``1 - eps``, scale 1).

    Args:
        model: the architecture, e.g. after :func:`tf_architecture`; modified in place.
        path: the ``.tflite`` file.
        classifier: dotted path of the final ``nn.Linear``, or None.
        label: how error messages name the model (default: its class name).
        sha256: the file's expected SHA-256, see :func:`read_tflite`.

    Returns:
        The number of layers loaded.

    Raises:
        BundledWeightsUnavailable: if the file is missing or unreadable.
        BundledWeightsMismatch: if a layer of the file does not fit the model, in one line
            naming the tensor, the model's layer and both shapes.
    """
    path = Path(path)
    layers = read_tflite(path, sha256)
    targets = weighted_layers(model, classifier)
    arch = label or type(model).__name__
    # Every layer is checked before any is written: a mismatch leaves the model untouched,
    # and the first tensor that does not fit is the one named.
    values = [
        _checked(path, arch, layer, name, module, bn)
        for layer, (name, module, bn) in zip(layers, targets, strict=False)
    ]
    if len(layers) > len(targets):
        extra = layers[len(targets)]
        raise BundledWeightsMismatch(
            f"{path.name}: tensor {extra.name!r} (op {extra.op_index}) has no counterpart: "
            f"{arch} has {len(targets)} weighted layers, the file {len(layers)}"
        )
    missing = targets[len(layers) :]
    if missing and not (len(missing) == 1 and missing[0][0] == classifier):
        raise BundledWeightsMismatch(
            f"{path.name}: ends after {len(layers)} weighted layers; {arch} "
            f"{missing[0][0]}.weight has no tensor"
        )
    for (weight, bias), (_, module, bn) in zip(values, targets, strict=False):
        _assign(module, bn, weight, bias)
    if missing:
        logger.info("%s holds no classifier: %s keeps its initialisation", path.name, classifier)
    return len(layers)


def _checked(
    path: Path, arch: str, layer: TFLiteLayer, name: str, module: nn.Module, bn
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(weight, bias)`` of a file layer for one model layer, or a one-line error."""
    weight = layer.weight
    if isinstance(module, nn.Linear):
        weight = weight.reshape(weight.shape[0], -1)
        if weight.shape[0] == module.out_features + 1:
            weight = weight[1:]  # TF's class 0 is "background"; torchvision has none
    expected = tuple(module.weight.shape)

    def mismatch(why: str) -> BundledWeightsMismatch:
        return BundledWeightsMismatch(
            f"{path.name}: tensor {layer.name!r} (op {layer.op_index}, {layer.op}) {why} "
            f"for {arch} {name}.weight"
        )

    if tuple(weight.shape) != expected:
        found = tuple(int(s) for s in layer.weight.shape)
        raise mismatch(f"has shape {found}, expected {expected}")
    if isinstance(module, nn.Conv2d):
        if tuple(layer.stride) != tuple(module.stride):
            raise mismatch(f"has stride {layer.stride}, expected {tuple(module.stride)}")
        if max(module.kernel_size) > 1 and not layer.same_padding:
            raise mismatch("pads VALID, expected SAME")
    bias = layer.bias
    if bias is not None and isinstance(module, nn.Linear) and bias.shape[0] == expected[0] + 1:
        bias = bias[1:]
    if bias is None:
        bias = np.zeros(expected[0], dtype=np.float32)
    elif bias.shape != (expected[0],):
        raise mismatch(f"has a bias of shape {tuple(bias.shape)}, expected ({expected[0]},)")
    if module.bias is None and bn is None and np.any(bias):
        raise mismatch("has a bias, but the layer has none and no batch-norm follows")
    return weight, bias


def _assign(module: nn.Module, bn: nn.Module | None, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(weight)))
        if bn is not None:
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(np.array(bias)))
            bn.running_mean.zero_()
            # eval-mode BN divides by sqrt(running_var + eps): 1 here, so it adds the bias
            bn.running_var.fill_(1.0 - bn.eps)
            if bn.num_batches_tracked is not None:
                bn.num_batches_tracked.zero_()
        elif module.bias is not None:
            module.bias.copy_(torch.from_numpy(np.array(bias)))
