"""Conform: put a job's stylized shots (or animatic clips, or ideation stills) back into the timeline.

Each shot with an editorial record is found again at its track and position, and checked by
clip name and record range. When its frames cover the whole cut, the clip gets an
``ImageSequenceReference`` to them (start frame, rate and padding from the output pattern and
the shot's frame numbering) as its active media, under the media's key (``stylized`` for the
stylized outputs, ``animatic`` for ``stylecomp animate``'s clips); a picked ideation still
becomes an ``ExternalReference`` held for the clip's length, under ``ideation``. The original
media stays under its own key. Source range, effects, markers, transitions and gaps are left
as they were, so every clip keeps its record range exactly. Shots without the media keep
their original media and are reported.
"""

from __future__ import annotations

import opentimelineio as otio
from stylecomp.errors import TimelineError
from stylecomp.jobspec import Job, Shot
from stylecomp.sequence import frames_on_disk

from .clip_place import ClipPlace
from .editorial_record import time_range_of
from .image_sequences import reference
from .rates import frame_at
from .report import Report

STYLIZED = "stylized"  # the media-reference key of the stylized frames
MEDIA = (STYLIZED, "animatic", "ideation")  # what a clip can be conformed to; each is also its media key


def conform(timeline: otio.schema.Timeline, job: Job, timeline_path: str | None = None,
            media: str = STYLIZED) -> Report:
    """Point ``timeline``'s clips at the job's ``media`` (one of MEDIA), in place; report what was done.

    ``timeline_path`` is where the timeline came from, named in errors.
    """
    if media not in MEDIA:
        raise TimelineError(f"cannot conform to {media!r}; choose one of {', '.join(MEDIA)}")
    try:
        return _conform(timeline, job, media)
    except TimelineError as exc:
        if exc.where is None and timeline_path:
            raise TimelineError(exc.reason, timeline_path) from None
        raise


def _conform(timeline: otio.schema.Timeline, job: Job, media: str) -> Report:
    report = Report()
    for shot in job.shots:
        if shot.editorial is None:
            report.skipped["shot without an editorial record"] += 1
            report.warnings.append(f"shot {shot.name}: not made from a timeline (no editorial record); left out")
            continue
        clip = _clip_for(timeline, shot)
        if media == "ideation":
            done = _conform_still(clip, shot, job, report)
        else:
            output = job.resolve(shot.output) if media == STYLIZED else job.shot_path(job.animation.output, shot)
            done = _conform_clip(clip, shot, output, media, report)
        if done:
            report.shots.append(shot.name)
        else:
            report.skipped["unrendered shot" if media == STYLIZED else f"shot without {media}"] += 1
    return report


def _clip_for(timeline: otio.schema.Timeline, shot: Shot) -> otio.schema.Clip:
    """The shot's clip, where its editorial record says, with the record range it had."""
    record = shot.editorial
    tracks = list(timeline.tracks)
    track = tracks[record.track_index] if record.track_index < len(tracks) else None
    item = track[record.item_index] if isinstance(track, otio.schema.Track) and record.item_index < len(track) else None
    if not (isinstance(item, otio.schema.Clip) and item.name == record.clip
            and ClipPlace.of(item).track_name == record.track):
        raise TimelineError(
            f"shot {shot.name}: no clip {record.clip!r} at track {record.track!r}, item {record.item_index}; "
            f"is this the timeline the job was made from ({record.timeline or 'not recorded'})?"
        )
    expected, actual = time_range_of(record.record), item.range_in_parent()
    if actual != expected:
        raise TimelineError(f"shot {shot.name}: {ClipPlace.of(item).describe()} now plays {actual}, not {expected} "
                            "as when the job was made; make the job again")
    return item


def _conform_clip(clip: otio.schema.Clip, shot: Shot, output: str, key: str, report: Report) -> bool:
    """Give ``clip`` the shot's frames of ``output`` under ``key``; False (and a warning) when they are not all there."""
    first, last = shot.frames.first, shot.frames.last  # type: ignore[union-attr]  # shots from clips have frames
    rendered = frames_on_disk(output)
    missing = [f for f in range(first, last + 1) if f not in rendered]
    if missing:
        state = "not rendered" if len(missing) == last - first + 1 else f"{len(missing)} frames missing"
        report.warnings.append(f"shot {shot.name}: {state} in {first}-{last} at {output}; keeps its original media")
        return False
    low, high = first, last
    while first - low < shot.handles and low - 1 in rendered:
        low -= 1
    while high - last < shot.handles and high + 1 in rendered:
        high += 1
    record = shot.editorial
    if clip.source_range is None:  # it played its whole media; keep that range when the media changes
        clip.source_range = clip.trimmed_range()
    visible = clip.visible_range()
    shown = (frame_at(visible.start_time, record.rate) + record.frame_offset,
             frame_at(visible.end_time_exclusive(), record.rate) + record.frame_offset - 1)
    if not clip.effects and (shown[0] < low or shown[1] > high):
        report.warnings.append(f"shot {shot.name}: its transitions show frames {shown[0]}-{shown[1]}, "
                               f"but frames {low}-{high} are rendered")
    media = dict(clip.media_references())
    media[key] = reference(output, low, high, record.rate, record.frame_offset)
    clip.set_media_references(media, key)
    return True


def _conform_still(clip: otio.schema.Clip, shot: Shot, job: Job, report: Report) -> bool:
    """Give ``clip`` the shot's picked ideation still, held for the clip's source range."""
    still = job.picked_still(shot)
    if not still.is_file():
        report.warnings.append(f"shot {shot.name}: no picked ideation still at {still}; keeps its original media")
        return False
    if clip.source_range is None:
        clip.source_range = clip.trimmed_range()
    media = dict(clip.media_references())
    media["ideation"] = otio.schema.ExternalReference(target_url=still.as_uri(), available_range=clip.source_range)
    clip.set_media_references(media, "ideation")
    return True
