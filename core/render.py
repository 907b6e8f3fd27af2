"""Rendering a job: every frame of every shot through the stylize stage into EXRs.

The host side of the stage interface: find the frames, read each plate, cut the clips the
stage asks for out of it, reuse the cache where the frame's key matches, render the rest and
write each output atomically with a ``stylized`` RGBA layer and provenance. A frame that
fails (a damaged plate, a missing file) is reported and skipped; the others still render, and
finished frames are never lost. Progress goes to a callback as plain events (see ``Event``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .aovs import beauty, detect_aovs
from .blend import reframe
from .cache import RenderCache, key_of
from .errors import JobError, ModelError, PlateError, StyleCompError
from .jobspec import Job, Shot
from .pipeline_pool import PipelinePool
from .plates import ImagePart, Plate, Window, read_plate, write_plate
from .sequence import FrameSequence, discover
from .stage import STYLIZED_CHANNELS, Cancelled, Clip, FrameInputs
from .consistency import RENDER_STATE
from .stylize import StylizeParameters, StylizeStage

_CLIP_ROLES = {"Depth": "depth", "Normal": "normals", "ObjectID": "object_id", "Motion": "motion"}
# Header attributes that describe the file's structure, not the image: never copied from the plate.
_STRUCTURAL = ("oiio:", "openexr:", "stylecomp/", "compression", "multiView", "name", "type", "view", "chunkCount")

Event = dict[str, Any]  # {"event": "start" | "frame" | "end", ...}: see the README's progress section
Report = Callable[[Event], None]


@dataclass
class RenderSummary:
    """What a render did: counts, and each failed frame with its reason."""

    rendered: int = 0
    cached: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0


def shot_frames(job: Job, shot: Shot, frames: tuple[int, int] | None = None) -> tuple[FrameSequence, list[int]]:
    """A shot's plates and the frames to render (missing ones included), within ``frames`` if given."""
    wanted = shot.frame_range_with_handles()
    if frames is not None:
        low, high = frames if wanted is None else (max(frames[0], wanted[0]), min(frames[1], wanted[1]))
        if low > high:
            return FrameSequence(job.resolve(shot.plate)), []
        wanted = (low, high)
    sequence = discover(job.resolve(shot.plate), wanted)
    if sequence.is_single_file:
        return sequence, [wanted[0] if wanted else 0]
    return sequence, sorted({*sequence.frames, *sequence.missing})


def render_job(
    job: Job,
    *,
    shots: Sequence[str] | None = None,
    frames: tuple[int, int] | None = None,
    pool: PipelinePool | None = None,
    cache: RenderCache | None = None,
    report: Report = lambda event: None,
    cancel: threading.Event | None = None,
) -> RenderSummary:
    """Render the job's shots (all, or those named) into their outputs; ``cache=None`` renders everything afresh."""
    pool = pool or PipelinePool()
    cancel = cancel or threading.Event()
    selected = _select_shots(job, shots)
    summary = RenderSummary()
    started = time.monotonic()
    plans = [(shot, *shot_frames(job, shot, frames)) for shot in selected]
    if frames is not None and not any(frame_list for _, _, frame_list in plans):
        raise JobError(f"no shot has frames in {frames[0]}-{frames[1]}")
    for shot, plates, frame_list in plans:
        try:
            _render_shot(job, shot, plates, frame_list, pool, cache, report, cancel, summary)
        except Cancelled:
            summary.cancelled = True
            break
    summary.seconds = time.monotonic() - started
    report({"event": "end", "rendered": summary.rendered, "cached": summary.cached, "failed": len(summary.failed),
            "cancelled": summary.cancelled, "seconds": round(summary.seconds, 3)})
    return summary


def _select_shots(job: Job, names: Sequence[str] | None) -> list[Shot]:
    if not names:
        return list(job.shots)
    by_name = {shot.name: shot for shot in job.shots}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise JobError(f"no shot named {', '.join(unknown)}; the job's shots are {', '.join(by_name)}")
    return [by_name[name] for name in names]


