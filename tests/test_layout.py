"""The pipeline's file layout is stated once (``src/mammocad/layout.py``) and ``dvc.yaml`` agrees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mammocad import layout

REPO = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
#: What ``${item}`` and ``${localize.backbone}`` stand for in the check.
ENTRY = "mobilenet_v1-scratch"
#: Data paths: anything a stage reads or writes that is not code.
DATA_PREFIXES = ("data/", "models/", "metrics/", "reports/")


def _path(entry: str | dict) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


def _declared(name: str) -> tuple[set[str], set[str], set[str]]:
    """dvc.yaml's data deps, outs and metrics of a stage, ``${...}`` filled with ENTRY."""
    spec = DVC[name].get("do", DVC[name])

    def fill(paths: list) -> set[str]:
        return {re.sub(r"\$\{[^}]+\}", ENTRY, _path(p)) for p in paths or []}

    tops = {prefix.rstrip("/") for prefix in DATA_PREFIXES}  # a whole folder, e.g. models
    deps = {p for p in fill(spec.get("deps")) if p.startswith(DATA_PREFIXES) or p in tops}
    return deps, fill(spec.get("outs")), fill(spec.get("metrics"))


@pytest.mark.parametrize("name", sorted(DVC))
def test_dvc_yaml_matches_the_layout(name):
    files = layout.stage_files(name, ENTRY)
    deps, outs, metrics = _declared(name)
    assert deps == set(files.reads), (
        f"dvc.yaml {name} data deps differ from src/mammocad/layout.py"
    )
    assert outs == set(files.writes), f"dvc.yaml {name} outs differ from src/mammocad/layout.py"
    assert metrics == set(files.metrics), (
        f"dvc.yaml {name} metrics differ from src/mammocad/layout.py"
    )


def test_every_per_entry_stage_is_a_foreach():
    assert {n for n, s in DVC.items() if "foreach" in s} == set(layout.PER_ENTRY)


def test_layout_knows_no_stage_dvc_yaml_lacks():
    with pytest.raises(KeyError):
        layout.stage_files("no_such_stage")


def test_no_stage_module_spells_a_data_path():
    """Stage modules take every path from the layout; a literal one would drift from it."""
    literal = re.compile(r"""["'](?:(?:data|models|metrics|reports)/|mlartifacts["'/])""")
    found = []
    for path in sorted((REPO / "stages").glob("*.py")):
        if path.name == "layout.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if literal.search(line.split("#")[0]):
                found.append(f"{path.name}:{n}: {line.strip()}")
    assert not found, "data paths outside src/mammocad/layout.py:\n" + "\n".join(found)


def test_per_entry_paths():
    assert layout.checkpoint("alexnet") == "models/alexnet.pt"
    assert layout.eval_metrics("vgg16") == "metrics/eval/vgg16.json"
    assert layout.roc_curve(layout.SHALLOW) == "metrics/curves/roc/shallow_cnn.csv"
    assert layout.at(layout.SPLIT_TABLE).name == "split.csv"


def test_dvc_lock_holds_only_stages_of_the_pipeline():
    """DVC never drops the lock entry of a stage taken out of the pipeline (an entry removed
    from a foreach list): such entries only slow every ``dvc`` command, which parses the
    whole file (``dvc repro`` twice)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = set()
    for name, spec in DVC.items():
        if "foreach" not in spec:
            stages.add(name)
            continue
        section, key = re.fullmatch(r"\$\{(\w+)\.(\w+)\}", spec["foreach"]).groups()
        stages.update(f"{name}@{item}" for item in params[section][key])
    locked = set(yaml.safe_load((REPO / "dvc.lock").read_text())["stages"])
    assert locked <= stages, f"dvc.lock entries of no stage: {sorted(locked - stages)}"


def test_dvc_reads_yaml_with_the_c_parser():
    """DVC parses ``dvc.yaml``, ``dvc.lock`` and ``params.yaml`` with ruamel.yaml's safe
    loader; without ``ruamel.yaml.clib`` (an optional extra of ruamel.yaml) that loader is
    pure Python and each ``dvc status`` parses several times slower."""
    from dvc.utils.serialize._yaml import parse_yaml
    from ruamel.yaml import YAML

    assert YAML(typ="safe").Parser.__module__.startswith("ruamel.yaml.clib"), (
        "ruamel.yaml.clib is not installed (pyproject.toml pins it)"
    )
    text = (REPO / "dvc.lock").read_text()
    assert parse_yaml(text, "dvc.lock")["stages"].keys() == yaml.safe_load(text)["stages"].keys()
