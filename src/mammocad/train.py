"""Training loop of the shallow CNN (paper Fig. 2) and the fine-tuned backbones (§4.3).

Paper §4.2 fixes the recipe: Adam "with decay rate of 0.99 per epoch, and a
regularization coefficient of 10^-5", batch size 64, and a "model checkpoint" that keeps
"the weights of the model for every epoch with the best score". Here the score is taken on
the validation split only (never the test split), training stops early once it has not
improved for ``patience`` epochs (paper §3: "it helps us to stop early training"), and the
layers frozen for transfer learning (paper §3) stay truly fixed: their batch-norm
statistics are not updated either.

Under ``torchrun`` (see :mod:`mammocad.distributed`) the same loop trains data-parallel:
each rank takes a seeded shard of every epoch, gradients are averaged over ranks by
:class:`~torch.nn.parallel.DistributedDataParallel`, and ``batch_size`` stays the global
batch. Without a process group nothing of this is touched.

``device``, ``mixed_precision`` and ``channels_last`` choose where and how the loop runs:
a CUDA GPU where one is visible (``auto``), autocast to bfloat16 or float16 (the latter
with loss scaling, GPUs only), and NHWC memory layout. Their defaults on a machine without
a GPU reproduce the plain float32 CPU loop bit for bit.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler
from tqdm.auto import tqdm

from mammocad import distributed
from mammocad.distributed import DistContext
from mammocad.evaluate import roc_auc
from mammocad.models.data import batches

logger = logging.getLogger(__name__)

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


def resolve_device(cfg: TrainConfig, ctx: DistContext, key: str = "train") -> torch.device:
    """The device ``cfg`` trains on in ``ctx``, checked against what the machine has.

    Args:
        cfg: the training settings.
        ctx: this process's data-parallel context.
        key: the params key of ``cfg``, named in errors (e.g. ``finetune.train``).

    Raises:
        ValueError: naming the key, for ``device: cuda`` without a visible CUDA device,
            a ``device`` that contradicts the process group's backend, or a
            ``mixed_precision`` the device cannot run (``fp16`` on the CPU, ``bf16`` on
            a GPU without bfloat16 support).
    """
    if ctx.active:
        device = ctx.device
        if cfg.device != "auto" and cfg.device != device.type:
            raise ValueError(
                f"{key}.device={cfg.device} but the {ctx.backend} process group trains on "
                f"{device.type}: use device auto, or set {distributed.BACKEND_ENV}="
                f"{'nccl' if cfg.device == 'cuda' else 'gloo'}"
            )
    elif cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(
            f"{key}.device=cuda but no CUDA device is visible (torch {torch.__version__}, "
            f"{build}); use device auto or cpu"
        )
    else:
        device = torch.device("cuda", torch.cuda.current_device())
    if cfg.mixed_precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"{key}.mixed_precision=fp16 needs a CUDA device (float16 loss scaling); "
            "use bf16 on the CPU"
        )
    if (
        cfg.mixed_precision == "bf16"
        and device.type == "cuda"
        and not torch.cuda.is_bf16_supported()
    ):
        raise ValueError(
            f"{key}.mixed_precision=bf16 but {torch.cuda.get_device_name(device)} has no "
            "bfloat16 support; use fp16"
        )
    return device


def _autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def rank_batch_size(batch_size: int, world_size: int) -> int:
    """Images per rank and step, ``ceil(batch_size / world_size)``, so ``batch_size`` is global.

    Raises:
        ValueError: for ``batch_size`` or ``world_size`` below 1.
    """
    if batch_size < 1 or world_size < 1:
        raise ValueError(f"batch_size {batch_size} and world_size {world_size} must be >= 1")
    return -(-batch_size // world_size)


def shard_order(n: int, rank: int, world_size: int, seed: int, epoch: int) -> torch.Tensor:
    """The indices rank ``rank`` trains on in ``epoch``, in order.

    :class:`~torch.utils.data.DistributedSampler` with ``shuffle`` and ``seed``: one seeded
    permutation per epoch, shared by all ranks, dealt round-robin. It pads the permutation
    with its own first indices up to a multiple of ``world_size``, so every rank holds
    ``ceil(n / world_size)`` indices and takes the same number of steps (a rank with
    fewer steps would leave the others waiting in the gradient all-reduce for ever).

    Returns:
        ``(ceil(n / world_size),)`` int64 tensor.
    """
    sampler = DistributedSampler(
        range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )  # type: ignore[arg-type]
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s ``state_dict`` on the CPU, in contiguous (NCHW) layout."""
    return {
        k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for k, v in model.state_dict().items()
    }


