"""Rendering a job: every frame of every shot through the stylize stage into EXRs.

The host side of the stage interface: find the frames, read each plate, cut the clips the
stage asks for out of it, reuse the cache where the frame's key matches, render the rest and
write each output atomically with a ``stylized`` RGBA layer and provenance. A frame that
fails (a damaged plate, a missing file) is reported and skipped; the others still render, and
finished frames are never lost. Progress goes to a callback as plain events (see ``Event``).

Independent frames render ``performance.batch_frames`` to a pipeline call; plates are read
ahead and outputs written behind the model in background threads (``performance.prefetch``),
and each frame's event follows once its output is written, from the writing thread, in frame
order (events are never sent from two threads at once).
"""

from __future__ import annotations

import collections
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..diffusion.interrupt import interruptible
from ..diffusion.pool import PipelinePool
from ..diffusion.stylize import StylizeParameters, StylizeStage, check_region_settings
from ..errors import Cancelled, JobError, ModelError, PlateError, StyleCompError
from ..io.aovs import beauty, detect_aovs, object_ids
from ..io.normal_space import plate_normals
from ..io.plates import ImagePart, Plate, Window, read_plate, write_plate
from ..io.sequence import FrameSequence
from ..io.windows import reframe
from ..jobspec import Job, Shot
from ..regions.mattes import check_regions, frame_regions
from ..stage import STYLIZED_CHANNELS, Clip, FrameInputs, FrameResult
from .cache import RenderCache, key_of
from .frames import shot_frames
from .output_guard import check_writable, guard_outputs
from .stages import stylize_stage

_CLIP_ROLES = {"Depth": "depth", "Normal": "normals", "ObjectID": "object_id", "Motion": "motion"}
# Header attributes that describe the file's structure, not the image: never copied from the plate.
_STRUCTURAL = ("oiio:", "openexr:", "stylecomp/", "compression", "multiView", "name", "type", "view", "chunkCount")

Event = dict[str, Any]  # {"event": "start" | "frame" | "end", ...}: see the README's progress section
Report = Callable[[Event], None]
T = TypeVar("T")


@dataclass
class RenderSummary:
    """What a render did: counts, and each failed frame with its reason."""

    rendered: int = 0
    cached: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    def end_event(self) -> Event:
        """The ``end`` event a render reports last (render_job's, or an executor's for a whole batch job)."""
        return {
            "event": "end",
            "rendered": self.rendered,
            "cached": self.cached,
            "failed": len(self.failed),
            "cancelled": self.cancelled,
            "seconds": round(self.seconds, 3),
        }


def render_job(
    job: Job,
    *,
    shots: Sequence[str] | None = None,
    frames: tuple[int, int] | None = None,
    pool: PipelinePool | None = None,
    cache: RenderCache | None = None,
    report: Report = lambda event: None,
    cancel: threading.Event | None = None,
    overwrite: bool = False,
) -> RenderSummary:
    """Render the job's shots (all, or those named) into their outputs; ``cache=None`` renders everything afresh.

    Refuses (JobError) before any frame renders when an output would replace a file the job reads,
    or, without ``overwrite``, a file stylecomp did not write (see ``output_guard``).
    """
    pool = pool or PipelinePool()
    cancel = cancel or threading.Event()
    selected = select_shots(job, shots)
    guard_outputs(job, [shot.name for shot in selected], frames, overwrite=overwrite)
    summary = RenderSummary()
    started = time.monotonic()
    plans = [(shot, *shot_frames(job, shot, frames)) for shot in selected]
    if frames is not None and not any(frame_list for _, _, frame_list in plans):
        raise JobError(f"no shot has frames in {frames[0]}-{frames[1]}")
    # Every shot's regions are checked before anything is written: a bad selector leaves no file or folder.
    warnings = {shot.name: check_regions(job, shot, frame_list, plates) for shot, plates, frame_list in plans}
    for shot in selected:
        if job.shot_regions(shot) and job.model is not None:
            check_region_settings(StylizeParameters.for_shot(job, shot))
    check_writable(job, [shot.name for shot in selected])
    with interruptible(cancel, enabled=not job.performance.compile):  # cancel ends a long step too
        for shot, plates, frame_list in plans:
            if not frame_list:
                continue
            try:
                render = _ShotRender(job, shot, plates, frame_list, pool, cache, report, cancel, summary)
                render.run(warnings[shot.name], overwrite)
            except Cancelled:
                summary.cancelled = True
                break
    summary.seconds = time.monotonic() - started
    report(summary.end_event())
    return summary


