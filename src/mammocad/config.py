"""Typed, frozen configuration sections built from plain dictionaries.

Stages read ``params.yaml`` and hand each section to :func:`from_dict`; the library itself
never reads files for configuration. Unknown or mistyped keys fail with the dotted key's
name, so a typo in ``params.yaml`` cannot silently fall back to a default.

A section whose sub-sections come from a registry (``data``: one per data source) holds them
in one :func:`keyed_sections` field, so that a new entry of the registry needs no new field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

#: Field metadata naming the function that lists a :func:`keyed_sections` field's keys.
_KEYED = "mammocad.config.keyed_sections"


class ConfigError(ValueError):
    """A params section has an unknown, missing or mistyped key."""


def keyed_sections(types_of: Callable[[], Mapping[str, type]]) -> Any:
    """A dataclass field holding sub-sections whose keys sit beside the dataclass's own.

    In the params the sub-sections are ordinary keys (``data.mias``, ``data.ddsm``); in the
    dataclass they are one mapping, key → section. ``types_of()`` gives the valid keys and
    the dataclass type of each when a section is parsed (a registry, typically), so an
    entry registered later is a valid key without a new field. :func:`from_dict` puts the
    keys present in the data into the mapping (the owning dataclass fills in the others),
    and :func:`to_dict` writes each back under its key.

    Args:
        types_of: returns the valid keys and their types.
    """
    return dataclasses.field(default_factory=dict, hash=False, metadata={_KEYED: types_of})


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Builds the frozen dataclass ``cls`` from ``data``, checking every key.

    Args:
        cls: a dataclass type whose fields carry type annotations.
        data: a mapping (usually a ``params.yaml`` section).
        where: the dotted key of ``data``, for error messages.

    Raises:
        ConfigError: naming the dotted key that is unknown, missing or of the wrong type.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    keyed: dict[str, tuple[str, Any]] = {}  # params key -> (field, section type)
    for name, field in list(fields.items()):
        if _KEYED in field.metadata:
            del fields[name]
            for key, tp in field.metadata[_KEYED]().items():
                keyed[key] = (name, tp)
    if set(keyed) & set(fields):
        raise TypeError(f"{cls.__name__}: keyed sections {sorted(set(keyed) & set(fields))} clash")
    unknown = sorted(set(data) - set(fields) - set(keyed))
    if unknown:
        key = _join(where, unknown[0])
        valid = ", ".join(sorted([*fields, *keyed]))
        raise ConfigError(f"unknown config key {key!r}; valid keys: {valid}")
    kwargs: dict[str, Any] = {name: {} for name, _ in keyed.values()}
    for key, (name, tp) in keyed.items():
        if key in data:
            kwargs[name][key] = _coerce(tp, data[key], _join(where, key))
    for name, field in fields.items():
        key = _join(where, name)
        if name not in data:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise ConfigError(f"missing config key {key!r}")
            continue
        kwargs[name] = _coerce(hints[name], data[name], key)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Turns a config dataclass back into plain dicts and lists (for logging and metrics)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if _KEYED in f.metadata:
                out.update({key: to_dict(section) for key, section in value.items()})
            else:
                out[f.name] = to_dict(value)
        return out
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    return obj


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key!r}: {value!r} matches none of {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key!r}: expected null, got {value!r}")
    if origin is typing.Literal:
        if isinstance(value, bool):
            # YAML 1.1 (PyYAML) reads an unquoted off/on as a boolean
            if ("on" if value else "off") in args:
                return "on" if value else "off"
        elif value in args:
            return value
        hint = ""
        if isinstance(value, bool) and all(isinstance(a, str) for a in args):
            hint = " (YAML reads unquoted off/on/no/yes as booleans: quote the value)"
        raise ConfigError(f"{key!r}: {value!r} is not one of {', '.join(map(repr, args))}{hint}")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(f"{key!r}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key!r}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key!r}: expected a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key!r}: expected an integer, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key!r}: expected true or false, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key!r}: expected a string, got {value!r}")
    if tp is Any:
        return value
    raise ConfigError(f"{key!r}: unsupported config type {tp}")  # pragma: no cover
