"""Table 1 from this run's metrics beside the paper's, ImageNet's gain, and its Markdown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from mammocad.evaluate import auc_difference
from mammocad.report.cells import _fmt, _interval, _num, _r

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
                "On the synthetic source this is close to what the drawn look allows (a share "
                "`style_crossover` of lesions is drawn in the other pathology's look; "
                "malignant masses are also drawn denser, a cue the rule does not see, so an "
                "image model can pass it). "
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
        other = localize.get("shallow_cnn")
        if other and other.get("hit_rate") is not None:
            better = other["hit_rate"] > localize["hit_rate"]
            text += [
                "",
                "The shallow CNN's own class activation map (its head applied at each "
                "location of its last feature maps), on the same images: pointing-game hit "
                f"rate {_r(other['hit_rate'], 3)} (chance {_r(other['hit_rate_chance'], 3)})"
                + (
                    ", above the patch network's. The patch network learnt benign against "
                    "malignant lesion crops and never saw lesion-free tissue, so its map "
                    "away from a lesion says little; the image classifier learnt from whole "
                    "mammograms where a finding is."
                    if better
                    else "."
                ),
            ]
    return "\n".join(text) + "\n"
