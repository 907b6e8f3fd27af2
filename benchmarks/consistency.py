"""Consistency benchmark: every mechanism on the demo shot, measured by warp error against the plate.

Renders the demo shot (stylecomp's own procedural render, exact motion vectors) once per mode, in
one process, and measures each result with ``stylecomp.temporal.flicker``: R = E_warp(stylized) /
E_warp(plate) (1 = no flicker beyond the render's own), D = mean |stylized - plate| in the
model's space (0 = nothing stylized), and seconds per frame. Mode ``none`` is per-frame seeds with
no mechanism; ``locked_seed`` is the common baseline the goals are measured against.

``--model builtin`` (the default) stylizes with stylecomp's own trained model as a watercolor, with
its tile and line-art ControlNets, at its recommended settings: R and D are what a studio would see. The
``tiny-*`` models have random UNets and ControlNets and only show the plumbing: ``tiny-passthrough``
and ``tiny-pixel`` paint noise over a recognisable plate (VAE at 1/8 or at f=1, set by
construction), ``tiny-random`` decodes noise whatever its input.

With the built-in model, the looks' own ground truth (computed exactly for each frame from its
scene layers) is measured too, as ``ground_truth``: the R a model that learned a look perfectly
would score on this shot. ``--plates`` measures a rendered shot instead, such as the Blender one
in the shared test data (results in ``consistency_blender_street.json`` by convention).

    .venv/bin/python benchmarks/consistency.py [--frames 10] [--size 256x144] [--model builtin] \\
        [--plates PATTERN] [--out benchmarks/results/consistency.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from stylecomp.color import ModelEncoding
from stylecomp.demo.scene import DEMO_SCENE, render_layers, write_demo
from stylecomp.diffusion.consistency import IMPLEMENTED
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.diffusion.testing import make_test_model
from stylecomp.io.plates import ImagePart, read_plate, write_plate
from stylecomp.io.sequence import discover
from stylecomp.jobspec import parse_job
from stylecomp.render.cache import RenderCache
from stylecomp.render.loop import render_job
from stylecomp.stylemodel import SHIPPED_MODEL
from stylecomp.stylemodel.evaluation import RECOMMENDED, model_settings
from stylecomp.stylemodel.looks import LOOKS
from stylecomp.temporal.flicker import measure_flicker

MODES = [
    "none",
    "locked_seed",
    "warped_noise",
    "cross_frame",
    "flow_attention",
    "latent_fusion",
    "pixel_fusion",
    "keyframes",
    "cross_frame+flow_attention",
    "warped_noise+pixel_fusion",
    "latent_fusion+pixel_fusion",
    "warped_noise+latent_fusion+pixel_fusion",
    "latent_fusion+pixel_fusion+flow_attention",
    "latent_fusion+keyframes",
]
MODEL_NAMES = {
    "builtin": f"stylecomp's trained {SHIPPED_MODEL.name}, 'watercolor painting', tile + line-art ControlNets",
    "tiny-passthrough": "tiny sd15: random UNet and ControlNet, passthrough VAE",
    "tiny-pixel": "tiny sd15 at f=1: random UNet and ControlNet, pixel-space passthrough VAE",
    "tiny-random": "tiny random-weight sd15",
}


def job_document(plates: str, model: Path, out: Path, mode: str, builtin: bool) -> dict[str, object]:
    mechanisms = [] if mode == "none" else mode.split("+")
    settings = (
        {
            "prompt": "watercolor painting",
            "steps": RECOMMENDED.steps,
            "strength": RECOMMENDED.strength,
            "guidance": RECOMMENDED.guidance,
        }
        if builtin
        else {"prompt": "ink and watercolour", "steps": 20, "strength": 0.5}
    )
    return {
        "shots": [{"name": "shot", "plate": plates, "output": str(out / "shot.####.exr")}],
        "model": model_settings(model).model_dump()
        if builtin
        else {
            "family": "sd15",
            "path": str(model),
            "controlnets": [{"path": str(model / "controlnet"), "source": "depth"}],
        },
        **settings,
        "seed": {"policy": "per_frame" if mode == "none" else "fixed", "value": 1234},
        "consistency": {
            "mechanisms": mechanisms,
            "keyframe_interval": 4,
            "fusion_strength": 0.5,
            **({"latent_fusion_steps": RECOMMENDED.latent_fusion_steps} if builtin else {}),
        },
    }


def ground_truth(out: Path, look: str, frames: list[int], width: int, height: int) -> Path:
    """Write the look's ground truth for each demo frame as the ``stylized`` layer (the look's change carried onto
    the scene-linear plate, as stylization returns it); returns the frame pattern."""
    encoding = ModelEncoding()
    out.mkdir(parents=True)
    for frame in frames:
        planes, layers = render_layers(frame, width, height, frames[0], DEMO_SCENE)
        encoded = encoding.encode(np.stack([planes[c] for c in "RGB"], axis=-1))
        linear = encoding.decode(encoded, LOOKS[look](planes, layers, DEMO_SCENE.lighting, encoding))
        rgba = np.concatenate([linear, planes["A"][..., None]], axis=-1).astype(np.float32)
        write_plate(
            out / f"demo.{frame:04d}.exr",
            [ImagePart.create(rgba, ["stylized.R", "stylized.G", "stylized.B", "stylized.A"])],
        )
    return out / "demo.####.exr"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", default="256x144")
    parser.add_argument(
        "--model",
        choices=list(MODEL_NAMES),
        default="builtin",
        help="the model to stylize with (see the module docstring)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes to run (default: all)")
    parser.add_argument(
        "--plates",
        default=None,
        help="a rendered shot to measure instead of the demo (a frame pattern, e.g. "
        "../shared/testdata/plates/blender_street/street.####.exr); --frames and --size unused",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "consistency.json"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    results: dict[str, dict[str, float | None]] = {}
    truth: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        builtin = args.model == "builtin"
        if args.plates:
            sequence = discover(str(Path(args.plates).resolve()))
            window = read_plate(sequence.path(sequence.frames[0]), pixels=False).display_window
            args.frames, width, height = len(sequence.frames), window.width, window.height
        else:
            sequence = write_demo(root / "plates", args.frames, width, height, progress=lambda done, total: None)
        plates = sequence.pattern
        for look in LOOKS if builtin and not args.plates else ():
            pattern = ground_truth(root / f"truth-{look}", look, sequence.frames, width, height)
            report = measure_flicker(pattern, plates)
            truth[look] = {"R": round(report.R, 4), "D": round(report.D, 4)}
            print(f"{'ground truth: ' + look:<40} R {report.R:9.3f}   D {report.D:6.4f}", flush=True)
        model = (
            SHIPPED_MODEL
            if builtin
            else make_test_model(root / "model", "sd15", controlnet=True, vae=args.model.removeprefix("tiny-"))
        )
        pool = PipelinePool("cpu")
        for mode in args.modes.split(","):
            if not set(mode.split("+")) <= IMPLEMENTED | {"none"}:
                results[mode] = {"R": None, "D": None, "s_per_frame": None}
                print(f"{mode:<40} not implemented")
                continue
            out = root / mode
            job = parse_job(json.dumps(job_document(plates, model, out, mode, builtin)))
            started = time.perf_counter()
            summary = render_job(job, pool=pool, cache=RenderCache(root / "cache"))
            seconds = (time.perf_counter() - started) / max(1, summary.rendered)
            report = measure_flicker(out / "shot.####.exr", plates)
            results[mode] = {"R": round(report.R, 4), "D": round(report.D, 4), "s_per_frame": round(seconds, 3)}
            print(f"{mode:<40} R {report.R:9.3f}   D {report.D:6.4f}   {seconds:6.2f} s/frame", flush=True)
    output = Path(args.out)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "plates": args.plates or "the demo shot",
                "frames": args.frames,
                "size": [width, height],
                "model": MODEL_NAMES[args.model],
                "modes": results,
                **({"ground_truth": truth} if truth else {}),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
