"""The stylecomp engine: where its executable is, and the command lines the plugin runs."""

from __future__ import annotations

import os
import shutil

from . import settings
from .errors import StyleCompNukeError

SETUP_HINT = (
    "set STYLECOMP_ENGINE to the `stylecomp` executable of the engine's own environment "
    "(e.g. /opt/stylecomp/.venv/bin/stylecomp) or choose it with StyleComp > Set Engine Location"
)


class EngineMissing(StyleCompNukeError):
    """The engine is not configured, not there, or not executable."""


def locate() -> str:
    """The engine executable: the saved setting, else $STYLECOMP_ENGINE; EngineMissing says what is wrong."""
    configured = settings.load().get("engine")
    source = f"the setting in {settings.settings_file()}"
    if not configured:
        configured, source = os.environ.get("STYLECOMP_ENGINE"), "STYLECOMP_ENGINE"
    if not configured:
        raise EngineMissing(f"The stylecomp engine is not set up: {SETUP_HINT}.")
    path = os.path.expanduser(str(configured))
    if not os.path.isabs(path) and os.sep not in path:
        path = shutil.which(path) or path
    if not os.path.isfile(path):
        raise EngineMissing(f"The stylecomp engine was not found at {path} (from {source}); {SETUP_HINT}.")
    if not os.access(path, os.X_OK):
        raise EngineMissing(f"The stylecomp engine at {path} (from {source}) is not executable; {SETUP_HINT}.")
    return os.path.abspath(path)


def render_command(engine: str, job: str, shot: str, first: int, last: int) -> list[str]:
    """Render frames first..last of a shot, with one JSON progress event per stdout line."""
    return [engine, "render", job, "--shot", shot, "--frames", f"{first}-{last}", "--progress", "json"]


def candidates_command(engine: str, job: str, shot: str, frame: int, count: int) -> list[str]:
    """Render ``count`` candidates of one frame; the manifest's path is the last stdout line."""
    return [
        engine,
        "candidates",
        job,
        "--shot",
        shot,
        "--frame",
        str(frame),
        "--count",
        str(count),
        "--progress",
        "json",
    ]


def version_command(engine: str) -> list[str]:
    """Print the engine's version."""
    return [engine, "--version"]
