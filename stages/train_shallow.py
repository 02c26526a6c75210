"""Stage ``train_shallow``: the shallow CNN, full mammogram → normal vs cancerous (Fig. 2).

Runs unchanged under ``torchrun --nproc_per_node N -m stages.train_shallow``: every rank
trains, rank 0 alone evaluates and writes the checkpoint and metrics (``track`` logs them to
MLflow).
"""

from __future__ import annotations

import logging

from mammocad import layout
from mammocad.distributed import session
from mammocad.enhance import EnhanceConfig
from mammocad.entries import SHALLOW
from mammocad.experiment import (
    EvaluateParams,
    ShallowParams,
    evaluate_model,
    params_dict,
    read_split,
    save_trained,
    train_shallow,
)
from mammocad.layout import at
from mammocad.patches import PatchesConfig
from mammocad.plots import write_confusion, write_curve, write_history
from mammocad.timing import write_metrics
from stages.common import (
    ROOT,
    load_params,
    run_stage,
    scalar,
    section,
    start,
    training_device,
)

log = logging.getLogger("stages.train_shallow")

#: Names of class 0 and class 1 of the full mammograms in plots, by ``shallow.positive``.
CLASSES = {"abnormal": ("normal", "abnormal"), "malignant": ("not malignant", "malignant")}


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("train_shallow", seed, tensors=True)
    cfg = section(params, "shallow", ShallowParams)
    eval_cfg = section(params, "evaluate", EvaluateParams)
    frames = read_split(at(layout.SPLIT), at(layout.AUGMENTED), "full")
    roots = {
        "train": at(layout.AUGMENTED),
        "val": at(layout.PATCHES),
        "test": at(layout.PATCHES),
    }
    with session() as ctx:
        training_device(cfg.train, ctx, "shallow.train")
        trained = train_shallow(cfg, frames, roots, seed)
    if not ctx.is_main:
        return
    ckpt = at(layout.checkpoint(SHALLOW))
    config = {
        "shallow": params_dict(cfg),
        "seed": seed,
        "input": trained.info["input"],
        "enhance": params_dict(section(params, "enhance", EnhanceConfig)),
        "patches": params_dict(section(params, "patches", PatchesConfig)),
    }
    save_trained(ckpt, trained, config)
    result = evaluate_model(
        trained.model, trained.sets["val"], trained.sets["test"], eval_cfg, seed, checkpoint=ckpt
    )
    curves = result.pop("curves")
    predictions = result.pop("predictions")
    write_history(at(layout.history(SHALLOW)), trained.fit.history)
    write_curve(at(layout.roc_curve(SHALLOW)), curves["roc"], "fpr", "tpr", SHALLOW)
    write_confusion(
        at(layout.confusion(SHALLOW)),
        [row["label"] for row in predictions],
        [row["prob"] for row in predictions],
        result["threshold"],
        CLASSES[cfg.positive],
    )
    # the history as finetune records it: `track` logs its per-epoch series, seconds included
    metrics = {"train": {**trained.info, "history": trained.fit.history}, **result}
    write_metrics(at(layout.SHALLOW_METRICS), metrics, ROOT)
    log.info(
        "shallow CNN: test accuracy %.3f, AUC %s",
        result["test"]["accuracy"],
        result["test"]["roc_auc"],
    )


if __name__ == "__main__":
    run_stage("train_shallow", main)
