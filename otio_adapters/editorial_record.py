"""The editorial record of a shot: where its clip was cut, in OpenTimelineIO's own terms.

It is what lets a conform find the clip again and check that the edit has not moved since
the job was made: the track and position, the record and source ranges, and how media time
maps to plate frame numbers.
"""

from __future__ import annotations

import opentimelineio as otio

from stylecomp.jobspec import Editorial, TimeSpan

from .clip_place import ClipPlace
from .frame_numbers import FrameNumbering


def span_of(time_range: otio.opentime.TimeRange) -> TimeSpan:
    """An OTIO time range as a job's TimeSpan (the duration at the start's rate)."""
    start, duration = time_range.start_time, time_range.duration.rescaled_to(time_range.start_time)
    return TimeSpan(start=start.value, duration=duration.value, rate=start.rate)


def time_range_of(span: TimeSpan) -> otio.opentime.TimeRange:
    """A job's TimeSpan as an OTIO time range."""
    return otio.opentime.TimeRange(
        otio.opentime.RationalTime(span.start, span.rate), otio.opentime.RationalTime(span.duration, span.rate)
    )


def editorial_for(
    place: ClipPlace, source: otio.opentime.TimeRange, numbering: FrameNumbering, timeline_path: str | None
) -> Editorial:
    """The editorial record of the clip at ``place``, which plays ``source`` of its media."""
    return Editorial(
        timeline=timeline_path,
        track=place.track_name,
        track_index=place.track_index,
        item_index=place.item_index,
        clip=place.clip.name,
        record=span_of(place.record_range()),
        source=span_of(source),
        rate=numbering.rate,
        frame_offset=numbering.offset,
        nesting=list(place.nesting),
    )
