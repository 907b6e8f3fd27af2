"""Where a clip sits in its timeline: its track, its position there (inside nested compositions too),
and where it plays, for templates, errors and the editorial record.

A clip inside nested compositions (a stack or track placed in a track) plays in the top-level
track through every level of nesting. Its record range is found with OpenTimelineIO's own
time transforms (``transformed_time_range`` up to the top-level track), clamped to the part
each enclosing composition shows; its source range is that record range transformed back
into the clip. OpenTimelineIO's transforms ignore time effects, so a clip under a time-warped
composition keeps its own timing (`timeline_to_job` warns about it).
"""

from __future__ import annotations

from dataclasses import dataclass

import opentimelineio as otio

from stylecomp.errors import TimelineError


@dataclass(frozen=True)
class ClipPlace:
    """A clip's track (by name and position in the stack) and its position in that track."""

    clip: otio.schema.Clip
    track_name: str  # the top-level track's name; ``track<N>`` (from 1) for an unnamed track
    track_index: int  # position of the top-level track in the timeline's stack
    item_index: int  # position in the top-level track of the clip, or of the composition holding it
    number: int  # the clip's number among its top-level track's clips (nested ones included), from 1
    nesting: tuple[int, ...] = ()  # the clip's position in each nested composition, from the outermost down

    @classmethod
    def of(cls, clip: otio.schema.Clip) -> ClipPlace:
        """Find the place of a clip in a top-level track, directly or inside nested compositions."""
        chain: list[otio.core.Composable] = [clip]
        while (parent := chain[-1].parent()) is not None:
            chain.append(parent)
        if len(chain) < 3 or not isinstance(chain[-2], otio.schema.Track):
            raise TimelineError(f"clip {clip.name!r} is not in a track")
        stack, track = chain[-1], chain[-2]
        track_index = stack.index(track)
        item_index = track.index(chain[-3])
        nesting = tuple(chain[i + 1].index(chain[i]) for i in range(len(chain) - 4, -1, -1))
        number = next(n for n, found in enumerate(track.find_clips(), 1) if found is clip)
        return cls(clip, track.name or f"track{track_index + 1}", track_index, item_index, number, nesting)

    @property
    def track(self) -> otio.schema.Track:
        """The top-level track the clip plays in."""
        item: otio.core.Composable = self.clip
        while not isinstance(item.parent(), otio.schema.Stack) or item.parent().parent() is not None:
            item = item.parent()
        return item

    def enclosing(self) -> list[otio.core.Composition]:
        """The nested compositions holding the clip, innermost first (empty for a clip directly in its track)."""
        found, item = [], self.clip.parent()
        while item is not None and item is not self.track:
            found.append(item)
            item = item.parent()
        return found

    def record_range(self) -> otio.opentime.TimeRange | None:
        """Where the clip plays in its top-level track; None when no frame of it is shown."""
        track = self.track
        record = self.clip.transformed_time_range(self.clip.trimmed_range(), track)
        for composition in self.enclosing():
            shown = composition.transformed_time_range(composition.trimmed_range(), track)
            if not record.intersects(shown):
                return None
            record = record.clamped(shown)
        return record if record.duration.value > 0 else None

    def source_range(self) -> otio.opentime.TimeRange:
        """The part of the clip's media its record range plays (its trimmed range for an unnested clip)."""
        if not self.nesting:
            return self.clip.trimmed_range()
        record = self.record_range()
        if record is None:
            raise TimelineError(f"{self.describe()}: no frame of it is shown by the compositions it is nested in")
        return self.track.transformed_time_range(record, self.clip)

    def shown_range(self) -> otio.opentime.TimeRange:
        """The part of the clip's media that plays, the frames transitions play included: its visible range
        (its trimmed range outside a track), clamped to the visible range of each composition holding it.

        A transition next to a nested composition plays frames of it beyond its trimmed range, so the
        clip's frames there too; a composition that trims the clip hides the clip's frames it trims.
        """

        def visible(item: otio.core.Item) -> otio.opentime.TimeRange:
            return item.visible_range() if isinstance(item.parent(), otio.schema.Track) else item.trimmed_range()

        shown = visible(self.clip)
        for composition in self.enclosing():
            shown = shown.clamped(composition.transformed_time_range(visible(composition), self.clip))
        return shown

    def describe(self) -> str:
        """``clip 'name' (track 'V', item 3)``, ``item 3 > 0`` when nested: how errors and warnings name the clip."""
        position = " > ".join(map(str, (self.item_index, *self.nesting)))
        return f"clip {self.clip.name!r} (track {self.track_name!r}, item {position})"
