"""Plate frame numbers for a clip: which plate frames its cut plays, and which its media has.

Frame numbers count at the media's rate (its available range's, an image sequence's own, else
the clip's source range's), rounded to the nearest frame. An image-sequence media keeps its
own numbers: its ``start_frame`` is the frame at its available range's start. Other media
(movies, tapes, missing media) follow the plate convention: the clip's first cut frame is
``start_frame`` (1001 by default) and the rest count on from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import opentimelineio as otio

from stylecomp.errors import TimelineError

from .clip_place import ClipPlace
from .rates import frame_at


@dataclass(frozen=True)
class FrameNumbering:
    """How a clip's media time maps to plate frame numbers: plate frame = media frame + offset."""

    rate: float
    offset: int
    available: tuple[int, int] | None  # first and last plate frame the media has, when it says

    @classmethod
    def for_clip(cls, place: ClipPlace, source: otio.opentime.TimeRange, start_frame: int) -> FrameNumbering:
        """The numbering of the clip at ``place``, whose cut plays ``source`` of its media."""
        media = place.clip.media_reference
        known = media.available_range if media is not None else None
        if isinstance(media, otio.schema.ImageSequenceReference):
            if media.frame_step != 1:
                raise TimelineError(
                    f"{place.describe()}: image sequences with a frame step of {media.frame_step} are not supported"
                )
            rate = media.rate
            anchor = known.start_time if known is not None else source.start_time
            offset = media.start_frame - frame_at(anchor, rate)
        else:
            rate = known.start_time.rate if known is not None else source.start_time.rate
            offset = start_frame - frame_at(source.start_time, rate)
        available = None
        if known is not None:
            available = (
                frame_at(known.start_time, rate) + offset,
                frame_at(known.end_time_exclusive(), rate) + offset - 1,
            )
        return cls(rate, offset, available)

    def frame(self, time: otio.opentime.RationalTime) -> int:
        """The plate frame shown at media time ``time``."""
        return frame_at(time, self.rate) + self.offset

    def cut(self, place: ClipPlace, source: otio.opentime.TimeRange) -> tuple[int, int, float]:
        """First and last plate frame the cut plays, and its speed (1 normal, 0 a freeze frame).

        A speed effect plays more or fewer media frames than the cut lasts: the range covers
        what it plays (a freeze frame plays one), backwards for a negative speed.
        """
        first = self.frame(source.start_time)
        count = self.frame(source.end_time_exclusive()) - first
        if count < 1:
            raise TimelineError(
                f"{place.describe()}: its source range {source} holds no whole frame at {self.rate:g} fps"
            )
        speed = 1.0
        for effect in place.clip.effects:  # a nested clip's enclosing time warps are not applied: see clip_place
            if isinstance(effect, otio.schema.LinearTimeWarp):
                speed *= effect.time_scalar
        span = max(1, math.ceil(count * abs(speed) - 1e-9))
        if speed < 0:
            return first - span + 1, first, speed
        return first, first + span - 1, speed
