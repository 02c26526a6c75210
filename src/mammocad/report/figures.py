"""The report's figures as PNGs: test ROC curves, deployment latencies and FROC curves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad.report.deployment import VARIANTS
from mammocad.report.table1 import PAPER_TABLE1


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
