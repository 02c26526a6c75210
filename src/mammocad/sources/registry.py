"""The data-source registry and the ``data`` params section built from it.

Each source registers itself where it is defined, with the type of its ``data.<key>``
settings, by decorating the function that writes its raw tree::

    @register_source("mias", MiasConfig, paths=("archive",), uses_download_dir=True)
    def fetch_mias(out_dir, cfg, seed, workers=0, download_dir=None): ...

:class:`DataConfig` then accepts ``data.source: mias`` and a ``data.mias`` section parsed
into ``MiasConfig`` (unknown keys refused by their dotted name), and
:func:`mammocad.sources.download` runs the function. :mod:`mammocad.sources` imports the
built-in sources, so that they are registered before any params are read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mammocad.config import keyed_sections
from mammocad.errors import ParamsError
from mammocad.registry import Registry

F = TypeVar("F", bound=Callable[..., dict[str, Any]])


@dataclass(frozen=True)
class SourceSpec:
    """A registered data source.

    Attributes:
        name: the value of ``data.source`` that selects it (``cbis-ddsm``).
        key: its settings' key under ``data`` (``cbis_ddsm``).
        config: the frozen dataclass of those settings; every field has a default.
        fetch: ``fetch(out_dir, cfg, seed, workers)`` writes the raw tree into ``out_dir``
            and returns a summary; ``cfg`` is a ``config`` instance.
        paths: fields of ``config`` naming files or folders the source reads or keeps
            (checked by the ``download`` stage against its output folder).
        uses_download_dir: ``fetch`` also takes ``download_dir=``, the folder
            (``data.download_dir``) where downloads are kept between runs.
    """

    name: str
    key: str
    config: type
    fetch: Callable[..., dict[str, Any]]
    paths: tuple[str, ...] = ()
    uses_download_dir: bool = False

    def run(
        self, out_dir: Path, cfg: Any, seed: int, workers: int, download_dir: Path
    ) -> dict[str, Any]:
        """Writes the source's raw tree into ``out_dir``; returns its summary."""
        if self.uses_download_dir:
            return self.fetch(out_dir, cfg, seed, workers, download_dir=download_dir)
        return self.fetch(out_dir, cfg, seed, workers)


SOURCES: Registry[SourceSpec] = Registry("data source")


def register_source(
    name: str,
    config: type,
    *,
    key: str | None = None,
    paths: tuple[str, ...] = (),
    uses_download_dir: bool = False,
) -> Callable[[F], F]:
    """Decorator that registers a source's fetch function (see :class:`SourceSpec`).

    Args:
        name: the ``data.source`` value.
        config: the settings dataclass; every field needs a default.
        key: the settings' key under ``data``; ``name`` with ``-`` as ``_`` by default.
        paths: fields of ``config`` that name paths.
        uses_download_dir: pass ``download_dir=`` to the function.

    Raises:
        ValueError: for a duplicate name or key, a key that is one of ``data``'s own, or
            a config that is not a dataclass or lacks a path field.
    """
    key = key or name.replace("-", "_")

    def deco(fetch: F) -> F:
        if key in _OWN_KEYS or any(spec.key == key for spec in source_specs()):
            raise ValueError(f"data source {name!r}: the key data.{key} is taken")
        if not dataclasses.is_dataclass(config):
            raise ValueError(f"data source {name!r}: config {config!r} is not a dataclass")
        names = {f.name for f in dataclasses.fields(config)}
        for field in paths:
            if field not in names:
                raise ValueError(f"data source {name!r}: {config.__name__} has no {field!r}")
        SOURCES.add(name, SourceSpec(name, key, config, fetch, tuple(paths), uses_download_dir))
        return fetch

    return deco


def source_specs() -> list[SourceSpec]:
    """The registered sources, by name."""
    return [SOURCES.get(name) for name in SOURCES]


def _section_types() -> dict[str, type]:
    return {spec.key: spec.config for spec in source_specs()}


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` params section.

    Attributes:
        source: a source name (see :data:`SOURCES`) or a list of them to combine.
        download_dir: where downloading sources keep their files between runs (resume).
        sections: each registered source's settings by key (``data.mias`` under
            ``"mias"``); sources left out get their defaults.
    """

    source: str | tuple[str, ...] = "synthetic"
    download_dir: str = "data/downloads"
    sections: Mapping[str, Any] = keyed_sections(_section_types)

    def __post_init__(self) -> None:
        types = _section_types()
        unknown = sorted(set(self.sections) - set(types))
        if unknown:
            raise ParamsError(
                f"unknown data section {unknown[0]!r}; valid keys: {', '.join(sorted(types))}"
            )
        for key, value in self.sections.items():
            if not isinstance(value, types[key]):
                raise TypeError(
                    f"data.{key} must be a {types[key].__name__}, got {type(value).__name__}"
                )
        filled = {
            key: self.sections[key] if key in self.sections else tp() for key, tp in types.items()
        }
        object.__setattr__(self, "sections", filled)

    @property
    def sources(self) -> tuple[str, ...]:
        """The source names, one or several."""
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)

    def settings(self, name: str) -> Any:
        """The settings of the source ``name`` (``cfg.settings("mias")``: a ``MiasConfig``).

        Raises:
            KeyError: for an unknown source, listing the valid ones.
        """
        return self.sections[SOURCES.get(name).key]

    def path_params(self) -> dict[str, str]:
        """Path-valued settings by key under ``data`` (``download_dir``, ``mias.archive``)."""
        out = {"download_dir": self.download_dir}
        for spec in source_specs():
            for field in spec.paths:
                out[f"{spec.key}.{field}"] = getattr(self.sections[spec.key], field)
        return out


#: ``data``'s own keys, which no source's key may take.
_OWN_KEYS = frozenset(f.name for f in dataclasses.fields(DataConfig)) - {"sections"}
