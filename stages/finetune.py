"""Stage ``finetune@<backbone>``: fine-tune one ImageNet backbone on ROI patches (§3, §4.2).

Runs unchanged under ``torchrun --nproc_per_node N -m stages.finetune <backbone>``: every
rank trains, rank 0 alone writes the checkpoint, history and metrics.
"""

from __future__ import annotations

import logging
import math
import sys

import pandas as pd

from mammocad import layout
from mammocad.config import ConfigError
from mammocad.distributed import session
from mammocad.enhance import EnhanceConfig
from mammocad.experiment import (
    params_dict,
    read_split,
    resolve_finetune,
    save_trained,
    train_backbone,
    training_image_px,
)
from mammocad.layout import at
from mammocad.patches import PatchesConfig
from mammocad.plots import write_history
from mammocad.timing import write_metrics
from stages.common import ROOT, load_params, run_stage, scalar, section, start, training_device

log = logging.getLogger("stages.finetune")


def _image_px() -> float | None:
    """The training films' long side, against which `mammocad predict` scales other images.

    Read from the training rows alone: a split whose val or test patients have ROI crops
    but no full mammograms still has a training scale.
    """
    train = pd.read_csv(at(layout.AUGMENTED) / "train.csv", keep_default_na=False)
    value = training_image_px(train)
    if not math.isfinite(value):
        log.warning(
            "the training split holds no full mammograms; checkpoints record no "
            "training image size"
        )
        return None
    return value


def main(backbone: str) -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start(f"finetune@{backbone}", seed, tensors=True)
    try:
        cfg = resolve_finetune(params.get("finetune") or {}, backbone)
    except (ConfigError, ValueError, KeyError) as exc:
        raise SystemExit(f"params.yaml: {exc}") from None
    frames = read_split(at(layout.SPLIT), at(layout.AUGMENTED), "roi")
    image_px = _image_px()
    roots = {
        "train": at(layout.AUGMENTED),
        "val": at(layout.PATCHES),
        "test": at(layout.PATCHES),
    }
    with session() as ctx:
        training_device(cfg.train, ctx, "finetune.train")
        trained = train_backbone(backbone, cfg, frames, roots, seed)
    if not ctx.is_main:
        return
    # the preprocessing travels with the model, so `mammocad predict` repeats it exactly
    config = {
        "finetune": params_dict(cfg),
        "seed": seed,
        "input": trained.info["input"],
        "enhance": params_dict(section(params, "enhance", EnhanceConfig)),
        "patches": params_dict(section(params, "patches", PatchesConfig)),
        "patch_px": trained.info["patch_px"],
        "image_px": image_px,
    }
    save_trained(at(layout.checkpoint(backbone)), trained, config)
    write_history(at(layout.history(backbone)), trained.fit.history)
    write_metrics(
        at(layout.train_metrics(backbone)),
        {**trained.info, "config": config, "history": trained.fit.history},
        ROOT,
    )
    log.info(
        "%s: best epoch %d of %d (init %s), val AUC %s, %.1f images/s on %s",
        backbone,
        trained.info["best_epoch"],
        trained.info["epochs_run"],
        trained.info["init"],
        trained.info["best"].get("val_auc"),
        trained.info["images_per_second"],
        trained.info["device"],
    )


if __name__ == "__main__":

    def _main() -> None:
        if len(sys.argv) != 2:
            raise SystemExit("usage: python -m stages.finetune <backbone>")
        main(sys.argv[1])

    run_stage("finetune", _main)
