"""The fit loop (paper §4.2): Adam with per-epoch exponential decay, cross-entropy, the best
validation epoch kept, early stopping, and data-parallel training under ``torchrun``.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mammocad import distributed
from mammocad.distributed import DistContext
from mammocad.evaluate import roc_auc
from mammocad.models.data import batches
from mammocad.train.config import FitResult, TrainConfig
from mammocad.train.device import (
    _autocast,
    _cpu_state,
    _to,
    rank_batch_size,
    resolve_device,
    shard_order,
)
from mammocad.train.frozen import train_mode
from mammocad.train.labels import _labels_of, _num_classes, class_weights
from mammocad.train.recalibrate import recalibrate_batchnorm
from mammocad.train.scoring import _evaluate

logger = logging.getLogger(__name__)


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
        if cfg.recalibrate_bn:
            # the whole set at the global batch size on every rank: the same statistics
            # everywhere, and the same as in a single process
            recalibrate_batchnorm(
                model, train_set, cfg.batch_size, device, precision, channels_last, cfg.max_batches
            )
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
