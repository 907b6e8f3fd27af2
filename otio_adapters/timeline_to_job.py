"""A timeline as a stylecomp job: one shot per video clip, with where it came from.

- Every enabled clip on a video track (or on the tracks named by ``track``) becomes a shot, and
  so does every clip shown inside a nested composition there (a stack or track placed in the
  track; its record range is in the top-level track, see `clip_place`); gaps, transitions,
  audio tracks, disabled items, generator clips (black, bars) and nested clips outside what
  their composition shows are skipped and counted in the report.
- Frames are plate frame numbers (`frame_numbers`): an image-sequence media's own numbers,
  else the cut starting at ``start_frame``. A speed effect's shot covers the media it plays.
- Handles, before and after the cut on their own, are raised to cover transitions (those next to
  the compositions a clip is nested in too: `ClipPlace.shown_range`), then clamped
  to what the media has (its available range, and the plate frames on disk), with a warning
  naming the clip and why; a side that needs no clamp keeps its handles.
- Plates and outputs come from path templates (`plate_template`); without a plates template
  a clip's own image-sequence media is its plate. Missing plates are errors unless
  ``allow_missing``; two clips making the same shot name are an error unless ``unique_names``.
- Clip metadata ``stylecomp`` gives per-shot overrides and fields, regions included
  (`clip_settings`); markers become notes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import opentimelineio as otio
from pydantic import ValidationError

from stylecomp.errors import JobError, TimelineError
from stylecomp.io.sequence import frames_on_disk
from stylecomp.jobspec import FrameRange, Job, Shot, parse_job

from .clip_place import ClipPlace
from .clip_settings import KEY, ClipSettings, clip_settings, timeline_settings
from .editorial_record import editorial_for
from .frame_numbers import FrameNumbering
from .image_sequences import pattern_of
from .plate_template import DEFAULT_OUTPUT, check_template, default_shot_name, fill
from .rates import timecode
from .report import Report, ShotReport


@dataclass(frozen=True)
class JobOptions:
    """How clips become shots: the options of ``stylecomp timeline jobs``."""

    plates: str | None = None  # plate path template; None: each clip's image-sequence media
    output: str = DEFAULT_OUTPUT  # output path template
    handles: int = 0
    start_frame: int = 1001  # plate frame of the first cut frame, for media that is not an image sequence
    track: str | None = None  # only video tracks with this name
    allow_missing: bool = False  # missing plates are warnings, not errors
    unique_names: bool = False  # suffix _2, _3, ... instead of failing on a repeated shot name
    timeline_path: str | None = None  # the timeline's file, recorded in each shot and named in errors
    base_dir: str = "."  # the job file's folder, which relative paths in the job resolve against


def timeline_to_job(timeline: otio.schema.Timeline, options: JobOptions) -> tuple[Job, Report]:
    """The job for ``timeline``'s video clips, and a report of what was made, skipped and warned."""
    try:
        return _timeline_to_job(timeline, options)
    except TimelineError as exc:
        if exc.where is None and options.timeline_path:
            raise TimelineError(exc.reason, options.timeline_path) from None
        raise


def _timeline_to_job(timeline: otio.schema.Timeline, options: JobOptions) -> tuple[Job, Report]:
    if options.plates is not None:
        check_template(options.plates, "--plates")
    check_template(options.output, "--output")
    report = Report()
    shots: list[Shot] = []
    places: dict[str, ClipPlace] = {}
    for track in _video_tracks(timeline, options.track, report):
        for clip in _clips(track, report):
            shots.append(_shot(ClipPlace.of(clip), options, places, report))
    if not shots:
        raise TimelineError(f"no video clips to make shots from (skipped: {report.skipped_text()})")
    data = {**timeline_settings(timeline), "shots": [shot.model_dump(mode="json") for shot in shots]}
    try:
        job = parse_job(json.dumps(data), options.timeline_path or "<timeline>", options.base_dir)
    except JobError as exc:
        raise TimelineError(f"timeline metadata {KEY}: {exc.reason}") from None
    for shot, shot_report in zip(job.shots, report.shots, strict=True):
        _check_plate(job, shot, places[shot.name], options, report, shot_report)
        shot_report.handles = shot.handle_frames()
    return job, report