def select_shots(job: Job, names: Sequence[str] | None) -> list[Shot]:
    """The job's shots named in ``names`` (all when none are named), in the order given."""
    if not names:
        return list(job.shots)
    by_name = {shot.name: shot for shot in job.shots}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise JobError(f"no shot named {', '.join(unknown)}; the job's shots are {', '.join(by_name)}")
    return [by_name[name] for name in names]


class _ShotRender:
    """One shot's render in the steps ``run`` lists, and the state those steps share."""

    def __init__(
        self,
        job: Job,
        shot: Shot,
        plates: FrameSequence,
        frames: list[int],
        pool: PipelinePool,
        cache: RenderCache | None,
        report: Report,
        cancel: threading.Event,
        summary: RenderSummary,
    ) -> None:
        """Step 1, check the inputs: the shot's stage, its description and the clips it reads from the plate."""
        self.job, self.shot, self.cache, self.report, self.cancel = job, shot, cache, report, cancel
        self.summary = summary
        self.stage = stylize_stage(job, shot, pool)
        self.stage.identity()  # a bad model, style image or consistency setting stops the shot here, before any frame
        self.description = self.stage.describe()
        self.sequential = self.description.sequential
        self.clips = [clip for clip in self.description.clips if clip.name != "StyleReference"]
        self.outputs = FrameSequence(job.resolve(shot.output))
        self.plates, self.frames = plates, frames  # step 2 may widen them
        self.rerender = False
        # Step 4's running state: the chain's last cache key, render time, frames rendered and counted, and the
        # shot's display window (a change mid-sequence is warned about).
        self.previous_key: str | None = None
        self.render_seconds, self.rendered_here, self.done = 0.0, 0, 0
        self.first_size: tuple[int, int] | None = None

    def run(self, warnings: Sequence[str], overwrite: bool) -> None:
        """Render the shot's frames into its outputs; step 1, checking the inputs, was the constructor's."""
        # 2. Plan the frames: a sequential shot walks from its first frame; report the start.
        self.plan(warnings, overwrite)
        # 3. Open the sequence and decide whether finished frames may be reused.
        self.begin()
        # 4. Window by window: read ahead, take what is current or cached, render the rest, write behind, report.
        self.render_frames()
        # 5. Close the sequence.
        self.stage.end_sequence()

    def plan(self, warnings: Sequence[str], overwrite: bool) -> None:
        """Step 2, plan the frames: a sequential shot renders from its first frame (its outputs before the range
        are guarded as well); then report the shot's start."""
        job, shot, plates, frames = self.job, self.shot, self.plates, self.frames
        start: Event = {
            "event": "start",
            "shot": shot.name,
            "frames": [frames[0], frames[-1]],
            "total": len(frames),
            "stage": self.description.name,
        }
        if warnings:
            start["warning"] = "; ".join(warnings)
        if self.sequential:
            plates, chain = shot_frames(job, shot)
            chain = [f for f in chain if f <= frames[-1]]
            if chain[0] < frames[0]:
                start["note"] = (
                    f"sequential consistency: rendering from frame {chain[0]}, since each frame needs the previous one"
                )
            frames = chain
            start |= {"frames": [frames[0], frames[-1]], "total": len(frames)}
            guard_outputs(job, [shot.name], (frames[0], frames[-1]), overwrite=overwrite)  # the frames before
        self.plates, self.frames = plates, frames
        self.report(start)

    def begin(self) -> None:
        """Step 3, open the sequence. A stage whose frames need state only rendering makes renders every frame
        unless all of them are done already."""
        self.stage.begin_sequence(self.frames[0], self.frames[-1])
        self.rerender = self.description.state_from_rendering and not _all_done(
            self.job, self.stage, self.plates, self.frames, self.outputs, self.shot, self.clips, self.cache
        )

    def render_frames(self) -> None:
        """Step 4, each window of ``frames_per_call`` frames: read (ahead, in the background), take what is cached,
        render the rest in one batch, then write (behind, in the background) and report every frame of it in order.
        A sequential shot's window is one frame, whose write the next frame waits for, since it builds on the
        output as written."""
        stage = self.stage
        with _FrameIO(self.job.performance.prefetch * stage.frames_per_call, write_behind=not self.sequential) as io:
            loaded = io.read_ahead(self.frames, self._read)
            while window := list(itertools.islice(loaded, stage.frames_per_call)):
                if self.cancel.is_set():
                    raise Cancelled(self.shot.name)
                tick = time.monotonic()
                events, todo = self._take_done(window)
                results = self._render(todo)
                self._write_behind(io, tick, len(window), events, todo, results)

    def _take_done(
        self,
        window: list[tuple[int, Future[tuple[FrameInputs, ImagePart, str | None]]]],
    ) -> tuple[list[Event], list[tuple[Event, FrameInputs, ImagePart, str, bool]]]:
        """Step 4a: each frame's event, with the frames whose output is current or cached done; the rest to render."""
        events: list[Event] = []
        todo: list[tuple[Event, FrameInputs, ImagePart, str, bool]] = []  # frames to render
        for frame, plate in window:
            self.done += 1
            target = self.outputs.path(frame)
            event: Event = {
                "event": "frame",
                "shot": self.shot.name,
                "frame": frame,
                "done": self.done,
                "total": len(self.frames),
                "output": target,
            }
            events.append(event)
            try:
                inputs, part, key = plate.result()  # raises what the read raised
                size = (part.display_window.width, part.display_window.height)
                self.first_size = first_size = self.first_size or size
                if size != first_size:
                    event["warning"] = (
                        f"resolution changes mid-sequence: {size[0]}x{size[1]}, the shot's first "
                        f"frame is {first_size[0]}x{first_size[1]}"
                    )
                if self.sequential:
                    key = self.previous_key = self.stage.cache_key(frame, inputs, self.previous_key)
                assert key is not None  # independent frames got theirs from the read, sequential ones just now
                current = key_of(target) == key
                if not self.rerender and (current or (self.cache is not None and self.cache.restore(key, target))):
                    event["status"] = "cached"
                    if self.sequential:
                        self.stage.advance(frame, inputs, _written_rgba(target))
                else:
                    todo.append((event, inputs, part, key, current))
            except (Cancelled, ModelError):
                raise  # the whole shot stops: no frame can render without its model
            except Exception as exc:  # noqa: BLE001 - a bad plate
                self._failed(event, exc)
        return events, todo

    def _render(self, todo: list[tuple[Event, FrameInputs, ImagePart, str, bool]]) -> list[FrameResult | Exception]:
        """Step 4b: render the frames to do; a frame the model fails on (out of memory, ...) fails alone."""
        if todo and self.sequential:
            _, inputs, _, _, _ = todo[0]
            try:
                return [self.stage.render(inputs.frame, inputs.window, inputs, self.cancel)]
            except (Cancelled, ModelError):
                raise
            except Exception as exc:  # noqa: BLE001 - the model failing on this frame (out of memory, ...)
                return [exc]
        if todo:  # independent frames: each fails alone (see render_batch)
            return self.stage.render_batch([inputs for _, inputs, _, _, _ in todo], self.cancel)
        return []

    def _write_behind(
        self,
        io: _FrameIO,
        tick: float,
        size: int,
        events: list[Event],
        todo: list[tuple[Event, FrameInputs, ImagePart, str, bool]],
        results: list[FrameResult | Exception],
    ) -> None:
        """Step 4c: queue each rendered frame's write, then every frame's report, in order, with timings."""
        writes: dict[int, Callable[[], None]] = {}
        for (event, inputs, part, key, current), result in zip(todo, results, strict=True):
            if isinstance(result, Exception):
                self._failed(event, result)
            else:
                event["status"] = "rendered"
                writes[inputs.frame] = functools.partial(self._write, key, part, inputs, result, current)
        if todo:
            self.render_seconds += time.monotonic() - tick
            self.rendered_here += len(writes)
        seconds = (time.monotonic() - tick) / size
        for event in events:
            per_frame = self.render_seconds / self.rendered_here if self.rendered_here else seconds
            event |= {"seconds": round(seconds, 3), "eta": round(per_frame * (len(self.frames) - event["done"]), 1)}
            io.write(functools.partial(self._finish, event, writes.get(event["frame"], lambda: None)))
        if self.sequential and events[0]["status"] == "failed":
            self.previous_key = None  # a sequential chain starts afresh after a gap

    def _read(self, frame: int) -> tuple[FrameInputs, ImagePart, str | None]:
        """A frame's inputs, its beauty part and (independent frames) its cache key: the work of the read thread."""
        if frame in self.plates.missing:
            raise PlateError("frame missing on disk", self.plates.path(frame))
        inputs, part = shot_inputs(self.job, self.shot, read_plate(self.plates.path(frame)), frame, self.clips)
        return inputs, part, None if self.sequential else self.stage.cache_key(frame, inputs)

    def _failed(self, event: Event, exc: Exception) -> None:
        """Mark a frame failed, with one line saying why."""
        reason = str(exc) if isinstance(exc, StyleCompError) else f"{type(exc).__name__}: {exc}"
        event |= {"status": "failed", "error": reason}
        self.summary.failed.append((self.shot.name, event["frame"], reason))

    def _write(self, key: str, part: ImagePart, inputs: FrameInputs, result: FrameResult, current: bool) -> None:
        """Write a rendered frame (unless its output is current already) and keep it in the cache; a sequential
        stage remembers it, as written, for the next frame."""
        target = self.outputs.path(inputs.frame)
        if not current:
            pixels, channels = result.rgba, list(STYLIZED_CHANNELS)
            if result.regions is not None:  # each region's weight beside the RGBA: regions.<name>
                pixels = np.concatenate([pixels, result.regions.weights.astype(np.float32)], axis=2)
                channels += result.regions.channels()
            write_plate(
                target,
                [rgba_part(pixels, result.window, part, self.job, channels)],
                provenance=result.provenance
                | {"frame": inputs.frame, "plate": self.plates.path(inputs.frame), "cache_key": key},
            )
            if self.cache is not None:
                self.cache.store(key, target)
        if self.sequential:
            self.stage.advance(inputs.frame, inputs, _written_rgba(target))

    def _finish(self, event: Event, then: Callable[[], None]) -> None:
        """Count and report a frame whose fate is known, once ``then`` (its write) is done; an error in it fails it."""
        try:
            then()
        except Exception as exc:  # noqa: BLE001 - the output cannot be written (disk full, ...)
            self._failed(event, exc)
        if event["status"] == "rendered":
            self.summary.rendered += 1
        elif event["status"] == "cached":
            self.summary.cached += 1
        self.report(event)


