"""The whole system's section (paper Fig. 1): image-level AUCs and the FROC table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mammocad.report.cells import _fmt, _interval, _r

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
