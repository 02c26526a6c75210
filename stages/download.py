"""Stage ``download``: fetch or generate the raw dataset into ``data/raw``."""

from __future__ import annotations

import logging

from mammocad.sources import DataConfig, download
from stages.common import ROOT, load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.download")


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("download", seed)
    cfg = section(params, "data", DataConfig)
    summary = download(ROOT / "data/raw", cfg, seed, workers=scalar(params, "workers", int, 0))
    log.info("data/raw written from source %r: %s", cfg.source, summary)


if __name__ == "__main__":
    run_stage("download", main)