class _FrameIO:
    """Plate reads ahead of the render, output writes behind it: each in one background thread.

    ``read_ahead`` keeps up to ``depth`` reads running beyond the frames taken; ``write`` queues
    work (write a frame, report it) that runs in order, at most ``depth`` behind, so outputs and
    events keep the frames' order. Errors stay with their frame: a read's is raised by its
    future's ``result()``, and a write job handles its own (a report that raises is re-raised
    here). Leaving the block waits for the queued writes, so a cancelled render keeps every
    frame it finished, written whole (``write_plate`` writes a temp file, then renames it).
    ``depth`` 0, or ``write_behind`` False, does that work in the caller's thread instead.
    """

    def __init__(self, depth: int, write_behind: bool = True) -> None:
        self.depth = depth
        self._reader = ThreadPoolExecutor(1, "stylecomp-read") if depth else None
        self._writer = ThreadPoolExecutor(1, "stylecomp-write") if depth and write_behind else None
        self._writes: collections.deque[Future[None]] = collections.deque()

    def __enter__(self) -> _FrameIO:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self._writes:
                self._writes.popleft().result()
        finally:
            for pool in (self._reader, self._writer):
                if pool is not None:
                    pool.shutdown(cancel_futures=True)

    def read_ahead(self, frames: Sequence[int], read: Callable[[int], T]) -> Iterator[tuple[int, Future[T]]]:
        """``(frame, future of read(frame))`` for each frame in order."""
        queue: collections.deque[tuple[int, Future[T]]] = collections.deque()
        for frame in frames:
            queue.append((frame, self._reader.submit(read, frame) if self._reader else _now(read, frame)))
            if len(queue) > self.depth:
                yield queue.popleft()
        yield from queue

    def write(self, work: Callable[[], None]) -> None:
        """Run ``work`` after the work queued before it."""
        if self._writer is None:
            work()
            return
        self._writes.append(self._writer.submit(work))
        while self._writes and (self._writes[0].done() or len(self._writes) > self.depth):
            self._writes.popleft().result()


