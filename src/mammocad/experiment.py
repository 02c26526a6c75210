"""Training and evaluation runs of paper §3–4, as used by the model stages.

Glue between the data stages' outputs (split and augmented manifests) and the training,
evaluation and checkpoint modules: which rows each model reads, how its images are
normalised, and what its metrics files hold.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from mammocad.checkpoint import save_checkpoint
from mammocad.config import from_dict, to_dict
from mammocad.entries import SHALLOW, backbone_of
from mammocad.evaluate import (
    binary_metrics,
    bootstrap_ci,
    choose_threshold,
    confusion,
    curves,
    latency_ms,
    model_file_mb,
)
from mammocad.models.backbones import (
    build_model,
    count_parameters,
    get_spec,
)
from mammocad.models.data import ImageSet, label_cancerous, label_malignant
from mammocad.models.shallow import ShallowCNN, ShallowConfig
from mammocad.timing import split_timing
from mammocad.train import FitResult, TrainConfig, fit, predict_proba

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShallowParams:
    """The ``shallow`` params section (paper Fig. 2).

    Attributes:
        positive: which full mammograms count as cancerous: ``malignant`` (malignant
            findings only; benign ones count as non-cancerous) or ``abnormal`` (any
            finding). CBIS-DDSM itself has no normal images; the synthetic source has.
        channels: output channels of the conv blocks.
        dropout: dropout before the classifier.
        pooling: global pooling before the classifier, ``max`` or ``avg``.
        train: optimisation settings.
    """

    positive: Literal["malignant", "abnormal"] = "abnormal"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    pooling: Literal["avg", "max"] = "max"
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class FinetuneParams:
    """Settings of one backbone's fine-tuning (paper §3, §4.2).

    Attributes:
        init: ``imagenet``, ``scratch`` or ``auto`` (ImageNet where obtainable).
        freeze: ``default`` (the backbone's early layers where ImageNet weights were
            loaded, nothing for a scratch init) or ``none``.
        bn_stats: ``auto`` (fixed where the weights have batch norm folded in, i.e. the
            bundled int8 MobileNets; updated otherwise), ``train`` (batch statistics,
            running averages updated) or ``frozen`` (stored statistics throughout).
        train: optimisation settings.
    """

    init: Literal["imagenet", "scratch", "auto"] = "auto"
    freeze: Literal["default", "none"] = "default"
    bn_stats: Literal["auto", "train", "frozen"] = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class EvaluateParams:
    """The ``evaluate`` params section.

    Attributes:
        threshold: how the decision threshold is chosen on the validation split:
            ``youden`` (max sensitivity + specificity), ``f1`` or ``fixed``.
        fixed_threshold: the threshold of the ``fixed`` method.
        bootstrap: patient-level bootstrap replicates of the 95 % intervals.
        alpha: 1 − confidence level of the intervals.
        latency_repeats: timed batch-1 forward passes for the CPU latency.
    """

    threshold: Literal["youden", "f1", "fixed"] = "youden"
    fixed_threshold: float = 0.5
    bootstrap: int = 1000
    alpha: float = 0.05
    latency_repeats: int = 20


def resolve_finetune(section: dict[str, Any], backbone: str) -> FinetuneParams:
    """Merges ``finetune.overrides.<backbone>`` over the shared ``finetune`` settings.

    Args:
        section: the ``finetune`` params section (with ``backbones`` and ``overrides``).
        backbone: the entry being trained: a backbone name, or ``<backbone>-<tag>`` for a
            variant whose settings are its own overrides entry (e.g.
            ``mobilenet_v1-scratch`` with ``{init: scratch}``).

    Raises:
        ConfigError: for unknown or mistyped keys, naming them.
        KeyError: for an unknown backbone, listing the valid ones.
    """
    get_spec(backbone_of(backbone))
    shared = {k: v for k, v in section.items() if k not in ("backbones", "overrides")}
    override = (section.get("overrides") or {}).get(backbone) or {}
    merged = {**shared, **{k: v for k, v in override.items() if k != "train"}}
    merged["train"] = {**(shared.get("train") or {}), **(override.get("train") or {})}
    return from_dict(FinetuneParams, merged, f"finetune(+overrides.{backbone})")


def read_split(split_dir: Path, augmented_dir: Path, kind: str) -> dict[str, pd.DataFrame]:
    """The train (augmented), val and test rows of one kind (``roi`` or ``full``)."""
    frames = {"train": pd.read_csv(augmented_dir / "train.csv", keep_default_na=False)}
    for name in ("val", "test"):
        path = split_dir / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the split has no {name} patients")
        frames[name] = pd.read_csv(path, keep_default_na=False)
    out = {}
    for name, frame in frames.items():
        part = frame[frame["kind"] == kind].reset_index(drop=True)
        if kind == "roi":
            part = part[part["pathology"].isin(["BENIGN", "MALIGNANT"])].reset_index(drop=True)
        if part.empty:
            raise ValueError(f"the {name} split holds no {kind} images")
        out[name] = part
    return out


def _sets(
    frames: dict[str, pd.DataFrame],
    roots: dict[str, Path],
    label_fn,
    channels: int,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
) -> dict[str, ImageSet]:
    return {
        name: ImageSet(
            frame,
            roots[name],
            label_fn,
            channels=channels,
            mean=mean,
            std=std,
            desc=f"load {name}",
        )
        for name, frame in frames.items()
    }


def grey_stats(dataset: ImageSet) -> tuple[float, float]:
    """Mean and standard deviation of a preloaded set's grey levels in [0, 1]."""
    x = dataset.images.to(torch.float64) / dataset._scale
    return float(x.mean()), float(x.std())


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


