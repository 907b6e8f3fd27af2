"""Frame chunks: a job's shots cut into the units of work that executors hand out (Ray actors, farm tasks).

The one farm-agnostic plan both the Ray executor and the OpenJD template are made from. A shot
whose frames are independent is cut into chunks of ``chunk_size`` frames that may render
anywhere, in any order. A shot whose stage is sequential (each frame needs the previous
frame's output) is one chunk from the shot's first frame: the render loop walks such a shot from
its first frame whatever range it is given, so cutting it would make every chunk re-read the
frames before it; as one chunk it renders in order on one worker, with its state in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..diffusion.model_files import check_model
from ..errors import JobError
from ..jobspec import Job, Shot
from ..render.frames import sequential_frames, shot_frames

DEFAULT_CHUNK_SIZE = 10
STAGE = "stylize"  # the stage every chunk renders (StylizeStage.name), named here so planning needs no torch


@dataclass(frozen=True)
class Chunk:
    """Frames ``first`` to ``last`` (inclusive) of one shot: ``count`` frames to render."""

    shot: str
    first: int
    last: int
    count: int


@dataclass(frozen=True)
class ShotPlan:
    """A shot's frames to render, its stage's name, whether it is sequential, and its chunks."""

    shot: Shot
    frames: tuple[int, ...]
    stage: str
    sequential: bool
    chunks: tuple[Chunk, ...]


def plan_shots(
    job: Job,
    *,
    shots: Sequence[str] | None = None,
    frames: tuple[int, int] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> list[ShotPlan]:
    """The job's shots (all, or those named) with frames (within ``frames``), cut into chunks; empty shots left out.

    Raises StyleCompError for what would stop every frame: no model, a missing or refused model, no frames.
    """
    if chunk_size < 1:
        raise JobError(f"the chunk size must be at least 1, not {chunk_size}")
    plans = []
    for shot in _select(job, shots):
        _, frame_list = shot_frames(job, shot, frames)
        if not frame_list:
            continue
        check_model(job.shot_model(shot))  # a missing or refused model stops here, before any worker starts
        sequential = job.consistency.sequential  # from the job spec: planning loads no stage (no torch)
        if sequential:  # rendered from the shot's first frame, as render_job does
            frame_list = sequential_frames(job, shot, frame_list[-1])
        size = len(frame_list) if sequential else chunk_size
        chunks = tuple(
            Chunk(shot.name, part[0], part[-1], len(part))
            for part in (frame_list[i : i + size] for i in range(0, len(frame_list), size))
        )
        plans.append(ShotPlan(shot, tuple(frame_list), STAGE, sequential, chunks))
    if not plans:
        where = f" in {frames[0]}-{frames[1]}" if frames is not None else ""
        raise JobError(f"no shot has frames{where} to render")
    return plans


def _select(job: Job, names: Sequence[str] | None) -> list[Shot]:
    """The shots named (all when none are), in the job's order; an unknown name is an error."""
    if not names:
        return list(job.shots)
    known = {shot.name for shot in job.shots}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise JobError(f"no shot named {', '.join(unknown)}; the job's shots are {', '.join(sorted(known))}")
    return [shot for shot in job.shots if shot.name in names]
