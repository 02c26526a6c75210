"""Stage ``export@<backbone>``: ONNX, TorchScript and int8 files, checked and timed (§4.3)."""

from __future__ import annotations

import json
import logging
import sys

from mammocad.experiment import load_trained_backbone
from mammocad.export import ExportConfig, export_backbone, patch_sets
from mammocad.timing import write_metrics
from stages.common import ROOT, load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.export")


def main(backbone: str) -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start(f"export@{backbone}", seed)
    cfg = section(params, "export", ExportConfig)
    ckpt_path = ROOT / f"models/{backbone}.pt"
    model, ckpt = load_trained_backbone(ckpt_path)
    threshold = json.loads((ROOT / f"metrics/eval/{backbone}.json").read_text())["threshold"]
    calibration, test = patch_sets(
        ROOT / "data/split", ROOT / "data/augmented", ROOT / "data/patches"
    )
    record = export_backbone(
        model,
        ckpt,
        calibration,
        test,
        threshold,
        cfg,
        ROOT / f"models/export/{backbone}",
        seed=seed,
        checkpoint_path=ckpt_path,
    )
    write_metrics(ROOT / f"metrics/export/{backbone}.json", record, ROOT)
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
