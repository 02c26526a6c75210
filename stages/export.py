"""Stage ``export@<backbone>``: ONNX, TorchScript and int8 files, checked and timed (§4.3)."""

from __future__ import annotations

import json
import logging
import sys

from mammocad import layout
from mammocad.checkpoint import load_trained_backbone
from mammocad.export import ExportConfig, export_backbone, patch_sets
from mammocad.layout import at
from mammocad.timing import write_metrics
from stages.common import ROOT, load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.export")


def main(backbone: str) -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start(f"export@{backbone}", seed, tensors=True)
    cfg = section(params, "export", ExportConfig)
    ckpt_path = at(layout.checkpoint(backbone))
    model, ckpt = load_trained_backbone(ckpt_path)
    threshold = json.loads((at(layout.eval_metrics(backbone))).read_text())["threshold"]
    calibration, test = patch_sets(at(layout.SPLIT), at(layout.AUGMENTED), at(layout.PATCHES))
    record = export_backbone(
        model,
        ckpt,
        calibration,
        test,
        threshold,
        cfg,
        at(layout.export_folder(backbone)),
        seed=seed,
        checkpoint_path=ckpt_path,
    )
    write_metrics(at(layout.export_metrics(backbone)), record, ROOT)
    log.info(
        "%s: int8 %.2fx faster than eager PyTorch, accuracy %s -> %s, agreement %.3f",
        backbone,
        record["speedup_int8_vs_eager"],
        record["eager"]["accuracy"],
        record["checks"]["onnx_int8"]["accuracy"],
        record["checks"]["onnx_int8"]["decision_agreement"],
    )


if __name__ == "__main__":

    def _main() -> None:
        if len(sys.argv) != 2:
            raise SystemExit("usage: python -m stages.export <backbone>")
        main(sys.argv[1])

    run_stage("export", _main)
