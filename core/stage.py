"""The stage interface: an image operation shaped like an OpenFX image effect.

Any host (the CLI's render loop, a headless comp, the engine server, a farm task) drives a
stage the same way: ask what it needs (``describe``, ``frames_needed``, the regions), open
the sequence once (``begin_sequence``: load models, encode prompts), render frames, close it.
Frames are numbered as on disk; windows are in the plate's pixel coordinates.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .io.windows import Window

if TYPE_CHECKING:
    from .regions.mattes import FrameRegions

# The layer a stylize stage's frames are written as (Nuke shows it as layer `stylized`).
STYLIZED_CHANNELS = ("stylized.R", "stylized.G", "stylized.B", "stylized.A")


@dataclass(frozen=True)
class Clip:
    """An input of a stage: ``Source``, ``Depth``, ``Normal``, ``ObjectID``, ``Motion``, ``StyleReference``..."""

    name: str
    components: int  # channels per pixel the stage expects
    optional: bool = False
    description: str = ""


@dataclass(frozen=True)
class StageDescription:
    """What a host needs before rendering: inputs, parameters and how frames depend on each other."""

    name: str
    clips: tuple[Clip, ...]
    parameters: Mapping[str, Any]
    sequential: bool = False  # frames must render in order (each needs the previous output)
    # Frames need state only rendering makes: unless every frame of the range is done, hosts render them all.
    state_from_rendering: bool = False
    notes: tuple[str, ...] = field(default=())


@dataclass
class FrameInputs:
    """One frame's clip images, each cut to the same window: ``(H, W, components)`` float32."""

    frame: int
    window: Window
    images: dict[str, np.ndarray]
    regions: FrameRegions | None = None  # the shot's regions: their weights over the same window

    def get(self, clip: str) -> np.ndarray | None:
        return self.images.get(clip)


@dataclass
class FrameResult:
    """A rendered frame: premultiplied RGBA ``(H, W, 4)`` in ``window``, and what made it."""

    rgba: np.ndarray
    window: Window
    provenance: dict[str, Any]
    regions: FrameRegions | None = None  # written beside the RGBA as regions.<name>


class Stage(Protocol):
    """The OpenFX-style contract every stylecomp stage implements."""

    def describe(self) -> StageDescription: ...

    def region_of_definition(self, frame: int, source_window: Window) -> Window: ...

    def regions_of_interest(self, frame: int, window: Window) -> dict[str, Window]: ...

    def frames_needed(self, frame: int) -> list[int]: ...

    def is_identity(self, frame: int) -> bool: ...

    def begin_sequence(self, first: int, last: int) -> None: ...

    def render(self, frame: int, window: Window, inputs: FrameInputs, cancel: threading.Event) -> FrameResult: ...

    def end_sequence(self) -> None: ...