def _render_shot(
    job: Job, shot: Shot, plates: FrameSequence, frames: list[int], pool: PipelinePool,
    cache: RenderCache | None, report: Report, cancel: threading.Event, summary: RenderSummary,
) -> None:
    if not frames:
        return
    stage = StylizeStage(StylizeParameters.for_shot(job, shot), job.color.model_encoding(), pool)
    stage.identity()  # a bad model, style image or consistency setting stops the shot here, before any frame
    description = stage.describe()
    clips = [clip for clip in description.clips if clip.name != "StyleReference"]
    outputs = FrameSequence(job.resolve(shot.output))
    start: Event = {"event": "start", "shot": shot.name, "frames": [frames[0], frames[-1]], "total": len(frames),
                    "stage": description.name}
    if description.sequential:
        plates, chain = shot_frames(job, shot)
        chain = [f for f in chain if f <= frames[-1]]
        if chain[0] < frames[0]:
            start["note"] = (f"sequential consistency: rendering from frame {chain[0]}, since each frame needs "
                             "the previous one")
        frames = chain
        start |= {"frames": [frames[0], frames[-1]], "total": len(frames)}
    report(start)
    stage.begin_sequence(frames[0], frames[-1])
    # latent_fusion and cross_frame carry state only a render makes: unless every frame is done, render them all.
    rerender = bool(stage.params.mechanisms & RENDER_STATE) and not _all_done(stage, plates, frames, outputs, shot,
                                                                                clips, cache)
    previous_key = None
    render_seconds, rendered_here = 0.0, 0
    for done, frame in enumerate(frames, 1):
        if cancel.is_set():
            raise Cancelled(shot.name)
        target = outputs.path(frame)
        event: Event = {"event": "frame", "shot": shot.name, "frame": frame, "done": done, "total": len(frames),
                        "output": target}
        tick = time.monotonic()
        try:
            plate_path = plates.path(frame)
            if frame in plates.missing:
                raise PlateError("frame missing on disk", plate_path)
            inputs, part = frame_inputs(read_plate(plate_path), frame, shot, clips)
            key = stage.cache_key(frame, inputs, previous_key)
            previous_key = key
            current = key_of(target) == key
            if not rerender and (current or (cache is not None and cache.restore(key, target))):
                event["status"] = "cached"
                summary.cached += 1
                if description.sequential:
                    stage.advance(frame, inputs, _written_rgba(target))
            else:
                result = stage.render(frame, inputs.window, inputs, cancel)
                if not current:
                    write_plate(target, [rgba_part(result.rgba, result.window, part, job)],
                                provenance=result.provenance | {"frame": frame, "plate": plate_path, "cache_key": key})
                    if cache is not None:
                        cache.store(key, target)
                if description.sequential:
                    stage.advance(frame, inputs, _written_rgba(target))
                event["status"] = "rendered"
                summary.rendered += 1
                rendered_here += 1
                render_seconds += time.monotonic() - tick
        except (Cancelled, ModelError):
            raise  # the whole shot stops: no frame can render without its model
        except Exception as exc:  # a bad plate, or the model failing on this frame (out of memory, ...)
            reason = str(exc) if isinstance(exc, StyleCompError) else f"{type(exc).__name__}: {exc}"
            event |= {"status": "failed", "error": reason}
            summary.failed.append((shot.name, frame, reason))
            previous_key = None  # a sequential chain starts afresh after a gap
        event["seconds"] = round(time.monotonic() - tick, 3)
        per_frame = render_seconds / rendered_here if rendered_here else event["seconds"]
        event["eta"] = round(per_frame * (len(frames) - done), 1)
        report(event)
    stage.end_sequence()


def _all_done(stage: StylizeStage, plates: FrameSequence, frames: list[int], outputs: FrameSequence, shot: Shot,
              clips: Sequence[Clip], cache: RenderCache | None) -> bool:
    """Whether every frame of a sequential shot is current on disk or in the cache (its chain of keys matches)."""
    previous_key = None
    for frame in frames:
        if frame in plates.missing:
            return False
        try:
            inputs, _ = frame_inputs(read_plate(plates.path(frame)), frame, shot, clips)
        except StyleCompError:
            return False
        previous_key = stage.cache_key(frame, inputs, previous_key)
        if key_of(outputs.path(frame)) != previous_key and (cache is None or cache.lookup(previous_key) is None):
            return False
    return True


def _written_rgba(path: str) -> np.ndarray:
    """A stylized output's RGBA (H, W, 4) as written (half floats included): what the next frame builds on."""
    return read_plate(path).channels(list(STYLIZED_CHANNELS))


def frame_inputs(plate: Plate, frame: int, shot: Shot, clips: Sequence[Clip]) -> tuple[FrameInputs, ImagePart]:
    """The clips a stage asked for, cut from one plate over the beauty's data window; and the beauty's part."""
    aovs = detect_aovs(plate.channel_names, shot.aovs)
    rgb, alpha = beauty(plate, shot.aovs)
    part = plate.locate(aovs["beauty"].channels[0])[0]
    window = part.data_window
    alpha = np.ones(rgb.shape[:2], np.float32) if alpha is None else alpha
    images = {"Source": np.concatenate([rgb, alpha[..., None]], axis=2)}
    for clip in clips:
        if clip.name == "Source":
            continue
        match = aovs.get(_CLIP_ROLES[clip.name])
        if match is None:
            if clip.optional:
                continue
            raise PlateError(
                f"the ControlNets need a {_CLIP_ROLES[clip.name]} AOV and none was found; map its channels in "
                f"the shot's 'aovs' (channels: {', '.join(plate.channel_names[:16])})", plate.path)
        names = match.channels[: clip.components]
        pixels = plate.channels(names)
        aov_window = plate.locate(names[0])[0].data_window
        if aov_window != window:
            pixels = reframe(pixels, aov_window, window)
        images[clip.name] = pixels
    return FrameInputs(frame, window, images), part


def rgba_part(
    rgba: np.ndarray, window: Window, beauty_part: ImagePart, job: Job, channels: Sequence[str] = STYLIZED_CHANNELS
) -> ImagePart:
    """An output part: RGBA as ``channels`` over ``window`` in the plate's display window, with the plate's own
    header attributes (camera matrices, timecode, pixel aspect, ...), pixel type and compression unless the job
    overrides them."""
    beauty_type = beauty_part.channel_types[0] if beauty_part.channel_types[0] in ("half", "float") else "half"
    part = ImagePart.create(
        rgba, channels, window, beauty_part.display_window,
        pixel_type=job.exr.pixel_type or beauty_type,
        compression=job.exr.compression or beauty_part.compression,
    )
    for attribute in beauty_part.spec.extra_attribs:
        if not attribute.name.startswith(_STRUCTURAL):
            part.spec.attribute(attribute.name, attribute.type, attribute.value)
    return part
