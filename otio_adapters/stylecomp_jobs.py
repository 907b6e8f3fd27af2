"""OTIO adapter ``stylecomp_jobs``: stylecomp job documents as timelines, and timelines as jobs.

    timeline = otio.adapters.read_from_file("job.json", adapter_name="stylecomp_jobs")
    otio.adapters.write_to_file(cut, "job.json", adapter_name="stylecomp_jobs",
                                plates="/shows/x/{shot}/plates/{clip}.####.exr", handles=8)

Reading gives the job as a stringout timeline (one clip per shot, `job_to_timeline`).
Writing makes one shot per video clip, by the rules and with the options of
``stylecomp timeline jobs`` (`timeline_to_job`); relative paths in the job resolve against its
folder, and warnings go to the ``stylecomp_otio`` logger. A job read and written back is the
same job. No file suffix is registered (``.json`` is not only jobs): name the adapter.

OTIO loads this file by path, outside its package, so its imports are absolute.
"""

from __future__ import annotations

import logging
import os

import opentimelineio as otio

from stylecomp.jobspec import load_job, save_job
from stylecomp_otio.job_to_timeline import DEFAULT_RATE, job_to_timeline
from stylecomp_otio.plate_template import DEFAULT_OUTPUT
from stylecomp_otio.timeline_to_job import JobOptions, timeline_to_job

_log = logging.getLogger("stylecomp_otio")


def read_from_file(filepath: str, rate: float = DEFAULT_RATE) -> otio.schema.Timeline:
    """A job file as a stringout timeline; ``rate`` for shots not made from an edit."""
    return job_to_timeline(load_job(filepath), os.path.splitext(os.path.basename(filepath))[0], rate)


def write_to_file(
    input_otio: otio.schema.Timeline,
    filepath: str,
    plates: str | None = None,
    output: str = DEFAULT_OUTPUT,
    handles: int = 0,
    start_frame: int = 1001,
    track: str | None = None,
    allow_missing: bool = False,
    unique_names: bool = False,
    timeline_path: str | None = None,
) -> None:
    """Write the timeline's video clips as a job file, one shot per clip."""
    options = JobOptions(
        plates=plates,
        output=output,
        handles=handles,
        start_frame=start_frame,
        track=track,
        allow_missing=allow_missing,
        unique_names=unique_names,
        timeline_path=timeline_path,
        base_dir=os.path.dirname(os.path.abspath(filepath)),
    )
    job, report = timeline_to_job(input_otio, options)
    for warning in report.warnings:
        _log.warning(warning)
    save_job(job, filepath)
