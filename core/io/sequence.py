"""Frame sequences: ``name.####.exr``, ``name.%04d.exr``, ``name.@@@@.exr`` or one file.

A sequence is stored as a printf pattern (``shot.%04d.exr``). Discovery lists the frames on
disk; missing frames are the gaps between the first and last frame (or an explicit range).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..errors import PlateError

_HASHES = re.compile(r"#+")
_ATS = re.compile(r"@+")
_PRINTF = re.compile(r"%(0?)(\d*)d")


@dataclass(frozen=True)
class FrameSequence:
    """A frame-numbered file pattern and the frames found for it on disk."""

    pattern: str  # printf form, e.g. "/plates/sh010.%04d.exr"; no "%" for a single file
    frames: tuple[int, ...] = field(default=())
    missing: tuple[int, ...] = field(default=())

    @property
    def is_single_file(self) -> bool:
        return _PRINTF.search(self.pattern) is None

    def path(self, frame: int) -> str:
        """The file holding ``frame`` (the pattern itself for a single file)."""
        if self.is_single_file:
            return self.pattern
        return self.pattern % frame


def to_printf(pattern: str | os.PathLike[str]) -> str:
    """Normalise ``####``, ``@@@@`` and ``%04d`` spellings to printf ``%04d``.

    Only the file name is rewritten; a ``#`` in a folder name is left alone.
    """
    pattern = os.fspath(pattern)
    folder, name = os.path.split(pattern)
    tokens = len(_HASHES.findall(name)) + len(_ATS.findall(name)) + len(_PRINTF.findall(name))
    if tokens > 1:
        raise PlateError("more than one frame-number token in the file name", pattern)
    name = _HASHES.sub(lambda m: f"%0{len(m.group())}d", name)
    name = _ATS.sub(lambda m: f"%0{len(m.group())}d", name)
    name = _PRINTF.sub(lambda m: f"%0{m.group(2) or 1}d" if m.group(2) else "%d", name)
    return os.path.join(folder, name)


def discover(pattern: str | os.PathLike[str], frame_range: tuple[int, int] | None = None) -> FrameSequence:
    """Find the frames of ``pattern`` on disk.

    With ``frame_range`` (inclusive), frames outside it are ignored and every frame inside it
    that is not on disk is reported missing; without it, missing frames are the gaps.
    Raises PlateError when nothing matches.
    """
    printf = to_printf(pattern)
    match = _PRINTF.search(os.path.basename(printf))
    if match is None:
        if not os.path.isfile(printf):
            raise PlateError("no such file", printf)
        return FrameSequence(printf)

    folder = os.path.dirname(printf) or "."
    name = os.path.basename(printf)
    head, tail = name[: match.start()], name[match.end() :]
    padding = int(match.group(2) or 1)
    number = re.compile(re.escape(head) + r"(-?\d+)" + re.escape(tail) + r"\Z")
    found: set[int] = set()
    try:
        entries = os.listdir(folder)
    except OSError as exc:
        raise PlateError(f"cannot list folder: {exc.strerror}", folder) from None
    for entry in entries:
        m = number.match(entry)
        if m is None:
            continue
        digits = m.group(1).lstrip("-")
        if len(digits) < padding or (len(digits) > padding and digits.startswith("0")):
            continue  # a different padding: belongs to another sequence
        found.add(int(m.group(1)))

    if frame_range is not None:
        first, last = frame_range
        if first > last:
            raise PlateError(f"frame range {first}-{last} is empty", printf)
        frames = tuple(sorted(f for f in found if first <= f <= last))
    else:
        frames = tuple(sorted(found))
        first, last = (frames[0], frames[-1]) if frames else (0, -1)
    if not frames:
        wanted = f" in {first}-{last}" if frame_range is not None else ""
        raise PlateError(f"no frames found{wanted}", printf)
    missing = tuple(sorted(set(range(first, last + 1)) - set(frames)))
    return FrameSequence(printf, frames, missing)


def frames_on_disk(pattern: str | os.PathLike[str]) -> set[int]:
    """The frame numbers of ``pattern`` that exist; empty when none (or no folder) does."""
    try:
        return set(discover(pattern).frames)
    except PlateError:
        return set()
