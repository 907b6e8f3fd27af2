"""Conformed timelines as the files editors' applications open: FCP 7 XML (Premiere, Resolve) and
CMX 3600 EDL (Avid), each written from a copy made for what that format can say.

- **FCP 7 XML** has no image-sequence media: otio-fcp-adapter cannot write an
  ``ImageSequenceReference``. Each clip playing an image sequence plays, in the copy, an
  ``ExternalReference`` to the sequence's first frame, with the sequence's available range, which
  is how Premiere and Resolve export a numbered-still sequence (a ``<file>`` whose ``<pathurl>``
  is the first frame). Its clip item loses what ties it to the original media in Premiere
  (master clip, links to the original's audio items, in and out in Premiere's ticks).
- **EDL** holds one video track (each further video track goes to ``OUT.vN.edl`` beside it),
  a reel and a clip name per event, and no media paths beyond a
  ``* FROM CLIP:`` comment. Each stylized clip's reel is its sequence's name (the shot name, in
  full: strict CMX 3600 readers want at most 8 characters, Avid's File_32 and File_129 EDL types
  take the full name), and ``OUT.media.csv`` beside each EDL lists every clip's reel, name, frame
  pattern and frames, for relinking by hand or script. Fades (a transition to or from a gap)
  are left out, each with a warning: otio-cmx3600-adapter cannot write them.
- **Nested compositions** are flattened into their track for both (OpenTimelineIO's
  ``flatten_stack`` and ``track_trimmed_to_range``): otio-cmx3600-adapter leaves them out of an
  EDL without a word, and otio-fcp-adapter fails on a stack that holds clips rather than tracks,
  or on a track inside a track. A stack placed directly among the timeline's tracks is flattened
  as a video track holding it (and an audio track, when it holds audio tracks). Where a nested
  stack layers clips, only the top one is left; each clip left out is named in a warning.
- **AAF** is refused: otio-aaf-adapter writes each clip's media from the AAF mobs it was read
  from, so a written ``.aaf`` still plays the original media, not the stylized frames.
"""

from __future__ import annotations

import copy
import csv
import glob
import io
import re
from pathlib import Path

import opentimelineio as otio

from stylecomp.errors import TimelineError

from .image_sequences import pattern_of

MEDIA_LIST_FIELDS = ("reel", "clip", "media", "first_frame", "last_frame")
# A Premiere clip item's ties to the media it was cut from: its master clip, its links to that clip's
# audio items, and its in and out in Premiere's ticks, which would pick frames of the original.
_TIED_TO_ORIGINAL = ("masterclipid", "link", "pproTicksIn", "pproTicksOut")
_MARK = "stylecomp_export_clip"  # clip metadata key used only while flattening, removed before writing


def _sequence_clips(timeline: otio.schema.Timeline) -> list[otio.schema.Clip]:
    return [
        clip for clip in timeline.find_clips() if isinstance(clip.media_reference, otio.schema.ImageSequenceReference)
    ]


def _flat(composition: otio.core.Composition, kind: str, warnings: list[str]) -> list[otio.core.Composable]:
    """What a nested composition shows in a track of ``kind``, as items of that track, as long as the
    composition: nested ones flattened in turn, tracks of another kind (audio in video) left out. Its own
    effects cannot follow (a warning says so)."""
    if isinstance(composition, otio.schema.Track) and composition.kind != kind:
        return [otio.schema.Gap(duration=composition.trimmed_range().duration)]
    if composition.effects:
        names = ", ".join(effect.effect_name or effect.schema_name() for effect in composition.effects)
        warnings.append(
            f"nested composition {composition.name!r}: its effects ({names}) are left out of the "
            "flattened export; its clips play at their own speed, then a gap fills its length"
        )
    if isinstance(composition, otio.schema.Stack):
        layers = otio.schema.Stack()
        for child in composition:  # flatten_stack takes tracks: a clip placed in the stack is a track of its own
            if not isinstance(child, otio.schema.Track):
                layers.append(otio.schema.Track(children=[child.clone()], kind=kind))
            elif child.kind == kind:
                layers.append(child.clone())
        track = otio.algorithms.flatten_stack(layers)
    else:
        track = composition.clone()
    shown = otio.algorithms.track_trimmed_to_range(track, composition.trimmed_range())
    items: list[otio.core.Composable] = []
    for item in shown:
        items.extend(_flat(item, kind, warnings) if isinstance(item, otio.core.Composition) else [item.clone()])
    missing = composition.trimmed_range().duration - shown.available_range().duration
    if missing.value > 1e-6:  # a time warp or freeze frame that OpenTimelineIO's ranges leave out
        items.append(otio.schema.Gap(duration=missing))
    return items


