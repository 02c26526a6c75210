"""Patient-level k-fold cross-validation of a fine-tuning recipe on the training split.

A recipe (learning rate, epochs, freezing, ...) chosen on the test split makes its test
figure meaningless, and one on the validation split (66 patches in the default run) is
mostly noise. Cross-validation uses the training patients only: each of ``k`` folds holds
out a ``1/k`` share of them (their original patches, no augmented copies) and trains on
the rest (with their augmented copies), so no validation or test row is read.
``mammocad cv`` runs it.

Not used by any stage, so changing this module reruns nothing.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: The keys ``-S`` may set besides ``train.<key>``, relative to the entry's settings.
SETTABLE = ("init", "freeze", "bn_stats")
#: Keys that cross-validation sets itself: every fold runs all ``epochs``, no early stop.
FIXED = {"train.epochs": "give --epochs instead", "train.patience": "every fold runs all epochs"}


def training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The benign and malignant ROI rows of an augmented ``train.csv``."""
    missing = {"kind", "patient_id", "pathology", "aug_index", "image_path"} - set(frame.columns)
    if missing:
        raise ValueError(f"training rows lack column(s) {', '.join(sorted(missing))}")
    rows = frame[(frame["kind"] == "roi") & frame["pathology"].isin(["BENIGN", "MALIGNANT"])]
    if rows.empty:
        raise ValueError("the training split holds no benign or malignant ROI patches")
    return rows.reset_index(drop=True)


def patient_folds(rows: pd.DataFrame, k: int, seed: int) -> list[list[str]]:
    """Splits the patients of ``rows`` into ``k`` folds, stratified by worst finding.

    Patients with a malignant patch and those without are shuffled (seeded) and dealt in
    turn, so every fold holds both kinds where there are at least ``k`` of each.

    Raises:
        ValueError: ``k`` below 2 or above the number of patients.
    """
    patients = rows.groupby(rows["patient_id"].astype(str))["pathology"].agg(
        lambda p: bool((p == "MALIGNANT").any())
    )
    if k < 2 or k > len(patients):
        raise ValueError(f"folds must be between 2 and the {len(patients)} patients, got {k}")
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    turn = 0
    for malignant in (True, False):
        group = sorted(patients.index[patients == malignant])
        for i in rng.permutation(len(group)):
            folds[turn % k].append(group[i])
            turn += 1
    return [sorted(f) for f in folds]


