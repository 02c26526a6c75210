"""Stage ``report``: the paper's Table 1 from this run's metrics, and a ROC figure."""

from __future__ import annotations

import json
import logging

import pandas as pd

from mammocad.errors import InputNotFound
from mammocad.evaluate import descriptor_reference
from mammocad.io import atomic_file, write_csv, write_json
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


def _per_backbone(folder: str, stage: str, backbones: list[str]) -> dict[str, dict]:
    """``metrics/<folder>/<backbone>.json`` of every backbone, failing on a missing one."""
    out = {}
    for name in backbones:
        path = ROOT / f"metrics/{folder}/{name}.json"
        if not path.is_file():
            raise InputNotFound(f"{path} not found (run {stage}@{name})")
        out[name] = read_metrics(path, ROOT)
    return out


def main() -> None:
    params = load_params()
    start("report")
    backbones = (params.get("finetune") or {}).get("backbones") or []
    evals = _per_backbone("eval", "evaluate", backbones)
    shallow_path = ROOT / "metrics/shallow_cnn.json"
    shallow = json.loads(shallow_path.read_text()) if shallow_path.is_file() else None
    localize_path = ROOT / "metrics/localize.json"
    localize = json.loads(localize_path.read_text()) if localize_path.is_file() else None
    system_path = ROOT / "metrics/system.json"
    system = read_metrics(system_path, ROOT) if system_path.is_file() else None
    table = build_table(evals)
    write_csv(ROOT / "reports/table1.csv", table)
    source = (params.get("data") or {}).get("source", "?")
    seed = scalar(params, "seed", int, 42)
    predictions = {
        name: json.loads((ROOT / f"metrics/predictions/{name}.json").read_text())
        for name in backbones
    }
    # the intervals of the evaluate stage's settings (checked there)
    evaluate = params.get("evaluate") or {}
    n_boot, alpha = int(evaluate.get("bootstrap", 1000)), float(evaluate.get("alpha", 0.05))
    inits = {name: e.get("init") for name, e in evals.items()}
    transfer = transfer_gains(predictions, n_boot, seed, alpha, inits)
    test = pd.read_csv(ROOT / "data/split/test.csv", keep_default_na=False)
    test = test[(test["kind"] == "roi") & test["pathology"].isin(["BENIGN", "MALIGNANT"])]
    reference = descriptor_reference(test, n_boot, seed, alpha)
    one_class = [
        row["cnn"]
        for row, name in zip(table.to_dict("records"), table_order(evals), strict=True)
        if evals[name].get("one_class")
    ]
    write_json(
        ROOT / "metrics/reference.json",
        {"descriptor_rule": reference, "transfer": transfer, "one_class": one_class},
    )
    with atomic_file(ROOT / "reports/table1.md") as fh:
        fh.write(
            to_markdown(table, str(source), shallow, localize, transfer, reference, one_class)
            + system_markdown(system)
        )
    roc_figure(
        {n: ROOT / f"metrics/curves/roc/{n}.csv" for n in evals}, evals, ROOT / "reports/roc.png"
    )
    if system:
        names = [n for n in ("patch_network", "cascade") if n in system["froc"]]
        froc_figure({n: ROOT / f"metrics/froc/{n}.csv" for n in names}, ROOT / "reports/froc.png")
    log.info("reports/table1.md written for %d backbones", len(evals))

    exported = (params.get("export") or {}).get("backbones") or []
    exports = _per_backbone("export", "export", exported)
    write_metrics(ROOT / "metrics/export.json", exports, ROOT)
    deployment = deployment_table(exports)
    write_csv(ROOT / "reports/deployment.csv", deployment)
    with atomic_file(ROOT / "reports/deployment.md") as fh:
        fh.write(deployment_markdown(deployment, str(source)))
    latency_figure(deployment, ROOT / "reports/deployment.png")
    log.info("reports/deployment.md written for %d backbones", len(exports))


if __name__ == "__main__":
    run_stage("report", main)
