"""Animatic clips: a shot's start image animated by an image-to-video model (``stylecomp animate``).

The start image is the shot's stylized keyframe (rendered first when it is not on disk yet, so
one command goes from plates to clip), its picked ideation still, or any image. The clip's
frames are numbered from the shot's first cut frame, so ``stylecomp timeline conform --media
animatic`` lines them up with the edit. They are written as scene-linear EXRs (through the
job's colour encoding) with provenance in every header, plus an 8-bit PNG preview sequence. A new
clip replaces the shot's earlier one whole: frames of the pattern that it does not have are deleted.
Hosted generators (``stylecomp.generators.hosted``) keep ``{shot}.remote-job.json`` and the verified download beside the
clip, so that running again does not pay for the same clip twice (and ``{shot}.remote-job.lock``, which keeps two
runs from submitting it at once).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..color import ModelEncoding
from ..diffusion.pool import PipelinePool
from ..errors import Cancelled, JobError, PlateError
from ..io.atomic import atomic_target
from ..io.images import read_display_image
from ..io.plates import read_plate
from ..io.sequence import FrameSequence, discover
from ..jobspec import Job, Shot
from ..render.cache import RenderCache
from ..render.loop import Report, render_job, shot_frames
from ..stage import STYLIZED_CHANNELS
from .interface import Generator, Request, Setup, load_generator, write_generated

DEFAULT_LONG_SIDE = 832  # Wan's 480p width; LTX-Video and CogVideoX work at it too
DEFAULT_FPS = 24.0


@dataclass(frozen=True)
class Animatic:
    """A written clip: its EXR pattern, frame numbers and preview PNG pattern."""

    output: str
    frames: list[int]
    preview: str


def video_generator(job: Job, device: str | None = None, dtype: str | None = None) -> Generator:
    """The job's image-to-video generator (``animation.generator``), loaded once for every shot."""
    settings = job.animation
    if settings.generator == "diffusers" and settings.model is None:
        raise JobError("animation.model is needed: a local image-to-video model folder (Wan, LTX-Video, CogVideoX)")
    model = settings.model and settings.model.model_copy(update={"path": job.resolve(settings.model.path)})
    return load_generator(settings.generator, Setup("image_to_video", model, settings.generator_options, device, dtype))


def animate(
    job: Job,
    job_path: str,
    shot: Shot,
    generator: Generator,
    pool: PipelinePool | None = None,
    report: Report = lambda event: None,
    cancel: threading.Event | None = None,
) -> Animatic:
    """Make the shot's animatic clip from its start image and write it; returns what was written."""
    cancel = cancel or threading.Event()
    settings, encoding = job.animation, job.color.model_encoding()
    first_frame, cut_length = _cut(job, shot)
    start, source = _start_image(job, shot, encoding, pool, report, cancel)
    last = read_display_image(job.resolve(settings.last_image), encoding) if settings.last_image else None
    requested = settings.frames or cut_length
    count = generator.frame_count(requested)
    width, height = _size(start.shape[1], start.shape[0], settings.long_side or DEFAULT_LONG_SIDE)
    output = FrameSequence(job.shot_path(job.animation.output, shot))
    request = Request(
        prompt=settings.prompt if settings.prompt is not None else _shot_prompt(job, shot),
        negative_prompt=settings.negative_prompt if settings.negative_prompt is not None else job.negative_prompt,
        seed=settings.seed,
        width=width,
        height=height,
        steps=settings.steps,
        guidance=settings.guidance,
        image=start,
        last_image=last,
        frames=requested,
        fps=settings.fps or (shot.editorial.rate if shot.editorial else DEFAULT_FPS),
        on_step=lambda step, steps: report({"event": "step", "shot": shot.name, "step": step, "total": steps}),
        job_record=str(Path(output.pattern).parent / f"{shot.name}.remote-job.json"),
    )
    frames = list(range(first_frame, first_frame + count))
    report({"event": "start", "shot": shot.name, "frames": [frames[0], frames[-1]], "total": count, "stage": "animate"})
    tick = time.monotonic()
    generated = generator.generate(request, cancel)
    seconds = (time.monotonic() - tick) / max(len(generated.frames), 1)

    preview = FrameSequence(_preview_pattern(output.pattern))
    provenance = (
        generated.provenance
        | {f"start_{key}": value for key, value in source.items()}
        | {"shot": shot.name, "job": str(Path(job_path).resolve()), "first_frame": first_frame}
    )
    for done, (frame, image) in enumerate(zip(frames, generated.frames, strict=True), start=1):
        write_generated(output.path(frame), image, encoding, job.exr, provenance | {"frame": frame})
        _write_png(preview.path(frame), image)
        report(
            {
                "event": "frame",
                "shot": shot.name,
                "frame": frame,
                "done": done,
                "total": count,
                "status": "rendered",
                "output": output.path(frame),
                "seconds": round(seconds, 3),
            }
        )
    for stale in (output, preview):  # an earlier, longer clip's frames would play on in the conformed edit
        _remove_frames_outside(stale.pattern, frames)
    report(
        {
            "event": "end",
            "rendered": count,
            "cached": 0,
            "failed": 0,
            "cancelled": False,
            "seconds": round(time.monotonic() - tick, 3),
        }
    )
    return Animatic(output.pattern, frames, preview.pattern)