def fold_frames(rows: pd.DataFrame, held_out: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Training rows of the other patients; original patches of the ``held_out`` ones.

    The held-out frame doubles as ``test`` (the training code builds all three sets and
    never scores ``test``), so nothing outside the training split is read.
    """
    out = rows["patient_id"].astype(str).isin(set(held_out))
    original = rows["aug_index"].astype(str) == "0"
    val = rows[out & original].reset_index(drop=True)
    return {"train": rows[~out].reset_index(drop=True), "val": val, "test": val}


def parse_settings(items: Sequence[str]) -> list[dict[str, Any]]:
    """Turns ``KEY=V1,V2`` strings into the settings to compare: every combination.

    Keys are ``train.<key>`` (not those of :data:`FIXED`) or one of :data:`SETTABLE`;
    values are read as YAML scalars (``1e-4``, ``true``, ``none``). No items give one empty
    setting: the recipe as it stands in the params.
    """
    import yaml

    axes: list[tuple[str, list[Any]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ValueError(f"setting {item!r}: expected KEY=VALUE[,VALUE...]")
        if not (key.startswith("train.") or key in SETTABLE):
            raise ValueError(
                f"setting {item!r}: key must be train.<key> or one of {', '.join(SETTABLE)}"
            )
        if key in FIXED:
            raise ValueError(f"setting {item!r}: cv sets {key} itself ({FIXED[key]})")
        if any(key == k for k, _ in axes):
            raise ValueError(f"setting {key!r} given twice; list its values after one '='")
        axes.append((key, [_value(yaml.safe_load(p)) for p in values.split(",")]))
    combos: list[dict[str, Any]] = [{}]
    for key, values in axes:
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def _value(value: Any) -> Any:
    """A number written as YAML 1.1 reads it as text (``1e-4``, no dot) becomes a number."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def with_setting(section: Mapping[str, Any], entry: str, setting: Mapping[str, Any]) -> dict:
    """A copy of the ``finetune`` params section with ``setting`` in ``entry``'s overrides."""
    out = copy.deepcopy(dict(section))
    overrides = out.setdefault("overrides", {}) or {}
    out["overrides"] = overrides
    entry_over = dict(overrides.get(entry) or {})
    train = dict(entry_over.get("train") or {})
    for key, value in setting.items():
        if key.startswith("train."):
            train[key.split(".", 1)[1]] = value
        else:
            entry_over[key] = value
    entry_over["train"] = train
    overrides[entry] = entry_over
    return out


@dataclass
class FoldCurves:
    """Validation curves of one setting: ``auc[f][e]`` and ``loss[f][e]`` per fold, epoch."""

    setting: dict[str, Any]
    auc: list[list[float | None]]
    loss: list[list[float | None]]

    def mean(self, values: list[list[float | None]] | None = None) -> list[float]:
        """Mean over the folds at each epoch (NaN where every fold holds one class)."""
        return [_stat(col, np.mean) for col in _columns(self.auc if values is None else values)]

    def sd(self) -> list[float]:
        """Standard deviation of the fold AUCs at each epoch (NaN below two values)."""
        return [_stat(col, lambda a: np.std(a, ddof=1), 2) for col in _columns(self.auc)]

    def record(self) -> dict[str, Any]:
        """JSON-ready summary: ``None`` where a value is undefined or not finite."""
        return {
            "setting": self.setting,
            "val_auc": [_plain(fold) for fold in self.auc],
            "val_loss": [_plain(fold) for fold in self.loss],
            "mean_val_auc": _plain(self.mean()),
            "sd_val_auc": _plain(self.sd()),
            "mean_val_loss": _plain(self.mean(self.loss)),
        }


def cross_validate(
    entry: str,
    section: Mapping[str, Any],
    rows: pd.DataFrame,
    root: Path,
    *,
    folds: int,
    epochs: int,
    seed: int,
    settings: Sequence[Mapping[str, Any]] = ({},),
    progress: bool = False,
    on_setting: Callable[[list[FoldCurves]], None] | None = None,
) -> list[FoldCurves]:
    """Trains ``entry`` on every fold under every setting for ``epochs`` epochs.

    Every fold runs all epochs (no early stopping), so one run gives the curve for every
    shorter budget too: the learning-rate decay is applied per epoch either way.

    Args:
        entry: a finetune entry (``mobilenet_v2``, ``mobilenet_v1-scratch``, ...).
        section: the ``finetune`` params section.
        rows: the training split's rows (:func:`training_rows` of augmented ``train.csv``).
        root: the folder their ``image_path`` is relative to.
        folds: number of folds.
        epochs: epochs per fold.
        seed: seeds the folds and every training run.
        settings: the recipes to compare (see :func:`parse_settings`).
        progress: show progress over the training runs (a bar, or log lines).
        on_setting: called with the curves so far each time a setting has run all folds
            (``mammocad cv`` saves them, so an interrupted run keeps what it finished).

    Raises:
        ConfigError, KeyError: a setting the params do not accept, before any training.
    """
    from mammocad.experiment import resolve_finetune, train_backbone
    from mammocad.progress import progress as progress_bar

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    configs = []
    for setting in settings:
        cfg = resolve_finetune(with_setting(section, entry, setting), entry)
        configs.append(replace(cfg, train=replace(cfg.train, epochs=epochs, patience=0)))
    held = patient_folds(rows, folds, seed)
    roots = dict.fromkeys(("train", "val", "test"), Path(root))
    out = []
    bar = progress_bar(len(configs) * len(held), f"cv {entry}", "fold") if progress else None
    for setting, cfg in zip(settings, configs, strict=True):
        curves = FoldCurves(dict(setting), [], [])
        for k, patients in enumerate(held, 1):
            frames = fold_frames(rows, patients)
            log.info(
                "%s %s: fold %d of %d (%d patients held out, %d patches)",
                entry,
                _describe(setting),
                k,
                len(held),
                len(patients),
                len(frames["val"]),
            )
            history = train_backbone(entry, cfg, frames, roots, seed).fit.history
            curves.auc.append([h.get("val_auc") for h in history])
            curves.loss.append([h.get("val_loss") for h in history])
            if bar is not None:
                bar.update()
        out.append(curves)
        if on_setting is not None:
            on_setting(out)
    if bar is not None:
        bar.close()
    return out


def _plain(values: Sequence[float | None]) -> list[float | None]:
    return [v if v is not None and math.isfinite(v) else None for v in values]


def _columns(values: list[list[float | None]]) -> list[list[float]]:
    """Per-epoch columns of per-fold values, ``None`` left out."""
    width = max((len(fold) for fold in values), default=0)
    return [
        [fold[e] for fold in values if e < len(fold) and fold[e] is not None] for e in range(width)
    ]


def _stat(values: list[float], fn, least: int = 1) -> float:
    return float(fn(np.asarray(values, dtype=float))) if len(values) >= least else math.nan


def _describe(setting: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "(params as they stand)"


def table(curves: Sequence[FoldCurves]) -> str:
    """Mean validation AUC (± SD over folds) per epoch and setting, best epoch marked *."""
    if not curves:
        return ""
    epochs = max(len(c.mean()) for c in curves) or 1
    width = max(len("setting"), *(len(_describe(c.setting)) for c in curves)) + 2
    lines = ["setting".ljust(width) + "".join(f"epoch {e:<9d}" for e in range(1, epochs + 1))]
    for c in curves:
        mean, sd = c.mean(), c.sd()
        finite = [m if math.isfinite(m) else -math.inf for m in mean]
        best = finite.index(max(finite)) if any(math.isfinite(m) for m in mean) else -1
        cells = []
        for e in range(epochs):
            if e >= len(mean) or not math.isfinite(mean[e]):
                cells.append("n/a".ljust(15))
                continue
            spread = f"±{sd[e]:.3f}" if e < len(sd) and math.isfinite(sd[e]) else ""
            cells.append((f"{mean[e]:.3f}{spread}" + ("*" if e == best else "")).ljust(15))
        lines.append(_describe(c.setting).ljust(width) + "".join(cells))
    return "\n".join(line.rstrip() for line in lines)
