"""Stage ``split``: patient-disjoint, stratified, seeded train/val/test split (§3.1)."""

from __future__ import annotations

import logging

from mammocad import layout
from mammocad.io import atomic_dir, write_csv, write_json
from mammocad.layout import at
from mammocad.manifest import read_manifest
from mammocad.split import (
    USED_COLUMNS,
    SplitConfig,
    assign_splits,
    check_disjoint,
    split_metrics,
)
from stages.common import load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.split")


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("split", seed)
    cfg = section(params, "split", SplitConfig)
    manifest = read_manifest(at(layout.PATCH_MANIFEST), USED_COLUMNS, made_by="patches")
    frame = assign_splits(manifest, cfg, seed)
    check_disjoint(frame)
    with atomic_dir(at(layout.SPLIT)) as tmp:
        write_csv(tmp / "split.csv", frame)
        for name, part in frame.groupby("split"):
            write_csv(tmp / f"{name}.csv", part)
    metrics = split_metrics(frame)
    write_json(at(layout.SPLIT_METRICS), metrics)
    log.info("split: %s", metrics)


if __name__ == "__main__":
    run_stage("split", main)
