"""Render AOVs: find beauty, depth, normals, motion vectors and object IDs by channel name.

Renderers name their passes differently (depth ``Z`` or ``depth.Z``; normals ``N.x`` or
``normal.R``; motion ``motionvector``, ``velocity``, ``forward.u/v`` or Cycles' four-channel
``Vector``; IDs ``id`` or ``IndexOB``). Detection matches layer names case-insensitively,
including stereo (``forward.left``) and view-layer prefixes (``ViewLayer.Depth``). An explicit
mapping from the job always wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PlateError
from .cryptomatte import dominant_ids, find_layers, object_layer
from .plates import Plate, Window

ROLES = ("beauty", "depth", "normals", "motion", "object_id")


@dataclass(frozen=True)
class AovRule:
    """How one role is spelled: layer names, component orders, and names of bare channels."""

    layers: tuple[str, ...]  # lower-case layer names, in order of preference
    components: tuple[tuple[str, ...], ...]  # lower-case component names, first match wins
    bare: tuple[str, ...] = ()  # undotted channel names that mean this role on their own
    single: bool = False  # a layer of exactly one channel counts, whatever its component


RULES: dict[str, AovRule] = {
    "beauty": AovRule(
        layers=("", "rgba", "rgb", "beauty", "combined", "ci", "color", "image"),
        components=(("r", "g", "b", "a"), ("r", "g", "b"), ("y",)),
    ),
    "depth": AovRule(
        layers=("depth", "z", "zdepth", "z_depth", "depth_z", "camera_depth"),
        components=(("z",), ("v",), ("r",), ("y",)),
        bare=("z", "depth", "zdepth"),
        single=True,
    ),
    "normals": AovRule(
        layers=(
            "n",
            "normal",
            "normals",
            "n_cam",
            "normal_camera",
            "camera_normals",
            "nn",
            "n_world",
            "normal_world",
            "world_normals",
        ),
        components=(("x", "y", "z"), ("r", "g", "b")),
    ),
    "motion": AovRule(
        layers=(
            "backward",
            "motion_backward",
            "motionvector",
            "motionvectors",
            "motion_vector",
            "motion_vectors",
            "motion",
            "mv",
            "velocity",
            "vel",
            "vector",
            "smotion",
            "forward",
            "motion_forward",
        ),
        components=(("u", "v"), ("x", "y", "z", "w"), ("x", "y"), ("r", "g")),
    ),
    "object_id": AovRule(
        layers=("id", "objectid", "object_id", "obj_id", "objid", "indexob", "instanceid", "instance_id"),
        components=(("id",), ("x",), ("r",), ("v",)),
        bare=("id", "objectid", "object_id", "indexob"),
        single=True,
    ),
}

# Channels each role needs once found: (minimum, maximum).
_COUNTS = {"beauty": (1, 4), "depth": (1, 1), "normals": (3, 3), "motion": (2, 4), "object_id": (1, 1)}


@dataclass(frozen=True)
class AovMatch:
    """Where a role lives in a plate: its channels in component order, and how it was found."""

    role: str
    layer: str
    channels: tuple[str, ...]
    source: str  # "detected" or "mapping"

    def as_dict(self) -> dict[str, object]:
        return {"layer": self.layer, "channels": list(self.channels), "source": self.source}


# Nuke writes the channels of custom layers as layer.red/.green/.blue/.alpha.
_NUKE_COMPONENTS = {"red": "r", "green": "g", "blue": "b", "alpha": "a"}


def _layers(channel_names: Iterable[str]) -> dict[str, dict[str, str]]:
    """{layer: {lower-case component: channel}}; undotted channels are in layer ''; Nuke's red is r."""
    layers: dict[str, dict[str, str]] = {}
    for channel in channel_names:
        layer, _, component = channel.rpartition(".")
        component = component.lower()
        if layer:
            component = _NUKE_COMPONENTS.get(component, component)
        layers.setdefault(layer, {}).setdefault(component, channel)
    return layers


