"""Stage ``evaluate@<backbone>``: test-split metrics and curves (§4.1); ``track`` logs them
to MLflow."""

from __future__ import annotations

import logging
import sys

from mammocad import layout
from mammocad.checkpoint import load_trained_backbone
from mammocad.experiment import (
    EvaluateParams,
    evaluate_model,
    read_split,
)
from mammocad.inference import build_architecture
from mammocad.io import write_json
from mammocad.layout import at
from mammocad.models.data import ImageSet, label_malignant
from mammocad.plots import write_confusion, write_curve
from mammocad.timing import read_metrics, write_metrics
from stages.common import (
    ROOT,
    load_params,
    run_stage,
    scalar,
    section,
    start,
)

log = logging.getLogger("stages.evaluate")

#: Names of class 0 and class 1 of the ROI patches (``label_malignant``), in plots.
CLASSES = ("benign", "malignant")


def main(backbone: str) -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start(f"evaluate@{backbone}", seed, tensors=True)
    cfg = section(params, "evaluate", EvaluateParams)
    ckpt_path = at(layout.checkpoint(backbone))
    # the MobileNets as mammocad.inference defines them: the same outputs, bit for bit,
    # without importing timm or torchvision (seconds of every evaluate's start-up)
    model, ckpt = load_trained_backbone(ckpt_path, build_architecture)
    norm = ckpt["config"]["input"]
    frames = read_split(at(layout.SPLIT), at(layout.AUGMENTED), "roi")
    sets = {
        name: ImageSet(
            frames[name],
            at(layout.PATCHES),
            label_malignant,
            channels=3,
            mean=norm["mean"],
            std=norm["std"],
            desc=f"load {name}",
        )
        for name in ("val", "test")
    }
    result = evaluate_model(model, sets["val"], sets["test"], cfg, seed, checkpoint=ckpt_path)
    curves = result.pop("curves")
    predictions = result.pop("predictions")
    train_info = read_metrics(at(layout.train_metrics(backbone)), ROOT)
    result["init"] = train_info["init"]
    result["best_epoch"] = train_info["best_epoch"]
    # the parameters that trained (frozen layers excluded), as the training record counts
    # them; the rebuilt model has every parameter trainable again
    result["params_trainable"] = train_info["params_trainable"]
    write_metrics(at(layout.eval_metrics(backbone)), result, ROOT)
    write_curve(at(layout.roc_curve(backbone)), curves["roc"], "fpr", "tpr", backbone)
    write_curve(at(layout.pr_curve(backbone)), curves["pr"], "recall", "precision", backbone)
    write_json(at(layout.predictions(backbone)), predictions)
    write_confusion(
        at(layout.confusion(backbone)),
        [row["label"] for row in predictions],
        [row["prob"] for row in predictions],
        result["threshold"],
        CLASSES,
    )
    t = result["test"]
    log.info(
        "%s: accuracy %.3f, precision %.3f, recall %s, AUC %s",
        backbone,
        t["accuracy"],
        t["precision"],
        t["recall"],
        t["roc_auc"],
    )


if __name__ == "__main__":

    def _main() -> None:
        if len(sys.argv) != 2:
            raise SystemExit("usage: python -m stages.evaluate <backbone>")
        main(sys.argv[1])

    run_stage("evaluate", _main)
