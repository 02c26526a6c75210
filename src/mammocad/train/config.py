"""The settings of one training run (:class:`TrainConfig`, paper §4.2) and what
:func:`~mammocad.train.fit` returns (:class:`FitResult`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

#: Values of :attr:`TrainConfig.device`.
DEVICES = ("auto", "cpu", "cuda")
#: Values of :attr:`TrainConfig.mixed_precision` and the autocast dtype of each.
PRECISIONS: dict[str, torch.dtype | None] = {
    "off": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (paper §4.2).

    Attributes:
        epochs: maximum number of passes over the training set.
        batch_size: images per mini-batch (paper: 64); under ``torchrun`` the global batch,
            of which each of the N ranks takes ``ceil(batch_size / N)``.
        lr: initial Adam learning rate.
        weight_decay: Adam's L2 coefficient (paper: 10^-5).
        lr_decay: factor the learning rate is multiplied by after each epoch (paper: 0.99).
        patience: epochs without improvement of the selection metric before stopping;
            ``0`` never stops early.
        class_weighting: weight the cross-entropy by inverse class frequency of the
            training set, for unbalanced benign/malignant counts.
        select_on: validation metric that picks the best epoch: ``"val_auc"`` (higher is
            better) or ``"val_loss"`` (lower is better).
        threads: CPU threads for the run; ``0`` keeps PyTorch's default.
        device: ``auto`` (a CUDA GPU where one is visible, else the CPU), ``cpu`` or
            ``cuda``. Under ``torchrun`` the process group decides (NCCL: each rank's GPU,
            gloo: the CPU) and an explicit value must agree with it.
        mixed_precision: ``off`` (float32), ``bf16`` (autocast to bfloat16, CPU or a GPU
            that supports it) or ``fp16`` (autocast to float16 with gradient scaling,
            GPUs only). Weights and the optimiser stay in float32.
        channels_last: hold the model's weights and each batch in NHWC memory layout,
            which GPU tensor cores and oneDNN convolutions run faster on.
        max_batches: optimisation steps per epoch at most (``0``: the whole training set);
            each epoch then trains on the first batches of its own shuffle, a budget for
            models too slow for full epochs on the machine at hand.
        recalibrate_bn: after each epoch, recompute the running statistics of the
            batch-norm layers that train them by one pass over the training set (at most
            ``max_batches`` batches), before validation (see
            :func:`~mammocad.train.recalibrate.recalibrate_batchnorm`). Frozen and
            folded layers are left alone.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_decay: float = 0.99
    patience: int = 5
    class_weighting: bool = False
    select_on: Literal["val_loss", "val_auc"] = "val_auc"
    threads: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    max_batches: int = 0
    recalibrate_bn: bool = True

    def __post_init__(self) -> None:
        """Rejects values that cannot describe a training run, naming the field."""
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "lr_decay": 0 < self.lr_decay <= 1,
            "patience": self.patience >= 0,
            "select_on": self.select_on in ("val_loss", "val_auc"),
            "threads": self.threads >= 0,
            "device": self.device in DEVICES,
            "mixed_precision": self.mixed_precision in PRECISIONS,
            "max_batches": self.max_batches >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid train config {name}={getattr(self, name)!r}")


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        best_state: deep copy of the model's ``state_dict`` at the best epoch.
        best_epoch: 1-based epoch with the best validation score.
        history: one record per epoch: ``epoch`` (1-based), ``train_loss``, ``train_acc``,
            ``val_loss``, ``val_acc``, ``val_auc`` (``None`` if the validation set holds
            one class), ``lr`` (the rate after this epoch's decay, ``lr·decay^epoch``) and
            ``seconds``.
        stopped_early: whether training stopped before ``epochs`` for lack of improvement.
        selected_on: the metric that picked ``best_epoch`` (``val_loss`` when ``val_auc``
            was asked for but the validation set holds one class).
        class_weights: the cross-entropy class weights, ``None`` without weighting.
        world_size: processes that trained together (1 without ``torchrun``).
        backend: their process-group backend (``gloo``, ``nccl``), ``None`` for one.
        batch_per_rank: images per mini-batch on each rank.
        ranks_agree: whether all ranks ended with identical weights (always ``True`` for
            one process).
        device: the device the loop ran on (``cpu``, ``cuda:0``, ...).
        mixed_precision: the autocast mode it ran with.
        channels_last: whether it ran in NHWC layout.
        images_per_second: training images per second over all epochs, counting the
            optimisation steps only (not validation); under ``torchrun`` all ranks'
            images over this rank's time.
    """

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    selected_on: str = "val_auc"
    class_weights: list[float] | None = None
    world_size: int = 1
    backend: str | None = None
    batch_per_rank: int = 0
    ranks_agree: bool = True
    device: str = "cpu"
    mixed_precision: str = "off"
    channels_last: bool = False
    images_per_second: float = 0.0
