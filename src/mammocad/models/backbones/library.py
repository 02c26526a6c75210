"""The torchvision and timm builders, and the backbones of paper Table 1 registered with them."""

from __future__ import annotations

from functools import partial

from torch import nn

from mammocad.models._torchvision_compat import import_timm, import_torchvision
from mammocad.models.backbones.cache import (
    _timm_cache_hint,
    _timm_cached_file,
    torchvision_cache_file,
)
from mammocad.models.backbones.spec import BACKBONES, BackboneSpec, WeightsUnavailable


def _build_torchvision(fn_name: str, weights: str, pretrained: bool, **kwargs) -> nn.Module:
    """Builds a torchvision model; ImageNet weights are read from the local cache only."""
    tvm = import_torchvision().models
    enum = None
    if pretrained:
        path = torchvision_cache_file(weights)
        if not path.is_file():
            raise WeightsUnavailable(
                f"{weights} not in the torchvision cache at {path}; call fetch_weights first"
            )
        enum = tvm.get_weight(weights)
    return getattr(tvm, fn_name)(weights=enum, **kwargs)


def _build_googlenet(weights: str, pretrained: bool) -> nn.Module:
    """GoogLeNet without auxiliary heads, the same module with or without ImageNet weights.

    With weights, torchvision builds the auxiliary heads to load its checkpoint and drops
    them afterwards unless ``aux_logits=True`` was asked for; it rejects an explicit
    ``aux_logits`` or ``init_weights``, so those are only passed for scratch.
    ``transform_input=True`` (what torchvision picks with weights) is set for scratch too:
    it is a fixed affine map of the input, not a parameter, so a model built either way
    loads the other's state dict and computes the same function.
    """
    kwargs: dict = {"transform_input": True}
    if not pretrained:
        kwargs.update(aux_logits=False, init_weights=True)
    return _build_torchvision("googlenet", weights, pretrained, **kwargs)


def _build_timm(weights: str, pretrained: bool) -> nn.Module:
    """Builds a timm model; ImageNet weights are read from the Hugging Face cache only."""
    timm = import_timm()
    arch = weights.split(".", 1)[0]
    if not pretrained:
        return timm.create_model(arch, pretrained=False)
    path = _timm_cached_file(weights)
    if path is None:
        raise WeightsUnavailable(
            f"{weights} not in the Hugging Face cache (looked for {_timm_cache_hint(weights)}); "
            "call fetch_weights first"
        )
    # A local file in the pretrained config makes timm load it with its own checkpoint
    # filters and never contact the hub.
    return timm.create_model(weights, pretrained=True, pretrained_cfg_overlay={"file": str(path)})


def _register(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES.add(spec.name, spec)
    return spec


def _torchvision_spec(name: str, weights: str, **fields) -> BackboneSpec:
    builder = fields.pop("builder", None) or partial(_build_torchvision, name, weights)
    return _register(
        BackboneSpec(name=name, builder=builder, source="torchvision", weights=weights, **fields)
    )


# Default freezing, one rule for all: the layers whose outputs have stride <= 4, i.e. the
# stem and the first stage. Their edge, blob and texture filters transfer from ImageNet to
# mammograms; deeper layers adapt (paper §3 freezes "the network's initial layers").
_torchvision_spec(
    "alexnet",
    "AlexNet_Weights.IMAGENET1K_V1",
    classifier="classifier.6",
    head="mlp",
    cam_target_layer="features",
    default_frozen=("features.0",),  # conv1 (stride 4)
)
_torchvision_spec(
    "vgg16",
    "VGG16_Weights.IMAGENET1K_V1",
    classifier="classifier.6",
    head="mlp",
    cam_target_layer="features",
    # conv1_1..conv3_3: the three blocks before the third pooling (stride <= 4)
    default_frozen=tuple(f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14)),
)
_torchvision_spec(
    "vgg19",
    "VGG19_Weights.IMAGENET1K_V1",
    classifier="classifier.6",
    head="mlp",
    cam_target_layer="features",
    # conv1_1..conv3_4: the three blocks before the third pooling (stride <= 4)
    default_frozen=tuple(f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 16)),
)
_torchvision_spec(
    "resnet50",
    "ResNet50_Weights.IMAGENET1K_V1",
    classifier="fc",
    head="gap_linear",
    cam_target_layer="layer4",
    default_frozen=("conv1", "bn1", "layer1"),  # stem and stage 1 (stride 4)
)
_torchvision_spec(
    "googlenet",
    "GoogLeNet_Weights.IMAGENET1K_V1",
    builder=partial(_build_googlenet, "GoogLeNet_Weights.IMAGENET1K_V1"),
    classifier="fc",
    head="gap_linear",
    cam_target_layer="inception5b",
    default_frozen=("conv1", "conv2", "conv3"),  # the stem before inception3a (stride 4)
)
_register(
    BackboneSpec(
        name="mobilenet_v1",
        builder=partial(_build_timm, "mobilenetv1_100.ra4_e3600_r224_in1k"),
        classifier="classifier",
        head="gap_linear",
        # timm's MobileNet-v1 has no head convolution (conv_head is Identity): the last
        # depthwise-separable stage is the final convolutional feature map.
        cam_target_layer="blocks",
        default_frozen=("conv_stem", "bn1", "blocks.0", "blocks.1"),  # up to stride 4
        source="timm",
        weights="mobilenetv1_100.ra4_e3600_r224_in1k",
        bundled="mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
        # the timm weights were trained on inputs scaled to [-1, 1], not ImageNet statistics
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
)
_torchvision_spec(
    "mobilenet_v2",
    "MobileNet_V2_Weights.IMAGENET1K_V1",
    classifier="classifier.1",
    head="gap_linear",
    cam_target_layer="features",
    default_frozen=tuple(f"features.{i}" for i in range(4)),  # stem to the 24-ch stage
    bundled="mobilenet_v2_1.0_224_quant.tflite",
)
