"""Measuring a style model on held-out scenes, through the path a user's job takes.

A held-out scene is rendered to EXR plates, a job stylizes them with ``stylecomp render``'s own
code (``render_job``), and the written EXRs are compared in display-referred space (the job's
colour encoding) with the look computed from the scene's layers:

- ``l1_ratio``: mean |output - look| over mean |plate - look|. 1.0 is no better than the plate,
  0.0 is the look exactly.
- ``ssim``: structural similarity (Gaussian window, sigma 1.5, on luma) of output and plate with
  the look.
- ``outline_f1``: ink pixels found in the output (those within ``INK_DISTANCE`` of the ink
  colour) against the look's line mask, each allowed one pixel of slack.
- ``outline_contrast``: how much more the output darkens the plate on the line mask than off it
  (luma, display-referred): the outlines a model draws before they are dark enough to be ink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..color import ModelEncoding
from ..demo.scene import render_layers, write_demo
from ..diffusion.pool import PipelinePool
from ..io.plates import read_plate
from ..io.sequence import FrameSequence, discover
from ..jobspec import Consistency, ControlNet, FrameRange, Job, ModelSettings, Region, Resolution, SeedPolicy, Shot
from ..render.loop import render_job
from ..stage import STYLIZED_CHANNELS
from . import SHIPPED_MODEL
from .looks import INK, LOOKS, LUMA, gaussian, lines
from .scenes import HELD_OUT_SEEDS, random_scene

SIZE = (256, 144)  # held-out frames at the model's working size: stylized natively, no resampling
INK_DISTANCE = 0.12  # largest per-channel distance from the ink colour that counts as a drawn line


@dataclass(frozen=True)
class Settings:
    """How the model is run: the built-in model's recommended settings unless a caller changes them."""

    strength: float = 0.5
    steps: int = 8  # 4 of them run: within 2% of 20 steps on both looks, at 45% of the time (style_fidelity sweep)
    guidance: float = 1.0  # guidance 2: both looks 27-29% further, 1.8x the time; 4: further still
    seed: int = 1234
    line_art: bool = True  # the line-art ControlNet; the tile ControlNet always runs
    mechanisms: tuple[str, ...] = ()
    # Fusion on every step, the last included (the engine's default, 0.5, leaves the last half to each frame): most
    # of what differs between this model's frames is made in its last step (README, consistency).
    latent_fusion_steps: float = 1.0


RECOMMENDED = Settings()
EVALUATION_PROMPTS = {"cel": "cel shaded", "watercolor": "watercolor painting"}  # one trained prompt per look


@dataclass
class HeldOutShot:
    """A held-out scene's plates on disk and, per frame, its looks and line mask (display-referred)."""

    seed: int
    plates: FrameSequence
    looks: dict[str, dict[int, np.ndarray]]  # look -> frame -> (H, W, 3)
    lines: dict[int, np.ndarray]  # frame -> (H, W) in {0, 1}
    plate_images: dict[int, np.ndarray]  # frame -> (H, W, 3): the plate as the model sees it


def held_out_shot(index: int, folder: Path, frames: int = 1, first_frame: int = 1) -> HeldOutShot:
    """Render held-out scene ``index`` (``frames`` frames) into ``folder`` with its ground truth."""
    seed = HELD_OUT_SEEDS[index]
    scene = random_scene(seed)
    plates = write_demo(folder, frames, *SIZE, first_frame=first_frame, scene=scene)
    encoding = ModelEncoding()
    looks: dict[str, dict[int, np.ndarray]] = {name: {} for name in LOOKS}
    line_masks, plate_images = {}, {}
    for frame in plates.frames:
        planes, layers = render_layers(frame, *SIZE, first_frame, scene)
        for name, look in LOOKS.items():
            looks[name][frame] = look(planes, layers, scene.lighting, encoding)
        line_masks[frame] = lines(planes)
        plate_images[frame] = encoding.encode(np.stack([planes[c] for c in "RGB"], axis=-1)).image
    return HeldOutShot(seed, plates, looks, line_masks, plate_images)


def stylize(
    shot: HeldOutShot,
    prompt: str,
    out: Path,
    settings: Settings = RECOMMENDED,
    model: Path = SHIPPED_MODEL,
    pool: PipelinePool | None = None,
    regions: Sequence[Region] = (),
    region_prompts: str = "attention",
) -> FrameSequence:
    """Stylize the shot with ``render_job``, as ``stylecomp render`` would; returns the written sequence.
    With ``regions`` (and how their prompts reach the model), ``prompt`` and ``settings.strength`` are the
    shot's own, outside them."""
    job = Job(
        shots=[
            Shot(
                name="held_out",
                plate=shot.plates.pattern,
                output=str(out / "stylized.####.exr"),
                frames=FrameRange(first=shot.plates.frames[0], last=shot.plates.frames[-1]),
            )
        ],
        model=model_settings(model, settings.line_art),
        prompt=prompt,
        seed=SeedPolicy(value=settings.seed),
        strength=settings.strength,
        steps=settings.steps,
        guidance=settings.guidance,
        resolution=Resolution(mode="native"),
        consistency=Consistency(mechanisms=list(settings.mechanisms), latent_fusion_steps=settings.latent_fusion_steps),
        regions=list(regions),
        region_prompts=region_prompts,
    )
    summary = render_job(job, pool=pool, cache=None, overwrite=True)
    if summary.failed:
        raise RuntimeError(f"stylizing held-out scene {shot.seed} failed: {summary.failed}")
    return discover(job.resolve(job.shots[0].output))


