"""The backbones compared in paper §4.3 (Table 1), built for two-class fine-tuning.

Paper §3: "A pre-trained MobileNet is altered to have two output classes in output layers.
The output layers are then finely tuned while the network's initial layers are kept
frozen." Every backbone of Table 1 (AlexNet, VGG-16, VGG-19, ResNet-50, GoogLeNet,
MobileNet-v1, MobileNet-v2) is registered here under a :class:`BackboneSpec` that names its
builder, classifier layer, class-activation-map target layer (paper §3, localization) and
the early layers frozen by default. torchvision builds all but MobileNet-v1, which comes
from timm (``mobilenetv1_100``).

ImageNet weights come from the libraries' own weight definitions and live in their usual
caches: torchvision's under ``<torch.hub.get_dir()>/checkpoints/`` (``$TORCH_HOME/hub``),
timm's in the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``). Builders
only ever read those caches; :func:`fetch_weights` is the one place that downloads, after
a network probe of a few seconds, so that a machine without network is detected quickly.
Where they cannot be had, the two MobileNets fall back to ImageNet weights bundled with the
package, converted from int8 TFLite models (:mod:`mammocad.models.bundled`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from mammocad.models._torchvision_compat import import_timm, import_torchvision
from mammocad.registry import Registry

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Seconds allowed for the network probe and for each blocking network read.
NETWORK_TIMEOUT_S = 5.0
#: Environment variable that, when truthy, forbids downloading weights.
OFFLINE_ENV = "MAMMOCAD_OFFLINE"

Init = Literal["imagenet", "scratch", "auto"]
INITS: tuple[str, ...] = ("imagenet", "scratch", "auto")
#: Where a model's initial weights came from, as :func:`build_model` reports it.
InitSource = Literal["torchvision", "timm", "bundled-int8", "scratch"]
SOURCES: tuple[str, ...] = ("torchvision", "timm", "bundled-int8", "scratch")
BUNDLED = "bundled-int8"

# Hugging Face hub file names timm tries, in its order (timm.models._hub).
_HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")
_HASH_RE = re.compile(r"-([a-f0-9]*)\.")


class WeightsUnavailable(RuntimeError):
    """ImageNet weights for a backbone are neither cached nor downloadable."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone of paper Table 1 and where its parts are.

    Attributes:
        name: registry name, e.g. ``"mobilenet_v1"``.
        builder: ``builder(pretrained)`` returns the ImageNet architecture with its original
            1000-class head; with ``pretrained=True`` it loads the weights from the local
            cache only (see :func:`fetch_weights`).
        classifier: dotted path of the final ``nn.Linear`` replaced by the two-class head.
        head: ``"gap_linear"`` when the classifier is one linear layer on globally
            average-pooled features, so that the class activation map (CAM) of paper §3 is
            exact; ``"mlp"`` for fully connected stacks (AlexNet, VGG), which take Grad-CAM.
        cam_target_layer: dotted path of the last convolutional feature block, whose
            activations the class activation maps of paper §3 weight.
        default_frozen: module-path prefixes frozen by default (paper §3: "the network's
            initial layers are kept frozen").
        source: ``"torchvision"`` or ``"timm"``.
        weights: the library's weight identifier: a torchvision enum name such as
            ``"MobileNet_V2_Weights.IMAGENET1K_V1"`` or a timm ``model.tag`` name.
        input_size: side of the square input the ImageNet weights were trained on.
        mean: per-channel normalisation mean the weights expect.
        std: per-channel normalisation standard deviation the weights expect.
        bundled: file name, under ``mammocad/models/weights/``, of the bundled int8 TFLite
            ImageNet model used where the library's float weights cannot be had; None for
            backbones without one. Models built for it take the same ``mean``/``std``.
    """

    name: str
    builder: Callable[[bool], nn.Module]
    classifier: str
    head: Literal["gap_linear", "mlp"]
    cam_target_layer: str
    default_frozen: tuple[str, ...]
    source: Literal["torchvision", "timm"]
    weights: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bundled: str | None = None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


# --------------------------------------------------------------------------- cache look-up


def _torchvision_weights(weights: str):
    return import_torchvision().models.get_weight(weights)


def torchvision_cache_file(weights: str) -> Path:
    """Where torchvision keeps the checkpoint of a weight enum.

    Args:
        weights: a torchvision weight enum name, e.g. ``"ResNet50_Weights.IMAGENET1K_V1"``.

    Returns:
        ``<torch.hub.get_dir()>/checkpoints/<file name of the enum's URL>``; ``TORCH_HOME``
        is read at call time.
    """
    url = _torchvision_weights(weights).url
    filename = os.path.basename(urllib.parse.urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, resolved from the environment at call time.

    ``huggingface_hub`` reads these variables once, at import; resolving them here keeps a
    ``HF_HOME`` set later (by a stage or a test) effective.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _timm_hub_id(weights: str) -> tuple[str, str | None]:
    """The Hugging Face repository id and revision of a timm ``model.tag`` name."""
    cfg = import_timm().models.get_pretrained_cfg(weights)
    if cfg is None or not cfg.hf_hub_id:
        raise WeightsUnavailable(f"timm has no Hugging Face hub weights for {weights!r}")
    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    return repo_id, revision or None


def _timm_cached_file(weights: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    repo_id, revision = _timm_hub_id(weights)
    for filename in _HF_FILENAMES:
        found = try_to_load_from_cache(
            repo_id, filename, cache_dir=hf_hub_cache(), revision=revision
        )
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def _timm_cache_hint(weights: str) -> str:
    repo_id, revision = _timm_hub_id(weights)
    folder = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
    return (
        f"{folder}/refs/{revision or 'main'} (holding a commit hash) and "
        f"{folder}/snapshots/<commit>/{_HF_FILENAMES[0]}"
    )


# --------------------------------------------------------------------------- builders


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


def get_spec(name: str) -> BackboneSpec:
    """Returns the spec of a registered backbone (paper Table 1).

    Raises:
        KeyError: for an unknown name, listing the valid ones.
    """
    return BACKBONES.get(name)


# --------------------------------------------------------------------------- downloading


def _offline_by_env(source: str) -> bool:
    truthy = {"1", "true", "yes", "on"}
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in truthy:
        return True
    return source == "timm" and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in truthy


def _reachable(url: str, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host (or its proxy) opens within ``timeout``.

    Name resolution ignores socket timeouts, so the probe runs in a daemon thread that is
    abandoned when it overruns.
    """
    parsed = urllib.parse.urlparse(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        parsed = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
    host = parsed.hostname
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="weights-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _download(url: str, dst: Path, timeout: float) -> None:
    """Downloads ``url`` to ``dst`` atomically, checking torchvision's file-name hash."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    match = _HASH_RE.search(dst.name)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=dst.name, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise WeightsUnavailable(f"{url}: SHA-256 does not start with {match.group(1)}")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _how_to_place(spec: BackboneSpec) -> str:
    if spec.source == "torchvision":
        url = _torchvision_weights(spec.weights).url
        return f"download {url} to {torchvision_cache_file(spec.weights)}"
    repo_id, revision = _timm_hub_id(spec.weights)
    rev = f" --revision {revision}" if revision else ""
    return (
        f"run `huggingface-cli download {repo_id} {_HF_FILENAMES[0]}{rev}` where the "
        f"network is reachable and copy that cache, or place the file so that it matches "
        f"{_timm_cache_hint(spec.weights)}"
    )


def _unavailable(spec: BackboneSpec, where: str, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"ImageNet weights for backbone {spec.name!r} ({spec.source} {spec.weights}) are "
        f"unavailable: {why}. Looked in {where}. To provide them, {_how_to_place(spec)}; "
        f"or use init 'scratch' or 'auto'."
    )


def fetch_weights(
    name: str, *, allow_download: bool | None = None, timeout_s: float = NETWORK_TIMEOUT_S
) -> Path:
    """Makes the ImageNet weights of a backbone available in the library's cache.

    The cache is checked first. A download is tried only where allowed and only after the
    host answered a TCP probe within ``timeout_s``, so a machine without network fails in
    seconds rather than waiting on the libraries' own retries (paper §3 fine-tunes
    ImageNet-pretrained models; this is how they get here).

    Args:
        name: registered backbone name.
        allow_download: whether the network may be used. ``None`` allows it unless
            ``MAMMOCAD_OFFLINE`` is truthy (or, for timm weights, ``HF_HUB_OFFLINE``).
        timeout_s: seconds for the probe and for each blocking network read.

    Returns:
        The path of the cached weights file.

    Raises:
        KeyError: for an unknown backbone name.
        WeightsUnavailable: naming the backbone, where the weights were looked for, and
            how to place them there.
    """
    spec = get_spec(name)
    if allow_download is None:
        allow_download = not _offline_by_env(spec.source)
    if spec.source == "torchvision":
        path = torchvision_cache_file(spec.weights)
        if path.is_file():
            return path
        where = str(path)
        url = _torchvision_weights(spec.weights).url
    else:
        found = _timm_cached_file(spec.weights)
        if found is not None:
            return found
        where = _timm_cache_hint(spec.weights)
        from huggingface_hub import constants

        url = constants.ENDPOINT
    if not allow_download:
        raise _unavailable(spec, where, "not cached and downloading is disabled")
    if not _reachable(url, timeout_s):
        raise _unavailable(spec, where, f"not cached and {url} is unreachable")
    logger.info("downloading ImageNet weights for %s from %s", name, url)
    try:
        if spec.source == "torchvision":
            _download(url, path, timeout_s)
            return path
        return _download_hf(spec, timeout_s)
    except WeightsUnavailable as err:
        raise _unavailable(spec, where, str(err)) from err
    except Exception as err:  # network and hub errors come in many types
        raise _unavailable(spec, where, f"download failed ({type(err).__name__}: {err})") from err


def _download_hf(spec: BackboneSpec, timeout_s: float) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo_id, revision = _timm_hub_id(spec.weights)
    for filename in _HF_FILENAMES:
        try:
            return Path(
                hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
                    cache_dir=hf_hub_cache(),
                    etag_timeout=timeout_s,
                )
            )
        except EntryNotFoundError:
            continue
    raise WeightsUnavailable(f"{repo_id} holds none of {', '.join(_HF_FILENAMES)}")


# --------------------------------------------------------------------------- model surgery


def get_module(model: nn.Module, path: str) -> nn.Module:
    """Resolves a dotted module path such as ``"classifier.6"`` or ``"layer4"``.

    Integer parts index ``nn.Sequential`` / ``nn.ModuleList`` children; an empty path is
    the model itself.

    Raises:
        AttributeError: naming the part that is missing and the children that exist.
    """
    module = model
    if not path:
        return module
    done: list[str] = []
    for part in path.split("."):
        children = dict(module.named_children())
        if part not in children:
            here = ".".join(done) or type(model).__name__
            raise AttributeError(
                f"no module {path!r}: {here} has no child {part!r} "
                f"(children: {', '.join(children) or 'none'})"
            )
        module = children[part]
        done.append(part)
    return module


def _set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, last = path.rpartition(".")
    # Sequential children are attributes named "0", "1", ..., so setattr covers them too.
    setattr(get_module(model, parent_path), last, new)


def replace_head(model: nn.Module, classifier: str, num_classes: int) -> nn.Linear:
    """Replaces the final linear layer at ``classifier`` with a ``num_classes`` one.

    Paper §3: the pre-trained network "is altered to have two output classes".

    Returns:
        The new, freshly initialised head.
    """
    old = get_module(model, classifier)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{classifier!r} is a {type(old).__name__}, not nn.Linear")
    head = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    _set_module(model, classifier, head)
    return head


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze_layers(
    model: nn.Module, prefixes: Iterable[str], keep_trainable: Iterable[str] = ()
) -> int:
    """Freezes the parameters under module-path prefixes (paper §3, frozen early layers).

    A prefix matches whole path components: ``"features.1"`` covers ``features.1.0.weight``
    but not ``features.10.weight``. Parameters under ``keep_trainable`` stay trainable even
    where a prefix covers them; all others keep their current ``requires_grad``.

    Args:
        model: the model to modify in place.
        prefixes: module paths whose parameters get ``requires_grad=False``.
        keep_trainable: module paths that are always trainable (the new head).

    Returns:
        The number of parameter elements frozen.

    Raises:
        ValueError: if a prefix matches no parameter (a typo would otherwise freeze
            nothing silently).
    """
    prefixes = tuple(prefixes)
    keep = tuple(keep_trainable)
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(_under(name, prefix) for name in names):
            top = ", ".join(name for name, _ in model.named_children())
            raise ValueError(f"freeze prefix {prefix!r} matches no parameter (top level: {top})")
    frozen = 0
    for name, param in model.named_parameters():
        if any(_under(name, p) for p in keep):
            param.requires_grad_(True)
        elif any(_under(name, p) for p in prefixes):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Counts parameter elements, as in paper Table 1's "Number of parameters".

    Returns:
        ``(total, trainable)``.
    """
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return total, trainable


def build_architecture(
    name: str, init_source: str | None = "scratch", num_classes: int = 2
) -> nn.Module:
    """The architecture a backbone was built with, without weights or freezing.

    Models initialised from the bundled int8 weights use the TFLite layout (TensorFlow's
    SAME padding, input range; see :func:`mammocad.models.bundled.tf_architecture`), all
    others the library's. Rebuilding a model from a checkpoint must use the same one, or
    its outputs change although the weights load.

    Args:
        name: registered backbone name.
        init_source: the source :func:`build_model` reported (recorded as ``init`` in the
            checkpoint's metrics). ``None`` (checkpoints that predate it) and the former
            ``"imagenet"`` mean the library's architecture.
        num_classes: outputs of the head.

    Returns:
        The model, randomly initialised, every parameter trainable.

    Raises:
        KeyError: for an unknown backbone name.
        ValueError: for an unknown ``init_source``.
    """
    spec = get_spec(name)
    if init_source is not None and init_source not in (*SOURCES, "imagenet"):
        raise ValueError(f"unknown init source {init_source!r}; valid: {', '.join(SOURCES)}")
    model = spec.builder(False)
    if init_source == BUNDLED:
        from mammocad.models.bundled import tf_architecture

        tf_architecture(model, spec.mean, spec.std)
    replace_head(model, spec.classifier, num_classes)
    return model


def _imagenet_model(
    spec: BackboneSpec, init: Init, allow_download: bool | None, timeout_s: float
) -> tuple[nn.Module, InitSource]:
    """The ImageNet model of a backbone, from the best source there is (see build_model)."""
    try:
        fetch_weights(spec.name, allow_download=allow_download, timeout_s=timeout_s)
        return spec.builder(True), spec.source
    except WeightsUnavailable as err:
        cause, why = err, str(err)
    if spec.bundled is not None:
        from mammocad.models.bundled import build_bundled

        try:
            model = build_bundled(spec.name)
        except WeightsUnavailable as err:
            why = f"{why} The bundled int8 ImageNet weights are unavailable too: {err}"
        else:
            logger.warning(
                "%s: %s float ImageNet weights unavailable; using the bundled int8 ImageNet "
                "weights (%s), converted to float",
                spec.name,
                spec.source,
                spec.bundled,
            )
            return model, BUNDLED
    else:
        bundled = ", ".join(n for n in BACKBONES.names() if get_spec(n).bundled)
        why = f"{why} (ImageNet weights are bundled only for {bundled}.)"
    if init == "imagenet":
        raise WeightsUnavailable(why) from cause
    logger.warning("init 'auto' falls back to scratch: %s", why)
    return spec.builder(False), "scratch"


def build_model(
    name: str,
    init: Init,
    num_classes: int = 2,
    freeze: tuple[str, ...] | None = None,
    *,
    allow_download: bool | None = None,
    timeout_s: float = NETWORK_TIMEOUT_S,
) -> tuple[nn.Module, InitSource]:
    """Builds a backbone of paper Table 1 with a new ``num_classes`` head (paper §3).

    ImageNet weights come, in this order, from the library's own float weights (cached, or
    downloaded where allowed: :func:`fetch_weights`), then for the MobileNets from the
    bundled int8 TFLite weights (:mod:`mammocad.models.bundled`), else ``"auto"`` falls back
    to scratch with a warning and ``"imagenet"`` fails.

    Args:
        name: registered backbone name (see :data:`BACKBONES`).
        init: ``"imagenet"`` loads ImageNet weights and fails if they cannot be had;
            ``"scratch"`` keeps the random initialisation (seed beforehand); ``"auto"``
            loads ImageNet weights where obtainable, else warns and uses scratch.
        num_classes: outputs of the new head (2: benign vs malignant).
        freeze: module-path prefixes to freeze; ``()`` freezes nothing. ``None`` freezes
            the spec's ``default_frozen`` where the init has ImageNet weights and nothing
            where it resolves to scratch: frozen random layers teach nothing. The new head
            always trains.
        allow_download: see :func:`fetch_weights`.
        timeout_s: see :func:`fetch_weights`.

    Returns:
        ``(model, source)`` with ``source`` one of ``"torchvision"``, ``"timm"``,
        ``"bundled-int8"`` or ``"scratch"`` (see :data:`SOURCES`), to be recorded with the
        run so that runs with different inits never look alike, and passed to
        :func:`build_architecture` to rebuild the model from a checkpoint.

    Raises:
        KeyError: for an unknown backbone name, listing the valid ones.
        ValueError: for an unknown ``init``, ``num_classes < 1`` or a prefix matching
            nothing; :class:`~mammocad.models.bundled.BundledWeightsMismatch` if a bundled
            file does not fit its architecture.
        WeightsUnavailable: for ``init="imagenet"`` when no ImageNet weights can be had.
    """
    spec = get_spec(name)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if init == "scratch":
        model, source = spec.builder(False), "scratch"
    else:
        model, source = _imagenet_model(spec, init, allow_download, timeout_s)
    replace_head(model, spec.classifier, num_classes)
    if freeze is None:
        freeze = spec.default_frozen if source != "scratch" else ()
        logger.info(
            "%s (init %s): %s",
            name,
            source,
            f"default frozen layers {', '.join(freeze)}"
            if freeze
            else "every layer trains (frozen random layers teach nothing)",
        )
    freeze_layers(model, freeze, keep_trainable=(spec.classifier,))
    total, trainable = count_parameters(model)
    logger.info("built %s (init %s): %d parameters, %d trainable", name, source, total, trainable)
    return model, source
