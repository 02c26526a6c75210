"""Stage ``enhance``: CLAHE and median (or any configured chain) on every image (§3.2)."""

from __future__ import annotations

import logging

from mammocad import layout
from mammocad.enhance import EnhanceConfig, enhance_dataset
from mammocad.layout import at
from stages.common import load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.enhance")


def main() -> None:
    params = load_params()
    start("enhance")
    cfg = section(params, "enhance", EnhanceConfig)
    workers = scalar(params, "workers", int, 0)
    manifest = enhance_dataset(at(layout.CONVERTED), at(layout.ENHANCED), cfg, workers)
    log.info("enhanced %d manifest rows with %s", len(manifest), " -> ".join(cfg.chain))


if __name__ == "__main__":
    run_stage("enhance", main)