def _in_video(clip: otio.schema.Clip) -> bool:
    """Whether every track holding the clip, nested ones included, is a video track."""
    item = clip.parent()
    while item is not None:
        if isinstance(item, otio.schema.Track) and item.kind != otio.schema.TrackKind.Video:
            return False
        item = item.parent()
    return True


def _stack_as_tracks(tracks: otio.schema.Stack, index: int) -> None:
    """Replace the stack at ``index`` of the timeline's tracks by a track holding it for each kind it shows
    (video: its clips and video tracks; audio: its audio tracks), for the flattening to take apart."""
    stack = tracks[index]
    del tracks[index]
    kinds = [
        kind
        for kind in (otio.schema.TrackKind.Video, otio.schema.TrackKind.Audio)
        if any(
            child.kind == kind if isinstance(child, otio.schema.Track) else kind == otio.schema.TrackKind.Video
            for child in stack
        )
    ]
    for offset, kind in enumerate(kinds):
        tracks.insert(
            index + offset, otio.schema.Track(name=stack.name, kind=kind, children=[stack.clone() if offset else stack])
        )


def flattened(timeline: otio.schema.Timeline, warnings: list[str]) -> otio.schema.Timeline:
    """A copy whose tracks hold no nested compositions; each video clip that drops out is added to ``warnings``."""
    out = copy.deepcopy(timeline)
    clips = [
        f"clip {clip.name!r} of nested composition {clip.parent().name!r}" if _in_video(clip) else None
        for clip in out.find_clips()
    ]
    for number, clip in enumerate(out.find_clips()):  # marks that survive cloning, to tell which clips made it
        clip.metadata[_MARK] = number
    for index in range(len(out.tracks) - 1, -1, -1):
        if isinstance(out.tracks[index], otio.schema.Stack):
            _stack_as_tracks(out.tracks, index)
    for track in out.tracks:
        if not isinstance(track, otio.schema.Track):
            continue
        items = []
        for item in list(track):
            items.extend(
                _flat(item, track.kind, warnings) if isinstance(item, otio.core.Composition) else [item.clone()]
            )
        track[:] = items
    kept = set()
    for clip in out.find_clips():
        kept.add(clip.metadata[_MARK])
        del clip.metadata[_MARK]
    for number, clip in enumerate(clips):
        if clip is not None and number not in kept:  # only nested clips can drop out
            warnings.append(
                f"{clip} is not in the flattened export: another layer of the stack covers it, or the "
                "composition does not show it"
            )
    return out


def for_fcp_xml(timeline: otio.schema.Timeline, warnings: list[str]) -> otio.schema.Timeline:
    """A flattened copy in which each clip playing an image sequence plays its first frame's file, with its range.

    A timeline read from an EDL starts its tracks at minus the first record timecode (the cmx_3600
    adapter's way); otio-fcp-adapter ignores that and would start the sequence at 00:00:00:00, so
    the copy starts the timeline there instead.
    """
    out = flattened(timeline, warnings)
    tracks = [track for track in out.tracks if isinstance(track, otio.schema.Track)]
    starts = [track.source_range.start_time if track.source_range else None for track in tracks]
    start = starts[0] if starts and all(other == starts[0] for other in starts) else None
    if out.global_start_time is None and start is not None and start.value < 0:
        out.global_start_time = -start
        for track in tracks:
            track.source_range = None
    for clip in _sequence_clips(out):
        sequence = clip.media_reference
        first = otio.schema.ExternalReference(
            target_url=sequence.target_url_for_image_number(0),
            available_range=sequence.available_range,
        )
        first.name = sequence.name or clip.name
        clip.media_reference = first  # replaces the active reference only; the copy is written, never kept
        premiere = clip.metadata.get("fcp_xml", {})
        for key in _TIED_TO_ORIGINAL:
            if key in premiere:
                del premiere[key]
    return out