def _now(function: Callable[[int], T], argument: int) -> Future[T]:
    """``function(argument)`` run here, as a finished future."""
    future: Future[T] = Future()
    try:
        future.set_result(function(argument))
    except Exception as exc:  # noqa: BLE001 - handed on whole, as an executor's future would
        future.set_exception(exc)
    return future


def _all_done(
    job: Job,
    stage: StylizeStage,
    plates: FrameSequence,
    frames: list[int],
    outputs: FrameSequence,
    shot: Shot,
    clips: Sequence[Clip],
    cache: RenderCache | None,
) -> bool:
    """Whether every frame of a sequential shot is current on disk or in the cache (its chain of keys matches)."""
    previous_key = None
    for frame in frames:
        if frame in plates.missing:
            return False
        try:
            inputs, _ = shot_inputs(job, shot, read_plate(plates.path(frame)), frame, clips)
        except StyleCompError:
            return False
        previous_key = stage.cache_key(frame, inputs, previous_key)
        if key_of(outputs.path(frame)) != previous_key and (cache is None or cache.lookup(previous_key) is None):
            return False
    return True


def _written_rgba(path: str) -> np.ndarray:
    """A stylized output's RGBA (H, W, 4) as written (half floats included): what the next frame builds on."""
    return read_plate(path).channels(list(STYLIZED_CHANNELS))


