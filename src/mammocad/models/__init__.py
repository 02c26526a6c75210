"""Models of the paper: the shallow CNN (Fig. 2) and the fine-tuned backbones (Table 1).

torchvision and timm are imported lazily, through :mod:`._torchvision_compat`, the first
time a backbone is built.
"""

from mammocad.models.backbones import (
    BACKBONES,
    INITS,
    NETWORK_TIMEOUT_S,
    OFFLINE_ENV,
    BackboneSpec,
    WeightsUnavailable,
    build_model,
    count_parameters,
    fetch_weights,
    freeze_layers,
    get_module,
    get_spec,
    hf_hub_cache,
    replace_head,
    torchvision_cache_file,
)
from mammocad.models.shallow import ShallowCNN, ShallowConfig

__all__ = [
    "BACKBONES",
    "INITS",
    "NETWORK_TIMEOUT_S",
    "OFFLINE_ENV",
    "BackboneSpec",
    "ShallowCNN",
    "ShallowConfig",
    "WeightsUnavailable",
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
