"""Timelines for the OTIO tests: the shared samples and the options they need, real EXR frames on disk, and the
`stylecomp timeline jobs` / `conform` commands run in this process."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import opentimelineio as otio
from click.testing import CliRunner, Result

from stylecomp.cli import cli
from stylecomp.io.plates import ImagePart, write_plate
from stylecomp.jobspec import Job, load_job

RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange
PLATES = "plates/{shot}/{shot}.####.exr"

# Every shared timeline, with the options it needs: its rate (an EDL carries none) and
# --unique-names where one clip is cut in twice.
SHARED = {
    "screening_example.edl": [],
    "screening_example.otio": [],
    "25fps.edl": ["--rate", "25"],
    "dissolve_test.edl": ["--unique-names"],
    "cdl.edl": ["--unique-names"],
    "speed_effects_small.edl": [],
    "no_spaces_test.edl": [],
    "simple_cut.otio": [],
    "multitrack.otio": [],
    "transition.otio": [],
    "clip_example.otio": [],
}


def write_frames(pattern: str | Path, frames: Iterable[int]) -> None:
    """Real EXR frames for a printf pattern: one tiny plate written, hard-linked once per frame."""
    pattern = str(pattern)
    os.makedirs(os.path.dirname(pattern), exist_ok=True)
    source = os.path.join(os.path.dirname(pattern), ".source.exr")
    if not os.path.exists(source):
        write_plate(source, [ImagePart.create(np.full((2, 2, 3), 0.18, np.float32), ["R", "G", "B"])])
    for frame in frames:
        os.link(source, pattern % frame)


def jobs(*args: str) -> Result:
    return CliRunner().invoke(cli, ["timeline", "jobs", *args])


def make_job(timeline: Path, job: Path, *args: str) -> Job:
    result = jobs(str(timeline), "-o", str(job), *args)
    assert result.exit_code == 0, result.output
    return load_job(job)


def video_clips(timeline: otio.schema.Timeline) -> list[otio.schema.Clip]:
    return [c for track in timeline.video_tracks() for c in track if isinstance(c, otio.schema.Clip)]


def save_otio(tmp_path: Path, name: str, tracks: list[otio.schema.Track], **metadata: object) -> Path:
    timeline = otio.schema.Timeline(name=name, metadata=metadata)
    timeline.tracks.extend(tracks)
    path = tmp_path / f"{name}.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path


DROP_FRAME_EDL = """TITLE: drop frame
FCM: DROP FRAME
001  AX       V     C        00:00:59;28 00:01:00;04 01:00:00;00 01:00:00;04
* FROM CLIP NAME:  sh010
002  AX       V     C        00:09:59:28 00:10:00:04 01:00:00:04 01:00:00:10
* FROM CLIP NAME:  sh020
"""


def conform(*args: str) -> Result:
    return CliRunner().invoke(cli, ["timeline", "conform", *args])


def render(job: Job, shots: list[str]) -> None:
    """Stand-in stylized outputs: real EXR files for every frame of the named shots, with handles."""
    for shot in job.shots:
        if shot.name in shots:
            first, last = shot.frame_range_with_handles()
            write_frames(job.resolve(shot.output), range(first, last + 1))
