"""What init.py does in every Nuke session: put the StyleComp gizmos on the plugin path."""

from __future__ import annotations

import os
import sys

import nuke

PLUGIN_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gizmo_folder() -> str:
    """$STYLECOMP_GIZMOS, else ``gizmos`` inside the plugin folder, else the repository's ``gizmos`` beside it."""
    configured = os.environ.get("STYLECOMP_GIZMOS")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    inside = os.path.join(PLUGIN_FOLDER, "gizmos")
    return inside if os.path.isdir(inside) else os.path.join(os.path.dirname(PLUGIN_FOLDER), "gizmos")


def add_gizmo_path() -> None:
    """nuke.pluginAddPath the gizmo folder; only a warning on stderr if it is missing (no UI here)."""
    folder = gizmo_folder()
    if not os.path.isdir(folder):
        sys.stderr.write(
            f"StyleComp: no gizmo folder at {folder}; set STYLECOMP_GIZMOS to the folder holding "
            f"StyleCompStylize.gizmo\n"
        )
        return
    nuke.pluginAddPath(folder, addToSysPath=False)
