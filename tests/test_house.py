"""The layout of the code base: sizes, one folder per phase, imports through each phase's API.

Modules stay under ~600 lines and classes under ~300 (CONTRIBUTING.md, "Style"); every
subpackage of fxsurgeon is shipped (pyproject's package list) and described in
docs/architecture.md; a subpackage uses another only through that one's ``__init__``
(its internal API), and never imports another's private (underscore) names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fxsurgeon"
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300

SOURCES = sorted([*PACKAGE.rglob("*.py"), *(ROOT / "patterns").glob("*.py")])
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_package_is_split_into_phase_folders():
    assert len(SUBPACKAGES) >= 9, SUBPACKAGES


def test_no_module_is_over_600_lines():
    sizes = {_relative(path): len(path.read_text().splitlines()) for path in SOURCES}
    big = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert len(sizes) > 50
    assert not big, big


def test_no_class_is_over_300_lines():
    big = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or node.end_lineno is None:
                continue
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_CLASS_LINES:
                big.append(f"{_relative(path)}: {node.name} ({lines} lines)")
    assert not big, big


def test_every_subpackage_is_in_the_wheel():
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"fxsurgeon\.([a-z_]+)"', text))
    assert set(SUBPACKAGES) <= listed, sorted(set(SUBPACKAGES) - listed)


def test_the_architecture_doc_names_every_subpackage():
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [name for name in SUBPACKAGES if f"fxsurgeon/{name}/" not in text]
    assert not missing, missing


def _imports_from_elsewhere(path: Path) -> list[tuple[str, str, int]]:
    """(imported module path, name, line) of the relative imports that leave the
    module's own subpackage."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level < 2:
            continue
        module = node.module or ""
        for alias in node.names:
            found.append((module, alias.name, node.lineno))
    return found


SUBPACKAGE_SOURCES = [p for p in SOURCES if p.parent.parent == PACKAGE]


def test_subpackages_use_each_other_only_through_their_api():
    bad = []
    for path in SUBPACKAGE_SOURCES:
        where = _relative(path)
        for module, name, line in _imports_from_elsewhere(path):
            head = module.split(".")[0]
            if "." in module and head in SUBPACKAGES:
                bad.append(f"{where}:{line}: from ..{module} import {name} (use ..{head})")
            elif head in SUBPACKAGES and name.startswith("_"):
                bad.append(f"{where}:{line}: the private {name} of {head}")
    assert len(SUBPACKAGE_SOURCES) > 50
    assert not bad, bad


def test_the_api_check_sees_a_bad_import(tmp_path: Path):
    """The import check is not vacuous: it finds a submodule import and a private name."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..fuse.matcher import _Matcher\nfrom ..lower import _x\n")
    found = _imports_from_elsewhere(bad)
    assert ("fuse.matcher", "_Matcher", 1) in found
    assert ("lower", "_x", 2) in found
