"""Where and how the loop runs: the device checked against the machine and the process
group, autocast precision, NHWC layout, and each rank's batch and shard under ``torchrun``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from mammocad import distributed
from mammocad.distributed import DistContext
from mammocad.train.config import PRECISIONS, TrainConfig


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
