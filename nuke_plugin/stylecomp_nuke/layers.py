"""AOV layers picked on the gizmo, as the channel names of the EXR that Nuke's Write produces.

Nuke calls channels ``layer.red``/``.green``/``.blue``/``.alpha`` and its EXR writer stores
them as ``layer.R``/``.G``/``.B``/``.A`` (``rgba`` itself as bare ``R G B A``); other channel
names (``depth.Z``, ``forward.u``) are stored as they are. Nuke's built-in ``motion`` layer is
made of the ``forward`` and ``backward`` channels; the engine wants backward vectors.
"""

from __future__ import annotations

from .errors import StyleCompNukeError

NONE = "none"  # the picker's "nothing chosen": the engine detects the role itself
_EXR_SUFFIX = {"red": "R", "green": "G", "blue": "B", "alpha": "A"}
_COMBINED = {"motion": ("backward.u", "backward.v")}


def exr_channel(channel: str) -> str:
    """The EXR name Nuke's Write gives a Nuke channel (``N.red`` -> ``N.R``, ``rgba.red`` -> ``R``)."""
    layer, _, component = channel.rpartition(".")
    component = _EXR_SUFFIX.get(component, component)
    return component if layer in ("", "rgba") else f"{layer}.{component}"


def layer_channels(layer: str, available: list[str]) -> list[str]:
    """The Nuke channels of ``layer`` among ``available``, in Nuke's order."""
    if layer in _COMBINED:
        return [channel for channel in _COMBINED[layer] if channel in available]
    return [channel for channel in available if channel.rpartition(".")[0] == layer]


def aov_mapping(picks: dict, available: list[str]) -> dict:
    """Role -> EXR channel names for each picked layer (``none`` leaves the role to detection)."""
    mapping = {}
    for role, layer in picks.items():
        if not layer or layer == NONE:
            continue
        channels = layer_channels(layer, available)
        if not channels:
            raise StyleCompNukeError(
                f"The Plate input has no '{layer}' layer for {role}; pick another layer "
                f"or none to let the engine find it."
            )
        mapping[role] = [exr_channel(channel) for channel in channels]
    return mapping
