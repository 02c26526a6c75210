"""Params sections load into frozen dataclasses; bad keys fail with their dotted name."""

import dataclasses

import pytest

from mammocad.config import ConfigError, from_dict, to_dict
from mammocad.enhance import EnhanceConfig
from mammocad.registry import Registry


def test_nested_section_loads():
    cfg = from_dict(EnhanceConfig, {"chain": ["median"], "median": {"kernel": 5}}, "enhance")
    assert cfg.chain == ("median",) and cfg.median.kernel == 5
    assert cfg.clahe.clip_limit == 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.chain = ()  # type: ignore[misc]
    assert to_dict(cfg)["median"] == {"kernel": 5}


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'enhance.clahe.clip'"):
        from_dict(EnhanceConfig, {"clahe": {"clip": 3}}, "enhance")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"median": {"kernel": "3"}}, "enhance.median.kernel"),
        ({"clahe": {"clip_limit": True}}, "enhance.clahe.clip_limit"),
        ({"chain": "clahe"}, "enhance.chain"),
    ],
)
def test_mistyped_key_is_named(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(EnhanceConfig, data, "enhance")


def test_int_accepted_for_float():
    assert from_dict(EnhanceConfig, {"clahe": {"clip_limit": 3}}).clahe.clip_limit == 3.0


def test_registry_duplicates_and_unknown_names():
    reg = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="duplicate thing name 'a'"):
        reg.add("a", 2)
    with pytest.raises(KeyError, match="unknown thing 'b'; valid names: a"):
        reg.get("b")
