"""Per-backbone overrides merge over the shared finetune settings, with named errors."""

import pytest

from mammocad.config import ConfigError
from mammocad.entries import backbone_of
from mammocad.experiment import frozen_prefixes, resolve_finetune
from mammocad.models.backbones import build_model

SECTION = {
    "backbones": ["alexnet", "vgg16"],
    "init": "auto",
    "freeze": "default",
    "train": {"epochs": 3, "lr": 0.001},
    "overrides": {"alexnet": {}, "vgg16": {"init": "scratch", "train": {"epochs": 1}}},
}


def test_override_merges_train_keys():
    vgg = resolve_finetune(SECTION, "vgg16")
    assert vgg.init == "scratch" and vgg.train.epochs == 1 and vgg.train.lr == 0.001
    alex = resolve_finetune(SECTION, "alexnet")
    assert alex.init == "auto" and alex.train.epochs == 3


def test_missing_override_section_is_fine():
    assert resolve_finetune({**SECTION, "overrides": {}}, "alexnet").train.epochs == 3


def test_unknown_override_key_is_named():
    bad = {**SECTION, "overrides": {"vgg16": {"train": {"epoch": 1}}}}
    with pytest.raises(ConfigError, match=r"overrides\.vgg16\)\.train\.epoch"):
        resolve_finetune(bad, "vgg16")


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(KeyError, match="mobilenet_v1"):
        resolve_finetune(SECTION, "mobilenet_v3")


def test_variant_entry_uses_its_own_override_and_base_backbone():
    section = {
        **SECTION,
        "overrides": {"alexnet": {}, "alexnet-scratch": {"init": "scratch", "bn_stats": "train"}},
    }
    variant = resolve_finetune(section, "alexnet-scratch")
    assert variant.init == "scratch" and variant.bn_stats == "train"
    assert variant.train.epochs == 3
    assert resolve_finetune(section, "alexnet").init == "auto"
    assert backbone_of("mobilenet_v1-scratch") == "mobilenet_v1"
    assert backbone_of("mobilenet_v1") == "mobilenet_v1"
    with pytest.raises(KeyError, match="mobilenet_v1"):
        resolve_finetune(section, "lenet-scratch")


def test_bad_bn_stats_is_named():
    with pytest.raises(ConfigError, match="bn_stats"):
        resolve_finetune({**SECTION, "bn_stats": "sometimes"}, "alexnet")


def test_frozen_prefixes_names_top_most_frozen_modules():
    model, _ = build_model("mobilenet_v2", "scratch", freeze=("features.0", "features.1"))
    assert frozen_prefixes(model) == ["features.0", "features.1"]
    model, _ = build_model("mobilenet_v2", "scratch", freeze=())
    assert frozen_prefixes(model) == []


def test_training_image_size_needs_only_the_training_rows(tmp_path, monkeypatch, caplog):
    """finetune records the training films' long side even when val/test hold no full images."""
    import pandas as pd

    from stages import finetune

    for folder in ("augmented", "split"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    rows = pd.DataFrame(
        {
            "kind": ["full", "full", "full", "roi"],
            "pathology": ["BENIGN", "MALIGNANT", "NORMAL", "MALIGNANT"],
            "source_height": [768, 700, 900, 64],
            "source_width": [464, 800, 500, 64],
        }
    )
    train_csv = tmp_path / "data" / "augmented" / "train.csv"
    rows.to_csv(train_csv, index=False)
    # val and test patients with ROI crops only, as a split of ROI-only cases gives
    for name in ("val", "test"):
        rows[rows["kind"] == "roi"].to_csv(
            tmp_path / "data" / "split" / f"{name}.csv", index=False
        )
    monkeypatch.chdir(tmp_path)
    assert finetune._image_px() == 800.0  # the median of the long sides 768, 800, 900

    rows[rows["kind"] == "roi"].to_csv(train_csv, index=False)
    assert finetune._image_px() is None
    assert "no full mammograms" in caplog.text
