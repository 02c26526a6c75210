"""Params sections load into frozen dataclasses; bad keys fail with their dotted name."""

import dataclasses

import pytest

from mammocad.config import ConfigError, from_dict, keyed_sections, to_dict
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


@dataclasses.dataclass(frozen=True)
class _Inner:
    depth: int = 1


@dataclasses.dataclass(frozen=True)
class _Open:
    name: str = "x"
    parts: dict = keyed_sections(lambda: {"left": _Inner, "right": _Inner})


def test_keyed_sections_sit_beside_the_own_keys():
    cfg = from_dict(_Open, {"name": "y", "left": {"depth": 2}}, "open")
    assert cfg.name == "y" and cfg.parts == {"left": _Inner(2)}  # absent keys left out
    assert to_dict(cfg) == {"name": "y", "left": {"depth": 2}}
    with pytest.raises(ConfigError, match=r"'open\.left\.deep'; valid keys: depth"):
        from_dict(_Open, {"left": {"deep": 2}}, "open")
    with pytest.raises(ConfigError, match=r"'open\.middle'; valid keys: left, name, right"):
        from_dict(_Open, {"middle": {}}, "open")
    with pytest.raises(ConfigError, match=r"'open\.right\.depth': expected an integer"):
        from_dict(_Open, {"right": {"depth": "2"}}, "open")
