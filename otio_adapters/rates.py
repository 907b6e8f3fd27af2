"""Frame rates: reading one from the command line, and counting frames with explicit rounding.

OpenTimelineIO's ``to_frames`` truncates: 1000 frames at 24000/1001 rescaled to a rate stored
as 23.976 come out as 999. Every frame number here is rounded to the nearest frame instead,
and NTSC rates typed as 23.976 or 29.97 become exactly 24000/1001 and 30000/1001, the rates
SMPTE timecode (drop-frame included) is defined for.
"""

from __future__ import annotations

import math

import opentimelineio as otio

from stylecomp.errors import TimelineError

_SNAP = 0.01  # a typed rate this close to a SMPTE rate means that rate


def parse_rate(text: str) -> float:
    """``24``, ``25``, ``23.976``, ``29.97`` or ``24000/1001`` as a rate; NTSC rates snap to exact."""
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            value = float(numerator) / float(denominator)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise TimelineError(f"--rate {text!r} is not a frame rate (e.g. 24, 25, 23.976, 29.97 or 24000/1001)")
    nearest = otio.opentime.RationalTime.nearest_smpte_timecode_rate(value)
    return nearest if abs(nearest - value) < _SNAP else value


def frame_at(time: otio.opentime.RationalTime, rate: float) -> int:
    """The frame ``time`` falls on at ``rate``, rounded to the nearest (OTIO would truncate)."""
    return math.floor(time.value_rescaled_to(rate) + 0.5)


def timecode(time: otio.opentime.RationalTime) -> str:
    """``time`` as SMPTE timecode at its own rate, or ``frame N`` where its rate has none."""
    rate = otio.opentime.RationalTime.nearest_smpte_timecode_rate(time.rate)
    if abs(rate - time.rate) >= _SNAP:
        return f"frame {time.value:g}"
    return otio.opentime.to_timecode(time, rate)
