"""Training the shallow CNN and fine-tuning the backbones, and what their stages record."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from mammocad.checkpoint import save_checkpoint
from mammocad.entries import SHALLOW, backbone_of
from mammocad.experiment.data import _sets, grey_stats, training_patch_px
from mammocad.experiment.params import FinetuneParams, ShallowParams
from mammocad.models.backbones import build_model, count_parameters, get_spec
from mammocad.models.data import ImageSet, label_cancerous, label_malignant
from mammocad.models.shallow import ShallowCNN, ShallowConfig
from mammocad.timing import split_timing
from mammocad.train import FitResult, fit


@dataclass
class TrainedModel:
    """A trained model with everything its stage writes."""

    model: nn.Module
    fit: FitResult
    info: dict[str, Any]
    sets: dict[str, ImageSet]


def frozen_prefixes(model: nn.Module) -> list[str]:
    """The top-most module paths whose parameters are all frozen, for the run's record."""
    frozen = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def all_frozen(path: str) -> bool:
        return not any(t == path or t.startswith(path + ".") for t in trainable)

    out = set()
    for path in frozen:
        parts = path.split(".")
        top = next(
            ".".join(parts[:i])
            for i in range(1, len(parts) + 1)
            if all_frozen(".".join(parts[:i]))
        )
        out.add(top)
    return sorted(out)


def _info(
    name: str,
    model: nn.Module,
    result: FitResult,
    sets: dict[str, ImageSet],
    seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """What a training stage records about its run (metrics file, checkpoint, MLflow)."""
    total, trainable = count_parameters(model)
    return {
        "backbone": name,
        **extra,
        "params_total": total,
        "params_trainable": trainable,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "selected_on": result.selected_on,
        "train_seconds": round(seconds, 2),
        "world_size": result.world_size,
        "backend": result.backend,
        "batch_per_rank": result.batch_per_rank,
        "ranks_agree": result.ranks_agree,
        "device": result.device,
        "mixed_precision": result.mixed_precision,
        "channels_last": result.channels_last,
        "images_per_second": round(result.images_per_second, 2),
        "n_train": len(sets["train"]),
        "n_val": len(sets["val"]),
        "best": result.history[result.best_epoch - 1] if result.history else {},
    }


def train_backbone(
    backbone: str,
    params: FinetuneParams,
    frames: dict[str, pd.DataFrame],
    roots: dict[str, Path],
    seed: int,
) -> TrainedModel:
    """Fine-tunes an ImageNet backbone on benign vs malignant patches (paper §3, §4.3).

    Args:
        backbone: registered backbone name.
        params: init, freezing and optimisation settings.
        frames: ``train``/``val``/``test`` ROI rows (see :func:`read_split`).
        roots: directory each frame's ``image_path`` is relative to.
        seed: seeds the head's initialisation and the training.
    """
    arch = backbone_of(backbone)
    spec = get_spec(arch)
    torch.manual_seed(seed)
    model, source = build_model(
        arch, params.init, freeze=None if params.freeze == "default" else ()
    )
    bn_frozen = params.bn_stats == "frozen" or (
        params.bn_stats == "auto" and source == "bundled-int8"
    )
    sets = _sets(frames, roots, label_malignant, 3, spec.mean, spec.std)
    t0 = time.perf_counter()
    result = fit(model, sets["train"], sets["val"], params.train, seed, freeze_bn_stats=bn_frozen)
    info = _info(
        arch,
        model,
        result,
        sets,
        time.perf_counter() - t0,
        run=backbone,
        init_requested=params.init,
        init=source,
        freeze=params.freeze,
        frozen_layers=frozen_prefixes(model),
        bn_stats="frozen" if bn_frozen else "train",
        input={"channels": 3, "mean": list(spec.mean), "std": list(spec.std)},
        patch_px=training_patch_px(frames["train"]),
    )
    return TrainedModel(model, result, info, sets)


def train_shallow(
    params: ShallowParams,
    frames: dict[str, pd.DataFrame],
    roots: dict[str, Path],
    seed: int,
) -> TrainedModel:
    """Trains the shallow CNN on down-sized full mammograms, normal vs cancerous (Fig. 2).

    Grey levels are standardised with the training set's mean and standard deviation:
    raw [0, 1] inputs give batch norm a running variance far from the data's, which left
    the network stuck at chance in evaluation mode.
    """
    label = partial(label_cancerous, positive=params.positive)
    raw = {
        name: ImageSet(frames[name], roots[name], label, desc=f"load {name}")
        for name in ("train", "val", "test")
    }
    mean, std = grey_stats(raw["train"])
    sets = {name: s.normalised((mean,), (std,)) for name, s in raw.items()}
    torch.manual_seed(seed)
    model = ShallowCNN(
        ShallowConfig(channels=params.channels, dropout=params.dropout, pooling=params.pooling)
    )
    t0 = time.perf_counter()
    result = fit(model, sets["train"], sets["val"], params.train, seed)
    info = _info(
        SHALLOW,
        model,
        result,
        sets,
        time.perf_counter() - t0,
        init="scratch",
        positive=params.positive,
        input={"channels": 1, "mean": [mean], "std": [std]},
    )
    return TrainedModel(model, result, info, sets)


def save_trained(path: Path, trained: TrainedModel, config: dict[str, Any]) -> None:
    """Writes the checkpoint (house style 5) of a trained model."""
    save_checkpoint(
        path,
        trained.model,
        trained.info["backbone"],
        config,
        trained.fit.best_epoch,
        # without timings: identical weights must give an identical file (DVC hashes it)
        split_timing({k: v for k, v in trained.info.items() if k not in ("best", "input")})[0],
    )
