"""Every file of the Nuke plugin runs on the oldest supported Nuke's Python; it imports only stdlib, Qt, nuke, itself.

The oldest supported Nuke is 13.0, which runs Python 3.7 (README, "Nuke setup"; the VFX Reference Platform
CY2020/CY2021 Python). So the plugin is parsed with ``feature_version=(3, 7)``, which rejects 3.8+ syntax (walrus,
positional-only parameters, f-string ``=``, ``match``), and is searched for what the parser cannot see: stdlib
modules, functions, methods and keyword arguments added after 3.7, and expressions that only 3.9+/3.10+ can
evaluate at run time (``list[int]``, ``dict | dict``, ``X | None`` outside lazy annotations).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "nuke_plugin"
SOURCES = sorted(PLUGIN.rglob("*.py"))
ALLOWED = {"PySide2", "PySide6", "nuke", "stylecomp_nuke"}  # the Qt bindings Nuke ships; never Qt.py
OLDEST_PYTHON = (3, 7)

NEW_MODULES = {"zoneinfo": "3.9", "graphlib": "3.9", "tomllib": "3.11", "importlib.metadata": "3.8"}
NEW_NAMES = {  # module attribute -> the Python that added it
    "functools.cache": "3.9",
    "functools.cached_property": "3.8",
    "functools.singledispatchmethod": "3.8",
    "math.prod": "3.8",
    "math.isqrt": "3.8",
    "math.dist": "3.8",
    "math.comb": "3.8",
    "math.perm": "3.8",
    "math.lcm": "3.9",
    "math.nextafter": "3.9",
    "statistics.fmean": "3.8",
    "shlex.join": "3.8",
    "typing.Literal": "3.8",
    "typing.Final": "3.8",
    "typing.Protocol": "3.8",
    "typing.TypedDict": "3.8",
    "typing.get_origin": "3.8",
    "typing.get_args": "3.8",
    "typing.Annotated": "3.9",
    "typing.TypeAlias": "3.10",
    "typing.ParamSpec": "3.10",
    "typing.Self": "3.11",
    "asyncio.to_thread": "3.9",
    "threading.get_native_id": "3.8",
    "threading.excepthook": "3.8",
    "os.waitstatus_to_exitcode": "3.9",
    "os.add_dll_directory": "3.8",
    "sys.stdlib_module_names": "3.10",
    "sys.unraisablehook": "3.8",
    "itertools.pairwise": "3.10",
    "contextlib.chdir": "3.11",
    "datetime.UTC": "3.11",
}
NEW_METHODS = {
    "removeprefix": "3.9",
    "removesuffix": "3.9",
    "is_relative_to": "3.9",
    "with_stem": "3.9",
    "bit_count": "3.10",
    "readlink": "3.9",
    "hardlink_to": "3.10",
}
NEW_KEYWORDS = {
    "strict": "3.10 (zip)",
    "missing_ok": "3.8 (Path.unlink)",
    "dirs_exist_ok": "3.8 (copytree)",
    "cancel_futures": "3.9 (Executor.shutdown)",
    "kw_only": "3.10 (dataclass)",
    "slots": "3.10 (dataclass)",
    "encoding_errors": "3.9",
}
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (lazy when the module has ``from __future__ import annotations``)."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(child) for root in roots for child in ast.walk(root)}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _is_dict(node: ast.AST) -> bool:
    return isinstance(node, (ast.Dict, ast.DictComp)) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
    )


def python37_problems(source: str, name: str = "<source>") -> list[str]:
    """What in ``source`` would not run on Python 3.7, as sentences; empty when it runs."""
    try:
        tree = ast.parse(source, filename=name, feature_version=OLDEST_PYTHON)
    except SyntaxError as exc:
        return [f"{name}:{exc.lineno}: not Python 3.7 syntax: {exc.msg}"]
    lazy = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    annotations = _annotation_nodes(tree) if lazy else set()
    problems = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            problems += [
                f"{where}: imports {alias.name} (Python {NEW_MODULES[alias.name]})"
                for alias in node.names
                if alias.name in NEW_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module in NEW_MODULES:
                problems.append(f"{where}: imports {module} (Python {NEW_MODULES[module]})")
            problems += [
                f"{where}: imports {module}.{alias.name} (Python {NEW_NAMES[f'{module}.{alias.name}']})"
                for alias in node.names
                if f"{module}.{alias.name}" in NEW_NAMES
            ]
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted in NEW_NAMES:
                problems.append(f"{where}: uses {dotted} (Python {NEW_NAMES[dotted]})")
            elif node.attr in NEW_METHODS:
                problems.append(f"{where}: calls .{node.attr}() (Python {NEW_METHODS[node.attr]})")
        elif isinstance(node, ast.keyword) and node.arg in NEW_KEYWORDS:
            problems.append(f"{where}: passes {node.arg}= (Python {NEW_KEYWORDS[node.arg]})")
        elif id(node) in annotations:
            continue
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in BUILTIN_GENERICS:
            problems.append(f"{where}: {node.value.id}[...] is evaluated at run time (Python 3.9)")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            if _is_dict(node.left) or _is_dict(node.right):
                problems.append(f"{where}: dict | dict (Python 3.9)")
            elif any(isinstance(side, ast.Constant) and side.value is None for side in (node.left, node.right)):
                problems.append(f"{where}: X | None is evaluated at run time (Python 3.10)")
    return problems


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
    assert {
        "init.py",
        "menu.py",
        "stylecomp_nuke/__init__.py",
        "stylecomp_nuke/actions.py",
        "stylecomp_nuke/picker.py",
        "stylecomp_nuke/runner.py",
    } <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.relative_to(PLUGIN).as_posix())
def test_python37_and_stdlib_only(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert python37_problems(source, path.name) == []
    tree = ast.parse(source, filename=str(path))
    for module, level in _imports(tree):
        assert level > 0 or module in sys.stdlib_module_names or module in ALLOWED, f"{path.name} imports {module}"
        assert module not in ("stylecomp", "torch", "OpenImageIO", "PyOpenColorIO", "Qt")
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"


NOT_37 = {
    "walrus": "if (n := 3):\n    pass\n",
    "positional-only": "def f(a, /, b):\n    pass\n",
    "f-string =": "x = 1\ny = f'{x=}'\n",
    "match": "match x:\n    case 1:\n        pass\n",
    "dict | dict": "a = {'x': 1} | dict(y=2)\n",
    "functools.cache": "import functools\n@functools.cache\ndef f():\n    pass\n",
    "from functools import cache": "from functools import cache\n",
    "removeprefix": "name = 'v12'.removeprefix('v')\n",
    "list[int] at run time": "Pairs = list[tuple[int, int]]\n",
    "eager annotation": "def f(names: list[str]) -> None:\n    pass\n",
    "X | None at run time": "Maybe = int | None\n",
    "zoneinfo": "import zoneinfo\n",
    "zip strict": "pairs = zip([1], [2], strict=True)\n",
    "unlink missing_ok": "from pathlib import Path\nPath('x').unlink(missing_ok=True)\n",
}


@pytest.mark.parametrize("source", NOT_37.values(), ids=list(NOT_37))
def test_checker_catches_what_python37_cannot_run(source: str) -> None:
    assert python37_problems(source) != []


def test_checker_accepts_lazy_annotations() -> None:
    """With ``from __future__ import annotations`` (3.7+) annotations are strings, never evaluated."""
    source = (
        "from __future__ import annotations\n"
        "def f(names: list[str], extra: dict[str, int] | None = None) -> tuple[int, ...]:\n"
        "    total: list[int] = []\n    return tuple(total)\n"
    )
    assert python37_problems(source) == []


def test_only_the_picker_needs_qt() -> None:
    """The rest of the plugin runs headless (nuke -t, farm) without Qt."""
    users = {
        path.name
        for path in SOURCES
        if {("PySide2", 0), ("PySide6", 0)} & set(_imports(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert users == {"picker.py"}
