"""What every stage shares: params loading, logging set-up, seeding, OpenCV's portable
code paths (:mod:`mammocad.portable`) and, for the stages that run PyTorch, the allocator
setting (:mod:`mammocad.allocator`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mammocad.allocator import keep_freed_memory
from mammocad.config import ConfigError, from_dict
from mammocad.errors import run_main
from mammocad.portable import portable_opencv
from mammocad.seeding import seed_everything

T = TypeVar("T")

ROOT = Path.cwd()
PARAMS = Path(os.environ.get("MAMMOCAD_PARAMS", ROOT / "params.yaml"))


def run_stage(stage: str, main: Callable[[], object]) -> None:
    """Runs a stage's ``main`` under the error contract (:func:`mammocad.errors.run_main`)
    and exits: an expected failure or SIGTERM/SIGINT ends in one line naming the stage."""
    sys.exit(run_main(stage, main))


def load_params(path: Path = PARAMS) -> dict[str, Any]:
    """Reads ``params.yaml`` into a dict, failing with the file's name if it is malformed."""
    try:
        with open(path) as fh:
            params = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise SystemExit(f"params file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SystemExit(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise SystemExit(f"{path}: expected a mapping at the top level")
    return params


def section(params: dict[str, Any], name: str, cls: type[T]) -> T:
    """Builds the frozen dataclass of one params section; a bad key exits naming it."""
    try:
        return from_dict(cls, params.get(name), name)
    except (ConfigError, ValueError) as exc:
        raise SystemExit(f"params.yaml: {exc}") from None


def scalar(params: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    """Reads a top-level scalar param such as ``seed`` or ``workers``, checking its type."""
    value = params.get(name, default)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SystemExit(f"params.yaml: {name!r} must be a {kind.__name__}, got {value!r}")
    return value


def start(stage: str, seed: int | None = None, *, tensors: bool = False) -> None:
    """Configures logging, keeps OpenCV on code paths that give the same pixels on every
    x86-64 CPU, seeds everything for stages that draw random numbers, and sets the
    allocator for those that run PyTorch.

    ``tensors``: the stage runs PyTorch on batches of images, so freed blocks stay in the
    heap for the next batch (:func:`mammocad.allocator.keep_freed_memory`).

    Under ``torchrun`` each line names its rank, and ranks other than 0 log warnings and
    errors only: their progress repeats rank 0's.
    """
    level: int | str = os.environ.get("MAMMOCAD_LOGLEVEL", "INFO")
    name = stage
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        rank = os.environ.get("RANK", "0")
        name = f"{stage}[rank {rank}]"
        if rank != "0":
            numeric = logging.getLevelNamesMapping().get(str(level).upper(), logging.INFO)
            level = max(numeric, logging.WARNING)
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    portable_opencv()
    if tensors:
        keep_freed_memory()
    if seed is not None:
        seed_everything(seed)


def mlflow_settings(params: dict[str, Any]) -> tuple[str, str]:
    """The MLflow tracking URI and experiment from the ``mlflow`` section.

    The default ``sqlite:///mlflow.db`` lives at the repository root; the environment
    variable ``MLFLOW_TRACKING_URI`` overrides it (e.g. a shared tracking server).
    """
    section_ = params.get("mlflow") or {}
    uri = os.environ.get("MLFLOW_TRACKING_URI") or section_.get(
        "tracking_uri", "sqlite:///mlflow.db"
    )
    experiment = section_.get("experiment", "mammocad")
    if not isinstance(uri, str) or not isinstance(experiment, str):
        raise SystemExit("params.yaml: mlflow.tracking_uri and mlflow.experiment are strings")
    return uri, experiment


def mlflow_champion(params: dict[str, Any]) -> str:
    """``mlflow.champion``: the finetune entry registered with the alias ``champion``
    (``""``: none)."""
    value = (params.get("mlflow") or {}).get("champion", "mobilenet_v1")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SystemExit(f"params.yaml: mlflow.champion must be a string, got {value!r}")
    return value


def training_device(cfg: Any, ctx: Any, key: str) -> Any:
    """The device a training stage runs on, or a ``params.yaml`` error naming ``key``.

    ``cfg`` is a :class:`~mammocad.train.TrainConfig`, ``ctx`` the process's
    :class:`~mammocad.distributed.DistContext`; checked before any data is loaded.
    """
    from mammocad.train import resolve_device

    try:
        device = resolve_device(cfg, ctx, key)
    except ValueError as exc:
        raise SystemExit(f"params.yaml: {exc}") from None
    logging.getLogger("stages").info(
        "training on %s, mixed precision %s, channels_last %s",
        device,
        cfg.mixed_precision,
        cfg.channels_last,
    )
    return device
