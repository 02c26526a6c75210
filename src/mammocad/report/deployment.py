"""The deployment report (paper §4.3): each exported backbone's size, speed and accuracy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mammocad.report.cells import _fmt, _r
from mammocad.report.table1 import PAPER_TABLE1

#: Latency columns of the deployment table and their labels.
VARIANTS = (
    ("ms_eager", "PyTorch eager FP32"),
    ("ms_onnx", "ONNX Runtime FP32"),
    ("ms_int8", "ONNX Runtime int8"),
)


def deployment_table(exports: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per exported backbone, in the paper's order (see ``export_backbone``)."""
    rows = []
    for key in [k for k in PAPER_TABLE1 if k in exports] + sorted(
        k for k in exports if k not in PAPER_TABLE1
    ):
        e = exports[key]
        # timings live in metrics/timing/, outside DVC's outputs: absent after a restore
        lat = e.get("latency") or {}
        checks = e["checks"]
        rows.append(
            {
                "backbone": key,
                "cnn": PAPER_TABLE1.get(key, {}).get("name", key),
                "params_m": _r(e["params_total"] / 1e6, 2),
                "mb_fp32": _r(e["file_mb"]["onnx"], 1),
                "mb_int8": _r(e["file_mb"]["onnx_int8"], 1),
                "ms_eager": _r((lat.get("eager") or {}).get("median_ms"), 1),
                "ms_onnx": _r((lat.get("onnx") or {}).get("median_ms"), 1),
                "ms_int8": _r((lat.get("onnx_int8") or {}).get("median_ms"), 1),
                "speedup_int8": _r(e.get("speedup_int8_vs_eager"), 2),
                "quantization": e["quantization"]["method"],
                "acc_eager": _r(e["eager"]["accuracy"], 3),
                "acc_onnx": _r(checks["onnx"]["accuracy"], 3),
                "acc_int8": _r(checks["onnx_int8"]["accuracy"], 3),
                "auc_eager": _r(e["eager"]["roc_auc"], 3),
                "auc_onnx": _r(checks["onnx"]["roc_auc"], 3),
                "auc_int8": _r(checks["onnx_int8"]["roc_auc"], 3),
                "agree_int8": _r(checks["onnx_int8"]["decision_agreement"], 3),
                "mean_diff_int8": _r(checks["onnx_int8"]["mean_prob_diff"], 4),
                "max_diff_int8": _r(checks["onnx_int8"]["max_prob_diff"], 4),
                "max_diff_fp32": _r(
                    max(checks["onnx"]["max_prob_diff"], checks["torchscript"]["max_prob_diff"]), 7
                ),
                "reduce_range": e["quantization"].get("reduce_range"),
                "threads": e["threads"],
                "n_test": e["n_test"],
            }
        )
    return pd.DataFrame(rows)


def deployment_markdown(table: pd.DataFrame, source: str) -> str:
    """The deployment report: size, speed and accuracy of each exported variant."""
    threads = sorted(set(table["threads"])) if len(table) else []
    n_test = int(table["n_test"].iloc[0]) if len(table) else 0
    size = (
        "| CNN | Params (M) | FP32 MB | int8 MB | Quantization | Eager ms | ORT FP32 ms | "
        "ORT int8 ms | int8 speed-up |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    size += "\n".join(
        f"| {r['cnn']} | {_fmt(r['params_m'])} | {_fmt(r['mb_fp32'])} | {_fmt(r['mb_int8'])} | "
        f"{r['quantization']} | {_fmt(r['ms_eager'])} | {_fmt(r['ms_onnx'])} | "
        f"{_fmt(r['ms_int8'])} | {_fmt(r['speedup_int8'])}× |"
        for r in table.to_dict("records")
    )
    acc = (
        "| CNN | Acc eager | Acc ORT FP32 | Acc int8 | AUC eager | AUC ORT FP32 | AUC int8 | "
        "int8 decisions agreeing | int8 mean prob diff | int8 max prob diff | "
        "FP32 max prob diff |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    acc += "\n".join(
        f"| {r['cnn']} | {_fmt(r['acc_eager'])} | {_fmt(r['acc_onnx'])} | "
        f"{_fmt(r['acc_int8'])} | {_fmt(r['auc_eager'])} | {_fmt(r['auc_onnx'])} | "
        f"{_fmt(r['auc_int8'])} | {_fmt(r['agree_int8'])} | {_fmt(r['mean_diff_int8'])} | "
        f"{_fmt(r['max_diff_int8'])} | {_fmt(r['max_diff_fp32'])} |"
        for r in table.to_dict("records")
    )
    text = [
        "# Deployment: exported models, size, CPU latency and accuracy (paper §4.3)",
        "",
        f"This run: data source `{source}`. Each fine-tuned backbone was exported by the "
        "`export` stage as ONNX (FP32), TorchScript (FP32) and int8 ONNX; every graph takes "
        "grey patches in [0, 1] and returns probabilities, with the ImageNet normalisation "
        "inside. Files are under `models/export/<backbone>/`.",
        "",
        "## Size and batch-1 CPU latency",
        "",
        f"Median of timed single-patch runs on {', '.join(map(str, threads))} CPU thread(s), "
        "PyTorch eager and ONNX Runtime alike; the speed-up is eager FP32 over ONNX Runtime "
        "int8. Latencies depend on the machine: compare them within one run.",
        "",
        size,
        "",
        f"## Accuracy of each variant on the {n_test} test patches",
        "",
        "At the decision threshold `evaluate` chose on the validation split. TorchScript "
        "matches PyTorch to within the FP32 difference shown (see `metrics/export.json`). "
        "The probability differences are those of the malignant class against PyTorch, "
        "patch by patch; an int8 patch whose probability lands on the other side of the "
        "threshold is a decision that does not agree. " + _weights_sentence(table),
        "",
        acc,
    ]
    return "\n".join(text) + "\n"


def _weights_sentence(table: pd.DataFrame) -> str:
    """How the int8 weights were stored (``export.reduce_range``), and why it matters."""
    reduced = set(table["reduce_range"]) if len(table) else set()
    if not reduced or None in reduced:  # exports recorded before the setting existed
        return ""
    if reduced == {True}:
        return (
            "The int8 weights are 7-bit (`export.reduce_range`), so that x86 CPUs without "
            "VNNI do not saturate their 8-bit products."
        )
    if reduced == {False}:
        return (
            "The int8 weights use all 8 bits (`export.reduce_range: false`): on x86 CPUs "
            "without VNNI their products can saturate, and the differences grow."
        )
    return "Weight ranges differ between the exports (`export.reduce_range` of each run)."
