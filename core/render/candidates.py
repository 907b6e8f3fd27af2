"""Candidates: variants of one frame to choose from, and locking the chosen one into the job.

Candidate k renders with seed ``s + k * seed_stride`` (s: the shot's seed) and, when the job
lists them, the k-th strength and prompt (cycled). They land in one folder with a JSON
manifest, a thumbnail each and a labelled contact sheet; ``pick`` writes the chosen seed (and
strength/prompt, if they varied) into the shot's overrides, so every later render of the shot
uses exactly what the artist saw. Ideation (``stylecomp.generators.ideation``) writes the same files, with
a ``"kind": "ideation"`` manifest that ``read_manifest`` checks too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..diffusion.pool import PipelinePool
from ..diffusion.stylize import StylizeParameters
from ..errors import JobError
from ..io.atomic import atomic_target
from ..io.contactsheet import write_contact_sheet
from ..io.plates import read_plate, write_plate
from ..io.sequence import FrameSequence
from ..jobspec import Job, Shot, save_job
from ..regions.mattes import check_regions
from .loop import Report, rgba_part, shot_inputs
from .stages import stylize_stage

MANIFEST = "manifest.json"
THUMBNAIL_WIDTH = 320
ManifestKind = Literal["candidates", "ideation"]
# The fields every candidate entry of each kind of manifest has (``pick`` relies on them).
_MANIFEST_FIELDS: dict[str, tuple[str, ...]] = {
    "candidates": ("index", "seed"),
    "ideation": ("index", "seed", "prompt", "exr"),
}


def candidates_folder(job: Job, shot: Shot, frame: int) -> Path:
    """The default folder for a frame's candidates: ``<output folder>/candidates/<shot>.<frame>/``."""
    return Path(job.resolve(shot.output)).parent / "candidates" / f"{shot.name}.{frame}"


def variant(job: Job, shot: Shot, index: int) -> Shot:
    """The shot as candidate ``index`` renders it: its seed, strength and prompt as overrides."""
    params = StylizeParameters.for_shot(job, shot)
    settings = job.candidates
    overrides = shot.overrides.model_copy(update={"seed": params.seed + index * settings.seed_stride})
    if settings.strengths:
        overrides.strength = settings.strengths[index % len(settings.strengths)]
    if settings.prompts:
        overrides.prompt = settings.prompts[index % len(settings.prompts)]
    return shot.model_copy(update={"overrides": overrides})


def render_candidates(
    job: Job,
    job_path: str | os.PathLike[str],
    shot: Shot,
    frame: int,
    out_dir: str | os.PathLike[str] | None = None,
    pool: PipelinePool | None = None,
    report: Report = lambda event: None,
    cancel: threading.Event | None = None,
) -> Path:
    """Render ``job.candidates.count`` variants of ``frame``; returns the manifest's path."""
    pool = pool or PipelinePool()
    cancel = cancel or threading.Event()
    folder = Path(out_dir) if out_dir is not None else candidates_folder(job, shot, frame)
    plate_path = FrameSequence(job.resolve(shot.plate)).path(frame)
    plate = read_plate(plate_path)
    check_regions(job, shot, [frame], FrameSequence(job.resolve(shot.plate)))  # a bad selector: one line, no files
    encoding = job.color.model_encoding()
    count = job.candidates.count
    report({"event": "start", "shot": shot.name, "frames": [frame, frame], "total": count, "stage": "candidates"})
    entries: list[dict[str, Any]] = []
    tiles: list[tuple[str, np.ndarray]] = []
    for index in range(count):
        tick = time.monotonic()
        stage = stylize_stage(job, variant(job, shot, index), pool)
        params = stage.params
        clips = [c for c in stage.describe().clips if c.name != "StyleReference"]
        inputs, part = shot_inputs(job, shot, plate, frame, clips)
        if index == 0:
            tiles.append(
                (
                    f"plate {frame}",
                    encoding.encode(inputs.images["Source"][..., :3], inputs.images["Source"][..., 3]).image,
                )
            )
        stage.begin_sequence(frame, frame)
        result = stage.render(frame, inputs.window, inputs, cancel)
        stage.end_sequence()
        name = f"candidate_{index:02d}"
        write_plate(
            folder / f"{name}.exr",
            [rgba_part(result.rgba, result.window, part, job)],
            provenance=result.provenance | {"frame": frame, "plate": plate_path, "candidate": index},
        )
        preview = encoding.encode(result.rgba[..., :3], result.rgba[..., 3]).image
        write_thumbnail(folder / f"{name}.png", preview)
        label = f"#{index}  seed {params.seed}  strength {params.strength:g}"
        tiles.append((label, preview))
        entries.append(
            {
                "index": index,
                "seed": params.seed,
                "frame_seed": params.frame_seed(frame),
                "strength": params.strength,
                "prompt": params.prompt,
                "exr": f"{name}.exr",
                "thumbnail": f"{name}.png",
            }
        )
        report(
            {
                "event": "frame",
                "shot": shot.name,
                "frame": frame,
                "candidate": index,
                "done": index + 1,
                "total": count,
                "status": "rendered",
                "output": str(folder / f"{name}.exr"),
                "seconds": round(time.monotonic() - tick, 3),
            }
        )
    write_contact_sheet(folder / "contact_sheet.png", tiles, columns=min(4, len(tiles)))
    manifest = {
        "kind": "candidates",
        "shot": shot.name,
        "frame": frame,
        "job": str(Path(job_path).resolve()),
        "plate": plate_path,
        "contact_sheet": "contact_sheet.png",
        "candidates": entries,
    }
    path = folder / MANIFEST
    with atomic_target(path) as temp:
        Path(temp).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    report({"event": "end", "rendered": count, "cached": 0, "failed": 0, "cancelled": False})
    return path


