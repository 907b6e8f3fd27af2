"""Timeline files in any format OpenTimelineIO reads or writes, with errors that say what failed.

- An EDL carries no frame rate. The rate goes to every adapter that takes one (cmx_3600); by
  default 29.97 (30000/1001) for an EDL whose ``FCM`` says ``DROP FRAME``, else 24.
- The cmx_3600 adapter reads drop-frame timecode only when written with ``;``. Event lines
  under ``FCM: DROP FRAME`` written with ``:`` get the ``;`` before it reads them, so their
  durations count drop-frame as the EDL says.
- OTIO JSON written by a newer OpenTimelineIO is read through `newer_otio`.
"""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import opentimelineio as otio
from stylecomp.atomicio import atomic_target
from stylecomp.errors import TimelineError

from .newer_otio import read_newer_otio_json

NTSC_DROP_FRAME_RATES = (30000 / 1001, 60000 / 1001)
_FCM = re.compile(r"^\s*FCM:\s*(.*?)\s*$", re.IGNORECASE)
_NON_DROP_TIMECODE = re.compile(r"\b(\d\d:\d\d:\d\d):(\d\d)\b")


def _adapter_for(path: str) -> otio.adapters.Adapter:
    """The adapter OpenTimelineIO picks for ``path``'s suffix."""
    try:
        return otio.adapters.from_filepath(path)
    except otio.exceptions.NoKnownAdapterForExtensionError:
        known = ", ".join(f".{s}" for s in sorted(otio.adapters.suffixes_with_defined_adapters()))
        raise TimelineError(
            f"no OpenTimelineIO adapter here handles {Path(path).suffix or 'files without a suffix'!r} "
            f"(installed: {known}); install one, e.g. otio-fcp-adapter or otio-aaf-adapter",
            path,
        ) from None


def _takes_rate(adapter: otio.adapters.Adapter) -> bool:
    """Whether the adapter's reader has a ``rate`` argument (formats that carry no rate)."""
    module = adapter.module()
    reader = getattr(module, "read_from_string", None) or getattr(module, "read_from_file", None)
    return reader is not None and "rate" in inspect.signature(reader).parameters


def _read_text(path: str) -> str:
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older EDLs; every byte decodes


def says_drop_frame(edl: str) -> bool:
    """Whether an EDL declares drop-frame timecode (``FCM: DROP FRAME``)."""
    return any(
        (m := _FCM.match(line)) and m.group(1).upper().replace("-", " ").startswith("DROP")
        for line in edl.splitlines()
    )


def drop_frame_separators(edl: str) -> str:
    """The EDL with ``:`` before the frames of event-line timecodes under ``FCM: DROP FRAME`` made ``;``."""
    lines, drop = [], False
    for line in edl.splitlines(keepends=True):
        if m := _FCM.match(line):
            drop = m.group(1).upper().replace("-", " ").startswith("DROP")
        elif drop and line[:1].isdigit():
            line = _NON_DROP_TIMECODE.sub(r"\1;\2", line)
        lines.append(line)
    return "".join(lines)


def _one_timeline(result: object, path: str) -> otio.schema.Timeline:
    if isinstance(result, otio.schema.Timeline):
        return result
    if isinstance(result, otio.schema.SerializableCollection):
        timelines = [item for item in result if isinstance(item, otio.schema.Timeline)]
        if len(timelines) == 1:
            return timelines[0]
        raise TimelineError(f"holds {len(timelines)} timelines; stylecomp reads a file with one", path)
    raise TimelineError(f"holds a {type(result).__name__}, not a timeline", path)


def read_timeline(path: str | os.PathLike[str], rate: float | None = None) -> otio.schema.Timeline:
    """Read a timeline in any format OTIO reads; ``rate`` is for formats without one (EDL)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TimelineError("no such file", path)
    adapter = _adapter_for(path)
    try:
        if _takes_rate(adapter) and hasattr(adapter.module(), "read_from_string"):
            text = _read_text(path)
            drop = says_drop_frame(text)
            rate = rate or (NTSC_DROP_FRAME_RATES[0] if drop else 24.0)
            if drop and any(abs(rate - r) < 1e-6 for r in NTSC_DROP_FRAME_RATES):
                text = drop_frame_separators(text)
            result = otio.adapters.read_from_string(text, adapter_name=adapter.name, rate=rate)
        else:
            result = otio.adapters.read_from_file(path, adapter_name=adapter.name)
    except otio.exceptions.UnsupportedSchemaError:
        if adapter.name != "otio_json":
            raise TimelineError(f"cannot read it as {adapter.name}: written by a newer OpenTimelineIO", path) from None
        try:
            result = read_newer_otio_json(_read_text(path))
        except TimelineError as exc:
            raise TimelineError(exc.reason, path) from None
    except Exception as exc:  # an adapter's own parse error, whatever its type: name it and the file
        hint = ""
        if _takes_rate(adapter) and "rate" in str(exc).lower():
            hint = " (an EDL carries no frame rate: pass the right one, e.g. --rate 25)"
        raise TimelineError(f"cannot read it as {adapter.name}: {exc}{hint}", path) from None
    return _one_timeline(result, path)


def write_timeline(timeline: otio.schema.Timeline, path: str | os.PathLike[str]) -> None:
    """Write with the adapter OTIO picks for the suffix, atomically (temp file + rename)."""
    path = os.fspath(path)
    adapter = _adapter_for(path)
    try:
        with atomic_target(path) as temp:
            otio.adapters.write_to_file(timeline, temp, adapter_name=adapter.name)
    except OSError as exc:
        raise TimelineError(exc.strerror or str(exc), path) from None
    except Exception as exc:  # an adapter's own write error
        raise TimelineError(f"cannot write it as {adapter.name}: {exc}", path) from None
