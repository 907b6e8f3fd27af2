"""Where a clip sits in its timeline: its track and its position there, for templates and errors."""

from __future__ import annotations

from dataclasses import dataclass

import opentimelineio as otio
from stylecomp.errors import TimelineError


@dataclass(frozen=True)
class ClipPlace:
    """A clip's track (by name and position in the stack) and its position in that track."""

    clip: otio.schema.Clip
    track_name: str  # the track's name; ``track<N>`` (from 1) for an unnamed track
    track_index: int  # position of the track in the timeline's stack
    item_index: int  # position of the clip in the track; gaps and transitions count
    number: int  # the clip's number among its track's clips, from 1

    @classmethod
    def of(cls, clip: otio.schema.Clip) -> ClipPlace:
        """Find the place of a clip that sits directly in a track."""
        track = clip.parent()
        if not isinstance(track, otio.schema.Track):
            raise TimelineError(f"clip {clip.name!r} is not in a track")
        stack = track.parent()
        track_index = stack.index(track) if stack is not None else 0
        item_index = track.index(clip)
        number = sum(isinstance(item, otio.schema.Clip) for item in list(track)[: item_index + 1])
        return cls(clip, track.name or f"track{track_index + 1}", track_index, item_index, number)

    def describe(self) -> str:
        """``clip 'name' (track 'V', item 3)``: how errors and warnings name the clip."""
        return f"clip {self.clip.name!r} (track {self.track_name!r}, item {self.item_index})"
