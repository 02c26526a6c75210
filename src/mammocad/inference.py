"""The patch networks rebuilt for inference: fast to import, fast to run on CPUs.

``mammocad predict`` loads one fine-tuned backbone and runs it over a whole mammogram;
the ``evaluate`` and ``localize`` stages and the MLflow model's loader rebuild backbones
from checkpoints too. Two things cost more than they need to there:

* timm takes about 2 s to import on a 2-core machine (it needs ``torch._dynamo`` at import
  time) and imports torchvision. A checkpoint's MobileNet needs neither:
  :class:`MobileNetV1` is timm's ``mobilenetv1_100`` and :class:`MobileNetV2`
  torchvision's ``mobilenet_v2`` with the same module paths and the same parameter and
  buffer names, so that a checkpoint of either loads into them and they compute the same
  function, bit for bit in evaluation mode (``tests/test_inference.py`` compares them with
  the libraries' models, in the library and the bundled-weight layouts).
  :func:`build_architecture` uses them and falls back to
  :func:`mammocad.models.backbones.build_architecture` for the other backbones.
* :func:`fuse_for_inference` folds each batch normalisation into the convolution before
  it (about a quarter of a CPU pass went to normalising activations that the convolution
  can produce already scaled), applies ReLU6 as the convolution writes its output
  (oneDNN's fused kernel, where torch has it), and computes the asymmetric padding of the
  bundled-weight layout's strided convolutions
  (:class:`mammocad.models.bundled.TFSamePadConv2d`) with a zero row and column in the
  kernel instead of a padded copy of the input. Outputs change by float rounding only.

Training never uses this module, and it lives outside ``mammocad/models/`` on purpose: that
folder is a dependency of the training stages in ``dvc.yaml``, and inference-only code
there would make ``dvc repro`` retrain every backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mammocad.models import backbones

#: MobileNet-v1 stages as timm's ``mobilenetv1_100`` builds them: (output channels,
#: stride of the first block, blocks).
V1_STAGES = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 2, 6), (1024, 2, 2))
#: MobileNet-v2 inverted-residual settings as torchvision's: expansion t, channels c,
#: repeats n, stride s.
V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def build_architecture(
    name: str, init_source: str | None = "scratch", num_classes: int = 2
) -> nn.Module:
    """:func:`mammocad.models.backbones.build_architecture`, without torchvision or timm
    for the MobileNets: the same state-dict keys and the same outputs.

    Raises:
        KeyError: for an unknown backbone name.
        ValueError: for an unknown ``init_source``.
    """
    builder = STANDALONE.get(name)
    if builder is None:
        return backbones.build_architecture(name, init_source, num_classes)
    sources = (*backbones.SOURCES, "imagenet")
    if init_source is not None and init_source not in sources:
        raise ValueError(f"unknown init source {init_source!r}; valid: {', '.join(sources)}")
    spec = backbones.get_spec(name)
    model = builder()
    if init_source == backbones.BUNDLED:
        from mammocad.models.bundled.architecture import tf_architecture

        tf_architecture(model, spec.mean, spec.std)
    backbones.replace_head(model, spec.classifier, num_classes)
    return model


class BatchNormAct2d(nn.BatchNorm2d):
    """Batch normalisation followed by ReLU6, as timm's ``BatchNormAct2d`` (same state)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.drop = nn.Identity()
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class DepthwiseSeparableConv(nn.Module):
    """timm's depthwise-separable block without skip: 3×3 depthwise, then 1×1 pointwise."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(
            in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False
        )
        self.bn1 = BatchNormAct2d(in_channels)
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = BatchNormAct2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))


class MobileNetV1(nn.Module):
    """timm's ``mobilenetv1_100``: stem, 13 depthwise-separable blocks, average pool, linear.

    The 1000-class head is replaced by the caller (as for the library's model).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = BatchNormAct2d(32)
        stages, channels = [], 32
        for out_channels, stride, repeats in V1_STAGES:
            blocks = []
            for i in range(repeats):
                blocks.append(
                    DepthwiseSeparableConv(channels, out_channels, stride if i == 0 else 1)
                )
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn1(self.conv_stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def conv_bn_act(self) -> list[tuple[str, str, str | None]]:
        """Module paths of each convolution, its batch norm and its ReLU6 (or None)."""
        out = [("conv_stem", "bn1", "bn1.act")]
        for s, stage in enumerate(self.blocks):
            for b in range(len(stage)):
                p = f"blocks.{s}.{b}"
                out += [(f"{p}.conv_dw", f"{p}.bn1", f"{p}.bn1.act")]
                out += [(f"{p}.conv_pw", f"{p}.bn2", f"{p}.bn2.act")]
        return out


class ConvNormActivation(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with ReLU6: convolution, batch norm, ReLU6."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel,
                stride,
                (kernel - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """torchvision's MobileNet-v2 block: 1×1 expansion, 3×3 depthwise, 1×1 projection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormActivation(in_channels, hidden, kernel=1))
        layers += [
            ConvNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's ``mobilenet_v2`` (width 1.0): features, average pool, dropout, linear.

    The 1000-class head is replaced by the caller (as for the library's model).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        channels = 32
        features: list[nn.Module] = [ConvNormActivation(3, channels, stride=2)]
        for t, c, n, s in V2_SETTING:
            for i in range(n):
                features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        features.append(ConvNormActivation(channels, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))

    def conv_bn_act(self) -> list[tuple[str, str, str | None]]:
        """Module paths of each convolution, its batch norm and its ReLU6 (or None)."""
        out: list[tuple[str, str, str | None]] = []
        for name, module in self.named_modules():
            if isinstance(module, ConvNormActivation):
                out.append((f"{name}.0", f"{name}.1", f"{name}.2"))
            elif isinstance(module, InvertedResidual):
                last = len(module.conv) - 1  # the linear 1×1 projection and its norm
                out.append((f"{name}.conv.{last - 1}", f"{name}.conv.{last}", None))
        return out


#: Backbones defined here, by registry name.
STANDALONE: dict[str, type[nn.Module]] = {"mobilenet_v1": MobileNetV1, "mobilenet_v2": MobileNetV2}


# --------------------------------------------------------------------------- inference

#: oneDNN's convolution with a fused activation (what ``torch.compile`` emits on CPUs):
#: ReLU6 applied while the output is written instead of in a second pass over it.
_CONV_POINTWISE = (
    getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
    if torch.backends.mkldnn.is_available()
    else None
)


class InferenceConv2d(nn.Module):
    """A convolution with its batch norm folded in and its ReLU6 fused, for inference.

    TensorFlow-SAME 3×3 stride-2 convolutions (the bundled-weight layout's
    :class:`~mammocad.models.bundled.TFSamePadConv2d`) pad 0 before and 1 after an even
    side, 1 and 1 an odd one; here they pad 1 on both sides with a zero row (column)
    prepended to the kernel for an even side, which gives the same sums without a padded
    copy of the input. The input map of a :class:`~mammocad.models.bundled.TFInputConv2d`
    stem is kept.

    Args:
        conv: the convolution, its batch norm already folded into ``weight`` and ``bias``.
        relu6: apply ReLU6 to the output.
        tf_same: ``conv`` pads like TensorFlow's SAME (3×3, stride 2, no dilation only).
    """

    def __init__(self, conv: nn.Conv2d, relu6: bool, tf_same: bool = False) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
        self.padding = (1, 1) if tf_same else conv.padding
        self.relu6, self.tf_same = relu6, tf_same
        self.mapped = hasattr(conv, "input_scale")
        if self.mapped:
            self.register_buffer("input_scale", conv.input_scale, persistent=False)
            self.register_buffer("input_shift", conv.input_shift, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mapped:
            x = x * self.input_scale + self.input_shift
        weight = self.weight
        if self.tf_same:
            top, left = int(x.shape[-2] % 2 == 0), int(x.shape[-1] % 2 == 0)
            if top or left:
                weight = F.pad(weight, [left, 0, top, 0])
        if not self.relu6:
            return F.conv2d(
                x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        if _CONV_POINTWISE is not None and x.device.type == "cpu" and not x.requires_grad:
            return _CONV_POINTWISE(
                x,
                weight,
                self.bias,
                list(self.padding),
                list(self.stride),
                list(self.dilation),
                self.groups,
                "hardtanh",
                [0.0, 6.0],
                "",
            )
        out = F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return F.hardtanh_(out, 0.0, 6.0)


def cam_halo(model: nn.Module, align: int = 32) -> int | None:
    """Rows of context a stripe of a striped CAM pass needs on either side, or None.

    A feature row depends on the input rows of its receptive field, ``(rf - 1) / 2`` on
    either side of its centre (TensorFlow's padding moves the strided layers' share of
    that to one side, by less than one feature stride); so stripes extended by that many
    real rows, rounded up to ``align``, give a whole pass's feature rows. The receptive
    field is summed over the convolutions in order, which holds for the MobileNets (their
    residual branches are identities); None for models not defined here.

    Returns:
        160 for MobileNet-v1 (receptive field 315), 256 for MobileNet-v2 (491).
    """
    if not isinstance(model, MobileNetV1 | MobileNetV2):
        return None
    rf, jump = 1, 1
    for module in model.modules():
        if isinstance(module, nn.Conv2d | InferenceConv2d):
            kernel, stride = module.weight.shape[-2], module.stride[0]
            rf += (kernel - 1) * module.dilation[0] * jump
            jump *= stride
    return -(-((rf - 1) // 2) // align) * align


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, last, module)


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Makes ``conv`` output what ``bn`` (in evaluation mode) made of its output."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


def _tf_same(conv: nn.Conv2d) -> bool:
    from mammocad.models.bundled.architecture import TFSamePadConv2d

    return isinstance(conv, TFSamePadConv2d)


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Folds batch norms into convolutions and fuses their ReLU6, in place.

    For evaluation only: the model afterwards has no batch-norm layers, its convolutions
    are :class:`InferenceConv2d` and its parameters do not train. Models other than
    :class:`MobileNetV1` and :class:`MobileNetV2` are returned unchanged (in evaluation
    mode). Outputs change by float rounding only.

    Args:
        model: a model built by this module, its weights loaded.

    Returns:
        The same model, in evaluation mode.
    """
    model.eval()
    if not isinstance(model, MobileNetV1 | MobileNetV2):
        return model
    for conv_path, bn_path, act_path in model.conv_bn_act():
        conv, bn = model.get_submodule(conv_path), model.get_submodule(bn_path)
        _fold(conv, bn)
        tf_same = _tf_same(conv)
        if tf_same and tuple(conv.kernel_size) + tuple(conv.stride) + conv.dilation != (
            3,
            3,
            2,
            2,
            1,
            1,
        ):
            raise ValueError(f"{conv_path}: TF-SAME padding is unfused for {conv}")
        _set(model, conv_path, InferenceConv2d(conv, act_path is not None, tf_same))
        _set(model, bn_path, nn.Identity())
        if act_path is not None and not act_path.startswith(bn_path + "."):
            _set(model, act_path, nn.Identity())
    for param in model.parameters():
        param.requires_grad_(False)
    return model
