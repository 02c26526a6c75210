"""Per-backbone overrides merge over the shared finetune settings, with named errors."""

import pytest

from mammocad.config import ConfigError
from mammocad.experiment import resolve_finetune

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
