"""Frame patterns as OpenTimelineIO ``ImageSequenceReference``\\ s, and back.

An absolute folder becomes a ``file://`` URL (percent-encoded, so ``#`` and spaces survive);
a relative one stays a relative path, so a job's relative plates stay relative. Frame
numbers are tied to media time by ``offset``: plate frame = media frame at ``rate`` + offset.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import opentimelineio as otio

from stylecomp.errors import TimelineError
from stylecomp.io.sequence import to_printf

_PRINTF = re.compile(r"%0(\d+)d|%d")


def reference(pattern: str, first: int, last: int, rate: float, offset: int) -> otio.schema.ImageSequenceReference:
    """An image-sequence reference to frames ``first``..``last`` of ``pattern`` (any frame token)."""
    folder, name = os.path.split(to_printf(pattern))
    match = _PRINTF.search(name)
    if match is None:
        raise TimelineError("an image sequence needs a frame-number token (e.g. ####) in the file name", pattern)
    if os.path.isabs(folder):
        base = Path(folder).as_uri() + "/"
    else:
        base = folder + "/" if folder else ""
    return otio.schema.ImageSequenceReference(
        target_url_base=base,
        name_prefix=name[: match.start()],
        name_suffix=name[match.end() :],
        start_frame=first,
        frame_zero_padding=int(match.group(1) or 0),
        rate=rate,
        available_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(first - offset, rate), otio.opentime.RationalTime(last - first + 1, rate)
        ),
        missing_frame_policy=otio.schema.ImageSequenceReference.MissingFramePolicy.error,
    )


def pattern_of(media: otio.schema.ImageSequenceReference) -> str:
    """The reference as a frame pattern with ``#`` per padded digit (``%d`` when unpadded)."""
    base = media.target_url_base
    folder = otio.url_utils.filepath_from_url(base) if base.startswith("file:") else base
    token = "#" * media.frame_zero_padding or "%d"
    return os.path.join(folder, f"{media.name_prefix}{token}{media.name_suffix}")