def held_out_metrics(
    shots: list[HeldOutShot],
    out: Path,
    settings: Settings = RECOMMENDED,
    model: Path = SHIPPED_MODEL,
    pool: PipelinePool | None = None,
) -> dict[str, dict[str, float]]:
    """Each look's prompt on each shot's first frame; per look, the mean of ``fidelity``'s metrics over the shots."""
    metrics = {}
    for look, prompt in EVALUATION_PROMPTS.items():
        rows = []
        for shot in shots:
            output = stylize(shot, prompt, out / f"{look}-{shot.seed}", settings, model=model, pool=pool)
            frame = output.frames[0]
            rows.append(
                fidelity(
                    display_output(output, frame), shot.plate_images[frame], shot.looks[look][frame], shot.lines[frame]
                )
            )
        metrics[look] = {name: round(float(np.mean([row[name] for row in rows])), 4) for name in rows[0]}
        metrics[look]["scenes"] = len(shots)
    return metrics


def model_settings(model: Path = SHIPPED_MODEL, line_art: bool = True) -> ModelSettings:
    """The job's model block for the built-in model (or one laid out like it): its tile ControlNet fed by
    the plate, and its line-art ControlNet fed by the render's IDs, normals and depth."""
    controlnets = [ControlNet(path=str(model / "controlnet_tile"), source="tile")]
    if line_art:
        controlnets.append(ControlNet(path=str(model / "controlnet"), source="lineart"))
    return ModelSettings(family="sd15", path=str(model), controlnets=controlnets)


def display_output(sequence: FrameSequence, frame: int) -> np.ndarray:
    """A stylized EXR's RGB as the model saw it: (H, W, 3) display-referred [0, 1]."""
    rgba = read_plate(sequence.path(frame)).channels(list(STYLIZED_CHANNELS))
    return ModelEncoding().encode(rgba[..., :3], rgba[..., 3]).image


def fidelity(output: np.ndarray, plate: np.ndarray, look: np.ndarray, line_mask: np.ndarray) -> dict[str, float]:
    """The module docstring's metrics for one frame, for the output and for the plate itself."""
    return {
        "l1": float(np.abs(output - look).mean()),
        "plate_l1": float(np.abs(plate - look).mean()),
        "l1_ratio": float(np.abs(output - look).mean() / max(np.abs(plate - look).mean(), 1e-9)),
        "ssim": ssim(output, look),
        "plate_ssim": ssim(plate, look),
        "outline_f1": outline_f1(output, line_mask),
        "plate_outline_f1": outline_f1(plate, line_mask),
        "outline_contrast": outline_contrast(output, plate, line_mask),
    }


def outline_contrast(output: np.ndarray, plate: np.ndarray, line_mask: np.ndarray) -> float:
    """Mean darkening of the plate (luma) on the line mask minus that off it; 0 where no line is drawn."""
    darkening = (plate - output) @ LUMA
    on_line = line_mask > 0.5
    if not on_line.any() or on_line.all():
        return 0.0
    return float(darkening[on_line].mean() - darkening[~on_line].mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) [0, 1] images' luma (Wang et al. 2004: Gaussian sigma 1.5, K1 0.01, K2 0.03)."""
    x, y = a @ LUMA, b @ LUMA
    c1, c2 = 0.01**2, 0.03**2

    def blur(image: np.ndarray) -> np.ndarray:
        return gaussian(image[..., None], 1.5)[..., 0]  # 11 taps, as Wang et al.

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


def outline_f1(image: np.ndarray, line_mask: np.ndarray, slack: int = 1) -> float:
    """F1 of the image's ink pixels against the line mask, each side allowed ``slack`` pixels of distance."""
    drawn = np.max(np.abs(image - INK), axis=-1) < INK_DISTANCE
    truth = line_mask > 0.5
    if not drawn.any() or not truth.any():
        return 0.0
    precision = (drawn & _grow(truth, slack)).sum() / drawn.sum()
    recall = (truth & _grow(drawn, slack)).sum() / truth.sum()
    return float(2 * precision * recall / max(precision + recall, 1e-9))


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate a boolean mask by a (2 pixels + 1) square."""
    padded = np.pad(mask, pixels)
    height, width = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * pixels + 1):
        for dx in range(2 * pixels + 1):
            out |= padded[dy : dy + height, dx : dx + width]
    return out
