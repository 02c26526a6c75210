"""The model stages' params sections (``shallow``, ``finetune``, ``evaluate``) as dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from mammocad.config import from_dict, to_dict
from mammocad.entries import backbone_of
from mammocad.models.backbones import get_spec
from mammocad.train import TrainConfig


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


def params_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict view of a params dataclass, for checkpoints, metrics and MLflow."""
    return to_dict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
