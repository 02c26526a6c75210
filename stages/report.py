"""Stage ``report``: the paper's Table 1 from this run's metrics, and a ROC figure."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pandas as pd

from mammocad import layout
from mammocad.errors import InputNotFound
from mammocad.evaluate import descriptor_reference
from mammocad.io import atomic_file, write_csv, write_json
from mammocad.layout import at
from mammocad.report import (
    build_table,
    deployment_markdown,
    deployment_table,
    froc_figure,
    latency_figure,
    roc_figure,
    system_markdown,
    table_order,
    to_markdown,
    transfer_gains,
)
from mammocad.timing import read_metrics, write_metrics
from stages.common import ROOT, load_params, run_stage, scalar, start

log = logging.getLogger("stages.report")


def _per_backbone(
    where: Callable[[str], str], stage: str, backbones: list[str]
) -> dict[str, dict]:
    """The metrics file ``where(backbone)`` of every backbone, failing on a missing one."""
    out = {}
    for name in backbones:
        path = at(where(name))
        if not path.is_file():
            raise InputNotFound(f"{path} not found (run {stage}@{name})")
        out[name] = read_metrics(path, ROOT)
    return out


def main() -> None:
    params = load_params()
    start("report")
    backbones = (params.get("finetune") or {}).get("backbones") or []
    evals = _per_backbone(layout.eval_metrics, "evaluate", backbones)
    shallow_path = at(layout.SHALLOW_METRICS)
    shallow = json.loads(shallow_path.read_text()) if shallow_path.is_file() else None
    localize_path = at(layout.LOCALIZE_METRICS)
    localize = json.loads(localize_path.read_text()) if localize_path.is_file() else None
    system_path = at(layout.SYSTEM_METRICS)
    system = read_metrics(system_path, ROOT) if system_path.is_file() else None
    table = build_table(evals)
    write_csv(at(layout.TABLE1_CSV), table)
    source = (params.get("data") or {}).get("source", "?")
    seed = scalar(params, "seed", int, 42)
    predictions = {
        name: json.loads((at(layout.predictions(name))).read_text()) for name in backbones
    }
    # the intervals of the evaluate stage's settings (checked there)
    evaluate = params.get("evaluate") or {}
    n_boot, alpha = int(evaluate.get("bootstrap", 1000)), float(evaluate.get("alpha", 0.05))
    inits = {name: e.get("init") for name, e in evals.items()}
    transfer = transfer_gains(predictions, n_boot, seed, alpha, inits)
    test = pd.read_csv(at(layout.TEST_TABLE), keep_default_na=False)
    test = test[(test["kind"] == "roi") & test["pathology"].isin(["BENIGN", "MALIGNANT"])]
    reference = descriptor_reference(test, n_boot, seed, alpha)
    one_class = [
        row["cnn"]
        for row, name in zip(table.to_dict("records"), table_order(evals), strict=True)
        if evals[name].get("one_class")
    ]
    write_json(
        at(layout.REFERENCE),
        {"descriptor_rule": reference, "transfer": transfer, "one_class": one_class},
    )
    with atomic_file(at(layout.TABLE1_MD)) as fh:
        fh.write(
            to_markdown(table, str(source), shallow, localize, transfer, reference, one_class)
            + system_markdown(system)
        )
    roc_figure({n: at(layout.roc_curve(n)) for n in evals}, evals, at(layout.ROC_FIGURE))
    if system:
        names = [n for n in ("patch_network", "cascade") if n in system["froc"]]
        froc_figure({n: at(layout.froc_curve(n)) for n in names}, at(layout.FROC_FIGURE))
    log.info("%s written for %d backbones", layout.TABLE1_MD, len(evals))

    exported = (params.get("export") or {}).get("backbones") or []
    exports = _per_backbone(layout.export_metrics, "export", exported)
    write_metrics(at(layout.EXPORT_SUMMARY), exports, ROOT)
    deployment = deployment_table(exports)
    write_csv(at(layout.DEPLOYMENT_CSV), deployment)
    with atomic_file(at(layout.DEPLOYMENT_MD)) as fh:
        fh.write(deployment_markdown(deployment, str(source)))
    latency_figure(deployment, at(layout.DEPLOYMENT_FIGURE))
    log.info("%s written for %d backbones", layout.DEPLOYMENT_MD, len(exports))


if __name__ == "__main__":
    run_stage("report", main)
