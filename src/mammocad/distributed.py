"""Data-parallel training across processes, as launched by ``torchrun``.

``torchrun --nproc_per_node N`` starts N copies of a stage and tells each its place through
the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``). :func:`session` turns that
into a process group (NCCL where CUDA is available, else gloo; ``MAMMOCAD_DIST_BACKEND``
overrides) and a :class:`DistContext`; without ``torchrun`` (``WORLD_SIZE`` unset or 1) it
creates no process group at all, so a plain ``python -m stages.<name>`` behaves exactly as
it always has. The helpers below are the few collective operations the training loop
needs; with one process each is the identity.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

#: Environment variable that chooses the backend instead of the CUDA-based default.
BACKEND_ENV = "MAMMOCAD_DIST_BACKEND"
BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel run.

    Attributes:
        rank: global rank, ``0`` .. ``world_size - 1``.
        world_size: number of processes; ``1`` without ``torchrun``.
        local_rank: rank on this machine; picks the GPU under NCCL.
        backend: ``"gloo"``, ``"nccl"``, or ``None`` for a single process.
        device: where this process trains: ``cuda:<local_rank>`` under NCCL, else the CPU.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


SINGLE = DistContext()


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def _device(backend: str | None, local_rank: int) -> torch.device:
    return torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")


def from_env(env: Mapping[str, str] | None = None) -> DistContext:
    """The context ``torchrun`` describes in the environment, without initialising anything.

    Args:
        env: the environment; ``os.environ`` by default.

    Raises:
        ValueError: for a malformed rank, a rank outside the world, or an unknown backend
            in ``MAMMOCAD_DIST_BACKEND``, naming the variable.
    """
    env = os.environ if env is None else env
    world_size = _int_env(env, "WORLD_SIZE", 1)
    rank = _int_env(env, "RANK", 0)
    local_rank = _int_env(env, "LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(
            f"RANK={rank}, LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world_size}"
        )
    if world_size == 1:
        return SINGLE
    backend = env.get(BACKEND_ENV, "").strip().lower()
    if backend and backend not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={backend!r}: expected one of {', '.join(BACKENDS)}")
    if not backend:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    return DistContext(rank, world_size, local_rank, backend, _device(backend, local_rank))


def current() -> DistContext:
    """The context of the process group this process belongs to, or :data:`SINGLE`."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    world_size = dist.get_world_size()
    if world_size == 1:
        return SINGLE
    rank = dist.get_rank()
    backend = str(dist.get_backend())
    local_rank = _int_env(os.environ, "LOCAL_RANK", rank)
    return DistContext(rank, world_size, local_rank, backend, _device(backend, local_rank))


@contextlib.contextmanager
def session(env: Mapping[str, str] | None = None) -> Iterator[DistContext]:
    """Joins the process group ``torchrun`` set up, for the duration of a stage.

    With ``WORLD_SIZE`` unset or 1 nothing is initialised and :data:`SINGLE` is yielded.
    Otherwise the process group is created (its rendezvous comes from ``MASTER_ADDR`` and
    ``MASTER_PORT``, which ``torchrun`` sets), under NCCL this process's GPU is selected,
    and on leaving, normally or by an exception, the group is destroyed.

    Raises:
        RuntimeError: if NCCL is asked for without a GPU for this local rank.
    """
    ctx = from_env(env)
    if not ctx.active:
        yield ctx
        return
    if ctx.backend == "nccl":
        if ctx.local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"NCCL needs a GPU for LOCAL_RANK={ctx.local_rank}, "
                f"{torch.cuda.device_count()} visible"
            )
        torch.cuda.set_device(ctx.device)
    init = {"device_id": ctx.device} if ctx.backend == "nccl" else {}
    dist.init_process_group(ctx.backend, rank=ctx.rank, world_size=ctx.world_size, **init)
    logger.info(
        "rank %d of %d (local %d) on %s, backend %s",
        ctx.rank,
        ctx.world_size,
        ctx.local_rank,
        ctx.device,
        ctx.backend,
    )
    try:
        yield ctx
    finally:
        dist.destroy_process_group()


def _comm_device(ctx: DistContext) -> torch.device:
    # NCCL only moves CUDA tensors; gloo takes CPU tensors.
    return ctx.device if ctx.backend == "nccl" else torch.device("cpu")


def all_sum(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Sums ``values`` over all ranks, in float64; the identity for one process."""
    if not ctx.active:
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def broadcast_floats(values: Sequence[float | None], ctx: DistContext) -> list[float | None]:
    """Rank 0's ``values`` on every rank (``None`` travels as NaN and comes back ``None``).

    Decisions that steer the training loop (best epoch, early stop) are taken on these, so
    that no rank can leave a loop the others stay in.
    """
    if not ctx.active:
        return list(values)
    raw = [float("nan") if v is None else float(v) for v in values]
    tensor = torch.tensor(raw, dtype=torch.float64, device=_comm_device(ctx))
    dist.broadcast(tensor, src=0)
    return [None if v != v else v for v in tensor.cpu().tolist()]


def average_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Averages the floating-point buffers (batch-norm running statistics) over ranks.

    Each rank updates its running statistics on its own shard; the average uses all of the
    epoch's data and leaves every rank evaluating the same model. (Where ``recalibrate_bn``
    recomputes them, every rank does so on the whole training set, so they already agree.) A buffer that is equal on
    all ranks (a frozen layer's) stays bit-identical: ``N·x/N`` is exact in float64.
    Integer buffers (``num_batches_tracked``) are equal anyway: every rank takes the same
    number of steps.
    """
    if not ctx.active:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers])
    flat = flat.to(_comm_device(ctx))
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    with torch.no_grad():
        for b in buffers:
            n = b.numel()
            b.copy_(flat[offset : offset + n].view_as(b).to(b.dtype))
            offset += n


def state_checksum(state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-tensor float64 sums and sums of squares of a ``state_dict``, on the CPU."""
    sums = []
    for tensor in state.values():
        x = tensor.detach().to(torch.float64)
        sums.extend((x.sum(), x.square().sum()))
    return torch.stack(sums).cpu() if sums else torch.zeros(0, dtype=torch.float64)


def ranks_agree(state: Mapping[str, torch.Tensor], ctx: DistContext) -> bool:
    """Whether every rank holds the same weights, compared by :func:`state_checksum`.

    The minimum and the maximum of each checksum over ranks are equal exactly when all
    ranks computed the same value. ``True`` for a single process.
    """
    if not ctx.active:
        return True
    checksum = state_checksum(state).to(_comm_device(ctx))
    low, high = checksum.clone(), checksum.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))
