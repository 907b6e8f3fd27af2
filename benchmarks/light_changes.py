"""Light-change benchmark: does a fused sequence follow light that changes on its own, or lag behind it?

The motion vectors move surfaces; light that changes in place is not in them. This renders the demo
shot (24 frames, 256x144) with its sun animated: it swings 60 degrees across the shot, flashes to
three times its colour for one frame (frame 13 of 24) and drops to a dim, warm dusk from frame 19
on. Each configuration stylizes it with the built-in model as a watercolor in the best consistency
mode (``warped_noise+latent_fusion+pixel_fusion``, fusion strength 0.5), and each frame is measured
against that frame's own ground-truth look: the L1 ratio of ``stylecomp.stylemodel.evaluation``
(output error / plate error, display-referred; lower is closer). A sequence that lags shows it on the
flash and after the switch: the flash frame keeps the light before it, the frame after keeps the
flash, and the dusk frames approach their own ratio only over several frames.

Configurations: ``latent_fusion_steps`` 0.5 and 1 (the built-in model's recommended value), each
with the plate-change check off (``plate_change_tolerance`` 2) and at the default tolerance (the
outline check is always on); R and D of ``stylecomp flicker`` are reported too (R cannot see lag: a
lagging frame changes less from the one before).

    .venv/bin/python benchmarks/light_changes.py [--out benchmarks/results/light_changes.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from consistency import job_document  # benchmarks/ is on sys.path when run as a script

from stylecomp.color import ModelEncoding
from stylecomp.demo.scene import (
    CHANNEL_TYPES,
    CHANNELS,
    DEMO_PATTERN,
    DEMO_SCENE,
    Lighting,
    header_attributes,
    render_layers,
)
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.io.plates import ImagePart, write_plate
from stylecomp.io.sequence import FrameSequence, discover
from stylecomp.jobspec import Consistency, parse_job
from stylecomp.render.loop import render_job
from stylecomp.stylemodel import SHIPPED_MODEL
from stylecomp.stylemodel.evaluation import RECOMMENDED, display_output, fidelity
from stylecomp.stylemodel.looks import LOOKS, lines
from stylecomp.temporal.flicker import measure_flicker

FRAMES, WIDTH, HEIGHT, FIRST = 24, 256, 144, 1001
FLASH, DUSK = 12, 18  # frame offsets: the one-frame flash, the first dusk frame
MODE = "warped_noise+latent_fusion+pixel_fusion"
CHECK_OFF = 2.0  # a tolerance no display-referred change reaches
CONFIGURATIONS = {
    f"latent_fusion_steps {steps:g}, plate check {'off' if tolerance == CHECK_OFF else f'{tolerance:g}'}": (
        steps,
        tolerance,
    )
    for steps in (0.5, RECOMMENDED.latent_fusion_steps)
    for tolerance in (CHECK_OFF, Consistency().plate_change_tolerance)
}


def lighting(offset: int) -> Lighting:
    """The sun ``offset`` frames into the shot: swinging, one flash, then dusk."""
    azimuth, elevation = np.radians(-30.0 + 60.0 * offset / (FRAMES - 1)), np.radians(55.0)
    sun = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
    colour = DEMO_SCENE.lighting.sun_colour.copy()
    if offset == FLASH:
        colour = 3.0 * colour
    if offset >= DUSK:
        colour = colour * np.array([0.35, 0.25, 0.15])
    return Lighting(sun, colour, DEMO_SCENE.lighting.sky_ambient)


def write_shot(folder: Path) -> tuple[FrameSequence, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The plates, and per frame its display-referred plate, watercolor ground truth and line mask."""
    folder.mkdir(parents=True)
    encoding, truth = ModelEncoding(), {}
    for offset in range(FRAMES):
        frame, scene = FIRST + offset, replace(DEMO_SCENE, lighting=lighting(offset))
        planes, layers = render_layers(frame, WIDTH, HEIGHT, FIRST, scene)
        pixels = np.stack([planes[name] for name in CHANNELS], axis=-1)
        part = ImagePart.create(
            pixels, CHANNELS, pixel_type="half", channel_types=CHANNEL_TYPES, attributes=header_attributes()
        )
        write_plate(folder / (DEMO_PATTERN % frame), [part])
        plate = encoding.encode(np.stack([planes[c] for c in "RGB"], axis=-1)).image
        truth[frame] = (plate, LOOKS["watercolor"](planes, layers, scene.lighting, encoding), lines(planes))
    return discover(str(folder / DEMO_PATTERN)), truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "light_changes.json"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        plates, truth = write_shot(root / "plates")
        pool = PipelinePool("cpu")
        for name, (steps, tolerance) in CONFIGURATIONS.items():
            document = job_document(plates.pattern, SHIPPED_MODEL, root / name, MODE, True)
            document["consistency"].update(latent_fusion_steps=steps, plate_change_tolerance=tolerance)
            started = time.perf_counter()
            render_job(parse_job(json.dumps(document)), pool=pool, cache=None)
            seconds = (time.perf_counter() - started) / FRAMES
            output = discover(str(root / name / "shot.####.exr"))
            ratios = [fidelity(display_output(output, f), *truth[f])["l1_ratio"] for f in output.frames]
            report = measure_flicker(output.pattern, plates.pattern)
            results[name] = {
                "latent_fusion_steps": steps,
                "plate_change_tolerance": tolerance,
                "mean_l1_ratio": round(float(np.mean(ratios)), 4),
                "flash_l1_ratio": round(ratios[FLASH], 4),
                "after_flash_l1_ratio": round(ratios[FLASH + 1], 4),
                "dusk_l1_ratios": [round(r, 4) for r in ratios[DUSK:]],
                "l1_ratio_by_frame": [round(r, 4) for r in ratios],
                "R": round(report.R, 4),
                "D": round(report.D, 4),
                "s_per_frame": round(seconds, 3),
            }
            row = results[name]
            print(
                f"{name:<40} mean {row['mean_l1_ratio']:.3f}  flash {row['flash_l1_ratio']:.3f} -> "
                f"{row['after_flash_l1_ratio']:.3f}  dusk {ratios[DUSK]:.3f} .. {ratios[-1]:.3f}  "
                f"R {report.R:.3f}  D {report.D:.4f}",
                flush=True,
            )
    output_path = Path(args.out)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    shot = {"frames": FRAMES, "size": [WIDTH, HEIGHT], "flash_frame": FIRST + FLASH, "dusk_from": FIRST + DUSK}
    document = {"shot": shot, "mode": MODE, "model": SHIPPED_MODEL.name, "configurations": results}
    output_path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written {output_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
