"""CMX 3600 EDL events read from the text itself: to say which event a failed read stopped at and
why, and which clips the cmx_3600 adapter's tolerance for mismatched timecodes changes.

The adapter (otio-cmx3600-adapter) reads lines that share an event number as one event: a cut,
then a dissolve or wipe from it. When they are not, it stops with an internal error
(``'ClipHandler' object has no attribute 'transaction_id'``) that names neither the file nor the
event; `explain_failure` names both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import opentimelineio as otio

_EVENT = re.compile(r"^(\d+)\s")
_CLIP_NAME = re.compile(r"^\*\s*FROM CLIP NAME:\s*(.*?)\s*$", re.IGNORECASE)
_TIMECODE = re.compile(r"^\d\d[:;]\d\d[:;]\d\d[:;]\d\d$")


@dataclass
class EventLine:
    """One statement line of an event: its line number (from 1) and its fields."""

    number: int
    fields: list[str]

    @property
    def is_transition(self) -> bool:
        """A dissolve (``D``) or wipe (``W001``) line: nine fields, the fifth its length in frames."""
        return len(self.fields) == 9 and (self.fields[3] == "D" or self.fields[3].startswith("W"))

    @property
    def timecodes(self) -> list[str]:
        """Source in, source out, record in, record out."""
        return self.fields[-4:]


@dataclass
class Event:
    """Consecutive lines with one event number, the comments after them, and where it ends in the text."""

    number: str
    lines: list[EventLine] = field(default_factory=list)
    clip_name: str | None = None
    speed_change: bool = False  # an M2 (motion) line or a freeze frame: the durations may differ
    end: int = 0  # the index of the text line after the event

    def describe(self) -> str:
        """``event 002 (line 6)``, with the clip name when it has one."""
        lines = " and ".join(str(line.number) for line in self.lines)
        name = f", clip {self.clip_name!r}" if self.clip_name else ""
        return f"event {self.number} (line{'s' if len(self.lines) > 1 else ''} {lines}{name})"


def events(text: str) -> tuple[list[str], list[Event]]:
    """The EDL's lines (with their ends) and its events, in order."""
    lines = text.splitlines(keepends=True)
    found: list[Event] = []
    for index, line in enumerate(lines):
        if m := _EVENT.match(line):
            if not found or found[-1].number != m.group(1):
                found.append(Event(m.group(1)))
            found[-1].lines.append(EventLine(index + 1, line.split()))
        elif found and (m := _CLIP_NAME.match(line)) and found[-1].clip_name is None:
            found[-1].clip_name = m.group(1)
        elif found and line.startswith("M2"):
            found[-1].speed_change = True
        if found:
            found[-1].end = index + 1
    for event in found:
        event.speed_change = event.speed_change or any(f == "FF" for line in event.lines for f in line.fields)
    return lines, found


def _grouping_problem(event: Event) -> str | None:
    """Why the adapter cannot read lines that share an event number, if that is the trouble."""
    if len(event.lines) < 2:
        return None
    wrong = next((line for line in event.lines[1:] if not line.is_transition), None)
    if wrong is None:
        return None
    numbers = ", ".join(str(line.number) for line in event.lines)
    return (
        f"event {event.number} has {len(event.lines)} lines ({numbers}) and line {wrong.number} is not a "
        "dissolve or wipe: lines that share an event number are a cut and the transition from it; number "
        f"line {wrong.number} as the event it belongs to"
    )


def explain_failure(text: str, read: Callable[[str], object], error: Exception) -> str:
    """What is wrong with an EDL the adapter failed on: the event it stopped at, and why.

    ``read`` reads EDL text and raises as the failed read did: the first event whose text makes it
    fail is found by bisection over prefixes of the file that end between events. Its error is the
    adapter's, unless that event's lines are badly grouped (the adapter's error then says nothing).
    """
    lines, found = events(text)
    errors: dict[int, Exception] = {}  # the adapter's error for each failing prefix, by its number of events
    low, high = 0, len(found)  # the prefix with `low` events reads; find the first event that does not
    while low < high:
        middle = (low + high + 1) // 2
        try:
            read("".join(lines[: found[middle - 1].end]))
        except Exception as exc:  # noqa: BLE001 - the adapter's own error, whatever its type: this prefix fails
            errors[middle] = exc
            high = middle - 1
        else:
            low = middle
    if low == len(found):
        return str(error)
    if problem := _grouping_problem(found[low]):
        return problem
    return f"{found[low].describe()}: {errors.get(low + 1, error)}"


def mismatched(text: str, rate: float) -> list[str]:
    """One line per cut whose source and record durations differ (no speed change to explain it)."""
    found = []
    for event in events(text)[1]:
        line = event.lines[-1]
        if event.speed_change or not all(_TIMECODE.match(tc) for tc in line.timecodes):
            continue
        try:
            src_in, src_out, rec_in, rec_out = (otio.opentime.from_timecode(tc, rate) for tc in line.timecodes)
        except ValueError:
            continue  # not timecode at this rate: the read names it
        source, record = (src_out - src_in).value, (rec_out - rec_in).value
        if source != record:
            end = otio.opentime.to_timecode(rec_in + (src_out - src_in), rate)
            found.append(
                f"{event.describe()}: its source is {source:g} frames long and its record {record:g}; read "
                f"with --ignore-timecode-mismatch, it plays all {source:g} from {line.timecodes[2]} to {end}, "
                f"not to {line.timecodes[3]}, and a later event that would overlap it moves after it"
            )
    return found
