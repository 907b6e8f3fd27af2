"""``make demo``: render the demo shot, write its job, stylize and comp it, measure its flicker, make a contact sheet.

Without a model the demo stylizes with stylecomp's own trained model (``stylecomp.stylemodel``),
as a watercolor, with its tile ControlNet fed by the plate and its line-art ControlNet fed by the
render's IDs, normals and depth, at 256 px
(downscale, then the plate's detail restored) so that two CPU cores keep up. The comp puts the
stylized globe, crate and ball over the clean ground and sky (a Keymix by object ID).
``--model PATH`` stylizes with another local model instead.

It sits with the built-in model it shows off, above ``demo`` (the scene, which the model also trains on).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..demo.scene import OBJECT_NAMES, write_demo
from ..diffusion.model_files import detect_family
from ..diffusion.pool import PipelinePool
from ..errors import ModelError
from ..io.conditioning import line_art
from ..io.contactsheet import depth_preview, id_preview, motion_preview, normals_preview, write_contact_sheet
from ..io.plates import read_plate
from ..io.sequence import FrameSequence
from ..jobspec import (
    Comp,
    Consistency,
    FrameRange,
    Job,
    ModelSettings,
    Resolution,
    SeedPolicy,
    Shot,
    load_job,
    save_job,
)
from ..render.cache import RenderCache
from ..render.headless_comp import comp_job, comp_output
from ..render.loop import Event
from ..stage import STYLIZED_CHANNELS
from ..temporal.flicker import measure_flicker, write_plot
from . import SHIPPED_MODEL
from .evaluation import RECOMMENDED, model_settings

Progress = Callable[[str, int, int], None]
PROMPT = "watercolor painting"  # the look the built-in model learned best (its card has both)
MECHANISMS = ["warped_noise", "latent_fusion", "pixel_fusion"]  # the best mode of the consistency benchmark (README)
STYLIZED_OBJECTS = ["globe", "crate", "ball"]  # the comp keeps the ground, the lamp and the sky clean


def run_demo(
    out_dir: Path,
    frames: int,
    width: int,
    height: int,
    progress: Progress,
    model: str | None = None,
    device: str | None = None,
) -> dict[str, str]:
    """Run the demo end to end into ``out_dir``; returns what was written, for the summary."""
    plates = write_demo(
        out_dir / "plates",
        frames,
        width,
        height,
        progress=lambda done, total: progress("rendering demo plates", done, total),
    )
    job_path = out_dir / "demo_job.json"
    built_in = model is None
    ids = [i for i, name in OBJECT_NAMES.items() if name in STYLIZED_OBJECTS]
    save_job(
        Job(
            shots=[
                Shot(
                    name="demo",
                    plate="plates/demo.####.exr",
                    frames=FrameRange(first=plates.frames[0], last=plates.frames[-1]),
                    output="stylized/demo.####.exr",
                )
            ],
            model=_model_settings(model),
            prompt=PROMPT,
            seed=SeedPolicy(policy="fixed", value=RECOMMENDED.seed),
            # The built-in model's own settings; another model gets the job defaults (20 steps, guidance 7).
            **(
                {"strength": RECOMMENDED.strength, "steps": RECOMMENDED.steps, "guidance": RECOMMENDED.guidance}
                if built_in
                else {}
            ),
            consistency=(
                Consistency(mechanisms=MECHANISMS, latent_fusion_steps=RECOMMENDED.latent_fusion_steps)
                if built_in
                else Consistency()
            ),
            # The built-in model works at 256 px (downscale, then the plate's detail restored), as it was trained.
            resolution=Resolution(mode="downscale", working_size=256) if built_in else Resolution(),
            comp=Comp(output="comp/{shot}.####.exr", mode="mix", weight="object_ids", object_ids=ids),
        ),
        job_path,
    )
    job = load_job(job_path)  # what a user's `stylecomp render` would read back
    shot = job.shots[0]

    stage = ""

    def on_event(event: Event) -> None:
        nonlocal stage
        if event["event"] == "start":
            stage = "stylizing" if event["stage"] == "stylize" else "comp"
        elif event["event"] == "frame":
            progress(f"{stage} ({event['status']})", event["done"], event["total"])

    summary = comp_job(job, pool=PipelinePool(device), cache=RenderCache(), report=on_event)
    for shot_name, frame, reason in summary.stylize.failed + summary.failed:
        raise RuntimeError(f"the demo's frame {frame} of {shot_name} failed: {reason}")

    outputs, comps = FrameSequence(job.resolve(shot.output)), comp_output(job, shot)
    flicker = measure_flicker(outputs.pattern, plates.pattern, encoding=job.color.model_encoding())
    plot = out_dir / "flicker.png"
    write_plot(flicker, plot)
    sheet = out_dir / "contact_sheet.png"
    write_contact_sheet(sheet, _contact_tiles(job, plates, outputs, comps, plot))
    note = (
        (
            f"stylecomp's own trained model ({SHIPPED_MODEL.name}), prompt {PROMPT!r}, "
            f"consistency {' + '.join(MECHANISMS)}, latent fusion on "
            f"{RECOMMENDED.latent_fusion_steps:.0%} of the steps"
        )
        if built_in
        else f"model {model}"
    )
    return {
        "plates": plates.pattern,
        "job": str(job_path),
        "stylized": outputs.pattern,
        "comp": comps.pattern,
        "contact sheet": str(sheet),
        "frames": f"{summary.stylize.rendered} stylized, {summary.stylize.cached} from the cache, in "
        f"{summary.stylize.seconds:.1f} s; {summary.comped} comped",
        "model": note,
        "flicker": f"R {flicker.R:.2f} (warp error relative to the plate's own; 1 = no added flicker), "
        f"D {flicker.D:.3f} (mean change from the plate); plot {plot}",
    }


def _model_settings(model: str | None) -> ModelSettings:
    """A model as given, or the built-in trained model with its tile and line-art ControlNets."""
    if model is not None:
        path = str(Path(model).expanduser().resolve())
        return ModelSettings(family=detect_family(path), path=path)
    if not (SHIPPED_MODEL / "model_index.json").is_file():
        raise ModelError(
            "the built-in model is missing; rebuild it with `stylecomp model train-demo "
            f"{SHIPPED_MODEL}` or give --model",
            str(SHIPPED_MODEL),
        )
    return model_settings(SHIPPED_MODEL)


def _contact_tiles(
    job: Job, plates: FrameSequence, outputs: FrameSequence, comps: FrameSequence, flicker_plot: Path
) -> list[tuple[str, np.ndarray]]:
    """Plates over their stylized and comp frames (first, middle, last), the line art, the flicker plot, the AOVs."""
    encoding = job.color.model_encoding()
    shown = (plates.frames[0], plates.frames[len(plates.frames) // 2], plates.frames[-1])
    first = read_plate(plates.path(shown[0]))

    def row(label: str, files: FrameSequence, channels: list[str]) -> list[tuple[str, np.ndarray]]:
        tiles = []
        for f in shown:
            rgba = read_plate(files.path(f)).channels(channels)
            tiles.append((f"{label} {f}", encoding.encode(rgba[..., :3], rgba[..., 3]).image))
        return tiles

    normals = first.channels(["N.X", "N.Y", "N.Z"])
    plot = np.asarray(Image.open(flicker_plot).convert("RGB"), dtype=np.float32) / 255.0
    return [
        *row("plate", plates, ["R", "G", "B", "A"]),
        ("ControlNet: line art", line_art(object_id=first.channel("id"), normals=normals, depth=first.channel("Z"))),
        *row("stylized", outputs, list(STYLIZED_CHANNELS)),
        ("flicker: warp error per frame", plot),
        *row("comp", comps, ["R", "G", "B", "A"]),
        ("object id", id_preview(first.channel("id"))),
        ("depth Z", depth_preview(first.channel("Z"))),
        ("normals N (camera)", normals_preview(normals)),
        ("motion backward.u/v", motion_preview(first.channels(["backward.u", "backward.v"]))),
    ]