def pick(
    job: Job, job_path: str | os.PathLike[str], shot: Shot, manifest_path: str | os.PathLike[str], index: int
) -> dict[str, Any]:
    """Lock candidate ``index`` of a manifest into the shot's overrides and save the job; returns the candidate."""
    chosen = chosen_entry(read_manifest(manifest_path, "candidates"), shot, index, manifest_path)
    base = StylizeParameters.for_shot(job, shot)
    shot.overrides.seed = int(chosen["seed"])
    if float(chosen["strength"]) != base.strength:
        shot.overrides.strength = float(chosen["strength"])
    if chosen["prompt"] != base.prompt:
        shot.overrides.prompt = str(chosen["prompt"])
    save_job(job, job_path)
    return chosen


def read_manifest(path: str | os.PathLike[str], kind: ManifestKind | None = None) -> dict[str, Any]:
    """A candidates or ideation manifest (``kind``, when only one will do), checked for the fields ``pick``
    and the Nuke picker rely on. Manifests without a ``kind`` are candidates manifests."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise JobError(exc.strerror or "cannot read the manifest", path) from None
    except json.JSONDecodeError as exc:
        raise JobError(f"not valid JSON: {exc.msg} at line {exc.lineno}", path) from None
    if not isinstance(manifest, dict):
        raise JobError("not a candidates or ideation manifest (not a JSON object)", path)
    found = manifest.get("kind", "candidates")
    if found not in _MANIFEST_FIELDS:
        raise JobError(f"not a candidates or ideation manifest (kind {found!r})", path)
    if kind is not None and found != kind:
        raise JobError(f"this is {'an' if found == 'ideation' else 'a'} {found} manifest, not {kind}", path)
    fields = _MANIFEST_FIELDS[found]
    entries = manifest.get("candidates")
    if not isinstance(entries, list) or not all(isinstance(c, dict) and set(fields) <= c.keys() for c in entries):
        raise JobError(
            f"not {'an' if found == 'ideation' else 'a'} {found} manifest (no 'candidates' list with "
            f"{', '.join(fields[:-1])} and {fields[-1]})",
            path,
        )
    return manifest


def chosen_entry(manifest: dict[str, Any], shot: Shot, index: int, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Candidate ``index`` of a manifest read by ``read_manifest``; a clear error for another shot or a bad index."""
    if manifest.get("shot") != shot.name:
        raise JobError(f"these candidates are for shot {manifest.get('shot')!r}, not {shot.name!r}", path)
    chosen = next((c for c in manifest["candidates"] if c.get("index") == index), None)
    if chosen is None:
        indices = ", ".join(str(c.get("index")) for c in manifest["candidates"])
        raise JobError(f"no candidate {index}; the manifest has {indices or 'none'}", path)
    return chosen


def latest_manifest(job: Job, shot: Shot) -> Path:
    """The most recently written manifest among the shot's default candidate folders."""
    root = Path(job.resolve(shot.output)).parent / "candidates"
    found = sorted(root.glob(f"{shot.name}.*/{MANIFEST}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise JobError(f"no candidates rendered for shot {shot.name} (looked in {root}); run 'stylecomp candidates'")
    return found[-1]


def write_thumbnail(path: Path, image: np.ndarray) -> None:
    """An (H, W, 3) [0, 1] image as a THUMBNAIL_WIDTH-wide 8-bit PNG, atomically."""
    pixels = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    height = max(1, round(THUMBNAIL_WIDTH * image.shape[0] / image.shape[1]))
    thumb = Image.fromarray(pixels).resize((THUMBNAIL_WIDTH, height), Image.Resampling.BILINEAR)
    with atomic_target(path) as temp:
        thumb.save(temp, format="PNG")
