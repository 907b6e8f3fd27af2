"""The engine's inputs, written by the gizmo's own Write nodes (all layers, 32-bit float EXR, raw).

The Writes stay disabled in the gizmo so a farm render of the script never runs them; they
are enabled only while nuke.execute writes the frames. A Write renders at the active scale, so
proxy mode is switched off while they write: the engine gets the plate at full resolution.
"""

from __future__ import annotations

import nuke

from . import gizmo
from .errors import StyleCompNukeError


def write_plate(node, first: int, last: int) -> None:
    """Write the Plate input's frames first..last into the cache folder."""
    _execute(node.node(gizmo.WRITE_PLATE), first, last, "the plate")


def write_style_reference(node, frame: int) -> None:
    """Write one frame of the StyleReference input as the IP-Adapter's image."""
    _execute(node.node(gizmo.WRITE_STYLE_REFERENCE), frame, frame, "the style reference")


def _execute(write, first: int, last: int, what: str) -> None:
    """Render an internal Write for first..last at full resolution, leaving it disabled (and proxy mode as it
    was) afterwards."""
    proxy = nuke.root()["proxy"]
    in_proxy = bool(proxy.value())
    if in_proxy:  # with proxy on, the Write would render proxy-scale images, or look for a proxy path it lacks
        proxy.setValue(False)
    write["disable"].setValue(False)
    try:
        nuke.execute(write, first, last, 1)
    except RuntimeError as exc:
        raise StyleCompNukeError(f"Writing {what} (frames {first}-{last}) stopped: {exc}") from None
    finally:
        write["disable"].setValue(True)
        if in_proxy:
            proxy.setValue(True)
