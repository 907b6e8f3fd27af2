"""Every file of the Nuke plugin parses as Python 3.9 and imports only the standard library, Qt, nuke and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "nuke_plugin"
SOURCES = sorted(PLUGIN.rglob("*.py"))
ALLOWED = {"PySide2", "PySide6", "nuke", "stylecomp_nuke"}  # the Qt bindings Nuke ships; never Qt.py


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """(top-level module, relative level) of every import."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(((node.module or "").split(".")[0], node.level))
    return found


def test_the_plugin_has_its_files() -> None:
    names = {path.relative_to(PLUGIN).as_posix() for path in SOURCES}
    assert {"init.py", "menu.py", "stylecomp_nuke/__init__.py", "stylecomp_nuke/actions.py",
            "stylecomp_nuke/picker.py", "stylecomp_nuke/runner.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.relative_to(PLUGIN).as_posix())
def test_python39_and_stdlib_only(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
    for module, level in _imports(tree):
        assert level > 0 or module in sys.stdlib_module_names or module in ALLOWED, f"{path.name} imports {module}"
        assert module not in ("stylecomp", "torch", "OpenImageIO", "PyOpenColorIO", "Qt")
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"


def test_only_the_picker_needs_qt() -> None:
    """The rest of the plugin runs headless (nuke -t, farm) without Qt."""
    users = {path.name for path in SOURCES
             if {("PySide2", 0), ("PySide6", 0)} & set(_imports(ast.parse(path.read_text(encoding="utf-8"))))}
    assert users == {"picker.py"}
