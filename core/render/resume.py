"""Resuming an interrupted render: clear what a killed run left behind, so only whole frames count as done.

A frame is done when its output is a readable EXR (every pixel, not only the header) whose
cache key matches the frame's current key. ``prepare_resume`` checks the first half before a
job runs: temp files of a killed writer (``.name.<pid>-<hex>.tmp.exr``, see ``io.atomic``)
whose process is gone are deleted, and outputs that do not read whole (truncated, copied in
part) are deleted, so the render loop renders those frames again; the render loop compares
the keys as on every run. ``VerifiedCache`` serves a cached frame only when it reads whole too.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StyleCompError
from ..io.plates import Plate, read_plate
from ..io.sequence import FrameSequence
from ..jobspec import Job
from .cache import KEY_ATTRIBUTE, RenderCache
from .loop import shot_frames

# io.atomic's temp name: "." + the target's stem + ".<pid>-<8 hex digits>.tmp" + the target's extension.
_TEMP_NAME = re.compile(r"\.(?P<stem>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(?P<ext>\.[^.]*)?\Z")


@dataclass
class ResumeReport:
    """What resuming found: outputs that read whole and carry a cache key, and the files it deleted."""

    complete: int = 0
    removed_temp: list[str] = field(default_factory=list)
    removed_damaged: list[str] = field(default_factory=list)


def prepare_resume(job: Job, shots: Sequence[str] | None = None, frames: tuple[int, int] | None = None) -> ResumeReport:
    """Delete the job's stale temp files and its outputs that do not read whole, for the shots and frames given."""
    report = ResumeReport()
    for shot in job.shots:
        if shots and shot.name not in shots:
            continue
        try:
            frame_list = shot_frames(job, shot, frames)[1]
        except StyleCompError:
            continue  # no plates to render from: render_job says so when the job runs
        outputs = FrameSequence(job.resolve(shot.output))
        targets = {outputs.path(frame) for frame in frame_list}
        report.removed_temp += _remove_stale_temps(targets)
        for target in sorted(targets):
            if not os.path.exists(target):
                continue
            plate = _read_whole(target)
            if plate is None:
                os.unlink(target)
                report.removed_damaged.append(target)
            else:
                report.complete += KEY_ATTRIBUTE in plate.parts[0].attributes
    return report


def _read_whole(path: str | os.PathLike[str]) -> Plate | None:
    """The EXR with every part's pixels read; None when any of it does not read."""
    try:
        return read_plate(path)
    except StyleCompError:
        return None


class VerifiedCache(RenderCache):
    """A render cache that serves a frame only when it reads whole; a damaged entry is dropped."""

    def lookup(self, key: str) -> Path | None:
        path = super().lookup(key)
        if path is not None and _read_whole(path) is None:
            path.unlink(missing_ok=True)
            return None
        return path


def _remove_stale_temps(targets: set[str]) -> list[str]:
    """Delete the temp files of ``targets`` whose writing process is no longer running on this machine."""
    removed = []
    for folder in sorted({os.path.dirname(target) for target in targets}):
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in sorted(entries):
            match = _TEMP_NAME.match(entry)
            if match is None or os.path.join(folder, match["stem"] + (match["ext"] or "")) not in targets:
                continue
            if not _running(int(match["pid"])):
                path = os.path.join(folder, entry)
                with contextlib.suppress(FileNotFoundError):  # another resume got there first
                    os.unlink(path)
                    removed.append(path)
    return removed


def _running(pid: int) -> bool:
    """Whether a process with this id runs here (one of another user counts as running)."""
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) would send Ctrl-C, not probe
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
