"""What every ``mammocad`` command shares: the command registry, the usage error, and reading
checkpoint configs and a params file.
"""

from __future__ import annotations

import argparse
import logging
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mammocad.config import ConfigError, from_dict
from mammocad.errors import ExpectedError
from mammocad.registry import Registry

log = logging.getLogger("mammocad.cli")

T = TypeVar("T")


class UsageError(ExpectedError):
    """A problem with the command's arguments, models or settings (exit status 1)."""


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, its argument set-up and what it runs."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry("command")


# --------------------------------------------------------------------------- settings


def _read_config(path: Path) -> dict[str, Any]:
    """A checkpoint's ``config`` and ``metrics``, without reading its weights into memory."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # any failure means an unusable checkpoint
        raise UsageError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a checkpoint")
    return {"config": data.get("config") or {}, "metrics": data.get("metrics") or {}}


def check_threshold(value: Any, where: str) -> float:
    """A threshold on a probability or a heatmap level: a finite number in (0, 1)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
        if math.isfinite(value) and 0 < value < 1:
            return value
    raise UsageError(f"{where}: the threshold must be a number in (0, 1), got {value!r}")


def _read_params(path: Path, required: bool = False) -> dict[str, Any] | None:
    """The params file as a mapping; ``None`` if it is absent and not ``required``."""
    if not path.is_file():
        if required:
            raise UsageError(f"{path}: params file not found")
        return None
    try:
        with open(path) as fh:
            params = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read params ({exc})") from None
    if not isinstance(params, dict):
        raise UsageError(f"{path}: expected a mapping at the top level")
    return params


def resolve_section(
    cls: type[T],
    name: str,
    checkpoints: Sequence[tuple[Path, dict[str, Any]]],
    params: dict[str, Any] | None,
    params_path: Path,
) -> tuple[T, str]:
    """A settings section from the first checkpoint config holding it, else the params.

    Returns:
        The section and where it came from.

    Raises:
        UsageError: for a malformed section, naming the key.
    """
    try:
        for path, info in checkpoints:
            value = info["config"].get(name)
            if value is not None:
                return from_dict(cls, value, name), f"checkpoint {path}"
        if params is not None and params.get(name) is not None:
            return from_dict(cls, params[name], name), str(params_path)
    except (ConfigError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return cls(), "defaults"
