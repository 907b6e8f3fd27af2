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
from stylecomp.io.sequence import frames_on_disk
from stylecomp.jobspec import Job, Shot

from .clip_place import ClipPlace
from .editorial_record import time_range_of
from .image_sequences import reference
from .rates import frame_at
from .report import Report, ShotReport

STYLIZED = "stylized"  # the media-reference key of the stylized frames
MEDIA = (STYLIZED, "animatic", "ideation")  # what a clip can be conformed to; each is also its media key


def conform(
    timeline: otio.schema.Timeline, job: Job, timeline_path: str | None = None, media: str = STYLIZED
) -> Report:
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
            report.skip("shot without an editorial record", f"shot {shot.name}")
            report.warnings.append(f"shot {shot.name}: not made from a timeline (no editorial record); left out")
            continue
        clip = _clip_for(timeline, shot)
        frames = (shot.frames.first, shot.frames.last) if shot.frames else None
        shot_report = ShotReport(
            shot.name, ClipPlace.of(clip).describe(), frames, shot.handle_frames(), subject=f"shot {shot.name}"
        )
        report.shots.append(shot_report)
        if media == "ideation":
            done = _conform_still(clip, shot, job, report, shot_report)
        else:
            output = job.resolve(shot.output) if media == STYLIZED else job.shot_path(job.animation.output, shot)
            done = _conform_clip(clip, shot, output, media, report, shot_report)
        if done:
            shot_report.status = "conformed"
        else:
            shot_report.status = "unrendered" if media == STYLIZED else f"no {media}"
            report.skip("unrendered shot" if media == STYLIZED else f"shot without {media}", f"shot {shot.name}")
    return report


def _clip_for(timeline: otio.schema.Timeline, shot: Shot) -> otio.schema.Clip:
    """The shot's clip, where its editorial record says (through its nesting), with the record range it had."""
    record = shot.editorial
    assert record is not None  # _conform passes only shots made from clips
    tracks = list(timeline.tracks)
    item: object = tracks[record.track_index] if record.track_index < len(tracks) else None
    for index in (record.item_index, *record.nesting):
        item = item[index] if isinstance(item, otio.core.Composition) and index < len(item) else None
    if not (
        isinstance(item, otio.schema.Clip)
        and item.name == record.clip
        and ClipPlace.of(item).track_name == record.track
    ):
        position = " > ".join(map(str, (record.item_index, *record.nesting)))
        raise TimelineError(
            f"shot {shot.name}: no clip {record.clip!r} at track {record.track!r}, item {position}; "
            f"is this the timeline the job was made from ({record.timeline or 'not recorded'})?"
        )
    place = ClipPlace.of(item)
    expected, actual = time_range_of(record.record), place.record_range()
    if actual != expected:
        raise TimelineError(
            f"shot {shot.name}: {place.describe()} now plays {actual}, not {expected} "
            "as when the job was made; make the job again"
        )
    return item


def _conform_clip(
    clip: otio.schema.Clip, shot: Shot, output: str, key: str, report: Report, shot_report: ShotReport
) -> bool:
    """Give ``clip`` the shot's frames of ``output`` under ``key``; False (and a warning) when some are missing."""
    first, last = shot.frames.first, shot.frames.last  # type: ignore[union-attr]  # shots from clips have frames
    rendered = frames_on_disk(output)
    missing = [f for f in range(first, last + 1) if f not in rendered]
    if missing:
        state = "not rendered" if len(missing) == last - first + 1 else f"{len(missing)} frames missing"
        report.note(shot_report, f"{state} in {first}-{last} at {output}; keeps its original media")
        return False
    low, high = first, last
    head, tail = shot.handle_frames()
    while first - low < head and low - 1 in rendered:
        low -= 1
    while high - last < tail and high + 1 in rendered:
        high += 1
    record = shot.editorial
    assert record is not None  # _conform passes only shots made from clips
    if clip.source_range is None:  # it played its whole media; keep that range when the media changes
        clip.source_range = clip.trimmed_range()
    if not clip.effects:
        visible = ClipPlace.of(clip).shown_range()
        shown = (
            frame_at(visible.start_time, record.rate) + record.frame_offset,
            frame_at(visible.end_time_exclusive(), record.rate) + record.frame_offset - 1,
        )
        if shown[0] < low or shown[1] > high:
            report.note(
                shot_report, f"its transitions show frames {shown[0]}-{shown[1]}, but frames {low}-{high} are rendered"
            )
    media = dict(clip.media_references())
    media[key] = reference(output, low, high, record.rate, record.frame_offset)
    media[key].name = shot.name  # an EDL's reel for it (nle_export)
    clip.set_media_references(media, key)
    return True


def _conform_still(clip: otio.schema.Clip, shot: Shot, job: Job, report: Report, shot_report: ShotReport) -> bool:
    """Give ``clip`` the shot's picked ideation still, held for the clip's source range."""
    still = job.picked_still(shot)
    if not still.is_file():
        report.note(shot_report, f"no picked ideation still at {still}; keeps its original media")
        return False
    if clip.source_range is None:
        clip.source_range = clip.trimmed_range()
    media = dict(clip.media_references())
    media["ideation"] = otio.schema.ExternalReference(target_url=still.as_uri(), available_range=clip.source_range)
    clip.set_media_references(media, "ideation")
    return True
