"""The headless comp: stylize (or reuse the cache), blend with the clean render, write final EXRs.

A render host (it runs ``render_job`` first), so it lives with the render loop; the blend maths is ``comp.blend``.

The blend is the StyleCompBlend gizmo's, knob for knob (the job's ``comp`` block): ``mode``
makes the styled image (mix, luminance/colour, detail transfer), ``weight`` times ``amount``
says where it replaces the clean render (Keymix), ``lines`` lays ID lines over the result.
Depth, mattes and IDs come from the clean plate; ``weight: cryptomatte`` mattes objects by name
(``mattes``, wildcards) with their Cryptomatte coverage, and lines follow Cryptomatte's dominant
object where the plate has one. Data windows may differ: the result covers their union, as
Nuke's ``bbox union`` merges do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..comp.blend import depth_weight, detail_transfer, id_mask, line_overlay, luminance_colour, matte_mask, mix
from ..diffusion.pool import PipelinePool
from ..errors import PlateError, StyleCompError
from ..io.aovs import beauty, detect_aovs, object_ids
from ..io.cryptomatte import matte as cryptomatte_matte
from ..io.cryptomatte import select_layer
from ..io.plates import ImagePart, Plate, Window, read_plate, write_plate
from ..io.sequence import FrameSequence
from ..io.windows import align, reframe
from ..jobspec import Comp, Job, Shot
from .cache import RenderCache
from .loop import STYLIZED_CHANNELS, RenderSummary, Report, render_job, rgba_part, shot_frames
from .output_guard import check_writable, guard_outputs

COMP_CHANNELS = ("R", "G", "B", "A")


@dataclass
class CompSummary:
    """The stylize pass's summary, and what the blend pass wrote or could not."""

    stylize: RenderSummary
    comped: int = 0
    failed: list[tuple[str, int, str]] = field(default_factory=list)


def comp_output(job: Job, shot: Shot) -> FrameSequence:
    """Where a shot's comp frames go: the job's ``comp.output`` with ``{shot}`` filled in."""
    return FrameSequence(job.shot_path(job.comp.output, shot))


def comp_job(
    job: Job,
    *,
    shots: Sequence[str] | None = None,
    frames: tuple[int, int] | None = None,
    pool: PipelinePool | None = None,
    cache: RenderCache | None = None,
    report: Report = lambda event: None,
    cancel: threading.Event | None = None,
    overwrite: bool = False,
) -> CompSummary:
    """Stylize the shots (reusing current outputs and the cache), then blend every stylized frame; outputs are
    checked first, the comp's included (``output_guard``)."""
    cancel = cancel or threading.Event()
    guard_outputs(job, shots, frames, overwrite=overwrite, comp=True)
    check_writable(job, shots, comp=True)
    check_mattes(job, shots, frames)
    summary = CompSummary(
        render_job(
            job, shots=shots, frames=frames, pool=pool, cache=cache, report=report, cancel=cancel, overwrite=overwrite
        )
    )
    if summary.stylize.cancelled:
        return summary
    failed = {(shot, frame) for shot, frame, _ in summary.stylize.failed}
    for shot in job.shots:
        if shots and shot.name not in shots:
            continue
        plates, frame_list = shot_frames(job, shot, frames)
        stylized, outputs = FrameSequence(job.resolve(shot.output)), comp_output(job, shot)
        todo = [f for f in frame_list if (shot.name, f) not in failed]
        report(
            {
                "event": "start",
                "shot": shot.name,
                "frames": [frame_list[0], frame_list[-1]] if frame_list else [],
                "total": len(todo),
                "stage": "comp",
            }
        )
        for done, frame in enumerate(todo, 1):
            tick = time.monotonic()
            event = {
                "event": "frame",
                "shot": shot.name,
                "frame": frame,
                "done": done,
                "total": len(todo),
                "output": outputs.path(frame),
            }
            try:
                write_comp_frame(job, shot, plates.path(frame), stylized.path(frame), outputs.path(frame), frame)
                event["status"] = "rendered"
                summary.comped += 1
            except StyleCompError as exc:
                event |= {"status": "failed", "error": str(exc)}
                summary.failed.append((shot.name, frame, str(exc)))
            report(event | {"seconds": round(time.monotonic() - tick, 3), "eta": 0})
    return summary


