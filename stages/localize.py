"""Stage ``localize``: the system of paper Fig. 1 on the test split's full mammograms (§3).

The fine-tuned patch network of ``localize.backbone`` is run over each whole enhanced
mammogram of the test split, normals included, at the training patch scale. Each heatmap
is computed once and scored against the lesion masks (pointing game, IoU, Dice, each
beside its chance level: ``metrics/localize.json``), and, with the shallow CNN, as the
whole system: image-level AUCs of the shallow CNN, the patch network and their cascade,
and lesion FROC curves (``metrics/system.json``, ``metrics/froc/``; the ``report`` stage
draws them in ``reports/froc.png``).
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import torch

from mammocad import layout
from mammocad.checkpoint import load_trained_backbone
from mammocad.entries import SHALLOW
from mammocad.experiment import EvaluateParams
from mammocad.inference import build_architecture, fuse_for_inference
from mammocad.io import write_csv, write_json
from mammocad.layout import at
from mammocad.localize import LocalizeConfig, localize_dataset, report_overlay_ids
from mammocad.localize.heatmap import heatmap_method
from mammocad.localize.shallow import shallow_heatmap, shallow_maps
from mammocad.system import (
    attach_shallow,
    evaluate_system,
    load_shallow,
    shallow_images,
    shallow_probabilities,
)
from mammocad.timing import write_metrics
from stages.common import ROOT, load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.localize")


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("localize", seed, tensors=True)
    cfg = section(params, "localize", LocalizeConfig)
    eval_cfg = section(params, "evaluate", EvaluateParams)
    model, ckpt = load_trained_backbone(at(layout.checkpoint(cfg.backbone)), build_architecture)
    if heatmap_method(ckpt["backbone"], cfg.method) == "cam":
        # batch norms folded into the convolutions, as `mammocad predict` runs the network:
        # a third less time per heatmap, outputs equal up to float rounding (Grad-CAM
        # needs the unfused network's gradients)
        model = fuse_for_inference(model).to(memory_format=torch.channels_last)
    norm, patch_px = ckpt["config"]["input"], float(ckpt["config"]["patch_px"])
    shallow, shallow_ckpt = load_shallow(at(layout.checkpoint(SHALLOW)))
    shallow_metrics = json.loads((at(layout.SHALLOW_METRICS)).read_text())
    positive = shallow_ckpt["config"]["shallow"]["positive"]
    split = pd.read_csv(at(layout.SPLIT_TABLE), keep_default_na=False)
    test = split[(split["split"] == "test") & (split["kind"] == "full")]
    test = test.sort_values("image_id").reset_index(drop=True)

    # the shallow CNN's own activation maps, scored against the same lesions
    shallow_set = shallow_images(shallow_ckpt, test, at(layout.PATCHES))
    cams = shallow_maps(shallow, shallow_set, test)

    def shallow_map(image_id: str, breast: np.ndarray) -> np.ndarray:
        cam, flipped = cams[image_id]
        return shallow_heatmap(cam, flipped, breast.shape, breast)

    result = localize_dataset(
        model,
        ckpt["backbone"],  # the architecture: localize.backbone may name a variant run
        patch_px,
        norm["mean"],
        norm["std"],
        at(layout.ENHANCED),
        test["image_id"],
        at(layout.LOCALIZED),
        cfg,
        input_size=int(ckpt["config"]["patches"]["image_size"]),
        other_maps={SHALLOW: shallow_map},
    )
    metrics = {**result.metrics, "init": ckpt["metrics"]["init"]}
    prob = shallow_probabilities(shallow, shallow_set)
    system = evaluate_system(
        attach_shallow(result.images, test, prob),
        result.candidates,
        result.lesions,
        float(shallow_metrics["threshold"]),
        positive,
        eval_cfg.bootstrap,
        seed,
        eval_cfg.alpha,
    )
    system.metrics.update(
        backbone=cfg.backbone, method=cfg.method, froc_candidates=cfg.froc_candidates
    )

    shown = at(layout.REPORT_OVERLAYS)
    shutil.rmtree(shown, ignore_errors=True)
    shown.mkdir(parents=True)
    for image_id in report_overlay_ids(result.lesion_images, cfg.report_overlays):
        shutil.copy2(at(layout.LOCALIZED) / f"{image_id}.png", shown / f"{image_id}.png")
    write_json(at(layout.LOCALIZE_METRICS), metrics)
    write_csv(
        at(layout.LOCALIZE_IMAGES),
        result.lesion_images[
            ["image_id", "pathology", "hit", "iou", "dice", "chance_hit", "chance_iou",
             "chance_dice", f"hit_{SHALLOW}"]
        ],
    )  # fmt: skip
    write_metrics(at(layout.SYSTEM_METRICS), system.metrics, ROOT)
    write_csv(at(layout.SYSTEM_IMAGES), system.images)
    curves = []
    for name, curve in system.frocs.items():
        curves.append(at(layout.froc_curve(name)))
        write_csv(curves[-1], pd.DataFrame(curve.rows()))

    auc, froc = system.metrics["auc"], system.metrics["froc"]["patch_network"]
    log.info(
        "localize (%s, %d images, %d with lesions): hit rate %.3f, shallow CNN's map %.3f "
        "(chance %.3f); image AUC "
        "shallow %s, patch network %s, cascade %s; FROC sensitivity at 1 FP/image %s; "
        "heatmap %.2f s/image",
        cfg.backbone,
        system.metrics["n_images"],
        metrics["n_images"],
        metrics["hit_rate"],
        metrics[SHALLOW]["hit_rate"],
        metrics["hit_rate_chance"],
        auc["shallow_cnn"]["auc"],
        auc["patch_network"]["auc"],
        auc["cascade"]["auc"],
        froc["sensitivity_at_fp"]["1"],
        system.metrics["heatmap_seconds"]["median"],
    )


if __name__ == "__main__":
    run_stage("localize", main)