def for_edl(
    timeline: otio.schema.Timeline, path: str, warnings: list[str]
) -> list[tuple[str, otio.schema.Timeline, str]]:
    """One EDL per video track (an EDL holds one): its path, a flattened copy of the timeline holding just
    that track, with each image-sequence clip's sequence name as reel, and its media list (CSV text).

    The first video track goes to ``path``, the N-th to ``name.vN.edl`` beside it.
    """
    flat = flattened(timeline, warnings)
    video = list(flat.video_tracks())
    edls = []
    for number, track in enumerate(video, 1):
        if all(isinstance(clip.media_reference, otio.schema.GeneratorReference) for clip in track.find_clips()):
            warnings.append(
                f"video track {number} ({track.name!r}) holds no clip with media (only gaps, titles or "
                "other generators): no EDL for it"
            )
            continue
        single = otio.schema.Timeline(name=flat.name, global_start_time=flat.global_start_time)
        single.tracks.append(_without_fades(track.clone(), number, warnings))
        rows = io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        writer.writerow(MEDIA_LIST_FIELDS)
        for clip in _sequence_clips(single):
            sequence = clip.media_reference
            reel = sequence.name or clip.name
            clip.metadata.setdefault("cmx_3600", {})["reel"] = reel
            writer.writerow((reel, clip.name, pattern_of(sequence), sequence.start_frame, sequence.end_frame()))
        target = path if number == 1 else str(Path(path).with_suffix(f".v{number}.edl"))
        edls.append((target, single, rows.getvalue()))
    if not edls:
        raise TimelineError("has no video track with media to write as an EDL", path)
    return edls


def _without_fades(track: otio.schema.Track, number: int, warnings: list[str]) -> otio.schema.Track:
    """The track without transitions to or from a gap (fades), which otio-cmx3600-adapter cannot write.

    A transition takes no time of its own in a track, so every clip keeps its record range.
    """
    items = list(track)
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        neighbours = items[index - 1 : index] + items[index + 1 : index + 2]
        if isinstance(item, otio.schema.Transition) and any(isinstance(n, otio.schema.Gap) for n in neighbours):
            warnings.append(
                f"video track {number} ({track.name!r}), item {index}: the {item.name or 'transition'} "
                "to or from a gap (a fade) is left out of the EDL; the EDL adapter cannot write it"
            )
            del track[index]
    return track


def stale_edls(path: str, written: list[str]) -> list[str]:
    """The EDLs an earlier conform to ``path`` left beside it (``OUT.edl``, ``OUT.vN.edl`` and their media
    lists) that ``written`` does not hold: they would pass for part of this conform."""
    edl = Path(path)
    earlier = [
        edl,
        *(
            p
            for p in edl.parent.glob(f"{glob.escape(edl.stem)}.v*.edl")
            if re.fullmatch(rf"{re.escape(edl.stem)}\.v\d+\.edl", p.name)
        ),
    ]
    kept = {Path(w).resolve() for w in written}
    return [
        str(p) for e in earlier for p in (e, Path(media_list_path(str(e)))) if p.is_file() and p.resolve() not in kept
    ]


def media_list_path(edl_path: str) -> str:
    """Where an EDL's media list goes: ``cut.edl`` -> ``cut.media.csv``."""
    return str(Path(edl_path).with_suffix(".media.csv"))


def refuse_aaf(path: str) -> None:
    """AAF cannot carry the conform: say why, and what to write instead."""
    raise TimelineError(
        "otio-aaf-adapter writes each clip's media from the AAF it was read from, not new media, so an .aaf would "
        "still play the original media; write .edl for Avid (with its media list) or .otio",
        path,
    )
