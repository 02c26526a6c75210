"""Stage ``patches``: aspect-ratio filter, resize ROIs to patches, down-size full images."""

from __future__ import annotations

import logging

from mammocad import layout
from mammocad.io import write_json
from mammocad.layout import at
from mammocad.patches import PatchesConfig, build_patches
from stages.common import load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.patches")


def main() -> None:
    params = load_params()
    start("patches")
    cfg = section(params, "patches", PatchesConfig)
    workers = scalar(params, "workers", int, 0)
    _, _, metrics = build_patches(at(layout.ENHANCED), at(layout.PATCHES), cfg, workers)
    write_json(at(layout.PATCHES_METRICS), metrics)
    log.info("patches: %s", metrics)


if __name__ == "__main__":
    run_stage("patches", main)
