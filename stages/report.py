"""Stage ``report``: the paper's Table 1 from this run's metrics, and a ROC figure."""

from __future__ import annotations

import json
import logging

from mammocad.io import atomic_file, write_csv, write_json
from mammocad.report import (
    build_table,
    deployment_markdown,
    deployment_table,
    latency_figure,
    roc_figure,
    to_markdown,
)
from stages.common import ROOT, load_params, run_stage, start

log = logging.getLogger("stages.report")


def _per_backbone(folder: str, stage: str, backbones: list[str]) -> dict[str, dict]:
    """``metrics/<folder>/<backbone>.json`` of every backbone, failing on a missing one."""
    out = {}
    for name in backbones:
        path = ROOT / f"metrics/{folder}/{name}.json"
        if not path.is_file():
            raise SystemExit(f"report: {path} not found (run {stage}@{name})")
        out[name] = json.loads(path.read_text())
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
    table = build_table(evals)
    write_csv(ROOT / "reports/table1.csv", table)
    source = (params.get("data") or {}).get("source", "?")
    with atomic_file(ROOT / "reports/table1.md") as fh:
        fh.write(to_markdown(table, str(source), shallow, localize))
    roc_figure(
        {n: ROOT / f"metrics/curves/roc/{n}.csv" for n in evals}, evals, ROOT / "reports/roc.png"
    )
    log.info("reports/table1.md written for %d backbones", len(evals))

    exports = _per_backbone("export", "export", backbones)
    write_json(ROOT / "metrics/export.json", exports)
    deployment = deployment_table(exports)
    write_csv(ROOT / "reports/deployment.csv", deployment)
    with atomic_file(ROOT / "reports/deployment.md") as fh:
        fh.write(deployment_markdown(deployment, str(source)))
    latency_figure(deployment, ROOT / "reports/deployment.png")
    log.info("reports/deployment.md written for %d backbones", len(exports))


if __name__ == "__main__":
    run_stage("report", main)
