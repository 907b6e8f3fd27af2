"""Path templates: one plate (or output) path per clip, filled from the clip's names.

Fields, in Python ``str.format`` syntax (``{index:03d}`` works):

- ``{clip}``: the clip's name as in the edit;
- ``{shot}``: the shot name: the clip name made path-safe (see `shot_name`);
- ``{reel}``: the EDL reel (tape) name;
- ``{source_file}``: the EDL ``SOURCE FILE`` comment, else the media file's name without its
  extension (an image sequence's name prefix);
- ``{track}``: the track's name;
- ``{index}``: the clip's number on its track, from 1 (gaps and transitions not counted).

A template's file name needs a frame-number token (``####``, ``%04d`` or ``@@@@``).
"""

from __future__ import annotations

import os
import re
import string

import opentimelineio as otio

from stylecomp.errors import TimelineError

from .clip_place import ClipPlace

FIELDS = ("clip", "reel", "shot", "source_file", "track", "index")
DEFAULT_OUTPUT = "stylized/{shot}/{shot}.####.exr"
_FRAME_TOKEN = re.compile(r"#+|@+|%0?\d*d")
_NOT_IN_SHOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_SOURCE_FILE = re.compile(r"^\s*SOURCE FILE:\s*(.+?)\s*$", re.IGNORECASE)


def shot_name(clip_name: str) -> str:
    """A clip name as a shot name: runs of characters other than ``A-Z a-z 0-9 _ . -`` become
    one ``_``, and ``_ . -`` are trimmed from both ends (``ZZ100_501 (LAY3)`` -> ``ZZ100_501_LAY3``)."""
    return _NOT_IN_SHOT_NAME.sub("_", clip_name).strip("_.-")


def default_shot_name(place: ClipPlace) -> str:
    """The clip's shot name; for a clip without a usable name, ``<track>_<number>`` (``V_003``)."""
    return shot_name(place.clip.name) or shot_name(f"{place.track_name}_{place.number:03d}")


def _fields_used(template: str, option: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TimelineError(f"{option} {template!r}: {exc}") from None
    used = set()
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if name not in FIELDS:
            valid = ", ".join(f"{{{f}}}" for f in FIELDS)
            raise TimelineError(f"{option} {template!r}: unknown field {{{field}}}; the fields are {valid}")
        used.add(name)
    return used


def check_template(template: str, option: str) -> None:
    """Raise TimelineError, naming ``option``, for unknown fields, broken braces or no frame token."""
    _fields_used(template, option)
    if not _FRAME_TOKEN.search(os.path.basename(template)):
        raise TimelineError(f"{option} {template!r}: the file name needs a frame-number token, e.g. ####")


def _source_file(clip: otio.schema.Clip) -> str | None:
    """The EDL ``SOURCE FILE`` comment, else the media's file name without extension."""
    for comment in clip.metadata.get("cmx_3600", {}).get("comments", []):
        if m := _SOURCE_FILE.match(str(comment)):
            return m.group(1)
    media = clip.media_reference
    if isinstance(media, otio.schema.ImageSequenceReference):
        return media.name_prefix.rstrip("._-") or None
    if isinstance(media, otio.schema.ExternalReference) and media.target_url:
        return os.path.splitext(os.path.basename(media.target_url.rstrip("/")))[0] or None
    return None


def fill(template: str, place: ClipPlace, shot: str, option: str) -> str:
    """The template filled for the clip at ``place``, whose shot is named ``shot``."""
    reel = place.clip.metadata.get("cmx_3600", {}).get("reel")
    fields: dict[str, object] = {
        "clip": place.clip.name,
        "shot": shot,
        "reel": str(reel) if reel else None,
        "source_file": _source_file(place.clip),
        "track": place.track_name,
        "index": place.number,
    }
    for name in sorted(_fields_used(template, option)):
        if fields[name] in (None, ""):
            raise TimelineError(f"{place.describe()}: has no {name.replace('_', ' ')} for {{{name}}} in {option}")
    try:
        return template.format(**fields)
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise TimelineError(f"{place.describe()}: {option} {template!r}: {exc}") from None