def check_mattes(job: Job, shots: Sequence[str] | None = None, frames: tuple[int, int] | None = None) -> None:
    """Check ``comp.mattes`` against each shot's first plate frame's Cryptomatte manifest before anything renders.

    Raises PlateError naming the plate, the pattern that matches nothing and the names there are.
    """
    if job.comp.weight != "cryptomatte":
        return
    for shot in job.shots:
        if shots and shot.name not in shots:
            continue
        plates, frame_list = shot_frames(job, shot, frames)
        present = [frame for frame in frame_list if frame not in plates.missing]
        if present:
            plate = read_plate(plates.path(present[0]), pixels=False)
            select_layer(plate, job.comp.cryptomatte_layer).resolve(job.comp.mattes)


def write_comp_frame(job: Job, shot: Shot, plate_path: str, stylized_path: str, output: str, frame: int) -> None:
    """Blend one stylized frame with its plate and write the comp EXR (RGBA, the plate's header) atomically."""
    plate, stylized = read_plate(plate_path), read_plate(stylized_path)
    rgba, part, window = blend_frame(plate, stylized, shot, job.comp)
    provenance = {
        "stage": "comp",
        "version": __version__,
        "frame": frame,
        "plate": plate_path,
        "stylized": stylized_path,
        "stylized_cache_key": str(stylized.parts[0].attributes.get("stylecomp/cache_key", "")),
        "comp": job.comp.model_dump_json(),
    }
    write_plate(output, [rgba_part(rgba, window, part, job, COMP_CHANNELS)], provenance=provenance)


def blend_frame(plate: Plate, stylized: Plate, shot: Shot, settings: Comp) -> tuple[np.ndarray, ImagePart, Window]:
    """One frame's comp: premultiplied RGBA (H, W, 4) over the union of both data windows, the plate's beauty
    part (whose header the output keeps) and that union window."""
    aovs = detect_aovs(plate.channel_names, shot.aovs)
    rgb, alpha = beauty(plate, shot.aovs)
    part = plate.locate(aovs["beauty"].channels[0])[0]
    clean = np.concatenate([rgb, (np.ones_like(rgb[..., 0]) if alpha is None else alpha)[..., None]], axis=2)
    styled_part = stylized.locate(STYLIZED_CHANNELS[0])[0]
    clean, styled, window = align(
        clean, part.data_window, stylized.channels(list(STYLIZED_CHANNELS)), styled_part.data_window
    )

    def plane(role: str, channel: str | None = None) -> np.ndarray:
        """An AOV plane of the plate over the union window (0 outside its data window: background, no ID)."""
        if channel is None:
            match = aovs.get(role)
            if match is None:
                raise PlateError(f"comp weight {settings.weight!r} needs a {role} AOV; none found", plate.path)
            channel = match.channels[0]
        source = plate.locate(channel)[0]
        return onto(plate.channel(channel), source.data_window)

    def onto(values: np.ndarray, source: Window) -> np.ndarray:
        """A plane over ``source`` moved onto the union window."""
        values = values.astype(np.float32)
        return reframe(values, source, window) if source != window else values

    def ids() -> np.ndarray:
        """The ID plane lines are drawn from: Cryptomatte's dominant object, else the ID pass."""
        found = object_ids(plate, shot.aovs)
        if found is None:
            raise PlateError("comp lines need object IDs (Cryptomatte or an ID pass); none found", plate.path)
        return onto(*found)

    if settings.mode == "luminance_colour":
        styled = luminance_colour(clean, styled, settings.luminance_from, settings.luminance_weights)
    elif settings.mode == "detail_transfer":
        styled = detail_transfer(clean, styled, settings.detail_size)
    weight: float | np.ndarray = settings.amount
    if settings.weight == "depth":
        weight = weight * depth_weight(
            plane("depth"), settings.depth_near, settings.depth_far, settings.depth_direction
        )
    elif settings.weight == "matte":
        weight = weight * matte_mask(plane("matte", settings.matte_channel), settings.matte_invert)
    elif settings.weight == "object_ids":
        weight = weight * id_mask(plane("object_id"), settings.object_ids, settings.ids_invert)
    elif settings.weight == "cryptomatte":
        coverage = onto(*cryptomatte_matte(plate, select_layer(plate, settings.cryptomatte_layer), settings.mattes))
        weight = weight * matte_mask(coverage, settings.mattes_invert)
    out = mix(clean, styled, weight)
    if settings.lines:
        out = line_overlay(out, object_id=ids(), colour=settings.line_colour, opacity=settings.line_opacity)
    return out, part, window
