"""Where torchvision and timm cache ImageNet weights: paths and look-ups, never the network."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import torch

from mammocad.models._torchvision_compat import import_timm, import_torchvision
from mammocad.models.backbones.spec import WeightsUnavailable

# Hugging Face hub file names timm tries, in its order (timm.models._hub).
_HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")


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
