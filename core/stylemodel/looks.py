"""Ground-truth looks, computed from the scene's own layers, never from a model.

Each look is a display-referred (H, W, 3) image in [0, 1], in the space the model works in
(the job's colour encoding of a scene-linear image), so it is compared with the plate and the
model's output there.

- **cel**: the albedo under two flat light levels (sun bands at cos 0.15 and 0.55: shadow, half,
  full) and a flat ambient; emission kept; ink outlines one pixel wide where object ID, normals
  or depth break — the same lines ``conditioning.line_art`` draws for the line-art ControlNet.
- **watercolor**: lifted, softened washes (shadows filled in, colours blurred 1.2 px and mixed
  towards paper, 20% less saturated), edges darkened where the line art runs, and a faint fixed
  paper grain.

Prompts select the look: ``PROMPTS`` lists the phrasings used in training; "cel" or
"watercolor" in a prompt is what matters.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..color import ModelEncoding
from ..demo.scene import Lighting, SurfaceLayers
from ..io.conditioning import line_art

Look = Callable[[dict[str, np.ndarray], SurfaceLayers, Lighting, ModelEncoding], np.ndarray]

SUN_BANDS = (0.15, 0.55)  # cosines where the cel sun steps from shadow to half and from half to full
INK = np.array([0.05, 0.04, 0.07])
PAPER = np.array([0.96, 0.94, 0.88])
LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 weights, on display-referred RGB


def lines(planes: dict[str, np.ndarray]) -> np.ndarray:
    """The frame's line art (H, W) in {0, 1}: exactly what the line-art ControlNet is given."""
    normals = np.stack([planes["N.X"], planes["N.Y"], planes["N.Z"]], axis=-1)
    return line_art(object_id=planes["id"], normals=normals, depth=planes["Z"])[..., 0]


def _display(scene_linear: np.ndarray, encoding: ModelEncoding) -> np.ndarray:
    return encoding.encode(scene_linear.astype(np.float32)).image


def cel(
    planes: dict[str, np.ndarray], layers: SurfaceLayers, lighting: Lighting, encoding: ModelEncoding
) -> np.ndarray:
    """Flat albedo under banded sun and flat ambient, with ink outlines."""
    band = np.select([layers.direct < SUN_BANDS[0], layers.direct < SUN_BANDS[1]], [0.0, 0.5], 1.0)
    light = band[..., None] * lighting.sun_colour + 0.75 * lighting.sky_ambient
    linear = np.where(layers.sky[..., None], layers.albedo, layers.albedo * light + layers.emission)
    ink = lines(planes)[..., None]
    return (_display(linear, encoding) * (1.0 - ink) + INK * ink).astype(np.float32)


def watercolor(
    planes: dict[str, np.ndarray], layers: SurfaceLayers, lighting: Lighting, encoding: ModelEncoding
) -> np.ndarray:
    """Soft, lifted washes on paper with darkened edges."""
    light = (0.35 + 0.65 * layers.direct[..., None]) * lighting.sun_colour * 0.7 + layers.ambient
    linear = np.where(layers.sky[..., None], layers.albedo, layers.albedo * light + layers.emission)
    wash = gaussian(_display(linear, encoding), 1.2)
    wash = 0.15 * PAPER + 0.85 * wash
    grey = (wash @ LUMA)[..., None]
    wash = grey + 0.8 * (wash - grey)
    edges = np.clip(gaussian(lines(planes)[..., None], 1.0) * 2.5, 0.0, 1.0)
    wash *= 1.0 - 0.35 * edges
    wash *= 1.0 - 0.04 * _paper_grain(wash.shape[:2])[..., None]
    return np.clip(wash, 0.0, 1.0).astype(np.float32)


LOOKS: dict[str, Look] = {"cel": cel, "watercolor": watercolor}
PROMPTS: dict[str, tuple[str, ...]] = {
    "cel": ("cel", "cel shaded", "cel shading, ink outlines", "toon cel look"),
    "watercolor": ("watercolor", "watercolor painting", "soft watercolor wash", "watercolor on paper"),
}


def _paper_grain(shape: tuple[int, int]) -> np.ndarray:
    """A fixed paper texture (H, W) in [0, 1], the same for every frame: paper does not move."""
    noise = np.random.default_rng(7).random(shape)
    grain = gaussian(noise[..., None], 0.7)[..., 0]
    return (grain - grain.min()) / max(float(grain.max() - grain.min()), 1e-6)


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (H, W, C) with mirrored edges."""
    radius = int(np.ceil(3.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    out = sum(w * out[i : i + image.shape[0]] for i, w in enumerate(taps))
    out = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    return sum(w * out[:, i : i + image.shape[1]] for i, w in enumerate(taps))