def class_weights(labels: torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights ``n / (num_classes · n_c)``.

    A balanced set gets weights of 1; a class absent from ``labels`` gets the weight of a
    class seen once (it never enters the loss anyway).

    Returns:
        ``(num_classes,)`` float32 tensor.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    if (counts == 0).any():
        logger.warning("class(es) %s absent from the training labels", _absent(counts))
    weights = labels.numel() / (num_classes * counts.clamp(min=1))
    return weights.to(torch.float32)


def _absent(counts: torch.Tensor) -> list[int]:
    return [i for i, c in enumerate(counts.tolist()) if c == 0]


def frozen_batchnorms(model: nn.Module) -> list[nn.Module]:
    """Batch-norm layers whose affine parameters are all frozen (paper §3 transfer learning).

    A layer without affine parameters (``affine=False``) cannot be told frozen from
    trainable by its parameters and trains normally.
    """
    found = []
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                found.append(module)
    return found


def train_mode(model: nn.Module, freeze_bn_stats: bool = False) -> None:
    """Puts ``model`` in training mode except its frozen batch-norm layers.

    A frozen batch-norm layer in training mode would still normalise with the batch
    statistics and overwrite its running averages, so the "frozen" ImageNet layers would
    change after all; in eval mode they use their stored statistics and stay fixed.

    Args:
        model: the model to switch.
        freeze_bn_stats: keep every batch-norm layer in eval mode (its affine parameters
            still train where trainable). Weights with batch norm folded into the
            convolutions carry identity statistics; normalising with batch statistics
            instead collapsed such a network to one output within a few epochs.
    """
    model.train()
    found = (
        [m for m in model.modules() if isinstance(m, _BatchNorm)]
        if freeze_bn_stats
        else frozen_batchnorms(model)
    )
    for module in found:
        module.eval()


def _num_classes(*label_sets: torch.Tensor) -> int:
    top = max(int(labels.max()) for labels in label_sets)
    return max(2, top + 1)


def _labels_of(dataset: Dataset) -> torch.Tensor:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.as_tensor(labels, dtype=torch.int64)


@torch.inference_mode()
def _evaluate(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    criterion: nn.CrossEntropyLoss,
    device: torch.device,
    precision: str = "off",
    channels_last: bool = False,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Loss (weighted as in training), accuracy, labels and class-1 probabilities."""
    model.eval()
    loss_sum = weight_sum = 0.0
    correct = 0
    labels, probs = [], []
    weight = criterion.weight
    for x, y in batches(dataset, batch_size):
        x, y = _to(x, device, channels_last), y.to(device)
        with _autocast(device, precision):
            logits = model(x).float()
        per_item = nn.functional.cross_entropy(logits, y, weight=weight, reduction="none")
        w = weight[y] if weight is not None else torch.ones_like(per_item)
        loss_sum += float(per_item.sum(dtype=torch.float64))
        weight_sum += float(w.sum(dtype=torch.float64))
        correct += int((logits.argmax(1) == y).sum())
        labels.append(y.cpu().numpy())
        probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    y_all = np.concatenate(labels)
    return loss_sum / weight_sum, correct / len(y_all), y_all, np.concatenate(probs)


def _better(value: float, best: float | None, select_on: str) -> bool:
    if best is None:
        return True
    return value > best if select_on == "val_auc" else value < best


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    seed: int,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ctx: DistContext | None = None,
    freeze_bn_stats: bool = False,
) -> FitResult:
    """Trains ``model`` and keeps the weights of its best validation epoch (paper §4.2).

    Adam with weight decay over the trainable parameters only, an exponential learning
    rate decay per epoch, cross-entropy (optionally class-weighted), early stopping on
    the validation metric, and frozen batch-norm layers kept in eval mode. The model is
    left holding the best epoch's weights. With the same inputs and seed on the same
    machine, the history (except ``seconds``) and the weights are bit-identical.

    In a process group of N > 1 ranks (``torchrun``) every rank calls ``fit`` with the same
    arguments. The model is wrapped in ``DistributedDataParallel`` (on ``cuda:<local
    rank>`` under NCCL), each rank trains on its :func:`shard_order` of every epoch in
    batches of :func:`rank_batch_size`, and the averaged gradients keep the ranks' weights
    equal. After each epoch the batch-norm running statistics are averaged over ranks, the
    training loss and accuracy are summed over ranks (every rank records the same history),
    and rank 0 alone scores the validation set and sends its figures to the others, so
    that best epoch and early stop are decided identically everywhere. Dropout draws from
    ``seed + rank``. At the end the ranks compare their weights (``ranks_agree``) and the
    model is returned to the CPU.

    Args:
        model: a classifier mapping ``(B, C, H, W)`` to ``(B, num_classes)`` logits, with
            its parameters' ``requires_grad`` already set (see ``build_model``).
        train_set: training images, e.g. an :class:`~mammocad.models.data.ImageSet`.
        val_set: validation images; the only data the best epoch is chosen on.
        cfg: hyper-parameters.
        seed: seeds PyTorch's global generator (dropout) and the shuffling generator.
        on_epoch: called with each epoch's history record (for live metric logging).
        ctx: the data-parallel context; by default that of the active process group
            (:func:`mammocad.distributed.current`), a single process without one.
        freeze_bn_stats: keep every batch-norm layer's statistics fixed (see
            :func:`train_mode`).

    Returns:
        The best state, its epoch, the per-epoch history and whether training stopped
        early.

    Raises:
        ValueError: for an empty training or validation set, a model without trainable
            parameters, or a loss that becomes non-finite.
    """
    if len(train_set) == 0 or len(val_set) == 0:  # type: ignore[arg-type]
        raise ValueError("training and validation sets must not be empty")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")

    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # cuDNN picks convolution algorithms by timing them unless told not to, which makes
    # GPU runs differ from one another; the deterministic ones are used instead
    cudnn = torch.backends.cudnn
    previous_cudnn = (cudnn.benchmark, cudnn.deterministic)
    cudnn.benchmark, cudnn.deterministic = False, True
    try:
        return _fit(
            model,
            train_set,
            val_set,
            cfg,
            seed,
            on_epoch,
            distributed.current() if ctx is None else ctx,
            freeze_bn_stats,
        )
    finally:
        torch.set_num_threads(previous_threads)
        cudnn.benchmark, cudnn.deterministic = previous_cudnn


def _fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    seed: int,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    ctx: DistContext,
    freeze_bn_stats: bool = False,
) -> FitResult:
    # rank 0 draws exactly what a single process draws; the others their own dropout masks
    torch.manual_seed(seed + ctx.rank)
    generator = torch.Generator().manual_seed(seed)
    train_labels, val_labels = _labels_of(train_set), _labels_of(val_set)
    num_classes = _num_classes(train_labels, val_labels)
    weights = class_weights(train_labels, num_classes) if cfg.class_weighting else None
    device = resolve_device(cfg, ctx)
    precision, channels_last = cfg.mixed_precision, cfg.channels_last
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    params = [p for p in model.parameters() if p.requires_grad]
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))
    net: nn.Module = model
    if ctx.active:
        # Buffers start from rank 0's but are not broadcast before every forward: each
        # rank keeps its own running statistics, averaged once per epoch (average_buffers).
        net = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False,
        )
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)

    select_on = cfg.select_on
    if select_on == "val_auc" and len(torch.unique(val_labels)) < 2:
        logger.warning("validation set holds one class: AUC undefined, selecting on val_loss")
        select_on = "val_loss"
    n_train = len(train_set)  # type: ignore[arg-type]
    batch = rank_batch_size(cfg.batch_size, ctx.world_size)
    per_rank = -(-n_train // ctx.world_size)
    # A lone image in the last batch breaks batch norm on 1×1 feature maps; it is left
    # out of that epoch only, as the permutation changes every epoch. Every rank holds
    # ``per_rank`` indices, so all drop alike.
    drop_last = per_rank > batch and per_rank % batch == 1

    history: list[dict[str, Any]] = []
    best_value: float | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] = {}
    stale = 0
    stopped_early = False
    step_seconds = 0.0
    images = 0
    bar = tqdm(
        range(1, cfg.epochs + 1),
        desc="train",
        unit="epoch",
        disable=None if ctx.is_main else True,
    )
    for epoch in bar:
        start = time.perf_counter()
        train_mode(model, freeze_bn_stats)
        loss_sum = 0.0
        seen = correct = 0
        if ctx.active:
            order = shard_order(n_train, ctx.rank, ctx.world_size, seed, epoch)
            epoch_batches = batches(train_set, batch, drop_last=drop_last, order=order)
        else:
            epoch_batches = batches(train_set, batch, True, generator, drop_last)
        if cfg.max_batches:
            # a seeded sample of the epoch: the first batches of a fresh shuffle
            epoch_batches = itertools.islice(epoch_batches, cfg.max_batches)
        steps_start = time.perf_counter()
        for x, y in epoch_batches:
            x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, precision):
                logits = net(x)
                loss = criterion(logits, y)
            if not torch.isfinite(loss):
                raise ValueError(f"epoch {epoch}: training loss became {float(loss)}")
            # without fp16 the scaler is disabled: backward() and step() as they are
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
        step_seconds += time.perf_counter() - steps_start
        scheduler.step()
        if ctx.active:
            distributed.average_buffers(model, ctx)
            loss_sum, seen, correct = distributed.all_sum([loss_sum, seen, correct], ctx)
        images += seen

        val_loss = val_acc = val_auc = None
        if ctx.is_main:
            val_loss, val_acc, y_val, p_val = _evaluate(
                model, val_set, cfg.batch_size, criterion, device, precision, channels_last
            )
            val_auc = roc_auc(y_val, p_val)
        val_loss, val_acc, val_auc = distributed.broadcast_floats(
            [val_loss, val_acc, val_auc], ctx
        )
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "val_auc": val_auc,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        value = record[select_on]
        if value is not None and not math.isfinite(value):
            raise ValueError(f"epoch {epoch}: {select_on} is {value}")
        if _better(value, best_value, select_on):
            best_value, best_epoch, stale = value, epoch, 0
            best_state = _cpu_state(model)
        else:
            stale += 1
        logger.info(
            "epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %s | lr %.3g%s",
            epoch,
            record["train_loss"],
            record["train_acc"],
            val_loss,
            val_acc,
            "n/a" if record["val_auc"] is None else f"{record['val_auc']:.4f}",
            record["lr"],
            " (best)" if best_epoch == epoch else "",
        )
        bar.set_postfix(val_loss=f"{val_loss:.4f}", best=best_epoch)
        if on_epoch is not None:
            on_epoch(dict(record))
        if cfg.patience and stale >= cfg.patience and epoch < cfg.epochs:
            stopped_early = True
            logger.info("early stop after epoch %d: best epoch %d", epoch, best_epoch)
            break
    bar.close()

    model.load_state_dict(best_state)
    agree = distributed.ranks_agree(model.state_dict(), ctx)
    if not agree:
        logger.warning("the %d ranks ended with different weights", ctx.world_size)
    if device.type != "cpu":
        model.to("cpu")
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return FitResult(
        best_state=best_state,
        best_epoch=best_epoch,
        history=history,
        stopped_early=stopped_early,
        selected_on=select_on,
        class_weights=None if weights is None else weights.tolist(),
        world_size=ctx.world_size,
        backend=ctx.backend,
        batch_per_rank=batch,
        ranks_agree=agree,
        device=str(device),
        mixed_precision=precision,
        channels_last=channels_last,
        images_per_second=images / step_seconds if step_seconds > 0 else 0.0,
    )


@torch.inference_mode()
def predict_proba(model: nn.Module, dataset: Dataset, batch_size: int = 64) -> np.ndarray:
    """Probability of class 1 (malignant, or cancerous) for every image, in order.

    The model is evaluated in eval mode (batch norm on stored statistics, no dropout) and
    returned to the mode it was in.

    Returns:
        ``(N,)`` float64 array.
    """
    was_training = model.training
    model.eval()
    try:
        probs = [
            torch.softmax(model(x).float(), dim=1)[:, 1].to(torch.float64).numpy()
            for x, _ in batches(dataset, batch_size)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(probs) if probs else np.zeros(0, dtype=np.float64)
