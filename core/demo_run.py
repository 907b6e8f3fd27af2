"""``make demo``: render the demo shot, write its job, stylize and comp it, make a contact sheet.

Without a model the demo builds a tiny random-weight SD 1.5 with a ControlNet (fed twice: by
the render's depth and by its normals). Its frames are noise-like: they show every stage of
the pipeline running (EXR in, colour, AOV conditioning, diffusion, HDR restore, EXR out with
provenance, cache), not a style. ``--model PATH`` stylizes with a real local model instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .cache import RenderCache
from .comp import comp_job, comp_output
from .conditioning import depth_condition, normal_condition
from .contactsheet import depth_preview, id_preview, motion_preview, normals_preview, write_contact_sheet
from .demo import write_demo
from .jobspec import Comp, ControlNet, FrameRange, Job, ModelSettings, Resolution, SeedPolicy, Shot, load_job, save_job
from .models import detect_family
from .pipeline_pool import PipelinePool
from .plates import read_plate
from .render import Event
from .sequence import FrameSequence
from .stage import STYLIZED_CHANNELS
from .testmodels import make_test_model

Progress = Callable[[str, int, int], None]
TINY_MODEL = "models/tiny-sd15"
PROMPT = "ink and watercolour illustration, bold outlines, paper texture"
NEGATIVE_PROMPT = "photo, blurry, noisy"


def run_demo(out_dir: Path, frames: int, width: int, height: int, progress: Progress,
             model: str | None = None, device: str | None = None) -> dict[str, str]:
    """Run the demo end to end into ``out_dir``; returns what was written, for the summary."""
    plates = write_demo(out_dir / "plates", frames, width, height,
                        progress=lambda done, total: progress("rendering demo plates", done, total))
    job_path = out_dir / "demo_job.json"
    save_job(Job(
        shots=[Shot(name="demo", plate="plates/demo.####.exr",
                    frames=FrameRange(first=plates.frames[0], last=plates.frames[-1]),
                    output="stylized/demo.####.exr")],
        model=_model_settings(out_dir, model),
        prompt=PROMPT, negative_prompt=NEGATIVE_PROMPT, seed=SeedPolicy(policy="fixed", value=1234),
        # The tiny model works at 256 px (downscale, then the plate's detail restored) so that a CPU keeps up.
        resolution=Resolution(mode="downscale", working_size=256) if model is None else Resolution(),
        comp=Comp(output="comp/{shot}.####.exr", mode="detail_transfer", detail_size=6.0, amount=0.8, lines=True),
    ), job_path)
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
    sheet = out_dir / "contact_sheet.png"
    write_contact_sheet(sheet, _contact_tiles(job, plates, outputs, comps))
    note = ("tiny random-weight model: the frames show the pipeline running, not a style "
            "(make demo MODEL=/path/to/model for a real one)") if model is None else f"model {model}"
    return {
        "plates": plates.pattern,
        "job": str(job_path),
        "stylized": outputs.pattern,
        "comp": comps.pattern,
        "contact sheet": str(sheet),
        "frames": f"{summary.stylize.rendered} stylized, {summary.stylize.cached} from the cache, in "
                  f"{summary.stylize.seconds:.1f} s; {summary.comped} comped",
        "model": note,
    }


def _model_settings(out_dir: Path, model: str | None) -> ModelSettings:
    """A real model as given, or the tiny test model (built once) with its ControlNet fed by depth and normals."""
    if model is not None:
        path = str(Path(model).expanduser().resolve())
        return ModelSettings(family=detect_family(path), path=path)
    if not (out_dir / TINY_MODEL / "model_index.json").is_file():
        make_test_model(out_dir / TINY_MODEL, "sd15", controlnet=True)
    controlnet = f"{TINY_MODEL}/controlnet"
    return ModelSettings(family="sd15", path=TINY_MODEL, controlnets=[
        ControlNet(path=controlnet, source="depth", weight=1.0),
        ControlNet(path=controlnet, source="normals", weight=0.5),
    ])


def _contact_tiles(job: Job, plates: FrameSequence, outputs: FrameSequence,
                   comps: FrameSequence) -> list[tuple[str, np.ndarray]]:
    """Plates over their stylized and comp frames (first, middle, last), the ControlNet inputs and the AOVs."""
    encoding = job.color.model_encoding()
    shown = (plates.frames[0], plates.frames[len(plates.frames) // 2], plates.frames[-1])
    first = read_plate(plates.path(shown[0]))

    def row(label: str, files: FrameSequence, channels: list[str]) -> list[tuple[str, np.ndarray]]:
        tiles = []
        for f in shown:
            rgba = read_plate(files.path(f)).channels(channels)
            tiles.append((f"{label} {f}", encoding.encode(rgba[..., :3], rgba[..., 3]).image))
        return tiles

    return [
        *row("plate", plates, ["R", "G", "B", "A"]), ("ControlNet: depth", depth_condition(first.channel("Z"))),
        *row("stylized", outputs, list(STYLIZED_CHANNELS)),
        ("ControlNet: normals", normal_condition(first.channels(["N.X", "N.Y", "N.Z"]))),
        *row("comp", comps, ["R", "G", "B", "A"]),
        ("object id", id_preview(first.channel("id"))),
        ("depth Z", depth_preview(first.channel("Z"))),
        ("normals N (camera)", normals_preview(first.channels(["N.X", "N.Y", "N.Z"]))),
        ("motion backward.u/v", motion_preview(first.channels(["backward.u", "backward.v"]))),
    ]
