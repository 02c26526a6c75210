"""The paper's Table 1, regenerated from this run's metrics, and a ROC figure (§4.3).

The published values are kept beside this run's so a reader sees both; the paper reports
accuracy, recall and precision only, this report adds ROC AUC with its patient-bootstrap
95 % interval and the initialisation each backbone actually used.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad.evaluate import auc_difference

#: Table 1 of Ansar et al.: year, parameters (millions), and on CBIS-DDSM and DDSM the
#: accuracy (%), recall and precision of mass malignant vs mass benign.
PAPER_TABLE1: dict[str, dict[str, Any]] = {
    "alexnet": {
        "name": "AlexNet",
        "year": 2012,
        "params_m": 60,
        "cbis": (73.0, 0.74, 0.71),
        "ddsm": (86.5, 0.90, 0.86),
    },
    "vgg16": {
        "name": "VGG-16",
        "year": 2014,
        "params_m": 138,
        "cbis": (70.2, 0.72, 0.69),
        "ddsm": (83.0, 0.84, 0.85),
    },
    "vgg19": {
        "name": "VGG-19",
        "year": 2014,
        "params_m": 140,
        "cbis": (70.7, 0.72, 0.70),
        "ddsm": (84.3, 0.85, 0.87),
    },
    "resnet50": {
        "name": "ResNet-50",
        "year": 2015,
        "params_m": 23,
        "cbis": (63.7, 0.66, 0.50),
        "ddsm": (85.6, 0.89, 0.74),
    },
    "googlenet": {
        "name": "GoogLeNet",
        "year": 2014,
        "params_m": 10,
        "cbis": (60.0, 0.70, 0.58),
        "ddsm": (83.0, 0.86, 0.81),
    },
    "mobilenet_v1": {
        "name": "MobileNet-v1",
        "year": 2017,
        "params_m": 3.2,
        "cbis": (74.5, 0.76, 0.70),
        "ddsm": (86.8, 0.95, 0.84),
    },
    "mobilenet_v2": {
        "name": "MobileNet-v2",
        "year": 2018,
        "params_m": 2.5,
        "cbis": (73.0, 0.77, 0.65),
        "ddsm": (85.2, 0.92, 0.85),
    },
}

COLUMNS = (
    "cnn", "year", "params_m_paper", "params_m", "init",
    "acc_paper_cbis", "acc", "acc_low", "acc_high",
    "rec_paper_cbis", "rec", "pre_paper_cbis", "pre",
    "auc", "auc_low", "auc_high", "n_test", "n_test_patients",
)  # fmt: skip


def _r(value: Any, digits: int) -> Any:
    return None if value is None else round(float(value), digits)


def table_order(runs: Iterable[str]) -> list[str]:
    """Runs in the paper's order, each backbone's variants (``<backbone>-<tag>``) after it."""
    runs = list(runs)
    order = [
        name
        for b in PAPER_TABLE1
        for name in [b, *sorted(e for e in runs if e.startswith(b + "-"))]
        if name in runs
    ]
    return order + sorted(set(runs) - set(order))


def build_table(evals: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per evaluated backbone, in the paper's order, this run beside the paper.

    Args:
        evals: backbone name → its ``metrics/eval/<backbone>.json`` content.
    """
    rows = []
    for backbone in table_order(evals):
        m = evals[backbone]
        base, _, tag = backbone.partition("-")
        # a variant (e.g. mobilenet_v1-scratch) is named after its backbone but is not the
        # paper's run: its paper columns stay empty
        paper = PAPER_TABLE1.get(backbone, {})
        name = paper.get("name") or (
            f"{PAPER_TABLE1[base]['name']} ({tag})" if base in PAPER_TABLE1 else backbone
        )
        cbis = paper.get("cbis", (None, None, None))
        test, ci = m["test"], m.get("ci", {})
        acc_ci = ci.get("accuracy", {})
        auc_ci = ci.get("roc_auc", {})
        rows.append({
            "cnn": name,
            "year": paper.get("year"),
            "params_m_paper": paper.get("params_m"),
            "params_m": _r(m["params_total"] / 1e6, 2),
            "init": m.get("init", ""),
            "acc_paper_cbis": cbis[0],
            "acc": _r(100 * test["accuracy"], 1),
            "acc_low": _r(None if acc_ci.get("low") is None else 100 * acc_ci["low"], 1),
            "acc_high": _r(None if acc_ci.get("high") is None else 100 * acc_ci["high"], 1),
            "rec_paper_cbis": cbis[1],
            "rec": _r(test["recall"], 2),
            "pre_paper_cbis": cbis[2],
            "pre": _r(test["precision"], 2),
            "auc": _r(test["roc_auc"], 3),
            "auc_low": _r(auc_ci.get("low"), 3),
            "auc_high": _r(auc_ci.get("high"), 3),
            "n_test": m.get("n_test"),
            "n_test_patients": m.get("n_test_patients"),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def transfer_gains(
    predictions: Mapping[str, Sequence[Mapping[str, Any]]],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    inits: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """What ImageNet initialisation adds: AUC of ``X`` minus AUC of ``X-scratch``.

    Paper §3's thesis is that ImageNet transfer learning helps on mammograms; each pair of
    runs of one backbone on one split, one initialised from ImageNet and one from scratch,
    measures it with a paired patient-bootstrap interval (see
    :func:`mammocad.evaluate.auc_difference`).

    Args:
        predictions: run name → its per-patch test predictions (``image_id``,
            ``patient_id``, ``label``, ``prob``), as in ``metrics/predictions/``.
        n_boot: bootstrap replicates.
        seed: resampling seed.
        alpha: 1 − confidence level.
        inits: run name → its resolved init source; a pair whose ``X`` did not start
            from ImageNet weights (e.g. ``auto`` offline for a backbone without bundled
            weights) measures nothing and is left out.

    Returns:
        One record per backbone with both runs: ``backbone``, ``pretrained``,
        ``scratch``, ``init`` (the source of ``X``) and the fields of ``auc_difference``.

    Raises:
        ValueError: if the two runs were scored on different patches.
    """
    out = []
    for name in predictions:
        scratch = f"{name}-scratch"
        if "-" in name or scratch not in predictions:
            continue
        init = (inits or {}).get(name)
        if init == "scratch":
            continue
        a = pd.DataFrame(predictions[name]).set_index("image_id")
        b = pd.DataFrame(predictions[scratch]).set_index("image_id")
        if set(a.index) != set(b.index):
            raise ValueError(f"{name} and {scratch} were tested on different patches")
        b = b.loc[a.index]
        diff = auc_difference(
            a["label"], a["prob"], b["prob"], a["patient_id"], n_boot, seed, alpha
        )
        out.append(
            {"backbone": name, "pretrained": name, "scratch": scratch, "init": init, **diff}
        )
    return out


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return str(value)


def _num(value: Any) -> str:
    """A number as written in the paper: 60, not 60.0; 3.2 stays 3.2."""
    return "–" if value is None or pd.isna(value) else f"{float(value):g}"


def _interval(value: Any, low: Any, high: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return f"{value}"
    return f"{value} [{low}, {high}]"


def to_markdown(
    table: pd.DataFrame,
    source: str,
    shallow: Mapping[str, Any] | None,
    localize: Mapping[str, Any] | None = None,
    transfer: Sequence[Mapping[str, Any]] = (),
    reference: Mapping[str, Any] | None = None,
    degenerate: Sequence[str] = (),
) -> str:
    """Table 1 as Markdown, with a note on what the run was and how to read it.

    Args:
        table: :func:`build_table`'s rows.
        source: the run's ``data.source``.
        shallow: ``metrics/shallow_cnn.json``, if any.
        localize: ``metrics/localize.json``, if any.
        transfer: :func:`transfer_gains`' records.
        reference: :func:`mammocad.evaluate.descriptor_reference` on the test patches.
        degenerate: rows (CNN names) whose test predictions fall in one class.
    """
    head = (
        "| CNN | Year | Params (M), paper | Params (M) | Init | Acc (%), paper | "
        "Acc (%) [95% CI] | Rec, paper | Rec | Pre, paper | Pre | AUC [95% CI] |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in table.to_dict("records"):
        lines.append(
            f"| {r['cnn']} | {_num(r['year'])} | {_num(r['params_m_paper'])} | "
            f"{_fmt(r['params_m'])} | {r['init']} | {_fmt(r['acc_paper_cbis'])} | "
            f"{_interval(r['acc'], r['acc_low'], r['acc_high'])} | "
            f"{_fmt(r['rec_paper_cbis'])} | {_fmt(r['rec'])} | {_fmt(r['pre_paper_cbis'])} | "
            f"{_fmt(r['pre'])} | {_interval(r['auc'], r['auc_low'], r['auc_high'])} |"
        )
    n = table["n_test"].dropna()
    p = table["n_test_patients"].dropna()
    text = [
        "# Table 1: mass malignant vs mass benign",
        "",
        f"This run: data source `{source}`, test split of "
        f"{int(n.iloc[0]) if len(n) else '?'} patches from "
        f"{int(p.iloc[0]) if len(p) else '?'} patients. Paper columns: Ansar et al., "
        "Table 1, CBIS-DDSM. Intervals are 95 % percentile bootstrap intervals resampling "
        "patients; the decision threshold was chosen on the validation split. Parameter "
        "counts are of the two-class models. `Init` says where the initial weights came "
        "from: the library's own ImageNet weights (`torchvision`, `timm`), the ImageNet "
        "MobileNets bundled with the project as int8 TFLite files and converted to float "
        "(`bundled-int8`), or none (`scratch`, not comparable to the paper's runs).",
        "",
        head + "\n".join(lines),
    ]
    if degenerate:
        text += [
            "",
            "Every test patch on one side of the threshold chosen on validation (the model "
            "separates nothing at that operating point, whatever its AUC): "
            + ", ".join(degenerate)
            + ".",
        ]
    if reference:
        text += [
            "",
            "## Reference: what the BI-RADS descriptors alone carry",
            "",
            "A rule that reads no pixels, scoring each test patch by the suspicion of its "
            "reported margins and shape (circumscribed < obscured < microlobulated < "
            "ill-defined < spiculated; round/oval < lobulated < irregular), reaches ROC AUC "
            f"{_interval(_r(reference['auc'], 3), _r(reference['low'], 3), _r(reference['high'], 3))} "
            f"on {reference['n_scored']} of {reference['n']} test patches. "
            + (
                "On the synthetic source this is close to the task's ceiling (a share "
                "`style_crossover` of lesions is drawn in the other pathology's look; "
                "density adds a little beyond it). "
                if source == "synthetic"
                else ""
            )
            + "On the real CBIS-DDSM mass test set the same rule reaches about 0.81.",
        ]
    if transfer:
        rows = [
            f"| {r['backbone']} | {_fmt(_r(r['auc_a'], 3))} | {_fmt(_r(r['auc_b'], 3))} | "
            f"{_interval(_r(r['difference'], 3), _r(r['low'], 3), _r(r['high'], 3))} |"
            for r in transfer
        ]
        text += [
            "",
            "## What ImageNet initialisation adds (paper §3's thesis)",
            "",
            "Each backbone trained twice on the same split with the same budget, once from "
            "ImageNet weights and once from scratch; the difference of their test ROC AUCs "
            "with a paired patient-bootstrap interval (both models scored on each "
            "replicate's patients). The init is not the only difference: as the paper "
            "prescribes, the ImageNet run keeps its early layers frozen (and the bundled "
            "weights their batch-norm statistics), while the scratch run trains every "
            "layer; `metrics/train/` records both settings.",
            "",
            "| Backbone | AUC, ImageNet | AUC, scratch | Difference [95% CI] |",
            "|---|---|---|---|",
            *rows,
        ]
    if shallow:
        t = shallow["test"]
        text += [
            "",
            "## Shallow CNN: normal vs cancerous full mammograms (paper Fig. 2)",
            "",
            f"Accuracy {_r(100 * t['accuracy'], 1)} %, recall {_r(t['recall'], 2)}, "
            f"precision {_r(t['precision'], 2)}, AUC {_r(t['roc_auc'], 3)} on "
            f"{shallow.get('n_test')} test images "
            f"({_fmt(shallow['train'].get('positive'))} findings counted as cancerous); "
            f"{_r(shallow['params_total'] / 1e6, 3)} M parameters.",
        ]
    if localize:
        text += [
            "",
            f"## Localization on full mammograms ({localize['backbone']}, "
            f"{localize['method']}, init {localize.get('init', '?')})",
            "",
            f"{localize['n_images']} test images with lesion masks: pointing-game hit rate "
            f"{_r(localize['hit_rate'], 3)} (chance {_r(localize['hit_rate_chance'], 3)}), "
            f"mean IoU {_r(localize['mean_iou'], 3)} (chance "
            f"{_r(localize['mean_iou_chance'], 3)}), mean Dice {_r(localize['mean_dice'], 3)} "
            f"(chance {_r(localize['mean_dice_chance'], 3)}).",
        ]
    return "\n".join(text) + "\n"


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """Writes a matplotlib figure as PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def roc_figure(
    curve_files: Mapping[str, str | os.PathLike], evals: Mapping[str, Any], path: str | os.PathLike
) -> None:
    """All backbones' test ROC curves in one PNG, each labelled with its AUC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    for name, file in curve_files.items():
        frame = pd.read_csv(file)
        auc = evals.get(name, {}).get("test", {}).get("roc_auc")
        label = PAPER_TABLE1.get(name, {}).get("name", name)
        ax.plot(
            frame["fpr"],
            frame["tpr"],
            label=f"{label} (AUC {auc:.3f})" if auc is not None else label,
        )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set(
        xlabel="false positive rate (1 − specificity)",
        ylabel="true positive rate (recall)",
        title="Test ROC, mass malignant vs benign",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


# ------------------------------------------------------------------- deployment (§4.3)

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
                "max_diff_int8": _r(checks["onnx_int8"]["max_prob_diff"], 4),
                "max_diff_fp32": _r(
                    max(checks["onnx"]["max_prob_diff"], checks["torchscript"]["max_prob_diff"]), 7
                ),
                "prob_range": _r(e["eager"]["prob_max"] - e["eager"]["prob_min"], 4),
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
        "int8 decisions agreeing | int8 max prob diff | FP32 max prob diff | "
        "eager prob range |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    acc += "\n".join(
        f"| {r['cnn']} | {_fmt(r['acc_eager'])} | {_fmt(r['acc_onnx'])} | "
        f"{_fmt(r['acc_int8'])} | {_fmt(r['auc_eager'])} | {_fmt(r['auc_onnx'])} | "
        f"{_fmt(r['auc_int8'])} | {_fmt(r['agree_int8'])} | {_fmt(r['max_diff_int8'])} | "
        f"{_fmt(r['max_diff_fp32'])} | {_fmt(r['prob_range'])} |"
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
        "The eager probability range (max − min over the test patches) says how much room "
        "the model leaves between patches: where it is small, int8 rounding errors far "
        "smaller than one percentage point still move patches across the threshold.",
        "",
        acc,
    ]
    return "\n".join(text) + "\n"


def latency_figure(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Grouped bars of batch-1 latency per backbone and variant (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    x = np.arange(len(table))
    width = 0.27
    for i, (column, label) in enumerate(VARIANTS):
        ax.bar(x + (i - 1) * width, table[column].astype(float), width, label=label)
    ax.set_xticks(x, table["cnn"], rotation=20)
    ax.set_yscale("log")
    ax.set(ylabel="batch-1 latency (ms, log scale)", title="CPU latency per exported variant")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    save_figure(fig, path)


# ------------------------------------------------------------- the system (Fig. 1)

#: Image-level systems of ``metrics/system.json`` and their labels.
SYSTEM_LABELS = (
    ("shallow_cnn", "Shallow CNN (p)"),
    ("patch_network", "Patch network, heatmap maximum (m)"),
    ("cascade", "Cascade, gated (Fig. 1)"),
    ("cascade_product", "Cascade, p × m"),
)


def system_markdown(system: Mapping[str, Any] | None) -> str:
    """The whole system's section of the report: image-level AUCs and the FROC table.

    Args:
        system: the ``metrics/system.json`` content of the ``localize`` stage, or ``None``
            (empty section).
    """
    if not system:
        return ""
    positive = system.get("positive")
    meaning = "any finding" if positive == "abnormal" else "malignant findings only"
    gate = system.get("gate", {})
    lines = [
        "",
        "## The whole system on full mammograms (paper Fig. 1)",
        "",
        f"Test split: {system['n_images']} full mammograms (normals included) from "
        f"{system['n_patients']} patients, {system['n_positive']} positive (`{positive}`: "
        f"{meaning}, as the shallow CNN was trained). Patch network "
        f"`{system.get('backbone', '?')}` ({system.get('method', '?')}). AUC intervals: "
        "percentile bootstrap resampling patients.",
        "",
        "| System | Image-level AUC [95% CI] |",
        "|---|---|",
    ]
    for key, label in SYSTEM_LABELS:
        a = system["auc"].get(key)
        if a is not None:
            auc = _interval(_r(a["auc"], 3), _r(a["low"], 3), _r(a["high"], 3))
            lines.append(f"| {label} | {auc} |")
    lines += [
        "",
        f"Cascade: {system['cascade_definition']}. The gate (t = "
        f"{_r(gate.get('threshold'), 3)}) passed {gate.get('passed')} of "
        f"{system['n_images']} test images ({gate.get('passed_positive')} positive, "
        f"{gate.get('passed_negative')} negative).",
        "",
    ]
    froc = system.get("froc") or {}
    rates = [f"{r:g}" for r in system.get("froc_rates", [])]
    if froc:
        first = next(iter(froc.values()))
        by_type = ", ".join(f"{v} {k}" for k, v in sorted(system["n_lesions_by_type"].items()))
        lines += [
            f"Lesion detection (FROC) on {first['n_images']} images with {first['n_lesions']} "
            f"outlined lesions ({by_type}), up to {system.get('froc_candidates', '?')} "
            f"candidates per heatmap. Detection rule: {system['detection_rule']}. "
            "Sensitivity at each rate: the highest reached with at most that many false "
            "positives per image. Curves: `reports/froc.png`, `metrics/froc/` "
            "(`dvc plots show`).",
            "",
            "| System | " + " | ".join(f"Sens. @ {r} FP/img" for r in rates) + " | Mean |",
            "|---|" + "---|" * (len(rates) + 1),
        ]
        order = [n for n in ("patch_network", "cascade") if n in froc]
        for name in order + sorted(set(froc) - set(order)):
            summary = froc[name]
            values = [_fmt(_r(summary["sensitivity_at_fp"].get(r), 3)) for r in rates]
            lines.append(
                f"| {name} | "
                + " | ".join(values)
                + f" | {_fmt(_r(summary['mean_sensitivity'], 3))} |"
            )
    return "\n".join(lines) + "\n"


def froc_figure(curve_files: Mapping[str, str | os.PathLike], path: str | os.PathLike) -> None:
    """FROC curves (``fp_per_image``, ``sensitivity`` CSVs) in one PNG, log FP axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = (0.25, 0.5, 1.0, 2.0, 4.0)
    lo = rates[0] / 2
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    right = 8.0
    for name, file in curve_files.items():
        frame = pd.read_csv(file)
        x = frame["fp_per_image"].clip(lower=lo)
        ax.step(x, frame["sensitivity"].fillna(0.0), where="post", label=name)
        right = max(right, float(frame["fp_per_image"].max()))
    for rate in rates:
        ax.axvline(rate, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.set(
        xlabel="false positives per image",
        ylabel="lesion sensitivity",
        title="FROC on the test split's full mammograms",
        xlim=(lo, right),
        ylim=(-0.02, 1.02),
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
