"""GPU throughput: ``stylecomp render`` against plain diffusers img2img and the compute floor, in one run.

On one CUDA device, per family (SD 1.5 at 512x512 with a depth ControlNet, SDXL at 1024x1024),
with full-size random-weight models (``diffusion.testing.make_full_size_model``; timings do not depend
on weight values), at strength 0.5, 20 steps, guidance 7, in the device's dtype (bf16 on an H100):

* **baseline**: plain diffusers img2img (the same pipeline class, loaded with ``from_pretrained``),
  one frame per call, prompt given as text: median ms per call after two warm-up calls.
* **stylecomp**: ``render_job`` of a 24-frame demo shot end to end (EXR read, colour,
  conditioning, diffusion, decode, EXR write), after one batch of warm-up (model load and
  compile, timed as ``first_start_s``), with the job's default ``performance`` plus ``compile``:
  wall time / frames. Also with the defaults alone (no compile), and a second start in a new
  process (``stylecomp render`` of one batch, compiled code from the persistent cache).
* **floor**: FLOPs of one baseline frame (``torch.utils.flop_counter``; one UNet step is
  reported too) over the bf16 matmul rate measured in the same run (8192^3 ``torch.mm``).
* **fidelity**: the first 4 stylecomp frames against an eager render of them (one frame per call,
  no compile, no channels-last, diffusers' VAE upcast): relative L2 in the model's space, < 1e-2.
* **consistency**: each consistency mode against mode ``none`` (per-frame seeds, no mechanism),
  ms per frame with the default ``performance`` (no compile: ``cross_frame`` swaps attention
  processors per call, which a compiled UNet would recompile for).

Writes a table and ``benchmarks/results/gpu_<device>_<date>.json``. Without CUDA it says so and
exits 0 (nothing measured). ``--smoke`` runs the same code on the CPU with tiny models at 64x64,
4 frames of 4 steps, no compile, to check the script itself (tests/render/test_performance.py runs it)::

    .venv/bin/python benchmarks/gpu_throughput.py [--families sd15,sdxl] [--frames 24] [--no-compile] [--out F]
    .venv/bin/python benchmarks/gpu_throughput.py --smoke [--out F]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from stylecomp.demo.scene import write_demo
from stylecomp.diffusion.consistency import IMPLEMENTED
from stylecomp.diffusion.loading import offline, pick_dtype
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.diffusion.testing import make_full_size_model, make_test_model
from stylecomp.io.aovs import beauty
from stylecomp.io.conditioning import depth_condition
from stylecomp.io.plates import read_plate
from stylecomp.jobspec import ColorSettings, Performance, parse_job
from stylecomp.render.loop import STYLIZED_CHANNELS, render_job

offline()
from diffusers import (  # noqa: E402  (after the offline switch)
    ControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
)

FIRST = 1001
STRENGTH, GUIDANCE = 0.5, 7.0
PROMPT = "ink and watercolour illustration"
FIDELITY_FRAMES, FIDELITY_LIMIT = 4, 1e-2
EAGER = {"batch_frames": 1, "prefetch": 0, "compile": False, "channels_last": False, "vae_bfloat16": False}
MODES = ["none", *sorted(IMPLEMENTED)]
CONTROLNET = {"sd15": True, "sdxl": False}
BASELINE = {"sd15": StableDiffusionControlNetImg2ImgPipeline, "sdxl": StableDiffusionXLImg2ImgPipeline}


@dataclass(frozen=True)
class Setup:
    """What a real run and a smoke run differ in."""

    device: str
    dtype: torch.dtype
    steps: int
    sizes: dict[str, int]  # square plate side per family
    frames: int
    repeats: int  # timed baseline calls
    matmul_size: int
    compile: bool
    full_size: bool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--families", default="sd15,sdxl", help="comma-separated: sd15, sdxl (default both)")
    parser.add_argument("--frames", type=int, default=24, help="frames in the rendered shot (default 24)")
    parser.add_argument("--no-compile", action="store_true", help="stylecomp without torch.compile")
    parser.add_argument("--smoke", action="store_true", help="the same code on the CPU, tiny models, 64x64")
    parser.add_argument(
        "--out",
        default=None,
        help="JSON path (default benchmarks/results/gpu_<device>_<date>.json; with --smoke a temp file)",
    )
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if not set(families) <= set(CONTROLNET) or args.frames < FIDELITY_FRAMES:
        parser.error(f"--families takes sd15 and/or sdxl, --frames at least {FIDELITY_FRAMES}")
    if args.smoke:
        setup = Setup("cpu", torch.float32, 4, {"sd15": 64, "sdxl": 64}, FIDELITY_FRAMES, 1, 256, False, False)
    elif not torch.cuda.is_available():
        print(
            "gpu_throughput: no CUDA device here, nothing measured. It needs one; --smoke runs the same code on "
            "the CPU with tiny models."
        )
        return 0
    else:
        setup = Setup(
            "cuda",
            pick_dtype("cuda"),
            20,
            {"sd15": 512, "sdxl": 1024},
            args.frames,
            10,
            8192,
            not args.no_compile,
            True,
        )

    device_name = torch.cuda.get_device_name(0) if setup.device == "cuda" else "cpu (smoke)"
    report: dict[str, Any] = {
        "device": device_name,
        "date": datetime.date.today().isoformat(),
        "dtype": str(setup.dtype).split(".")[-1],
        "torch": torch.__version__,
        "settings": {
            "steps": setup.steps,
            "strength": STRENGTH,
            "guidance": GUIDANCE,
            "frames": setup.frames,
            "compile": setup.compile,
        },
    }
    with tempfile.TemporaryDirectory(prefix="stylecomp-gpu-bench-") as temp:
        root = Path(temp)
        # A cache of the run's own, so the first compile is cold and the second start finds what it left.
        os.environ["STYLECOMP_CACHE_DIR"] = str(root / "cache")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "cache" / "torch-compile")
        report["matmul_tflops"] = matmul_tflops(setup)
        print(f"{device_name}: {setup.dtype} matmul {report['matmul_tflops']:.4g} TFLOP/s", flush=True)
        for family in families:
            report[family] = measure_family(family, setup, root, report["matmul_tflops"])
        out = Path(args.out) if args.out else (root / "smoke.json" if args.smoke else default_out(device_name))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rounded(report), indent=2) + "\n")
        print_table(report, families, setup.steps)
        print(f"written {out}")
    failed = [f for f in families if not report[f]["fidelity"]["pass"]]
    if failed:
        print(f"FAIL: fidelity of {', '.join(failed)} (optimized vs eager relative L2 >= {FIDELITY_LIMIT})")
    return 1 if failed else 0


def default_out(device_name: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
    return Path(__file__).parent / "results" / f"gpu_{slug}_{datetime.date.today().isoformat()}.json"


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a clock read after it counts it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_tflops(setup: Setup, repeats: int = 20) -> float:
    """The dtype's dense matmul rate: n x n by n x n, ``repeats`` times after three warm-ups."""
    n = setup.matmul_size
    a, b = (torch.randn(n, n, device=setup.device, dtype=setup.dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


# --- one family ---------------------------------------------------------------------------------


def measure_family(family: str, setup: Setup, root: Path, matmul: float) -> dict[str, Any]:
    side = setup.sizes[family]
    print(f"{family}: building the model and {setup.frames} demo frames at {side}x{side}", flush=True)
    if setup.full_size:
        model = make_full_size_model(root / family, family, controlnet=CONTROLNET[family])  # type: ignore[arg-type]  # a FAMILIES key
    else:
        model = make_test_model(root / family, family, controlnet=CONTROLNET[family])  # type: ignore[arg-type]  # a FAMILIES key
    plates = root / f"{family}-plates"
    write_demo(plates, frames=setup.frames, width=side, height=side, progress=lambda done, total: None)
    if setup.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    result = baseline(family, model, plates, setup)
    floor_ms = result["frame_tflop"] / matmul * 1000.0
    batch = Performance().frames_per_call(setup.device)
    optimized = {"compile": setup.compile}

    # stylecomp, optimized: a warm-up batch (load, compile), then the whole shot.
    pool = PipelinePool(setup.device, setup.dtype)
    first_start = timed_render(
        family, model, plates, root / f"{family}-warm", optimized, setup, pool, (FIRST, FIRST + batch - 1)
    )
    seconds = timed_render(family, model, plates, root / f"{family}-optimized", optimized, setup, pool)
    pool.clear()
    result |= {
        "stylecomp_ms_per_frame": seconds / setup.frames * 1000.0,
        "first_start_s": first_start,
        "second_start_s": second_start(family, model, plates, root, optimized, setup, batch),
    }
    if setup.compile:  # the defaults alone, for what compile adds
        pool = PipelinePool(setup.device, setup.dtype)
        timed_render(
            family, model, plates, root / f"{family}-warm-default", {}, setup, pool, (FIRST, FIRST + batch - 1)
        )
        seconds = timed_render(family, model, plates, root / f"{family}-default", {}, setup, pool)
        pool.clear()
        result["stylecomp_default_ms_per_frame"] = seconds / setup.frames * 1000.0

    result["fidelity"] = fidelity(family, model, plates, root, setup)
    result["consistency"] = consistency_costs(family, model, plates, root, setup)
    result |= {
        "floor_ms_per_frame": floor_ms,
        "stylecomp_vs_baseline": result["stylecomp_ms_per_frame"] / result["baseline_ms_per_frame"],
        "stylecomp_vs_floor": result["stylecomp_ms_per_frame"] / floor_ms,
        "baseline_vs_floor": result["baseline_ms_per_frame"] / floor_ms,
        "size": [side, side],
        "controlnet": "depth" if CONTROLNET[family] else None,
        "frames_per_call": batch,
    }
    if setup.device == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def document(
    family: str,
    model: Path,
    plates: Path,
    out: Path,
    performance: dict[str, Any],
    steps: int,
    mechanisms: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The benchmark's job: the demo shot, strength 0.5, ``steps`` steps, a depth ControlNet for SD 1.5."""
    controlnets = [{"path": str(model / "controlnet"), "source": "depth"}] if CONTROLNET[family] else []
    return {
        "shots": [{"name": "demo", "plate": str(plates / "demo.####.exr"), "output": str(out / "demo.####.exr")}],
        "model": {"family": family, "path": str(model), "controlnets": controlnets},
        "prompt": PROMPT,
        "steps": steps,
        "strength": STRENGTH,
        "guidance": GUIDANCE,
        "seed": {"policy": "fixed" if mechanisms else "per_frame", "value": 1234},
        "consistency": {"mechanisms": list(mechanisms), "keyframe_interval": 4},
        "exr": {"pixel_type": "float"},
        "performance": performance,
    }


def timed_render(
    family: str,
    model: Path,
    plates: Path,
    out: Path,
    performance: dict[str, Any],
    setup: Setup,
    pool: PipelinePool,
    frames: tuple[int, int] | None = None,
    mechanisms: tuple[str, ...] = (),
) -> float:
    """Seconds ``render_job`` takes for the shot (or ``frames``), no render cache; every frame must render."""
    job = parse_job(json.dumps(document(family, model, plates, out, performance, setup.steps, mechanisms)))
    gc.collect()  # not in the middle of the render: earlier pools' pipelines are garbage
    synchronize()
    start = time.perf_counter()
    summary = render_job(job, frames=frames, pool=pool, cache=None)
    synchronize()
    seconds = time.perf_counter() - start
    if summary.failed or summary.rendered == 0:
        raise RuntimeError(f"{family}: the benchmark render failed: {summary.failed}")
    return seconds


def baseline(family: str, model: Path, plates: Path, setup: Setup) -> dict[str, Any]:
    """Plain diffusers img2img on the first demo frame, one frame per call; and the FLOPs of one such call."""
    plate = read_plate(plates / f"demo.{FIRST}.exr")
    rgb, alpha = beauty(plate)
    image = ColorSettings().model_encoding().encode(rgb, alpha).image
    kwargs: dict[str, Any] = {
        "prompt": PROMPT,
        "image": image[None],
        "strength": STRENGTH,
        "num_inference_steps": setup.steps,
        "guidance_scale": GUIDANCE,
        "output_type": "np",
    }
    load: dict[str, Any] = {"torch_dtype": setup.dtype}
    if CONTROLNET[family]:
        kwargs["control_image"] = depth_condition(plate.channel("Z"))[None]
        load["controlnet"] = ControlNetModel.from_pretrained(model / "controlnet", torch_dtype=setup.dtype)
    if family == "sd15":
        load |= {"safety_checker": None, "requires_safety_checker": False}
    pipe = BASELINE[family].from_pretrained(model, **load).to(setup.device)
    pipe.set_progress_bar_config(disable=True)

    def call(seed: int) -> None:
        pipe(**kwargs, generator=torch.Generator(setup.device).manual_seed(seed))  # noqa: F821 - deleted after its last call

    for seed in range(2):  # warm-up
        call(seed)
    times = []
    for seed in range(setup.repeats):
        synchronize()
        start = time.perf_counter()
        call(seed)
        synchronize()
        times.append(time.perf_counter() - start)
    with FlopCounterMode(display=False) as counter:
        call(0)
    by_module = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items()}
    steps = pipe.num_timesteps  # denoising steps run at this strength: UNet calls, each on the CFG pair
    result = {
        "baseline_ms_per_frame": statistics.median(times) * 1000.0,
        "frame_tflop": counter.get_total_flops() / 1e12,
        "unet_step_tflop": by_module.get("UNet2DConditionModel", 0) / steps / 1e12,
        "controlnet_step_tflop": by_module.get("ControlNetModel", 0) / steps / 1e12,
        "unet_calls": steps,
    }
    del pipe
    if setup.device == "cuda":
        torch.cuda.empty_cache()
    return result


def second_start(
    family: str, model: Path, plates: Path, root: Path, performance: dict[str, Any], setup: Setup, batch: int
) -> float:
    """Seconds a new ``stylecomp render`` process takes for one batch: start, load, compiled code from the cache."""
    job = root / f"{family}-second-start.json"
    job.write_text(
        json.dumps(document(family, model, plates, root / f"{family}-second-start", performance, setup.steps))
    )
    command = [
        sys.executable,
        "-m",
        "stylecomp.cli",
        "render",
        str(job),
        "--frames",
        f"{FIRST}-{FIRST + batch - 1}",
        "--device",
        setup.device,
        "--no-cache",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{family}: the second start failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def fidelity(family: str, model: Path, plates: Path, root: Path, setup: Setup) -> dict[str, Any]:
    """The optimized render's first frames against an eager render of them, relative L2 in the model's space."""
    pool = PipelinePool(setup.device, setup.dtype)
    timed_render(
        family, model, plates, root / f"{family}-eager", EAGER, setup, pool, (FIRST, FIRST + FIDELITY_FRAMES - 1)
    )
    pool.clear()
    encoding = ColorSettings().model_encoding()

    def model_space(path: Path) -> np.ndarray:
        rgba = read_plate(path).channels(list(STYLIZED_CHANNELS))
        return encoding.encode(rgba[..., :3], rgba[..., 3]).image

    errors = []
    for frame in range(FIRST, FIRST + FIDELITY_FRAMES):
        eager = model_space(root / f"{family}-eager/demo.{frame}.exr")
        optimized = model_space(root / f"{family}-optimized/demo.{frame}.exr")
        errors.append(float(np.linalg.norm(optimized - eager) / np.linalg.norm(eager)))
    return {"rel_l2_max": max(errors), "limit": FIDELITY_LIMIT, "pass": max(errors) < FIDELITY_LIMIT}


def consistency_costs(family: str, model: Path, plates: Path, root: Path, setup: Setup) -> dict[str, Any]:
    """ms per frame of each consistency mode, and its ratio to mode none, with the default performance settings."""
    pool = PipelinePool(setup.device, setup.dtype)
    timed_render(family, model, plates, root / f"{family}-warm-modes", {}, setup, pool)  # the whole shot, once
    costs: dict[str, Any] = {}
    for mode in MODES:
        mechanisms = () if mode == "none" else (mode,)
        seconds = timed_render(family, model, plates, root / f"{family}-mode-{mode}", {}, setup, pool, None, mechanisms)
        costs[mode] = {"ms_per_frame": seconds / setup.frames * 1000.0}
        costs[mode]["vs_none"] = costs[mode]["ms_per_frame"] / costs["none"]["ms_per_frame"]
    pool.clear()
    return costs


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits, all through dicts."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return value


def print_table(report: dict[str, Any], families: list[str], steps: int) -> None:
    print(
        f"\n{report['device']}, {report['dtype']}, matmul {report['matmul_tflops']:.4g} TFLOP/s; "
        f"img2img strength {STRENGTH}, {steps} steps, ms per frame"
    )
    print(
        f"{'family':<8}{'baseline':>10}{'stylecomp':>11}{'(no compile)':>14}{'floor':>8}"
        f"{'vs baseline':>13}{'vs floor':>10}{'fidelity':>10}{'2nd start s':>13}"
    )
    for family in families:
        r = report[family]
        default = r.get("stylecomp_default_ms_per_frame")
        print(
            f"{family:<8}{r['baseline_ms_per_frame']:>10.1f}{r['stylecomp_ms_per_frame']:>11.1f}"
            f"{default if default is not None else float('nan'):>14.1f}{r['floor_ms_per_frame']:>8.1f}"
            f"{r['stylecomp_vs_baseline']:>13.2f}{r['stylecomp_vs_floor']:>10.2f}"
            f"{r['fidelity']['rel_l2_max']:>10.1e}{r['second_start_s']:>13.1f}"
        )
    for family in families:
        modes = report[family]["consistency"]
        print(
            f"{family} consistency, ms per frame (x mode none): "
            + ", ".join(f"{mode} {m['ms_per_frame']:.0f} ({m['vs_none']:.2f}x)" for mode, m in modes.items())
        )


if __name__ == "__main__":
    sys.exit(main())
