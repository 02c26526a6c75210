"""Raw-data sources, selected by ``data.source``.

Every source writes a ``data/raw`` tree that ``convert`` reads the same way: the CBIS-DDSM
layout of a TCIA download, ``csv/`` with the case-description files and DICOM series below,
joined by SeriesInstanceUID (see :mod:`mammocad.sources.layout`). Sources whose data come
in another form (mini-MIAS PGMs, DDSM LJPEGs, a user's PNGs) wrap them into that layout.

A source is a function ``(out_dir, cfg, seed, workers) -> summary``. Sources that download
keep what they fetched in ``cfg.download_dir`` (outside DVC's outputs, so an interrupted
download resumes) and hard-link it into ``out_dir``.

``data.source`` may also be a list: each source is written to ``out_dir/<name>/`` and their
case descriptions are merged into ``out_dir/csv/``, with the dataset named on every row and
patient ids prefixed by it, so that patients of different datasets stay apart in the split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad.config import to_dict
from mammocad.deid import install_file
from mammocad.errors import InputError, ParamsError
from mammocad.io import atomic_dir, write_csv, write_json
from mammocad.registry import Registry
from mammocad.sources.ddsm import DdsmConfig, fetch_ddsm
from mammocad.sources.layout import COLUMNS
from mammocad.sources.local import LocalConfig, fetch_local
from mammocad.sources.mias import MiasConfig, fetch_mias
from mammocad.sources.retriever import fetch_from_root
from mammocad.sources.synthetic import SyntheticConfig, generate_synthetic
from mammocad.sources.tcia import TciaConfig, fetch_cbis_ddsm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` params section.

    Attributes:
        source: a source name (see :data:`SOURCES`) or a list of them to combine.
        download_dir: where downloading sources keep their files between runs (resume).
        synthetic: settings of the ``synthetic`` source.
        cbis_ddsm: settings of the ``cbis-ddsm`` source (TCIA).
        mias: settings of the ``mias`` source.
        ddsm: settings of the ``ddsm`` source.
        local: settings of the ``local`` source.
    """

    source: str | tuple[str, ...] = "synthetic"
    download_dir: str = "data/downloads"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    cbis_ddsm: TciaConfig = field(default_factory=TciaConfig)
    mias: MiasConfig = field(default_factory=MiasConfig)
    ddsm: DdsmConfig = field(default_factory=DdsmConfig)
    local: LocalConfig = field(default_factory=LocalConfig)

    @property
    def sources(self) -> tuple[str, ...]:
        """The source names, one or several."""
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)


Source = Callable[[Path, DataConfig, int, int], dict[str, Any]]
SOURCES: Registry[Source] = Registry("data source")


def link_tree(src: Path, dst: Path, counts: dict[str, int] | None = None) -> int:
    """Mirrors ``src`` into ``dst`` with hard links, de-identifying DICOM files on the way.

    Files holding identifying fields are written as clean copies
    (:func:`mammocad.deid.install_file`); the others are hard-linked (copied across file
    systems). ``src`` is never modified. Hidden entries (download state, partial files)
    are left out.

    Args:
        src: the download cache.
        dst: the raw-data folder.
        counts: when given, receives ``files_deidentified`` (clean copies written).

    Returns:
        The number of files linked or copied.
    """
    n = 0
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            if name.startswith(".") or name.endswith(".part"):
                continue
            cleaned = install_file(Path(root) / name, dst / rel / name)
            if counts is not None:
                counts["files_deidentified"] = counts.get("files_deidentified", 0) + cleaned
            n += 1
    return n


@SOURCES.register("synthetic")
def _synthetic(out_dir: Path, cfg: DataConfig, seed: int, workers: int) -> dict[str, Any]:
    return generate_synthetic(out_dir, cfg.synthetic, seed=seed, workers=workers)


