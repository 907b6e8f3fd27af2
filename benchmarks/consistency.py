"""Consistency benchmark: every mechanism on the demo shot, measured by warp error against the plate.

Renders the demo shot (stylecomp's own procedural render, exact motion vectors) with a tiny
SD 1.5 + depth ControlNet once per mode, in one process, and measures each result with
``stylecomp.metrics``: R = E_warp(stylized) / E_warp(plate) (1 = no flicker beyond the
render's own), D = mean |stylized - plate| in the model's space (0 = nothing stylized), and
seconds per frame. Mode ``none`` is per-frame seeds with no mechanism: the baseline every
mechanism is compared with. Mechanisms not implemented yet are listed with ``null`` values.

The model's UNet, text encoder and ControlNet have random weights. With ``--vae passthrough``
(the default) its VAE's weights are set by construction so that the latents are the image
box-filtered to 1/8 size and decode back to it, blurred (``stylecomp.testmodels``): the UNet
then paints a texture, mostly the noise it cannot remove, over a recognisable plate, and R
measures how each mechanism carries that texture along the vectors. With ``--vae random`` the
VAE decodes noise whatever its input, so R measures nothing but the seed. With ``--vae pixel`` the
model works on pixels (f=1, as stylecomp's own trained model does) through the same path. A
trained model's R will differ: it removes the noise and paints a style instead.

    .venv/bin/python benchmarks/consistency.py [--frames 10] [--size 256x144] [--vae passthrough] \\
        [--out benchmarks/results/consistency.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from stylecomp.cache import RenderCache
from stylecomp.consistency import IMPLEMENTED
from stylecomp.demo import write_demo
from stylecomp.jobspec import parse_job
from stylecomp.metrics import measure_flicker
from stylecomp.pipeline_pool import PipelinePool
from stylecomp.render import render_job
from stylecomp.testmodels import make_test_model

MODES = ["none", "locked_seed", "warped_noise", "cross_frame", "flow_attention", "latent_fusion", "pixel_fusion",
         "keyframes", "cross_frame+flow_attention", "warped_noise+pixel_fusion", "latent_fusion+pixel_fusion",
         "warped_noise+latent_fusion+pixel_fusion", "latent_fusion+pixel_fusion+flow_attention",
         "latent_fusion+keyframes"]
MODEL_NAMES = {"passthrough": "tiny sd15: random UNet and ControlNet, passthrough VAE",
               "pixel": "tiny sd15 at f=1: random UNet and ControlNet, pixel-space passthrough VAE",
               "random": "tiny random-weight sd15"}


def job_document(plates: Path, model: Path, out: Path, mode: str) -> dict[str, object]:
    mechanisms = [] if mode == "none" else mode.split("+")
    return {
        "shots": [{"name": "demo", "plate": str(plates / "demo.####.exr"), "output": str(out / "demo.####.exr")}],
        "model": {"family": "sd15", "path": str(model),
                  "controlnets": [{"path": str(model / "controlnet"), "source": "depth"}]},
        "prompt": "ink and watercolour", "steps": 20, "strength": 0.5,
        "seed": {"policy": "per_frame" if mode == "none" else "fixed", "value": 1234},
        "consistency": {"mechanisms": mechanisms, "keyframe_interval": 4, "fusion_strength": 0.5},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", default="256x144")
    parser.add_argument("--vae", choices=sorted(MODEL_NAMES), default="passthrough",
                        help="the tiny model's VAE (see the module docstring)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "consistency.json"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    results: dict[str, dict[str, float | None]] = {}
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        plates = root / "plates"
        write_demo(plates, args.frames, width, height, progress=lambda done, total: None)
        model = make_test_model(root / "model", "sd15", controlnet=True, vae=args.vae)
        pool = PipelinePool("cpu")
        for mode in MODES:
            if not set(mode.split("+")) <= IMPLEMENTED | {"none"}:
                results[mode] = {"R": None, "D": None, "s_per_frame": None}
                print(f"{mode:<40} not implemented")
                continue
            out = root / mode
            job = parse_job(json.dumps(job_document(plates, model, out, mode)))
            started = time.perf_counter()
            summary = render_job(job, pool=pool, cache=RenderCache(root / "cache"))
            seconds = (time.perf_counter() - started) / max(1, summary.rendered)
            report = measure_flicker(out / "demo.####.exr", plates / "demo.####.exr")
            results[mode] = {"R": round(report.R, 4), "D": round(report.D, 4), "s_per_frame": round(seconds, 3)}
            print(f"{mode:<40} R {report.R:9.3f}   D {report.D:6.4f}   {seconds:6.2f} s/frame", flush=True)
    output = Path(args.out)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"frames": args.frames, "size": [width, height], "model": MODEL_NAMES[args.vae],
                                  "modes": results}, indent=2) + "\n")
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
