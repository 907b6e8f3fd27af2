"""The layering of the packages, read from the real import statements (ast) and checked in subprocesses.

Sub-packages of ``stylecomp`` (and its top-level modules: jobspec, errors, color, stage) are the nodes;
``stylecomp_otio`` is one node. Imports under ``if TYPE_CHECKING:`` are left out (they never run);
imports inside functions count, since they run too.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"stylecomp": REPO / "core", "stylecomp_otio": REPO / "otio_adapters"}


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The absolute names ``tree`` imports at run time, relative imports resolved against ``module``."""
    found: set[str] = set()
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            else:
                found.add(str(node.module))
        pending.extend(ast.iter_child_nodes(node))
    return found


def _module_imports() -> dict[str, set[str]]:
    """Every module of core/ and otio_adapters/ and the names it imports."""
    graph: dict[str, set[str]] = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            module = _module_name(package, root, path)
            graph[module] = _imports(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py")
    return graph


def _node(module: str) -> str | None:
    """The graph node a module belongs to: ``stylecomp.<sub-package or top-level module>`` or ``stylecomp_otio``."""
    parts = module.split(".")
    if parts[0] == "stylecomp_otio":
        return "stylecomp_otio"
    if parts[0] != "stylecomp":
        return None
    return ".".join(parts[:2])


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in _module_imports().items():
        for target in targets:
            source, dest = _node(module), _node(target)
            if dest is not None and dest != source:
                graph[str(source)].add(dest)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dest in sorted(graph.get(node, ())):
            if dest not in index:
                visit(dest)
                low[node] = min(low[node], low[dest])
            elif dest in stack:
                low[node] = min(low[node], index[dest])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            component.append(node)
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _describe(graph: dict[str, set[str]]) -> str:
    return "\n".join(f"  {node} -> {', '.join(sorted(dests))}" for node, dests in sorted(graph.items()))


def test_no_import_cycles_between_subpackages() -> None:
    graph = _package_graph()
    cycles = _cycles(graph)
    assert not cycles, f"import cycles between packages: {cycles}\npackage graph:\n{_describe(graph)}"


def test_cycle_check_finds_a_cycle() -> None:
    """The check itself: the real graph plus one import back from a package to one that imports it is a cycle."""
    graph = _package_graph()
    source, dests = next((node, dests) for node, dests in sorted(graph.items()) if dests)
    dest = sorted(dests)[0]
    graph[dest] = graph[dest] | {source}
    assert any({source, dest} <= set(cycle) for cycle in _cycles(graph)), f"{dest} -> {source} closes no cycle"


def test_core_never_imports_stylecomp_otio_or_opentimelineio() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in _module_imports().items()
        if module.split(".")[0] == "stylecomp"
        for target in targets
        if target.split(".")[0] in ("stylecomp_otio", "opentimelineio")
    )
    assert not offenders, "\n".join(offenders)


def test_io_does_not_import_comp() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in _module_imports().items()
        if _node(module) == "stylecomp.io"
        for target in targets
        if _node(target) == "stylecomp.comp"
    )
    assert not offenders, "\n".join(offenders)


def _loaded_after(code: str) -> set[str]:
    """The top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


LIGHT_MODULES = [
    "stylecomp.jobspec",
    "stylecomp.families",
    "stylecomp.config_folder",
    "stylecomp.cache_folder",
    *sorted(
        f"stylecomp.io.{path.stem}" for path in (ROOTS["stylecomp"] / "io").glob("*.py") if path.stem != "__init__"
    ),
    "stylecomp.diffusion.model_files",
    "stylecomp.farm.chunks",
    "stylecomp.farm.openjd",
]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_job_spec_io_and_farm_planning_do_not_import_torch(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    heavy = loaded & {"torch", "diffusers", "transformers"}
    assert not heavy, f"import {module} loads {', '.join(sorted(heavy))}"


def test_stylecomp_commands_do_not_load_the_timeline_plugin() -> None:
    """A command other than ``timeline`` runs without importing stylecomp_otio or OpenTimelineIO."""
    loaded = _loaded_after(
        "from stylecomp.cli import cli\ncli(['job', 'schema'], prog_name='stylecomp', standalone_mode=False)"
    )
    plugin = loaded & {"stylecomp_otio", "opentimelineio"}
    assert not plugin, f"stylecomp job schema loads {', '.join(sorted(plugin))}"


def test_timeline_group_comes_from_its_entry_point() -> None:
    """``stylecomp timeline`` is stylecomp_otio's command group, found through the ``stylecomp.cli`` entry point."""
    import click
    from click.testing import CliRunner

    from stylecomp.cli import cli
    from stylecomp_otio.cli import timeline

    assert cli.get_command(click.Context(cli), "timeline") is timeline
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "timeline" in result.stdout
    result = CliRunner().invoke(cli, ["timeline", "--help"])
    assert result.exit_code == 0 and "conform" in result.stdout and "jobs" in result.stdout


def test_a_plugin_command_group_is_found_and_a_broken_one_is_one_line(tmp_path: Path) -> None:
    """Another package's command group joins `stylecomp` through the entry point; one that cannot import is an error."""
    (tmp_path / "acme_cli.py").write_text(
        "import click\n\n\n@click.group()\ndef acme():\n    'Acme tools.'\n\n\n"
        "@acme.command()\ndef hello():\n    click.echo('hello from acme')\n"
    )
    dist = tmp_path / "acme_cli-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-cli\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[stylecomp.cli]\nacme = acme_cli:acme\nbroken = acme_missing:group\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    script = Path(sys.executable).with_name("stylecomp")
    ran = subprocess.run(
        [str(script), "acme", "hello"], check=False, capture_output=True, text=True, timeout=300, env=env
    )
    assert (ran.returncode, ran.stdout) == (0, "hello from acme\n"), ran.stderr
    ran = subprocess.run([str(script), "broken"], check=False, capture_output=True, text=True, timeout=300, env=env)
    assert ran.returncode == 2
    assert ran.stderr.startswith("error: command 'broken' (acme_missing:group) cannot be imported: ")
    assert len(ran.stderr.splitlines()) == 1 and "Traceback" not in ran.stderr
