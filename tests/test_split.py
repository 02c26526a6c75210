"""The split is patient-disjoint, stratified, seeded (paper §3.1)."""

import math

import numpy as np
import pandas as pd
import pytest

from mammocad.sources.ddsm import split_patients as ddsm_split_patients
from mammocad.sources.mias import MiasRow
from mammocad.sources.mias import split_patients as mias_split_patients
from mammocad.split import (
    SplitConfig,
    assign_splits,
    check_disjoint,
    draw_test_patients,
    split_metrics,
)


def _manifest(n_patients=50):
    rows = []
    for p in range(n_patients):
        pathology = ["NORMAL", "BENIGN", "MALIGNANT"][p % 3] if p < 45 else "MALIGNANT"
        for view in ("CC", "MLO"):
            rows.append(
                {
                    "image_id": f"P{p}_{view}",
                    "kind": "full",
                    "patient_id": f"P{p:03d}",
                    "pathology": pathology,
                    "official_split": "test" if p % 5 == 0 else "train",
                }
            )
            if pathology != "NORMAL":
                rows.append(
                    {
                        "image_id": f"P{p}_{view}_1",
                        "kind": "roi",
                        "patient_id": f"P{p:03d}",
                        "pathology": pathology,
                        "official_split": "test" if p % 5 == 0 else "train",
                    }
                )
    return pd.DataFrame(rows)


def test_no_patient_on_both_sides():
    frame = assign_splits(_manifest(), SplitConfig(), seed=1)
    check_disjoint(frame)
    per_patient = frame.groupby("patient_id")["split"].nunique()
    assert per_patient.max() == 1
    assert set(frame["split"]) == {"train", "val", "test"}


def test_stratified_counts_per_label():
    # strata: 15 NORMAL, 15 BENIGN, 20 MALIGNANT patients → round(0.2·n) test each
    frame = assign_splits(_manifest(), SplitConfig(test_fraction=0.2, val_fraction=0.0), 3)
    test = frame[frame["split"] == "test"].groupby("patient_id")["pathology"].first()
    assert test.value_counts().to_dict() == {"NORMAL": 3, "BENIGN": 3, "MALIGNANT": 4}
    assert set(frame["split"]) == {"train", "test"}


def test_seeded_and_seed_sensitive():
    m = _manifest()
    a = assign_splits(m, SplitConfig(), 7)["split"].tolist()
    assert a == assign_splits(m, SplitConfig(), 7)["split"].tolist()
    assert a != assign_splits(m, SplitConfig(), 8)["split"].tolist()


def test_check_disjoint_catches_leak():
    frame = assign_splits(_manifest(), SplitConfig(), 1)
    frame.loc[frame.index[0], "split"] = "test" if frame.iloc[0]["split"] != "test" else "train"
    with pytest.raises(AssertionError, match="more than one split"):
        check_disjoint(frame)


def test_official_split_moves_overlap_to_test():
    m = _manifest(10)
    m.loc[m["image_id"] == "P1_CC", "official_split"] = "test"  # P001 now on both sides
    frame = assign_splits(m, SplitConfig(method="official", val_fraction=0.0), 0)
    check_disjoint(frame)
    assert set(frame.loc[frame["patient_id"] == "P001", "split"]) == {"test"}
    assert set(frame.loc[frame["patient_id"] == "P002", "split"]) == {"train"}
    assert split_metrics(frame)["official_overlap_patients"] == 1


def test_bad_fraction_names_key():
    with pytest.raises(ValueError, match="split.test_fraction"):
        SplitConfig(test_fraction=1.5)


# --- one draw for the split stage and the sources ---------------------------------------------
# The three draws the split stage, mini-MIAS and DDSM/local used before they shared
# draw_test_patients, kept verbatim as references: every assignment must stay the same.


