"""OTIO media linker ``stylecomp_plates``: each clip's media becomes its plate, found by template.

    otio.adapters.read_from_file("cut.edl", media_linker_name="stylecomp_plates",
                                 media_linker_argument_map={"plates": "/shows/x/{shot}/{clip}.####.exr"})

Arguments: ``plates``, a path template (fields as in `plate_template`; a relative path is
relative to the current folder), and ``start_frame`` (default 1001; see `frame_numbers`).
A clip whose plate has every frame of its cut on disk gets an ``ImageSequenceReference`` to
the unbroken run of frames around the cut; any other clip keeps its media, with a warning on
the ``stylecomp_otio`` logger.

OTIO loads this file by path, outside its package, so its imports are absolute.
"""

from __future__ import annotations

import logging
import os

import opentimelineio as otio

from stylecomp.errors import PlateError, TimelineError
from stylecomp.io.sequence import discover
from stylecomp_otio.clip_place import ClipPlace
from stylecomp_otio.frame_numbers import FrameNumbering
from stylecomp_otio.image_sequences import reference
from stylecomp_otio.plate_template import check_template, default_shot_name, fill

_log = logging.getLogger("stylecomp_otio")


def link_media_reference(
    in_clip: otio.schema.Clip, media_linker_argument_map: dict[str, object] | None = None
) -> otio.core.MediaReference:
    """The clip's plate as an image-sequence reference, or its own media when the plate is not there."""
    arguments = media_linker_argument_map or {}
    template = arguments.get("plates")
    if not isinstance(template, str) or not template:
        raise TimelineError("the stylecomp_plates media linker needs a 'plates' template in media_linker_argument_map")
    check_template(template, "plates")
    place = ClipPlace.of(in_clip)
    try:  # the part a nested clip's compositions show, as `timeline jobs` numbers it
        source = place.source_range() if place.record_range() is not None else in_clip.trimmed_range()
    except otio.exceptions.CannotComputeAvailableRangeError:
        _log.warning("%s: no source range and no available range; media left as it was", place.describe())
        return in_clip.media_reference
    start_frame = arguments.get("start_frame", 1001)
    if not isinstance(start_frame, int | float | str):
        raise TimelineError(f"the stylecomp_plates media linker's start_frame must be a number, not {start_frame!r}")
    numbering = FrameNumbering.for_clip(place, source, int(start_frame))
    first, last, _ = numbering.cut(place, source)
    pattern = os.path.abspath(fill(template, place, default_shot_name(place), "plates"))
    try:
        on_disk = set(discover(pattern).frames)
    except PlateError:
        on_disk = set()
    if not all(f in on_disk for f in range(first, last + 1)):
        _log.warning(
            "%s: the plate %s lacks frames of the cut %d-%d; media left as it was",
            place.describe(),
            pattern,
            first,
            last,
        )
        return in_clip.media_reference
    low, high = first, last
    while low - 1 in on_disk:
        low -= 1
    while high + 1 in on_disk:
        high += 1
    return reference(pattern, low, high, numbering.rate, numbering.offset)