def _layer_rank(layer: str, aliases: tuple[str, ...]) -> int | None:
    """Preference of a layer for a role: exact alias, then stereo/view-layer spellings."""
    key = layer.lower()
    if key in aliases:
        return aliases.index(key)
    parts = key.split(".")
    for offset, candidate in ((100, parts[0]), (200, parts[-1])):  # forward.left / ViewLayer.Depth
        if len(parts) > 1 and candidate in aliases:
            return offset + aliases.index(candidate)
    return None


def _detect_role(role: str, layers: dict[str, dict[str, str]]) -> AovMatch | None:
    rule = RULES[role]
    ranked = sorted((rank, layer) for layer in layers if (rank := _layer_rank(layer, rule.layers)) is not None)
    for _, layer in ranked:
        components = layers[layer]
        for order in rule.components:
            if all(c in components for c in order):
                return AovMatch(role, layer, tuple(components[c] for c in order), "detected")
        if rule.single and layer and len(components) == 1:
            return AovMatch(role, layer, tuple(components.values()), "detected")
    for name in rule.bare:
        if name in layers.get("", {}):
            return AovMatch(role, "", (layers[""][name],), "detected")
    return None


def detect_aovs(
    channel_names: Sequence[str], mapping: Mapping[str, Sequence[str]] | None = None
) -> dict[str, AovMatch]:
    """Find each role's channels; ``mapping`` (role -> channel names) overrides detection.

    Raises PlateError when a mapping names an unknown role, a missing channel, or the wrong
    number of channels for its role.
    """
    found: dict[str, AovMatch] = {}
    layers = _layers(channel_names)
    for role in ROLES:
        match = _detect_role(role, layers)
        if match is not None:
            found[role] = match
    for role, channels in (mapping or {}).items():
        if role not in ROLES:
            raise PlateError(f"unknown AOV role {role!r} in mapping; roles are: {', '.join(ROLES)}")
        missing = [c for c in channels if c not in channel_names]
        if missing:
            raise PlateError(f"AOV mapping for {role!r} names missing channels {missing}")
        low, high = _COUNTS[role]
        if not low <= len(channels) <= high:
            raise PlateError(f"AOV mapping for {role!r} needs {low}-{high} channels, got {len(channels)}")
        layer = channels[0].rpartition(".")[0]
        found[role] = AovMatch(role, layer, tuple(channels), "mapping")
    return found


def beauty(plate: Plate, mapping: Mapping[str, Sequence[str]] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The plate's beauty as premultiplied RGB ``(H, W, 3)`` and alpha ``(H, W)`` (or None).

    A luminance-only beauty (``Y``) is repeated into three channels.
    """
    match = detect_aovs(plate.channel_names, mapping).get("beauty")
    if match is None:
        raise PlateError("no beauty channels (R, G, B or Y) found; map them in the shot's 'aovs'", plate.path)
    if len(match.channels) < 3:
        luminance = plate.channel(match.channels[0])
        return np.repeat(luminance[..., None], 3, axis=2), None
    rgb = plate.channels(match.channels[:3])
    alpha = plate.channel(match.channels[3]) if len(match.channels) == 4 else None
    return rgb, alpha


def object_ids(plate: Plate, mapping: Mapping[str, Sequence[str]] | None = None) -> tuple[np.ndarray, Window] | None:
    """The plate's object-ID plane (H, W) over its data window, for consumers that compare IDs; None without one.

    Cryptomatte's dominant object (``cryptomatte.dominant_ids``) is preferred to an integer ID
    pass: it tells every named object apart and means the same object in every frame, where an
    index pass often lumps objects together (Blender's pass index defaults to 0 for all). An
    ``object_id`` entry in ``mapping`` picks the integer pass instead.
    """
    if "object_id" not in (mapping or {}) and (layer := object_layer(find_layers(plate))) is not None:
        return dominant_ids(plate, layer)
    match = detect_aovs(plate.channel_names, mapping).get("object_id")
    if match is None:
        return None
    return plate.channel(match.channels[0]), plate.locate(match.channels[0])[0].data_window
