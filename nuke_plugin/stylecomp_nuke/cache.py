"""A StyleCompStylize node's cache folder: the written plate, the job and the stylized frames."""

from __future__ import annotations

import os
from dataclasses import dataclass

import nuke

from . import gizmo
from .errors import StyleCompNukeError


@dataclass(frozen=True)
class CacheFolder:
    """Absolute paths below one node's cache folder (patterns with ####, as the gizmo's Write/Read use)."""

    root: str

    @property
    def plate(self) -> str:
        return os.path.join(self.root, gizmo.PLATE_PATTERN)

    @property
    def output(self) -> str:
        return os.path.join(self.root, gizmo.OUTPUT_PATTERN)

    @property
    def style_reference(self) -> str:
        return os.path.join(self.root, gizmo.STYLE_REFERENCE_FILE)

    @property
    def job(self) -> str:
        return os.path.join(self.root, gizmo.JOB_FILE)


def default_root(script: str, node_name: str) -> str:
    """``stylecomp/<node>`` beside the saved script; for an unsaved one, in the stylecomp cache folder, which an
    engine server started without --root serves (as it does the home folder)."""
    base = os.path.dirname(os.path.abspath(script)) if script else os.path.join(engine_cache_dir(), "nuke", "untitled")
    return os.path.join(base, "stylecomp", node_name)


def engine_cache_dir() -> str:
    """The engine's cache folder, by the engine's rule: $STYLECOMP_CACHE_DIR, else $XDG_CACHE_HOME/stylecomp, else
    ~/.cache/stylecomp."""
    return os.environ.get("STYLECOMP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "stylecomp")


def cache_folder(node) -> CacheFolder:
    """The node's cache folder; an empty knob is filled with the default so the Read finds the frames."""
    value = node["cache_dir"].value().strip()
    if not value:
        value = default_root(nuke.root()["name"].value(), node.name())
        node["cache_dir"].setValue(value)
    if not os.path.isabs(value) or any(token in value for token in ("[", "$", "#")):
        raise StyleCompNukeError(f"The cache folder must be an absolute path without TCL, variables or #: {value!r}.")
    return CacheFolder(os.path.normpath(value))