def _old_split_stage(labels: pd.Series, fraction: float, rng: np.random.Generator) -> set[str]:
    chosen: set[str] = set()
    for _, group in sorted(labels.groupby(labels), key=lambda kv: str(kv[0])):
        ids = sorted(group.index.astype(str))
        n = int(round(len(ids) * fraction))
        if fraction > 0 and n == 0 and len(ids) > 1:
            n = 1
        chosen.update(rng.permutation(ids)[:n].tolist())
    return chosen


def _old_mias(worst: dict[int, int], test_fraction: float, seed: int) -> dict[int, str]:
    rng = np.random.default_rng([seed, 0x4D494153])
    split: dict[int, str] = {}
    for rank in (0, 1, 2):
        members = sorted(p for p, w in worst.items() if w == rank)
        n_test = math.floor(test_fraction * len(members) + 0.5)
        chosen = {members[i] for i in rng.permutation(len(members))[:n_test]}
        split.update({p: "test" if p in chosen else "train" for p in members})
    return dict(sorted(split.items()))


def _old_ddsm(labels: dict[str, str], fraction: float, seed: int) -> dict[str, str]:
    rng = np.random.default_rng([seed, 0x0DD5])
    ordered: list[str] = []
    for label in sorted(set(labels.values())):
        names = sorted(p for p, lab in labels.items() if lab == label)
        ordered.extend(names[i] for i in rng.permutation(len(names)))
    offset = rng.random()
    return {
        name: "test" if int((i + 1) * fraction + offset) > int(i * fraction + offset) else "train"
        for i, name in enumerate(ordered)
    }


def _cases():
    """Fixed inputs: stratum sizes 0..40 (ties at .5 included), ids of mixed widths."""
    gen = np.random.default_rng(2024)
    for case in range(60):
        sizes = gen.integers(0, 41, size=3) if case else np.array([1, 2, 5])
        numbers = gen.permutation(np.arange(1, 400))[: int(sizes.sum())]
        ranks = np.repeat([0, 1, 2], sizes)
        for fraction in (0.0, 0.1, 0.15, 0.2, 0.25, 1 / 3, 0.5, 0.9):
            yield case, dict(zip(numbers.tolist(), ranks.tolist(), strict=True)), fraction


def test_draw_is_the_split_stages_former_draw():
    names = ("NORMAL", "BENIGN", "MALIGNANT")
    for seed, ranks, fraction in _cases():
        labels = pd.Series({f"P{n}": names[r] for n, r in ranks.items()}, dtype=object)
        old_rng, new_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        old = _old_split_stage(labels, fraction, old_rng)
        new = draw_test_patients(dict(labels.items()), fraction, new_rng)
        assert new == old, (seed, fraction)
        assert old_rng.random() == new_rng.random()  # the validation draw follows unchanged


def test_draw_is_the_mias_and_ddsm_former_draws():
    names = ("NORMAL", "BENIGN", "MALIGNANT")
    for seed, ranks, fraction in _cases():
        rows = [
            MiasRow(f"mdb{n:03d}", "G", "CIRC" if r else "NORM", ("B", "M")[r - 1] if r else None)
            for n, r in ranks.items()
        ]
        old_rank = {"NORMAL": 0, "BENIGN": 1, "MALIGNANT": 2}
        worst: dict[int, int] = {}
        for row in rows:
            rank = old_rank[row.pathology]
            worst[row.patient_number] = max(worst.get(row.patient_number, 0), rank)
        new = mias_split_patients(rows, fraction, seed)
        assert new == _old_mias(worst, fraction, seed) and list(new) == sorted(worst)
        labels = {f"case{n}": names[r] for n, r in ranks.items()}
        assert ddsm_split_patients(labels, fraction, seed) == _old_ddsm(labels, fraction, seed)


def test_draw_rule_must_be_known():
    with pytest.raises(ValueError, match="unknown draw rule"):
        draw_test_patients({"a": 0}, 0.5, np.random.default_rng(0), rule="first")