def shot_inputs(job: Job, shot: Shot, plate: Plate, frame: int, clips: Sequence[Clip]) -> tuple[FrameInputs, ImagePart]:
    """``frame_inputs``, with the shot's region weights when it has regions."""
    inputs, part = frame_inputs(plate, frame, shot, clips)
    if regions := job.shot_regions(shot):
        inputs.regions = frame_regions(job, shot, regions, plate, frame, inputs.window)
    return inputs, part


def frame_inputs(plate: Plate, frame: int, shot: Shot, clips: Sequence[Clip]) -> tuple[FrameInputs, ImagePart]:
    """The clips a stage asked for, cut from one plate over the beauty's data window; and the beauty's part."""
    aovs = detect_aovs(plate.channel_names, shot.aovs)
    rgb, alpha = beauty(plate, shot.aovs)
    part = plate.locate(aovs["beauty"].channels[0])[0]
    window = part.data_window
    # The output keeps the plate's alpha: NaN and Inf in it (as colour.encode reads them) must not reach stylized.A.
    alpha = (
        np.ones(rgb.shape[:2], np.float32) if alpha is None else np.nan_to_num(alpha, nan=0.0, posinf=1.0, neginf=0.0)
    )
    images = {"Source": np.concatenate([rgb, alpha[..., None]], axis=2)}
    for clip in clips:
        if clip.name == "Source":
            continue
        match = aovs.get(_CLIP_ROLES[clip.name])
        ids = object_ids(plate, shot.aovs) if clip.name == "ObjectID" else None  # Cryptomatte or an ID pass
        if match is None and ids is None:
            if clip.optional:
                continue
            raise PlateError(
                f"the ControlNets need a {_CLIP_ROLES[clip.name]} AOV and none was found; map its channels in "
                f"the shot's 'aovs' (channels: {', '.join(plate.channel_names[:16])})",
                plate.path,
            )
        if clip.name == "Normal":  # every consumer of normals gets them in camera space
            images[clip.name] = plate_normals(plate, aovs, window, shot.normals_space, shot.name).normals
            continue
        if ids is not None:
            pixels, aov_window = ids[0][..., None], ids[1]
        else:
            assert match is not None  # no AOV and no IDs was skipped or refused above
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
        rgba,
        channels,
        window,
        beauty_part.display_window,
        pixel_type=job.exr.pixel_type or beauty_type,
        compression=job.exr.compression or beauty_part.compression,
    )
    for attribute in beauty_part.spec.extra_attribs:
        if not attribute.name.startswith(_STRUCTURAL):
            part.spec.attribute(attribute.name, attribute.type, attribute.value)
    return part
