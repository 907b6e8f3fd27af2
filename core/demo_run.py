"""``make demo``: render the demo shot, write its job, stylize it, make a contact sheet.

Without a model the demo builds a tiny random-weight SD 1.5 with a ControlNet (fed twice: by
the render's depth and by its normals). Its frames are noise-like: they show every stage of
the pipeline running (EXR in, colour, AOV conditioning, diffusion, HDR restore, EXR out with
provenance, cache), not a style. ``--model PATH`` stylizes with a real local model instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .aovs import beauty
from .cache import RenderCache
from .conditioning import depth_condition, normal_condition
from .contactsheet import depth_preview, id_preview, motion_preview, normals_preview, write_contact_sheet
from .demo import write_demo
from .jobspec import ControlNet, FrameRange, Job, ModelSettings, Resolution, SeedPolicy, Shot, load_job, save_job
from .models import detect_family
from .pipeline_pool import PipelinePool
from .plates import read_plate
from .render import Event, render_job
from .sequence import FrameSequence
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
    ), job_path)
    job = load_job(job_path)  # what a user's `stylecomp render` would read back
    shot = job.shots[0]

    def on_event(event: Event) -> None:
        if event["event"] == "frame":
            progress(f"stylizing ({event['status']})", event["done"], event["total"])

    summary = render_job(job, pool=PipelinePool(device), cache=RenderCache(), report=on_event)
    if summary.failed:
        shot_name, frame, reason = summary.failed[0]
        raise RuntimeError(f"the demo's frame {frame} of {shot_name} failed: {reason}")

    outputs = FrameSequence(job.resolve(shot.output))
    sheet = out_dir / "contact_sheet.png"
    write_contact_sheet(sheet, _contact_tiles(job, plates, outputs))
    note = ("tiny random-weight model: the frames show the pipeline running, not a style "
            "(make demo MODEL=/path/to/model for a real one)") if model is None else f"model {model}"
    return {
        "plates": plates.pattern,
        "job": str(job_path),
        "outputs": outputs.pattern,
        "contact sheet": str(sheet),
        "frames": f"{summary.rendered} stylized, {summary.cached} from the cache, in {summary.seconds:.1f} s",
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


def _contact_tiles(job: Job, plates: FrameSequence, outputs: FrameSequence) -> list[tuple[str, np.ndarray]]:
    """Plates over their stylized frames (first, middle, last), the ControlNet inputs and the AOVs."""
    encoding = job.color.model_encoding()
    shown = (plates.frames[0], plates.frames[len(plates.frames) // 2], plates.frames[-1])
    first = read_plate(plates.path(shown[0]))
    plate_row = [(f"plate {f}", encoding.encode(*beauty(read_plate(plates.path(f)))).image) for f in shown]
    stylized_row = []
    for f in shown:
        stylized = read_plate(outputs.path(f)).channels(["stylized.R", "stylized.G", "stylized.B", "stylized.A"])
        stylized_row.append((f"stylized {f}", encoding.encode(stylized[..., :3], stylized[..., 3]).image))
    return [
        *plate_row, ("ControlNet: depth", depth_condition(first.channel("Z"))),
        *stylized_row, ("ControlNet: normals", normal_condition(first.channels(["N.X", "N.Y", "N.Z"]))),
        ("depth Z", depth_preview(first.channel("Z"))),
        ("normals N (camera)", normals_preview(first.channels(["N.X", "N.Y", "N.Z"]))),
        ("motion backward.u/v", motion_preview(first.channels(["backward.u", "backward.v"]))),
        ("object id", id_preview(first.channel("id"))),
    ]
