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

Modules: :mod:`~mammocad.models.backbones.spec` (:class:`BackboneSpec`, the registry),
:mod:`~mammocad.models.backbones.cache` (where the libraries cache weights),
:mod:`~mammocad.models.backbones.library` (the library builders and the registered
backbones), :mod:`~mammocad.models.backbones.download` (:func:`fetch_weights`),
:mod:`~mammocad.models.backbones.surgery` (module paths, head, freezing, parameter
counts) and :mod:`~mammocad.models.backbones.build` (:func:`build_model`,
:func:`build_architecture`).
"""

from mammocad.models.backbones import library  # noqa: F401 - registers the backbones
from mammocad.models.backbones.build import (
    BUNDLED,
    INITS,
    SOURCES,
    Init,
    InitSource,
    build_architecture,
    build_model,
)
from mammocad.models.backbones.cache import hf_hub_cache, torchvision_cache_file
from mammocad.models.backbones.download import NETWORK_TIMEOUT_S, OFFLINE_ENV, fetch_weights
from mammocad.models.backbones.spec import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    WeightsUnavailable,
    get_spec,
)
from mammocad.models.backbones.surgery import (
    count_parameters,
    freeze_layers,
    get_module,
    replace_head,
)

__all__ = [
    "BACKBONES",
    "BUNDLED",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INITS",
    "NETWORK_TIMEOUT_S",
    "OFFLINE_ENV",
    "SOURCES",
    "BackboneSpec",
    "Init",
    "InitSource",
    "WeightsUnavailable",
    "build_architecture",
    "build_model",
    "count_parameters",
    "fetch_weights",
    "freeze_layers",
    "get_module",
    "get_spec",
    "hf_hub_cache",
    "replace_head",
    "torchvision_cache_file",
]
