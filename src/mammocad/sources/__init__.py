"""Raw-data sources, selected by ``data.source``.

Every source writes a ``data/raw`` tree that ``convert`` reads the same way: the CBIS-DDSM
layout of a TCIA download, ``csv/`` with the case-description files and DICOM series below,
joined by SeriesInstanceUID (see :mod:`mammocad.sources.layout`). Sources whose data come
in another form (mini-MIAS PGMs, DDSM LJPEGs, a user's PNGs) wrap them into that layout.

A source registers itself where it is defined, with its settings type
(:func:`~mammocad.sources.registry.register_source`): its function
``(out_dir, cfg, seed, workers) -> summary`` gets its own ``data.<key>`` section as ``cfg``.
Sources that download keep what they fetched in ``data.download_dir`` (outside DVC's
outputs, so an interrupted download resumes) and hard-link it into ``out_dir``. The imports
below are the list of built-in sources.

``data.source`` may also be a list: each source is written to ``out_dir/<name>/`` and their
case descriptions are merged into ``out_dir/csv/``, with the dataset named on every row and
patient ids prefixed by it, so that patients of different datasets stay apart in the split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad.config import to_dict
from mammocad.errors import InputError, ParamsError
from mammocad.io import atomic_dir, write_csv, write_json
from mammocad.sources import ddsm, local, mias, synthetic, tcia
from mammocad.sources.layout import COLUMNS, link_tree
from mammocad.sources.registry import SOURCES, DataConfig, SourceSpec, register_source

__all__ = [
    "SOURCES",
    "DataConfig",
    "SourceSpec",
    "ddsm",
    "download",
    "link_tree",
    "local",
    "merge_case_descriptions",
    "mias",
    "register_source",
    "synthetic",
    "tcia",
]

log = logging.getLogger(__name__)


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
    specs = {name: SOURCES.get(name) for name in names}
    if len(set(names)) != len(names):
        raise ParamsError(f"data.source names a source twice: {list(names)}")
    download_dir = Path(cfg.download_dir)
    with atomic_dir(out_dir) as tmp:
        if len(names) == 1:
            spec = specs[names[0]]
            summary = spec.run(tmp, cfg.sections[spec.key], seed, workers, download_dir)
        else:
            summary = {}
            for name, spec in specs.items():
                log.info("source %s → %s/%s", name, out_dir, name)
                summary[name] = spec.run(
                    tmp / name, cfg.sections[spec.key], seed, workers, download_dir
                )
            summary["merged_rows"] = merge_case_descriptions(tmp, names)
        write_json(
            tmp / "source.json",
            {"source": list(names), "seed": seed, "config": to_dict(cfg), "summary": summary},
        )
    return summary
