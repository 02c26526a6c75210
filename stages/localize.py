"""Stage ``localize``: class-activation heatmaps on the test split's full mammograms (§3).

The fine-tuned patch network of ``localize.backbone`` is run over each whole enhanced
mammogram at the training patch scale; its malignancy heatmap is scored against the
lesion masks (pointing game, IoU, Dice, each beside its chance level).
"""

from __future__ import annotations

import logging
import shutil

import pandas as pd

from mammocad.experiment import load_trained_backbone, params_dict
from mammocad.io import write_csv, write_json
from mammocad.localize import LocalizeConfig, localize_dataset
from mammocad.tracking import log_run
from stages.common import ROOT, load_params, mlflow_settings, run_stage, scalar, section, start

log = logging.getLogger("stages.localize")


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("localize", seed)
    cfg = section(params, "localize", LocalizeConfig)
    model, ckpt = load_trained_backbone(ROOT / f"models/{cfg.backbone}.pt")
    norm, patch_px = ckpt["config"]["input"], float(ckpt["config"]["patch_px"])
    split = pd.read_csv(ROOT / "data/split/split.csv", keep_default_na=False)
    test_ids = set(split.loc[(split["split"] == "test") & (split["kind"] == "full"), "image_id"])

    per_image, metrics = localize_dataset(
        model,
        cfg.backbone,
        patch_px,
        norm["mean"],
        norm["std"],
        ROOT / "data/enhanced",
        test_ids,
        ROOT / "data/localize",
        cfg,
    )
    metrics["init"] = ckpt["metrics"]["init"]
    shown = ROOT / "reports/localize"
    shutil.rmtree(shown, ignore_errors=True)
    shown.mkdir(parents=True)
    for image_id in per_image["image_id"][: cfg.report_overlays]:
        shutil.copy2(ROOT / f"data/localize/{image_id}.png", shown / f"{image_id}.png")
    write_json(ROOT / "metrics/localize.json", metrics)
    write_csv(
        ROOT / "metrics/localize_images.csv",
        per_image[
            [
                "image_id",
                "pathology",
                "hit",
                "iou",
                "dice",
                "chance_hit",
                "chance_iou",
                "chance_dice",
            ]
        ],
    )
    uri, experiment = mlflow_settings(params)
    log_run(
        uri,
        experiment,
        f"localize-{cfg.backbone}",
        params={"localize": params_dict(cfg), "seed": seed, "init": metrics["init"]},
        metrics=metrics,
        artifacts=sorted(shown.glob("*.png")),
        tags={"stage": "localize", "model": cfg.backbone},
        artifact_root=ROOT / "mlartifacts",
    )
    log.info(
        "localize (%s, %d images): hit rate %.3f (chance %.3f), IoU %.3f (chance %.3f)",
        cfg.backbone,
        len(per_image),
        metrics["hit_rate"],
        metrics["hit_rate_chance"],
        metrics["mean_iou"],
        metrics["mean_iou_chance"],
    )


if __name__ == "__main__":
    run_stage("localize", main)
