"""Generators: the one interface behind text-to-image, image-to-image and image-to-video.

Ideation (``stylecomp ideate``) and animatic clips (``stylecomp animate``) ask a generator for
images or a clip through a ``Request`` and get ``Generated`` frames back. Generators are plugins,
found like OpenTimelineIO's adapters through an entry point: a package declares

    [project.entry-points."stylecomp.generators"]
    acme = "acme_pipeline.stylecomp_generator:load"

where ``load(setup: Setup) -> Generator`` builds one, and a job picks it by name
(``"ideation": {"generator": "acme", "generator_options": {...}}``). stylecomp registers its own
local generators, which run diffusers models from local folders, as ``diffusers``
(``stylecomp.generators.builtin``).

Images cross the interface display-referred: ``(H, W, 3)`` float32 in [0, 1], in the job's model
encoding (``stylecomp.color``). stylecomp does the colour management on both sides, so a
generator never sees scene-linear data.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal, Protocol

import numpy as np

from ..color import ModelEncoding
from ..errors import ModelError
from ..io.plates import ImagePart, write_plate
from ..jobspec import ExrSettings, ModelSettings, VideoModelSettings

ENTRY_POINT_GROUP = "stylecomp.generators"

Kind = Literal["text_to_image", "image_to_image", "image_to_video"]


@dataclass(frozen=True)
class Setup:
    """What a generator is built for: its kind, the job's model settings and the plugin's own options."""

    kind: Kind
    model: ModelSettings | VideoModelSettings | None
    options: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None  # None = the best available
    dtype: str | None = None  # "float32", "float16" or "bfloat16"; None = the device's usual


@dataclass(frozen=True)
class Request:
    """One generation: a still (text or image to image) or a clip (image to video)."""

    prompt: str
    seed: int
    width: int
    height: int
    steps: int
    guidance: float
    negative_prompt: str = ""
    image: np.ndarray | None = None  # image_to_image: the start image; image_to_video: the first frame
    strength: float = 1.0  # image_to_image: how far from ``image`` to go
    last_image: np.ndarray | None = None  # image_to_video: the frame to end on, where the model has it
    frames: int = 1  # image_to_video: clip length
    fps: float = 24.0  # image_to_video: frame rate the model is told
    control: Mapping[str, np.ndarray] = field(default_factory=dict)  # ControlNet images by source ("depth", ...)
    style_image: np.ndarray | None = None  # style reference for an IP-Adapter
    on_step: Callable[[int, int], None] | None = None  # told (step, steps) after each denoising step: progress
    job_record: str | None = None  # image_to_video: a file beside the output where a hosted generator records its
    # remote job, so that a re-run polls that job (or reuses its download) instead of paying for a second one


@dataclass(frozen=True)
class Generated:
    """A generator's output: ``(H, W, 3)`` [0, 1] frames (one for a still) and what made them."""

    frames: list[np.ndarray]
    provenance: dict[str, Any]


class Generator(Protocol):
    """Makes images or clips for one ``Setup``; loaded once, called for many requests."""

    def generate(self, request: Request, cancel: threading.Event) -> Generated:
        """Generate for ``request``; stop early (raising ``stylecomp.errors.Cancelled``) once ``cancel`` is set."""
        ...

    def frame_count(self, frames: int) -> int:
        """The clip length this generator makes when ``frames`` are asked for (models allow only some lengths)."""
        ...


def write_generated(
    path: str | os.PathLike[str],
    image: np.ndarray,
    encoding: ModelEncoding,
    exr: ExrSettings,
    provenance: Mapping[str, object],
) -> None:
    """A generated (H, W, 3) [0, 1] image as an opaque scene-linear RGBA EXR (through the job's colour encoding)."""
    rgb = encoding.to_scene_linear(image)
    rgba = np.concatenate([rgb, np.ones((*rgb.shape[:2], 1), np.float32)], axis=2)
    part = ImagePart.create(
        rgba, ["R", "G", "B", "A"], pixel_type=exr.pixel_type or "half", compression=exr.compression or "zip"
    )
    write_plate(path, [part], provenance=provenance)


def available() -> dict[str, EntryPoint]:
    """The installed generator plugins by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_generator(name: str, setup: Setup) -> Generator:
    """Build generator ``name`` for ``setup``; a clear error when it is not installed or fails to load."""
    plugins = available()
    if name not in plugins:
        known = ", ".join(sorted(plugins)) or "none"
        raise ModelError(f"no generator {name!r} is installed (installed: {known})")
    try:
        factory = plugins[name].load()
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"generator {name!r} ({plugins[name].value}) cannot be imported: {exc}") from None
    return factory(setup)
