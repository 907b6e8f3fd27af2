"""A node's state shown in the node graph: its label, its tile colour, and a message for errors."""

from __future__ import annotations

import nuke

from . import gizmo

LABEL_LENGTH = 60


def _one_line(text: str) -> str:
    """The first line of ``text``, shortened for a node label."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= LABEL_LENGTH else line[: LABEL_LENGTH - 3] + "..."


def show_error(node, summary: str, details: str = "") -> None:
    """Colour the node red, put ``summary`` in its label and show the details in a message."""
    node["tile_color"].setValue(gizmo.ERROR_COLOUR)
    node["label"].setValue("error: " + _one_line(summary))
    nuke.message(f"StyleComp {node.name()}: {summary}" + (f"\n\n{details}" if details else ""))


def show_state(node, text: str) -> None:
    """Restore the node's own colour and put ``text`` (progress or a result) in its label."""
    node["tile_color"].setValue(gizmo.TILE_COLOUR)
    node["label"].setValue(_one_line(text))