def _video_tracks(timeline: otio.schema.Timeline, wanted: str | None, report: Report) -> list[otio.schema.Track]:
    tracks = []
    for index, track in enumerate(timeline.tracks):
        where = f"{track.name or type(track).__name__}, position {index} in the timeline's stack"
        if not isinstance(track, otio.schema.Track):
            report.skip("composition outside a track", where)
        elif track.kind != otio.schema.TrackKind.Video:
            report.skip(f"{track.kind.lower()} track", where)
        elif wanted is not None and track.name != wanted:
            report.skip("unselected video track", where)
        else:
            tracks.append(track)
    if wanted is not None and not tracks:
        names = ", ".join(repr(t.name) for t in timeline.video_tracks()) or "none"
        raise TimelineError(f"--track {wanted!r}: no video track has that name (video tracks: {names})")
    return tracks


def _clips(composition: otio.core.Composition, report: Report) -> list[otio.schema.Clip]:
    """The clips of a track that become shots, nested ones included; what is left out is counted and named."""
    clips = []
    for index, item in enumerate(composition):
        where = f"{composition.name or type(composition).__name__!s}, item {index}"
        if isinstance(item, otio.schema.Gap):
            report.skip("gap", where)
        elif isinstance(item, otio.schema.Transition):
            report.skip("transition", where)
        elif not item.enabled:
            report.skip("disabled clip" if isinstance(item, otio.schema.Clip) else "disabled composition", where)
        elif isinstance(item, otio.schema.Track) and item.kind != otio.schema.TrackKind.Video:
            report.skip(f"nested {item.kind.lower()} track", where)
        elif isinstance(item, otio.core.Composition) and len(item) == 0:
            report.skip("empty nested composition", where)
        elif isinstance(item, otio.core.Composition):
            clips.extend(_clips(item, report))
        elif not isinstance(item, otio.schema.Clip):
            report.skip(type(item).__name__.lower(), where)
        elif isinstance(item.media_reference, otio.schema.GeneratorReference):
            report.skip("generator clip", where)
        elif (place := ClipPlace.of(item)).nesting and place.record_range() is None:
            report.skip("nested clip outside what its composition shows", place.describe())
        else:
            clips.append(item)
    return clips


