"""Stage ``export_shallow``: the shallow CNN as an ONNX graph for ``mammocad predict``.

With the ``export`` stages' CAM graphs, this lets ``mammocad predict`` run on ONNX Runtime
without importing PyTorch (:mod:`mammocad.predict.runtime`). The graph is checked against
PyTorch on the test split's full mammograms.
"""

from __future__ import annotations

import logging
from functools import partial

from mammocad import layout
from mammocad.checkpoint import load_checkpoint
from mammocad.entries import SHALLOW
from mammocad.experiment import read_split
from mammocad.export import ExportConfig
from mammocad.export.cam import write_shallow
from mammocad.io import atomic_dir
from mammocad.layout import at
from mammocad.models.data import ImageSet, label_cancerous
from mammocad.models.shallow import shallow_from_checkpoint
from stages.common import load_params, run_stage, scalar, section, start

log = logging.getLogger("stages.export_shallow")


def main() -> None:
    params = load_params()
    seed = scalar(params, "seed", int, 42)
    start("export_shallow", seed, tensors=True)
    cfg = section(params, "export", ExportConfig)
    ckpt_path = at(layout.checkpoint(SHALLOW))
    ckpt = load_checkpoint(ckpt_path)
    model = shallow_from_checkpoint(ckpt)
    positive = ckpt["config"]["shallow"]["positive"]
    test_rows = read_split(at(layout.SPLIT), at(layout.AUGMENTED), "full")["test"]
    label = partial(label_cancerous, positive=positive)
    test = ImageSet(test_rows, at(layout.PATCHES), label, desc="load test")
    with atomic_dir(at(layout.export_folder(SHALLOW))) as tmp:
        checks = write_shallow(model, ckpt, ckpt_path, tmp, test, cfg.opset, cfg.fp32_tolerance)
    log.info(
        "shallow CNN: ONNX graph within %.2g of PyTorch on %d test images",
        checks["max_prob_diff"],
        len(test),
    )


if __name__ == "__main__":
    run_stage("export_shallow", main)
