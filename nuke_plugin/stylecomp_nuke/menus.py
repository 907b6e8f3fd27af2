"""The StyleComp toolbar (Nodes) and menu (Nuke menu bar), installed by menu.py in GUI sessions."""

from __future__ import annotations

import functools

import nuke

from . import engine, gizmo, runner, settings
from .errors import StyleCompNukeError


def install() -> None:
    """Add the gizmos to a StyleComp toolbar and the engine commands to a StyleComp menu."""
    toolbar = nuke.menu("Nodes").addMenu("StyleComp")
    toolbar.addCommand("StyleComp Stylize", functools.partial(nuke.createNode, gizmo.STYLIZE_CLASS))
    toolbar.addCommand("StyleComp Blend", functools.partial(nuke.createNode, gizmo.BLEND_CLASS))
    menu = nuke.menu("Nuke").addMenu("StyleComp")
    menu.addCommand("Set Engine Location...", set_engine_location)
    menu.addCommand("Check Engine", check_engine)


def set_engine_location() -> None:
    """Ask for the `stylecomp` executable and save it in the settings file."""
    path = nuke.getFilename("The stylecomp executable (in the engine's environment)")
    if not path:
        return
    try:
        values = settings.load()
        values["engine"] = path
        settings.save(values)
    except (StyleCompNukeError, OSError) as exc:
        nuke.message(f"StyleComp: could not save the engine location: {exc}")
        return
    check_engine()


def check_engine() -> None:
    """Run `stylecomp --version` in the background and say what answered."""
    try:
        executable = engine.locate()
    except StyleCompNukeError as exc:
        nuke.message(f"StyleComp: {exc}")
        return
    runner.EngineRun(
        engine.version_command(executable), "StyleComp: checking the engine", functools.partial(_checked, executable)
    ).start()


def _checked(executable: str, result: runner.RunResult) -> None:
    """Main thread: report the version check."""
    if result.error or result.returncode != 0:
        problem = result.error or "\n".join(result.error_lines()) or f"exit status {result.returncode}"
        nuke.message(f"StyleComp: the engine at {executable} did not answer:\n{problem}")
    else:
        nuke.message(f"StyleComp engine: {executable}\n{result.last_line}")