def _shot(place: ClipPlace, options: JobOptions, places: dict[str, ClipPlace], report: Report) -> Shot:
    settings = clip_settings(place)
    try:
        source = place.source_range()
    except otio.exceptions.CannotComputeAvailableRangeError:
        raise TimelineError(f"{place.describe()}: no source range, and its media has no available range") from None
    numbering = FrameNumbering.for_clip(place, source, options.start_frame)
    first, last, speed = numbering.cut(place, source)
    name = _unique_name(place, places, options.unique_names)
    shot_report = ShotReport(name, place.describe(), (first, last))
    report.shots.append(shot_report)
    if speed != 1:
        effect = "a freeze frame" if speed == 0 else f"a speed of {speed:g}x"
        report.note(shot_report, f"{effect}; the shot covers the media it plays, frames {first}-{last}")
    for composition in place.enclosing():
        for effect in composition.effects:
            if isinstance(effect, otio.schema.LinearTimeWarp):
                kind = "a freeze frame" if effect.time_scalar == 0 else f"a speed of {effect.time_scalar:g}x"
                report.note(
                    shot_report,
                    f"nested in {composition.name!r}, which has {kind}; OpenTimelineIO's time "
                    "transforms leave it out, so the shot covers the frames the composition "
                    f"shows at normal speed, frames {first}-{last}",
                )
    head, tail = _handles(place, settings, options.handles, numbering, source, (first, last), report, shot_report)
    output, output_label = options.output, "--output"
    if settings.output is not None:
        output, output_label = settings.output, f"metadata {KEY}.output"
        check_template(output, output_label)
    try:
        return Shot(
            name=name,
            plate=fill(options.plates, place, name, "--plates") if options.plates else _media_pattern(place),
            frames=FrameRange(first=first, last=last),
            handles=min(head, tail),
            head_handles=None if head == tail else head,
            tail_handles=None if head == tail else tail,
            aovs=settings.aovs or {},
            output=fill(output, place, name, output_label),
            notes=[*(settings.notes or []), *_marker_notes(place)],
            regions=settings.regions or [],
            overrides=settings.overrides(),
            editorial=(
                settings.editorial
                if "editorial" in settings.model_fields_set
                else editorial_for(place, source, numbering, options.timeline_path)
            ),
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise TimelineError(f"{place.describe()}: {problems}") from None


def _unique_name(place: ClipPlace, places: dict[str, ClipPlace], unique: bool) -> str:
    base = default_shot_name(place)
    name, n = base, 1
    while name in places:
        if not unique:
            raise TimelineError(
                f"{places[name].describe()} and {place.describe()} both make shot {name!r}; rename one, "
                f"or pass --unique-names to name the later ones {base}_2, {base}_3, ..."
            )
        n += 1
        name = f"{base}_{n}"
    places[name] = place
    return name


def _media_pattern(place: ClipPlace) -> str:
    media = place.clip.media_reference
    if isinstance(media, otio.schema.ImageSequenceReference):
        return pattern_of(media)
    raise TimelineError(
        f"{place.describe()}: its media is not an image sequence, so a plate template is needed "
        "(--plates '/shows/x/{shot}/plates/{clip}.####.exr')"
    )


def _handles(
    place: ClipPlace,
    settings: ClipSettings,
    default: int,
    numbering: FrameNumbering,
    source: otio.opentime.TimeRange,
    cut: tuple[int, int],
    report: Report,
    shot: ShotReport,
) -> tuple[int, int]:
    """Handles before and after the cut: those wanted, raised to cover transitions, each side clamped to the
    frames the media has there."""
    both = settings.handles if settings.handles is not None else default
    wanted = [both if side is None else side for side in (settings.head_handles, settings.tail_handles)]
    shown = place.shown_range()
    needed = (
        numbering.frame(source.start_time) - numbering.frame(shown.start_time),
        numbering.frame(shown.end_time_exclusive()) - numbering.frame(source.end_time_exclusive()),
    )
    handles = [max(wanted[0], needed[0]), max(wanted[1], needed[1])]
    raised = [
        f"from {wanted[side]} to {handles[side]} {name} the cut"
        for side, name in enumerate(("before", "after"))
        if handles[side] > wanted[side]
    ]
    if raised:
        report.note(
            shot,
            f"handles raised {' and '.join(raised)}, the frames its transitions play "
            f"({needed[0]} before the cut, {needed[1]} after)",
        )
    if numbering.available is not None:
        low, high = numbering.available
        room = (cut[0] - low, high - cut[1])
        if min(room) < 0:
            report.note(shot, f"the cut plays frames {cut[0]}-{cut[1]}, beyond its media's frames {low}-{high}")
        for side, name in enumerate(("before", "after")):
            if (clamped := max(room[side], 0)) < handles[side]:
                report.note(
                    shot,
                    f"handles {name} the cut clamped from {handles[side]} to {clamped}: its media has "
                    f"frames {low}-{high} and the cut plays {cut[0]}-{cut[1]}",
                )
                handles[side] = clamped
    return handles[0], handles[1]


def _marker_note(marker: otio.schema.Marker) -> str:
    note = f"marker {timecode(marker.marked_range.start_time)} {marker.color}"
    note += f": {marker.name}" if marker.name else ""
    return note + (f" ({marker.comment})" if marker.comment else "")


def _marker_notes(place: ClipPlace) -> list[str]:
    """The clip's markers, then its track's markers that fall inside the clip, as notes."""
    record = place.clip.range_in_parent()
    track_markers = [m for m in place.clip.parent().markers if record.contains(m.marked_range.start_time)]
    return [_marker_note(m) for m in [*place.clip.markers, *track_markers]]


def _check_plate(
    job: Job, shot: Shot, place: ClipPlace, options: JobOptions, report: Report, shot_report: ShotReport
) -> None:
    """Fail (or warn, with ``allow_missing``) when the plate lacks cut frames; clamp each side's handles to it."""
    pattern = job.resolve(shot.plate)
    first, last = shot.frames.first, shot.frames.last  # type: ignore[union-attr]  # clips always give frames
    on_disk = frames_on_disk(pattern)
    missing = [f for f in range(first, last + 1) if f not in on_disk]
    if missing:
        problem = (
            f"no plate frames at {pattern}"
            if not on_disk
            else f"the plate {pattern} lacks {len(missing)} of the cut's frames {first}-{last} "
            f"(from frame {missing[0]})"
        )
        if not options.allow_missing:
            raise TimelineError(f"{place.describe()}: {problem} (pass --allow-missing to write the job anyway)")
        report.note(shot_report, f"{problem}; written anyway (--allow-missing)")
        return
    head, tail = shot.handle_frames()
    room_before = next(n for n in range(head + 1) if n == head or first - n - 1 not in on_disk)
    room_after = next(n for n in range(tail + 1) if n == tail or last + n + 1 not in on_disk)
    for name, wanted, room, gap in (
        ("before", head, room_before, first - room_before - 1),
        ("after", tail, room_after, last + room_after + 1),
    ):
        if room < wanted:
            report.note(
                shot_report,
                f"handles {name} the cut clamped from {wanted} to {room}: the plate {pattern} has no frame {gap}",
            )
    if (room_before, room_after) != (head, tail):
        shot.handles, shot.head_handles, shot.tail_handles = min(room_before, room_after), None, None
        if room_before != room_after:
            shot.head_handles, shot.tail_handles = room_before, room_after
