"""OTIO JSON written by a newer OpenTimelineIO, read by the installed one.

OpenTimelineIO refuses a schema version newer than it knows. 0.19 writes markers as
``Marker.3``, whose colour is a ``Color.1`` object, where 0.18 has ``Marker.2`` with a colour
name; nothing else about a marker changed. Known changes like that one are taken back here
(the colour becomes the marker colour of the same name, else the nearest by RGB); any other
newer schema is an error that names it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import opentimelineio as otio

from stylecomp.errors import TimelineError

# OTIO 0.18's marker colour names and the RGB 0.19 gives each when it upgrades a file.
_MARKER_RGB = {
    "PINK": (1.0, 0.0, 1.0),
    "RED": (1.0, 0.0, 0.0),
    "ORANGE": (1.0, 0.5, 0.0),
    "YELLOW": (1.0, 1.0, 0.0),
    "GREEN": (0.0, 1.0, 0.0),
    "CYAN": (0.0, 1.0, 1.0),
    "BLUE": (0.0, 0.0, 1.0),
    "PURPLE": (0.5, 0.0, 0.5),
    "MAGENTA": (1.0, 0.0, 1.0),
    "BLACK": (0.0, 0.0, 0.0),
    "WHITE": (1.0, 1.0, 1.0),
}


def _marker_3_to_2(node: dict[str, Any]) -> dict[str, Any]:
    """A Marker.3 as Marker.2: its Color.1 object becomes a marker colour name."""
    color = node.get("color")
    if isinstance(color, dict):
        name = str(color.get("name") or "").upper()
        if name not in _MARKER_RGB:
            rgb = tuple(float(color.get(c, 0.0)) for c in "rgb")
            name = min(_MARKER_RGB, key=lambda n: sum((a - b) ** 2 for a, b in zip(_MARKER_RGB[n], rgb, strict=True)))
        color = name
    return {**node, "OTIO_SCHEMA": "Marker.2", "color": color or "RED"}


_DOWNGRADES: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {("Marker", 3): _marker_3_to_2}


def downgrade(node: Any) -> Any:
    """Parsed OTIO JSON with every newer schema taken back to the installed OTIO's version."""
    if isinstance(node, list):
        return [downgrade(item) for item in node]
    if not isinstance(node, dict):
        return node
    known = otio.core.type_version_map()
    label = node.get("OTIO_SCHEMA")
    while isinstance(label, str) and "." in label:
        name, _, version = label.rpartition(".")
        if name not in known or not version.isdigit() or int(version) <= known[name]:
            break
        step = _DOWNGRADES.get((name, int(version)))
        if step is None:
            raise TimelineError(
                f"written by a newer OpenTimelineIO ({label}; OpenTimelineIO {otio.__version__} reads up to "
                f"{name}.{known[name]})"
            )
        node = step(node)
        label = node["OTIO_SCHEMA"]
    return {key: downgrade(value) for key, value in node.items()}


def read_newer_otio_json(text: str) -> otio.core.SerializableObject:
    """Read OTIO JSON that the installed OpenTimelineIO refuses as too new."""
    return otio.adapters.read_from_string(json.dumps(downgrade(json.loads(text))), "otio_json")
