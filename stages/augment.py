"""Stage ``augment``: augmented copies of the training split only (§3.2)."""

from __future__ import annotations

import logging

import pandas as pd

from mammocad import layout
from mammocad.augment import AugmentConfig, augment_dataset
from mammocad.layout import at
from stages.common import load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.augment")


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("augment", seed)
    cfg = section(params, "augment", AugmentConfig)
    frame = pd.read_csv(at(layout.SPLIT_TABLE), keep_default_na=False)
    out = augment_dataset(
        frame,
        at(layout.PATCHES),
        at(layout.AUGMENTED),
        cfg,
        seed,
        workers=scalar(params, "workers", int, 0),
    )
    log.info("augment: %d training images (originals and copies)", len(out))


if __name__ == "__main__":
    run_stage("augment", main)
