"""Patient-level cross-validation on the training split (`mammocad cv`)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from mammocad import crossval
from mammocad.cli import main
from mammocad.experiment import resolve_finetune

FINETUNE = {
    "backbones": ["mobilenet_v2"],
    "init": "scratch",
    "train": {"epochs": 4, "lr": 0.0003, "patience": 2},
    "overrides": {"mobilenet_v2": {}, "alexnet": {"train": {"epochs": 2}}},
}


def _rows(n_patients: int = 12, copies: int = 1) -> pd.DataFrame:
    """Two patches per patient (the first third malignant), each with ``copies`` copies."""
    rows = []
    for p in range(n_patients):
        pathology = "MALIGNANT" if p % 3 == 0 else "BENIGN"
        for lesion in range(2):
            for aug in range(copies + 1):
                rows.append(
                    {
                        "image_id": f"P{p}_{lesion}" + (f"__aug{aug}" if aug else ""),
                        "kind": "roi",
                        "patient_id": f"P_{p:03d}",
                        "pathology": pathology,
                        "aug_index": aug,
                        "image_path": f"roi/P{p}_{lesion}_{aug}.png",
                    }
                )
    rows.append(dict(rows[0], image_id="full", kind="full"))
    rows.append(dict(rows[0], image_id="normal", pathology="NORMAL"))
    return pd.DataFrame(rows)


def test_training_rows_keep_benign_and_malignant_patches():
    rows = crossval.training_rows(_rows())
    assert set(rows["kind"]) == {"roi"}
    assert set(rows["pathology"]) == {"BENIGN", "MALIGNANT"}
    assert len(rows) == 12 * 2 * 2
    for column in ("patient_id", "aug_index"):
        with pytest.raises(ValueError, match=column):
            crossval.training_rows(_rows().drop(columns=column))


def test_patient_folds_partition_the_patients_and_stratify():
    rows = crossval.training_rows(_rows())
    folds = crossval.patient_folds(rows, 4, seed=1)
    patients = [p for fold in folds for p in fold]
    assert sorted(patients) == sorted(rows["patient_id"].unique())  # each exactly once
    assert [len(f) for f in folds] == [3, 3, 3, 3]
    malignant = set(rows.loc[rows["pathology"] == "MALIGNANT", "patient_id"])
    assert all(len(set(f) & malignant) == 1 for f in folds)  # 4 malignant, one per fold
    assert folds == crossval.patient_folds(rows, 4, seed=1)
    assert folds != crossval.patient_folds(rows, 4, seed=2)
    for k in (1, 13):
        with pytest.raises(ValueError, match="between 2 and the 12 patients"):
            crossval.patient_folds(rows, k, seed=1)


def test_fold_frames_hold_out_patients_and_their_copies():
    rows = crossval.training_rows(_rows(copies=2))
    held = ["P_000", "P_004"]
    frames = crossval.fold_frames(rows, held)
    assert not set(frames["train"]["patient_id"]) & set(held)
    assert set(frames["val"]["patient_id"]) == set(held)
    assert (frames["val"]["aug_index"] == 0).all()  # originals only, no augmented copies
    assert len(frames["val"]) == 4 and frames["test"] is frames["val"]
    assert len(frames["train"]) == len(rows) - 2 * 2 * 3


def test_parse_settings_crosses_keys_and_reads_numbers():
    settings = crossval.parse_settings(["train.lr=3e-4,1e-4", "freeze=none,default"])
    assert settings == [
        {"train.lr": 3e-4, "freeze": "none"},
        {"train.lr": 3e-4, "freeze": "default"},
        {"train.lr": 1e-4, "freeze": "none"},
        {"train.lr": 1e-4, "freeze": "default"},
    ]
    assert isinstance(settings[0]["train.lr"], float)
    assert crossval.parse_settings([]) == [{}]
    for bad, message in (
        ("lr=1e-4", "train.<key>"),
        ("train.lr", "KEY=VALUE"),
        ("train.lr=", "KEY=VALUE"),
        ("train.epochs=2,8", "give --epochs instead"),
        ("train.patience=1", "cv sets train.patience itself"),
    ):
        with pytest.raises(ValueError, match=message):
            crossval.parse_settings([bad])
    with pytest.raises(ValueError, match="given twice"):
        crossval.parse_settings(["train.lr=1", "train.lr=2"])
    for setting in settings:  # every parsed example is one the params accept
        section = crossval.with_setting(FINETUNE, "mobilenet_v2", setting)
        assert resolve_finetune(section, "mobilenet_v2").train.lr == setting["train.lr"]


def test_with_setting_overrides_one_entry_only():
    section = crossval.with_setting(FINETUNE, "mobilenet_v2", {"train.lr": 1e-4, "init": "auto"})
    cfg = resolve_finetune(section, "mobilenet_v2")
    assert cfg.train.lr == 1e-4 and cfg.init == "auto" and cfg.train.epochs == 4
    assert resolve_finetune(section, "alexnet").train.lr == 0.0003
    assert FINETUNE["overrides"]["mobilenet_v2"] == {}  # the input is not changed
    # an entry's own overrides stay, the setting adds to them
    alex = resolve_finetune(
        crossval.with_setting(FINETUNE, "alexnet", {"train.lr": 0.1}), "alexnet"
    )
    assert (alex.train.lr, alex.train.epochs) == (0.1, 2)
    bare = crossval.with_setting(
        {**FINETUNE, "overrides": None}, "mobilenet_v2", {"freeze": "none"}
    )
    assert resolve_finetune(bare, "mobilenet_v2").freeze == "none"


def test_fold_curves_average_over_folds():
    curves = crossval.FoldCurves({"train.lr": 1e-4}, [[0.6, 0.8], [0.8, None]], [[1, 2], [3, 4]])
    assert curves.mean() == pytest.approx([0.7, 0.8])
    sd = curves.sd()
    assert sd[0] == pytest.approx(0.1414, abs=1e-4) and math.isnan(sd[1])  # one value
    record = curves.record()
    assert record["mean_val_loss"] == pytest.approx([2, 3])
    assert record["sd_val_auc"][1] is None  # JSON has no NaN
    text = crossval.table([curves, crossval.FoldCurves({}, [[0.9], [0.7]], [[1], [1]])])
    lines = text.splitlines()
    assert lines[0].split() == ["setting", "epoch", "1", "epoch", "2"]
    assert lines[1].split() == ["train.lr=0.0001", "0.700±0.141", "0.800*"]
    assert lines[2].split() == ["(params", "as", "they", "stand)", "0.800±0.141*", "n/a"]


def test_cross_validate_trains_each_fold_without_its_patients(monkeypatch, tmp_path):
    rows = crossval.training_rows(_rows())
    calls = []

    def fake_train(entry, cfg, frames, roots, seed):
        calls.append((cfg, frames))
        held = set(frames["val"]["patient_id"])
        assert not held & set(frames["train"]["patient_id"])
        auc = len(held) / 10 + cfg.train.lr
        history = [{"val_auc": auc + e, "val_loss": 1.0} for e in range(cfg.train.epochs)]
        return SimpleNamespace(fit=SimpleNamespace(history=history))

    monkeypatch.setattr("mammocad.experiment.train_backbone", fake_train)
    curves = crossval.cross_validate(
        "mobilenet_v2",
        FINETUNE,
        rows,
        tmp_path,
        folds=3,
        epochs=2,
        seed=0,
        settings=crossval.parse_settings(["train.lr=0.5,0.25"]),
    )
    assert len(calls) == 6
    assert all(c.train.epochs == 2 and c.train.patience == 0 for c, _ in calls)
    assert [c.setting for c in curves] == [{"train.lr": 0.5}, {"train.lr": 0.25}]
    assert curves[0].auc == [[0.9, 1.9]] * 3  # 4 patients held out per fold, lr 0.5
    assert curves[1].mean() == pytest.approx([0.65, 1.65])
    held = [set(f["val"]["patient_id"]) for _, f in calls[:3]]
    assert set().union(*held) == set(rows["patient_id"])


def _project(tmp_path, rows: pd.DataFrame | None = None):
    """A project folder with params and, unless ``rows`` is None, an augmented train.csv."""
    params = {"seed": 1, "finetune": {**FINETUNE, "backbones": ["mobilenet_v2", "alexnet-x"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    if rows is not None:
        (tmp_path / "data/augmented").mkdir(parents=True)
        rows.to_csv(tmp_path / "data/augmented/train.csv", index=False)
    return tmp_path


def test_cv_command_names_what_is_wrong(tmp_path, capsys):
    project = _project(tmp_path)

    def error(*argv: str) -> str:
        assert main(["cv", *argv, "--project", str(project)]) == 1
        return capsys.readouterr().err

    assert "data/augmented/train.csv not found: run `dvc repro augment`" in error("mobilenet_v2")
    message = error("mobilenet_v2", "-S", "train.lrr=1")
    assert message.startswith("mammocad cv: error: -S: unknown config key") and "lrr" in message
    message = error("resnet99")
    assert message.startswith("mammocad cv: error: unknown backbone 'resnet99'; valid names:")
    assert "'mobilenet_v2-scrach' is not in finetune.backbones" in error("mobilenet_v2-scrach")
    assert "cv sets train.epochs itself" in error("mobilenet_v2", "-S", "train.epochs=1,2")
    assert "--epochs must be at least 1, got 0" in error("mobilenet_v2", "--epochs", "0")
    assert "not a file in an existing folder" in error("mobilenet_v2", "--out", str(tmp_path))
    (project / "params.yaml").write_text("finetune:\n  train: {lr: fast}\n")
    assert f"{project / 'params.yaml'}: " in error("mobilenet_v2")
    assert main(["cv", "mobilenet_v2", "--project", str(tmp_path / "nowhere")]) == 1
    assert "params.yaml: not found" in capsys.readouterr().err


def test_cv_command_prints_the_table_and_writes_valid_json(tmp_path, capsys, monkeypatch):
    project = _project(tmp_path, _rows(copies=1))
    seen = []

    def fake_train(entry, cfg, frames, roots, seed):
        seen.append((entry, cfg.train.epochs, cfg.train.lr, seed))
        auc = [0.5 + 0.1 * e for e in range(cfg.train.epochs)]
        auc[-1] = None if len(seen) == 1 else auc[-1]  # a fold whose held-out set is one class
        history = [{"val_auc": a, "val_loss": math.nan} for a in auc]
        return SimpleNamespace(fit=SimpleNamespace(history=history))

    monkeypatch.setattr("mammocad.experiment.train_backbone", fake_train)
    out = tmp_path / "cv.json"
    argv = ["cv", "mobilenet_v2", "--folds", "3", "-S", "train.lr=1e-3,1e-4", "--out", str(out)]
    assert main([*argv, "--project", str(project)]) == 0
    assert len(seen) == 6 and {s[1] for s in seen} == {4} and {s[3] for s in seen} == {1}
    assert [s[2] for s in seen] == [1e-3] * 3 + [1e-4] * 3
    text = capsys.readouterr().out
    assert "(12 patients, 24 patches and their augmented copies)" in text
    assert "train.lr=0.001 " in text and "0.800±0.000*" in text

    def no_nan(name):
        raise AssertionError(f"{name} in JSON")

    record = json.loads(out.read_text(), parse_constant=no_nan)
    assert (record["entry"], record["folds"], record["epochs"]) == ("mobilenet_v2", 3, 4)
    assert (record["patients"], record["patches"]) == (12, 24)
    first = record["settings"][0]
    assert first["setting"] == {"train.lr": 0.001}
    assert first["val_auc"][0] == [0.5, 0.6, 0.7, None]
    assert first["mean_val_auc"] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert first["val_loss"][0] == [None] * 4 and first["mean_val_loss"] == [None] * 4
