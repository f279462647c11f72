"""The shape of the package is a contract: layers in folders, no cycles, small modules, a small root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "streamprep"
MAX_LINES = 450
MAX_ROOT_MODULES = 5


def test_import_linter_contracts_hold() -> None:
    """The layers of ``.importlinter``: no import from a lower layer to a higher one, no cycle between packages."""
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " 0 broken" in proc.stdout.lower().split("contracts:")[-1]  # the summary: "2 kept, 0 broken."


def test_no_module_imports_itself_back() -> None:
    """Zero import cycles between modules, imports inside functions included (so none is dodged)."""
    graph = grimp.build_graph("streamprep", cache_dir=None)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported == "streamprep" or importer == "streamprep":
                continue
            if imported.startswith(importer + ".") or importer.startswith(imported + "."):
                continue  # a package and its own modules
            if graph.chain_exists(imported=importer, importer=imported):
                cycles.append(f"{importer} <-> {imported}")
    assert not cycles, cycles


def test_no_module_is_over_450_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_at_most_five_modules_at_the_package_root() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_the_public_surface_is_listed_once_and_resolves() -> None:
    """``streamprep.__all__`` is made from one table; the type checker's imports name the same things."""
    import ast

    import streamprep

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    typed = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    assert typed | {"__version__"} == set(streamprep.__all__)
    assert len(streamprep.__all__) <= 30
    for name in streamprep.__all__:
        assert getattr(streamprep, name) is not None, name


def test_the_docs_document_exactly_the_public_names() -> None:
    import re

    import streamprep

    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    documented = {m.rsplit(".", 1)[1] for m in re.findall(r"^::: (\S+)$", page, re.M)}
    assert documented == set(streamprep.__all__) - {"__version__"}
