"""Ideation: treatment stills for a shot (``stylecomp ideate``), and picking one (``stylecomp pick --ideation``).

Every prompt x seed x aspect ratio of the job's ``ideation`` block becomes a candidate, made by
the job's generator (``stylecomp.generators.interface``: the built-in ``diffusers`` one or a plugin) at
``long_side`` on the longer side, both sides rounded to a multiple of the model's VAE cell (8 pixels
for SD 1.5 and SDXL, 16 for Flux's packed pairs of cells, 1 for a pixel-space model). With
ControlNets in the model, the shot's plate at ``guide_frame`` (a blocking render) guides the
composition through condition images built from its AOVs exactly as stylization builds them,
and its aspect ratio sets the size; with ``init_strength`` generation starts from the plate's
beauty (image-to-image). The model's IP-Adapter gets its style image as stylization reads it.

The candidates land in one folder as ``stylecomp candidates`` writes its own: an EXR each
(scene-linear through the job's colour encoding, alpha 1, with provenance), a PNG thumbnail,
a labelled contact sheet and ``manifest.json`` (``"kind": "ideation"``). ``pick_still`` copies
the chosen EXR to the shot's ``picked.exr`` (``Job.picked_still``: what animatic clips and the
timeline conform use) and makes its prompt the shot's.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..color import ModelEncoding
from ..diffusion.geometry import model_geometry
from ..diffusion.resolution import LINE_KINDS, resize
from ..diffusion.stylize import StylizeParameters, control_clips, control_condition
from ..errors import Cancelled, JobError, StyleCompError
from ..io.atomic import atomic_target
from ..io.contactsheet import write_contact_sheet
from ..io.images import read_display_image
from ..io.plates import read_plate
from ..io.sequence import FrameSequence
from ..jobspec import Job, Shot, save_job
from ..render.candidates import MANIFEST, chosen_entry, read_manifest, write_thumbnail
from ..render.loop import Report, frame_inputs, shot_frames
from .interface import Generator, Kind, Request, Setup, load_generator, write_generated

# A still has no plate to pad and crop back to, so its sides need only be what the pipeline takes:
# ModelGeometry.pixel_multiple (diffusers' UNets fit latents that their own downsampling does not divide).
# Stylization's coarser multiple would bend a 2.39:1 frame at 512 px to 2.67:1.
# Sizes for a plugin generator when the job has no model block (16 is a multiple of every family's).
NO_MODEL_MULTIPLE, NO_MODEL_LONG_SIDE = 16, 1024
_SHEET_GREY = 24 / 255  # the contact sheet's background, for letterboxing tiles of other aspect ratios


@dataclass(frozen=True)
class Guide:
    """The plate frame that guides a shot's candidates: its display-referred beauty and ControlNet images."""

    frame: int
    path: str
    beauty: np.ndarray  # (H, W, 3) [0, 1] in the job's model encoding
    control: dict[str, np.ndarray]  # ControlNet source -> (H, W, 3) [0, 1] condition image

    @property
    def aspect_ratio(self) -> str:
        """The plate's width:height in lowest terms, e.g. 16:9."""
        height, width = self.beauty.shape[:2]
        divisor = math.gcd(width, height)
        return f"{width // divisor}:{height // divisor}"

    def at(self, width: int, height: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The beauty and condition images resized to ``width`` x ``height`` (lines by max pooling, as stylization)."""
        size = (height, width)
        control = {
            source: resize(image, size, "max" if source in LINE_KINDS else "bilinear")
            for source, image in self.control.items()
        }
        return resize(self.beauty, size, "bicubic"), control


def ideation_folder(job: Job, shot: Shot) -> Path:
    """Where a shot's ideation candidates go by default: ``ideation.output`` with ``{shot}`` filled in."""
    return Path(job.shot_path(job.ideation.output, shot))


def ideation_manifest(job: Job, shot: Shot) -> Path:
    """The manifest of the shot's ideation candidates in their default folder; a clear error when there is none."""
    path = ideation_folder(job, shot) / MANIFEST
    if not path.is_file():
        raise JobError(f"no ideation candidates for shot {shot.name} (looked for {path}); run 'stylecomp ideate'")
    return path


def ideation_generator(job: Job, shot: Shot, device: str | None = None, dtype: str | None = None) -> Generator:
    """The job's ideation generator for ``shot`` (its model after the shot's overrides, paths resolved)."""
    settings = job.ideation
    model = StylizeParameters.for_shot(job, shot).model if job.model is not None else None
    if settings.generator == "diffusers" and model is None:
        raise JobError("ideation with the built-in 'diffusers' generator needs the job's 'model' block")
    kind: Kind = "image_to_image" if settings.init_strength is not None else "text_to_image"
    return load_generator(settings.generator, Setup(kind, model, settings.generator_options, device, dtype))


def ideate(
    job: Job,
    job_path: str,
    shot: Shot,
    out_dir: str | None = None,
    generator: Generator | None = None,
    report: Report = lambda event: None,
    cancel: threading.Event | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> Path:
    """Make and write the shot's ideation candidates (see the module docstring); returns the manifest's path.

    Progress events are those of ``render_candidates``; ideation has no frames, so ``frame`` is the candidate's
    number. ``device`` and ``dtype`` are for the generator made here when none is given.
    """
    cancel = cancel or threading.Event()
    settings, encoding = job.ideation, job.color.model_encoding()
    generator = generator or ideation_generator(job, shot, device, dtype)
    folder = Path(out_dir) if out_dir is not None else ideation_folder(job, shot)
    prompt = shot.overrides.prompt if shot.overrides.prompt is not None else job.prompt
    negative = shot.overrides.negative_prompt if shot.overrides.negative_prompt is not None else job.negative_prompt
    controlnets = job.model.controlnets if job.model is not None else []
    guide = _guide(job, shot, encoding) if controlnets or settings.init_strength is not None else None
    style = None
    if job.model is not None and job.model.ip_adapter is not None:
        style = read_display_image(job.resolve(job.model.ip_adapter.image), encoding)
    model = StylizeParameters.for_shot(job, shot).model if job.model is not None else None
    geometry = model_geometry(model.path, model.family) if model is not None else None
    multiple = geometry.pixel_multiple if geometry else NO_MODEL_MULTIPLE
    long_side = settings.long_side or (geometry.working_size if geometry else NO_MODEL_LONG_SIDE)
    aspects = [guide.aspect_ratio] if guide else settings.aspect_ratios
    plan = [
        (number, text, aspect, seed)
        for number, text in enumerate(settings.prompts or [prompt])
        for aspect in aspects
        for seed in settings.seeds
    ]

    start: dict[str, Any] = {
        "event": "start",
        "shot": shot.name,
        "frames": [0, len(plan) - 1],
        "total": len(plan),
        "stage": "ideation",
    }
    note = _guide_note(guide, settings.aspect_ratios) if guide else None
    if note:
        start["note"] = note
    (folder / MANIFEST).unlink(missing_ok=True)  # it would describe the candidates this run replaces
    report(start)
    tiles = [(f"guide {guide.frame}", guide.beauty)] if guide else []
    entries: list[dict[str, Any]] = []
    began = time.monotonic()
    for index, (number, text, aspect, seed) in enumerate(plan):
        if cancel.is_set():
            raise Cancelled(shot.name)
        tick = time.monotonic()
        width, height = candidate_size(_ratio(aspect), long_side, multiple)
        image, control = guide.at(width, height) if guide else (None, {})
        request = Request(
            prompt=text,
            seed=seed,
            width=width,
            height=height,
            steps=job.steps,
            guidance=job.guidance,
            negative_prompt=negative,
            image=image if settings.init_strength is not None else None,
            strength=settings.init_strength or 1.0,
            control=control,
            style_image=style,
        )
        still = generator.generate(request, cancel)
        name = f"candidate_{index:02d}"
        picture = _one_image(still.frames, settings.generator)
        provenance = (
            {"generator": settings.generator}
            | still.provenance
            | {
                "stage": "ideation",
                "job": str(Path(job_path).resolve()),
                "shot": shot.name,
                "candidate": index,
                "prompt": text,
                "prompt_index": number,
                "seed": seed,
                "aspect_ratio": aspect,
            }
        )
        if guide:
            provenance |= {"plate": guide.path, "frame": guide.frame}
        write_generated(folder / f"{name}.exr", picture, encoding, job.exr, provenance)
        write_thumbnail(folder / f"{name}.png", picture)
        tiles.append((f"#{index}  prompt {number}  seed {seed}  {aspect}", picture))
        entries.append(
            {
                "index": index,
                "prompt": text,
                "prompt_index": number,
                "seed": seed,
                "aspect_ratio": aspect,
                "width": picture.shape[1],
                "height": picture.shape[0],
                "exr": f"{name}.exr",
                "thumbnail": f"{name}.png",
            }
        )
        done = index + 1
        report(
            {
                "event": "frame",
                "shot": shot.name,
                "frame": index,
                "candidate": index,
                "done": done,
                "total": len(plan),
                "status": "rendered",
                "output": str(folder / f"{name}.exr"),
                "seconds": round(time.monotonic() - tick, 3),
                "eta": round((time.monotonic() - began) / done * (len(plan) - done), 1),
            }
        )
    write_contact_sheet(folder / "contact_sheet.png", _letterboxed(tiles), columns=min(4, len(tiles)))
    manifest: dict[str, Any] = {
        "kind": "ideation",
        "shot": shot.name,
        "job": str(Path(job_path).resolve()),
        "generator": settings.generator,
        "contact_sheet": "contact_sheet.png",
        "guide": None,
        "candidates": entries,
    }
    if guide:
        manifest["guide"] = {"plate": guide.path, "frame": guide.frame, "note": note}
    path = folder / MANIFEST
    _write_json(path, manifest)
    report(
        {
            "event": "end",
            "rendered": len(plan),
            "cached": 0,
            "failed": 0,
            "cancelled": False,
            "seconds": round(time.monotonic() - began, 3),
        }
    )
    return path


def pick_still(job: Job, job_path: str, shot: Shot, manifest_path: str, index: int) -> dict[str, Any]:
    """Make ideation candidate ``index`` the shot's still: copy its EXR to ``Job.picked_still``, record the pick in
    the manifest, make its prompt the shot's (when it differs) and save the job; returns the candidate."""
    manifest = read_manifest(manifest_path, "ideation")
    chosen = chosen_entry(manifest, shot, index, manifest_path)
    source = Path(manifest_path).parent / chosen["exr"]
    if not source.is_file():
        raise JobError(f"candidate {index}'s EXR {source} is missing", manifest_path)
    with atomic_target(job.picked_still(shot)) as temp:
        shutil.copyfile(source, temp)
    _write_json(Path(manifest_path), manifest | {"picked": index})
    current = shot.overrides.prompt if shot.overrides.prompt is not None else job.prompt
    if chosen["prompt"] != current:
        shot.overrides.prompt = str(chosen["prompt"])
    save_job(job, job_path)
    return chosen


def candidate_size(ratio: float, long_side: int, multiple: int) -> tuple[int, int]:
    """(width, height) of width/height ``ratio`` with the longer side ``long_side``, both rounded to ``multiple``."""
    width, height = (long_side, long_side / ratio) if ratio >= 1 else (long_side * ratio, long_side)
    return _rounded(width, multiple), _rounded(height, multiple)


def _rounded(length: float, multiple: int) -> int:
    """``length`` to the nearest multiple (halves up), at least one multiple."""
    return max(multiple, math.floor(length / multiple + 0.5) * multiple)


def _ratio(aspect: str) -> float:
    """``"2.39:1"`` -> 2.39; a clear error for a zero side."""
    width, height = (float(side) for side in aspect.split(":"))
    if width <= 0 or height <= 0:
        raise JobError(f"ideation.aspect_ratios: {aspect} has a zero side")
    return width / height


def _guide(job: Job, shot: Shot, encoding: ModelEncoding) -> Guide:
    """The shot's plate at ``ideation.guide_frame`` (default: its first frame), encoded for the model, with the
    condition images of the model's ControlNets built from its AOVs."""
    frame = job.ideation.guide_frame
    if frame is None:
        frame = shot.frames.first if shot.frames is not None else shot_frames(job, shot)[1][0]
    path = FrameSequence(job.resolve(shot.plate)).path(frame)
    controlnets = job.model.controlnets if job.model is not None else []
    inputs, _ = frame_inputs(read_plate(path), frame, shot, control_clips(controlnets))
    source = inputs.images["Source"]
    beauty = encoding.encode(source[..., :3], source[..., 3]).image
    return Guide(frame, path, beauty, {net.source: control_condition(net, inputs, beauty) for net in controlnets})


def _one_image(frames: list[np.ndarray], generator: str) -> np.ndarray:
    """A generator's still as (H, W, 3) float32; a clear error naming the generator for anything else."""
    image = np.asarray(frames[0], dtype=np.float32) if len(frames) == 1 else None
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        got = f"{len(frames)} images" if image is None else f"an image shaped {image.shape}"
        raise StyleCompError(f"generator {generator!r} returned {got}, not one (H, W, 3) image")
    return image


def _guide_note(guide: Guide, aspect_ratios: list[str]) -> str:
    return (
        f"plate frame {guide.frame} guides: its aspect ratio ({guide.aspect_ratio}) sets the size, so "
        f"ideation.aspect_ratios ({', '.join(aspect_ratios)}) are not used"
    )


def _letterboxed(tiles: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Tiles padded (centred, in the sheet's grey) to the tallest one's shape, so no aspect ratio is stretched."""
    tallest = max(image.shape[0] / image.shape[1] for _, image in tiles)
    boxed = []
    for label, image in tiles:
        height, width = image.shape[:2]
        box = max(height, round(width * tallest))
        top = (box - height) // 2
        canvas = np.full((box, width, 3), _SHEET_GREY, np.float32)
        canvas[top : top + height] = image[..., :3]
        boxed.append((label, canvas))
    return boxed


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_target(path) as temp:
        Path(temp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
