"""Every stage's ``deps`` in dvc.yaml cover the modules its code imports.

A module missing from a stage's deps lets DVC restore stale outputs after that module
changes. This walks each stage's import closure inside ``stages/`` and ``src/mammocad/``
(static ``import`` statements, including those inside functions) and names what is missing;
a folder dep covers every file under it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def _module_file(name: str) -> Path | None:
    """The repository file of a module name under ``stages`` or ``mammocad``, if any."""
    parts = name.split(".")
    if parts[0] == "stages":
        base = REPO
    elif parts[0] == "mammocad":
        base = SRC
    else:
        return None
    path = base.joinpath(*parts)
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _module_level(tree: ast.Module):
    """Statements run at import: the module body and its ``if``/``try`` blocks, not the
    bodies of functions and classes (an import inside a function runs only when called,
    and is then in the closure of the caller's own imports)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _imports(path: Path) -> set[str]:
    """Module names imported by a file (``from a import b`` yields ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(SRC if SRC in path.parents else REPO).parts[:-1])
    found: set[str] = set()
    for node in _module_level(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


#: Package markers that hold no code: every module imports them, no output depends on them.
MARKERS = {SRC / "mammocad" / "__init__.py", REPO / "stages" / "__init__.py"}


def closure(start: Path) -> set[Path]:
    """Files of ``stages`` and ``mammocad`` reachable by imports from ``start``."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen - MARKERS


def _stages() -> list[tuple[str, list[str], str]]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = []
    for name, stage in spec.items():
        body = stage.get("do", stage)
        module = body["cmd"].split("-m", 1)[1].split()[0]
        out.append((name, body["deps"], module))
    return out


@pytest.mark.parametrize(("stage", "deps", "module"), _stages(), ids=[s[0] for s in _stages()])
def test_stage_deps_cover_its_imports(stage, deps, module):
    entry = _module_file(module)
    assert entry is not None, f"{stage}: cmd module {module} not found"
    covered = [REPO / d for d in deps if "${" not in d]
    missing = sorted(
        str(path.relative_to(REPO))
        for path in closure(entry)
        if not any(path == dep or dep in path.parents for dep in covered)
    )
    assert not missing, f"dvc.yaml stage {stage!r} lacks deps: {', '.join(missing)}"


def test_bytecode_caches_are_not_dependencies():
    """Python writes ``__pycache__`` beside the sources a stage imports; hashed with the
    source folders in ``deps``, they would mark every stage changed after the first run
    (and differ between Python versions)."""
    from dvc.repo import Repo

    ignore = Repo(str(REPO)).dvcignore
    cache = REPO / "src" / "mammocad" / "localize" / "__pycache__"
    assert ignore.is_ignored_file(str(cache / "cam.cpython-311.pyc"))
    assert ignore.is_ignored_file(str(REPO / "src" / "mammocad" / "stray.pyc"))
    assert not ignore.is_ignored_file(str(REPO / "src" / "mammocad" / "localize" / "cam.py"))
