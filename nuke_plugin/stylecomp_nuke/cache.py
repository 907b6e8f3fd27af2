"""A StyleCompStylize node's cache folder: the written plate, the job and the stylized frames.

Paths are kept with forward slashes: they reach the internal Write and Read through
``[value parent.cache_dir]``, and TCL treats backslashes as escapes when a script is saved and
loaded again; Nuke and Python on Windows take forward slashes (also for UNC paths).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

import nuke

from . import gizmo
from .errors import StyleCompNukeError


@dataclass(frozen=True)
class CacheFolder:
    """Absolute paths below one node's cache folder (patterns with ####, as the gizmo's Write/Read use), with
    forward slashes."""

    root: str

    @property
    def plate(self) -> str:
        return posixpath.join(self.root, gizmo.PLATE_PATTERN)

    @property
    def output(self) -> str:
        return posixpath.join(self.root, gizmo.OUTPUT_PATTERN)

    @property
    def style_reference(self) -> str:
        return posixpath.join(self.root, gizmo.STYLE_REFERENCE_FILE)

    @property
    def job(self) -> str:
        return posixpath.join(self.root, gizmo.JOB_FILE)


def default_root(script: str, node_name: str) -> str:
    """``stylecomp/<node>`` beside the saved script; for an unsaved one, in the stylecomp cache folder, which an
    engine server started without --root serves (as it does the home folder)."""
    base = os.path.dirname(os.path.abspath(script)) if script else os.path.join(engine_cache_dir(), "nuke", "untitled")
    return os.path.join(base, "stylecomp", node_name)


def engine_cache_dir() -> str:
    """The engine's cache folder, by the engine's rule: $STYLECOMP_CACHE_DIR, else $XDG_CACHE_HOME/stylecomp, else
    ~/.cache/stylecomp."""
    return os.environ.get("STYLECOMP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "stylecomp"
    )


def forward_slashes(path: str) -> str:
    """``path`` normalised, with the platform's separator (a backslash on Windows) written as ``/``."""
    return os.path.normpath(path).replace(os.path.sep, "/")


def cache_folder(node) -> CacheFolder:
    """The node's cache folder, written into its knob (with forward slashes) so the internal Write and Read use it.

    An empty knob gets the default folder, ``stylecomp/<node>`` beside the script, and the hidden
    ``cache_default`` knob records it. While the folder is still that automatic one it follows the
    node: a pasted or templated copy (whose knobs hold the original's folder, but which has another
    name or lives in another script's folder) gets its own folder instead of writing the same job,
    plate and stylized frames as the original. A folder typed into the knob is the artist's and is
    kept, also in copies: that is how nodes share a folder on purpose.
    """
    value = node["cache_dir"].value().strip()
    automatic = node["cache_default"].value()
    if not value or value == automatic:
        value = forward_slashes(default_root(nuke.root()["name"].value(), node.name()))
        if value != automatic:
            node["cache_default"].setValue(value)
    if not os.path.isabs(value) or any(token in value for token in ("[", "$", "#")):
        raise StyleCompNukeError(f"The cache folder must be an absolute path without TCL, variables or #: {value!r}.")
    value = forward_slashes(value)
    if value != node["cache_dir"].value():
        node["cache_dir"].setValue(value)
    return CacheFolder(value)