@SOURCES.register("cbis-ddsm")
def _cbis_ddsm(out_dir: Path, cfg: DataConfig, seed: int, workers: int) -> dict[str, Any]:
    if cfg.cbis_ddsm.root:
        # A copy already on disk: nothing is fetched from the image API.
        return fetch_from_root(out_dir, cfg.cbis_ddsm, Path(cfg.download_dir), workers)
    cache = Path(cfg.download_dir) / "cbis-ddsm"
    summary = fetch_cbis_ddsm(cache, cfg.cbis_ddsm, seed, workers)
    counts = {"files_deidentified": 0}
    summary["files_linked"] = link_tree(cache, out_dir, counts)
    summary.update(counts)
    return summary


@SOURCES.register("mias")
def _mias(out_dir: Path, cfg: DataConfig, seed: int, workers: int) -> dict[str, Any]:
    return fetch_mias(out_dir, cfg.mias, seed, workers, download_dir=Path(cfg.download_dir))


@SOURCES.register("ddsm")
def _ddsm(out_dir: Path, cfg: DataConfig, seed: int, workers: int) -> dict[str, Any]:
    return fetch_ddsm(out_dir, cfg.ddsm, seed, workers)


@SOURCES.register("local")
def _local(out_dir: Path, cfg: DataConfig, seed: int, workers: int) -> dict[str, Any]:
    return fetch_local(out_dir, cfg.local, seed, workers)


def merge_case_descriptions(out_dir: Path, names: tuple[str, ...]) -> dict[str, int]:
    """Merges ``out_dir/<name>/csv/*`` into ``out_dir/csv/``, naming each row's dataset.

    Patient ids become ``<dataset>/<patient_id>``, so that two datasets' ``P_00001`` are
    different patients. Two datasets with the same subject (image) name cannot be told
    apart by ``convert`` and are refused.

    Returns:
        Rows per merged file.

    Raises:
        ValueError: naming both datasets and a subject when subjects collide.
    """
    merged: dict[str, list[pd.DataFrame]] = {}
    owner: dict[str, str] = {}
    for name in names:
        for path in sorted((out_dir / name / "csv").glob("*_case_description_*_set.csv")):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame["dataset"] = (
                frame["dataset"].where(frame["dataset"] != "", name)
                if ("dataset" in frame)
                else name
            )
            frame["patient_id"] = name + "/" + frame["patient_id"].str.strip()
            for subject in {p.strip().split("/")[0] for p in frame["image file path"]}:
                if owner.setdefault(subject, name) != name:
                    raise InputError(
                        f"sources {owner[subject]!r} and {name!r} both hold subject "
                        f"{subject!r}; combine datasets whose image names differ"
                    )
            merged.setdefault(path.name, []).append(frame)
    counts = {}
    for kind in COLUMNS:
        for split in ("train", "test"):
            file = f"{kind}_case_description_{split}_set.csv"
            frames = merged.get(file, [])
            frame = (
                pd.concat(frames, ignore_index=True)
                if frames
                else pd.DataFrame(columns=[*COLUMNS[kind], "dataset"])
            )
            write_csv(out_dir / "csv" / file, frame)
            counts[file] = len(frame)
    return counts


def download(out_dir: Path, cfg: DataConfig, seed: int, workers: int = 0) -> dict[str, Any]:
    """Fetches (or generates) the raw dataset of ``cfg.source`` into ``out_dir``.

    The directory appears only when every source has finished; ``source.json`` records the
    sources, their settings and summaries.

    Raises:
        KeyError: for an unknown source, listing the valid ones.
    """
    names = cfg.sources
    if not names:
        raise ParamsError("data.source is empty: name at least one source")
    fetchers = {name: SOURCES.get(name) for name in names}
    if len(set(names)) != len(names):
        raise ParamsError(f"data.source names a source twice: {list(names)}")
    with atomic_dir(out_dir) as tmp:
        if len(names) == 1:
            summary = fetchers[names[0]](tmp, cfg, seed, workers)
        else:
            summary = {}
            for name, fetch in fetchers.items():
                log.info("source %s → %s/%s", name, out_dir, name)
                summary[name] = fetch(tmp / name, cfg, seed, workers)
            summary["merged_rows"] = merge_case_descriptions(tmp, names)
        write_json(
            tmp / "source.json",
            {"source": list(names), "seed": seed, "config": to_dict(cfg), "summary": summary},
        )
    return summary
