"""Presets: named sets of params run as one DVC experiment (``mammocad preset NAME``).

A preset is a YAML file in ``presets/`` holding part of the ``params.yaml`` tree, e.g.
``presets/paper.yaml``, the paper's experiment on real CBIS-DDSM. It is applied with
``dvc exp run -S key=value …``, so the run is an ordinary experiment: ``dvc exp show``,
``dvc params diff`` and ``dvc metrics diff`` compare it with any other.

Rules: a mapping in the preset sets its keys one by one; an empty mapping (``{}``) empties
the key (``~key.child`` for each child there now); any other value replaces the value
there. Only values that differ from ``params.yaml`` become ``-S`` arguments. A key that
``params.yaml`` does not have is an error naming it, so a preset written for other params
fails before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mammocad.errors import InputError, InputNotFound, ParamsError

#: Strings YAML 1.1 (PyYAML) reads as booleans or null when unquoted.
_YAML11_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})
#: Folder of the presets, relative to the project root.
PRESETS_DIR = "presets"


def find_preset(name: str, root: Path) -> Path:
    """The preset file of ``name`` (``presets/<name>.yaml``) or a path to one.

    Raises:
        InputNotFound: listing the presets there are.
    """
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = root / PRESETS_DIR / f"{name}.yaml"
    if path.is_file():
        return path
    known = sorted(p.stem for p in (root / PRESETS_DIR).glob("*.yaml"))
    raise InputNotFound(f"no preset {name!r} (presets in {root / PRESETS_DIR}: {known or 'none'})")


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    """A YAML mapping, or a one-line error naming the file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise InputNotFound(f"{what} {path} does not exist") from None
    except yaml.YAMLError as err:
        raise InputError(f"{what} {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} {path}: expected a mapping at the top level")
    return data


def hydra_value(value: Any) -> str:
    """A value in the override grammar of ``dvc exp run -S`` (Hydra's): strings quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as a param value")


def overrides(preset: dict[str, Any], params: dict[str, Any], where: str = "") -> Iterator[str]:
    """The ``-S`` arguments that turn ``params`` into ``params`` with ``preset`` applied.

    Raises:
        ParamsError: naming a preset key that ``params`` lacks, or a mapping where params
            hold a plain value.
    """
    for key, value in preset.items():
        dotted = f"{where}{key}"
        if not isinstance(params, dict) or key not in params:
            raise ParamsError(f"preset key {dotted} is not in params.yaml")
        current = params[key]
        if isinstance(value, dict):
            if not isinstance(current, dict):
                raise ParamsError(f"preset key {dotted} is a mapping; params.yaml has {current!r}")
            if value:
                yield from overrides(value, current, f"{dotted}.")
            else:
                yield from (f"~{dotted}.{child}" for child in current)
        elif value != current:  # only changes: a value already there needs no rewrite
            if isinstance(value, str) and value.lower() in _YAML11_WORDS:
                raise ParamsError(
                    f"preset key {dotted}: {value!r} cannot go through dvc exp run -S, which "
                    "writes it unquoted (read back as a boolean or null); set it in params.yaml"
                )
            yield f"{dotted}={hydra_value(value)}"


def apply(preset: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``preset`` applied by the same rules (for checks and tests)."""
    out = dict(params)
    for key, value in preset.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = apply(value, out[key])
        else:
            out[key] = value
    return out
