"""Which frames of a shot a render walks, answered from the job spec and the plates on disk (no torch).

Farm planners and ``job validate`` use this without loading the stylize stage; the render loop uses the same
answers, so a plan and the render it stands for cannot disagree.
"""

from __future__ import annotations

from ..io.sequence import FrameSequence, discover
from ..jobspec import Job, Shot


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


def sequential_frames(job: Job, shot: Shot, last: int) -> list[int]:
    """A sequential shot's frames up to ``last``: from its first frame, since each frame needs the previous one."""
    return [frame for frame in shot_frames(job, shot)[1] if frame <= last]