def training_patch_px(frame: pd.DataFrame) -> float:
    """Median side, in full-image pixels, of the ROI crops behind the training patches.

    Localization rescales a full mammogram so that lesions appear at this training scale.
    """
    sides = frame.loc[frame["kind"] == "roi", ["source_height", "source_width"]]
    if sides.empty:
        return float("nan")
    return float(np.median(sides.astype(float).max(axis=1)))


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


def evaluate_model(
    model: nn.Module,
    val_set: ImageSet,
    test_set: ImageSet,
    params: EvaluateParams,
    seed: int,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Test-split metrics with patient-bootstrap intervals (paper §4.1, and beyond it).

    The threshold is chosen on the validation split and applied unchanged to the test
    split. Returns a JSON-ready dict: point metrics, intervals, confusion matrix, curves,
    parameter counts, model file size and batch-1 CPU latency.
    """
    val_prob = predict_proba(model, val_set)
    test_prob = predict_proba(model, test_set)
    y_val = val_set.labels.numpy()
    y_test = test_set.labels.numpy()
    threshold = choose_threshold(y_val, val_prob, params.threshold, params.fixed_threshold)
    metrics = binary_metrics(y_test, test_prob, threshold)
    ci = bootstrap_ci(
        y_test,
        test_prob,
        test_set.groups,
        threshold,
        n_boot=params.bootstrap,
        seed=seed,
        alpha=params.alpha,
    )
    total, trainable = count_parameters(model)
    shape = (1, *test_set.get_batch([0])[0].shape[1:])
    out = {
        "threshold": threshold,
        "threshold_method": params.threshold,
        "test": metrics,
        "ci": ci,
        "confusion": confusion(y_test, (test_prob >= threshold).astype(int)),
        # a model that puts every test image in one class has learnt nothing usable,
        # whatever its accuracy on an unbalanced split
        "one_class": bool(len(np.unique(test_prob >= threshold)) < 2),
        "val": binary_metrics(y_val, val_prob, threshold),
        "n_test": len(test_set),
        "n_test_patients": int(len(np.unique(test_set.groups))),
        "params_total": total,
        "params_trainable": trainable,
        "params_millions": round(total / 1e6, 3),
        "latency": latency_ms(model, shape, repeats=params.latency_repeats),
        "curves": curves(y_test, test_prob),
        "predictions": [
            {"image_id": i, "patient_id": g, "label": int(y), "prob": float(p)}
            for i, g, y, p in zip(
                test_set.image_ids, test_set.groups, y_test, test_prob, strict=True
            )
        ],
    }
    if checkpoint is not None:
        out["model_file_mb"] = round(model_file_mb(checkpoint), 3)
    return out


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


def params_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict view of a params dataclass, for checkpoints, metrics and MLflow."""
    return to_dict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
