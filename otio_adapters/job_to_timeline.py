"""A job as a timeline: a stringout of its shots, so OpenTimelineIO tools can show and edit it.

One video track, one clip per shot in job order, back to back. Each clip's media is an
``ImageSequenceReference`` to the shot's plate covering its frames with handles; its source
range is the cut. What a timeline cannot say (output, handles, AOVs, notes, regions, overrides
and the shot's editorial record) goes in the clip's ``stylecomp`` metadata, and the job's other
settings in the timeline's, so that `timeline_to_job` gives the same job back.
"""

from __future__ import annotations

import opentimelineio as otio

from stylecomp.errors import TimelineError
from stylecomp.jobspec import Job, Shot

from .clip_settings import KEY, ClipSettings
from .image_sequences import reference

DEFAULT_RATE = 24.0  # for shots without an editorial record, which would give their media's rate


def _clip(shot: Shot, rate: float) -> otio.schema.Clip:
    """The shot as a clip: its plate as media with handles, its cut as source range, the rest as metadata."""
    if shot.frames is None:
        raise TimelineError(f"shot {shot.name}: has no frame range, which a timeline clip needs")
    record = shot.editorial
    rate, offset = (record.rate, record.frame_offset) if record is not None else (rate, 0)
    first, last = shot.frames.first, shot.frames.last
    head, tail = shot.handle_frames()
    settings = ClipSettings(
        **shot.overrides.model_dump(),
        handles=shot.handles,
        head_handles=shot.head_handles,
        tail_handles=shot.tail_handles,
        output=shot.output,
        aovs=shot.aovs or None,
        notes=shot.notes or None,
        regions=shot.regions or None,
        editorial=record,
    )
    metadata = settings.model_dump(mode="json", exclude_none=True)
    metadata["editorial"] = metadata.get("editorial")  # null too: a shot not cut from an edit stays so
    try:
        media = reference(shot.plate, first - head, last + tail, rate, offset)
    except TimelineError as exc:
        raise TimelineError(f"shot {shot.name}: plate {shot.plate}: {exc.reason}") from None
    return otio.schema.Clip(
        name=shot.name,
        media_reference=media,
        source_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(first - offset, rate), otio.opentime.RationalTime(last - first + 1, rate)
        ),
        metadata={KEY: metadata},
    )


def job_to_timeline(job: Job, name: str = "stylecomp job", rate: float = DEFAULT_RATE) -> otio.schema.Timeline:
    """The job as a stringout timeline; ``rate`` is for shots that were not made from an edit."""
    track = otio.schema.Track(name="stylecomp", kind=otio.schema.TrackKind.Video)
    for shot in job.shots:
        track.append(_clip(shot, rate))
    timeline = otio.schema.Timeline(name=name, metadata={KEY: job.model_dump(mode="json", exclude={"shots"})})
    timeline.tracks.append(track)
    return timeline
