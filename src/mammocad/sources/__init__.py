"""Raw-data sources, selected by ``data.source``.

Every source writes a ``data/raw`` tree that ``convert`` reads the same way (the CBIS-DDSM
layout of a TCIA download: ``csv/`` with the case-description files and ``CBIS-DDSM/``
with DICOM series). A source is a function ``(out_dir, cfg, seed) -> summary dict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mammocad.config import to_dict
from mammocad.io import atomic_dir, write_json
from mammocad.registry import Registry
from mammocad.sources.synthetic import SyntheticConfig, generate_synthetic


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` params section.

    Attributes:
        source: name of the raw-data source (see :data:`SOURCES`).
        synthetic: settings of the ``synthetic`` source.
    """

    source: str = "synthetic"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


Source = Callable[[Path, DataConfig, int, int], dict[str, Any]]
SOURCES: Registry[Source] = Registry("data source")


@SOURCES.register("synthetic")
def _synthetic(out_dir: Path, cfg: DataConfig, seed: int, workers: int) -> dict[str, Any]:
    return generate_synthetic(out_dir, cfg.synthetic, seed=seed, workers=workers)


def download(out_dir: Path, cfg: DataConfig, seed: int, workers: int = 0) -> dict[str, Any]:
    """Fetches (or generates) the raw dataset of ``cfg.source`` into ``out_dir``.

    The directory appears only when the source has finished; ``source.json`` records the
    source, its settings and its summary.

    Raises:
        KeyError: for an unknown source, listing the valid ones.
    """
    fetch = SOURCES.get(cfg.source)
    with atomic_dir(out_dir) as tmp:
        summary = fetch(tmp, cfg, seed, workers)
        write_json(
            tmp / "source.json",
            {"source": cfg.source, "seed": seed, "config": to_dict(cfg), "summary": summary},
        )
    return summary