def _remove_frames_outside(pattern: str, frames: list[int]) -> None:
    """Delete this clip pattern's files whose frame numbers the new clip does not have."""
    try:
        on_disk = discover(pattern).frames
    except PlateError:
        return
    for frame in set(on_disk) - set(frames):
        os.remove(pattern % frame)


def _cut(job: Job, shot: Shot) -> tuple[int, int]:
    """The shot's first frame and cut length: from its frame range, else from the plates on disk."""
    if shot.frames is not None:
        return shot.frames.first, shot.frames.last - shot.frames.first + 1
    _, frames = shot_frames(job, shot)
    return frames[0], len(frames)


def _start_image(
    job: Job, shot: Shot, encoding: ModelEncoding, pool: PipelinePool | None, report: Report, cancel: threading.Event
) -> tuple[np.ndarray, dict[str, Any]]:
    """The clip's first frame, (H, W, 3) [0, 1] in the model's encoding, and where it came from."""
    settings = job.animation
    if settings.source == "image":
        path = job.resolve(settings.image)  # type: ignore[arg-type]  # the job validates that it is set
        return _identified(read_display_image(path, encoding), {"kind": "image", "path": path})
    if settings.source == "ideation":
        path = str(job.picked_still(shot))
        if not Path(path).is_file():
            raise PlateError(
                f"shot {shot.name} has no picked ideation still; run 'stylecomp ideate' and "
                "'stylecomp pick --ideation' first",
                path,
            )
        return _identified(read_display_image(path, encoding), {"kind": "ideation", "path": path})
    keyframe = settings.keyframe if settings.keyframe is not None else _cut(job, shot)[0]
    path = FrameSequence(job.resolve(shot.output)).path(keyframe)
    if not Path(path).is_file():
        summary = render_job(
            job,
            shots=[shot.name],
            frames=(keyframe, keyframe),
            pool=pool,
            cache=RenderCache(),
            report=report,
            cancel=cancel,
        )
        if summary.cancelled:
            raise Cancelled(shot.name)
        if summary.failed or not Path(path).is_file():
            reasons = "; ".join(reason for _, _, reason in summary.failed) or "it was not rendered"
            raise PlateError(
                f"the stylized keyframe {keyframe} of shot {shot.name} could not be rendered: {reasons}", path
            )
    rgba = read_plate(path).channels(list(STYLIZED_CHANNELS))
    return _identified(
        encoding.encode(rgba[..., :3], rgba[..., 3]).image, {"kind": "stylized", "path": path, "keyframe": keyframe}
    )


def _identified(image: np.ndarray, source: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The start image and its source, with a hash of its pixels: the file at the path may be replaced later
    (another pick, another render), the hash says which image this clip started from."""
    return image, source | {"image_hash": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()}


def _shot_prompt(job: Job, shot: Shot) -> str:
    return shot.overrides.prompt if shot.overrides.prompt is not None else job.prompt


def _size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The start image's aspect ratio at ``long_side`` (the generator rounds to its model's multiple)."""
    if width >= height:
        return long_side, max(1, round(long_side * height / width))
    return max(1, round(long_side * width / height)), long_side


def _preview_pattern(pattern: str) -> str:
    """``folder/name.%04d.exr`` -> ``folder/preview/name.%04d.png``."""
    path = Path(pattern)
    return str(path.parent / "preview" / path.with_suffix(".png").name)


def _write_png(path: str, image: np.ndarray) -> None:
    """One preview frame as an 8-bit PNG, atomically."""
    pixels = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    with atomic_target(path) as temp:
        Image.fromarray(pixels).save(temp, format="PNG")
