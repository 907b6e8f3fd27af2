"""Timeline files in any format OpenTimelineIO reads or writes, with errors that say what failed.

- An EDL carries no frame rate. The rate goes to every adapter that takes one (cmx_3600); by
  default 29.97 (30000/1001) for an EDL whose ``FCM`` says ``DROP FRAME``, else 24.
- The cmx_3600 adapter reads drop-frame timecode only when written with ``;``. Event lines
  under ``FCM: DROP FRAME`` written with ``:`` get the ``;`` before it reads them, so their
  durations count drop-frame as the EDL says.
- OTIO JSON written by a newer OpenTimelineIO is read through `newer_otio`.
- A broken EDL is named by the event the adapter stopped at (`edl_events`); what an adapter
  logs while reading (pyaaf2 logs to the root logger) becomes warnings instead of stderr noise.
- Writing picks the format by suffix; FCP 7 XML and EDL get an export copy (`nle_export`).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import opentimelineio as otio

from stylecomp.errors import TimelineError
from stylecomp.io.atomic import atomic_target

from .edl_events import explain_failure, mismatched
from .newer_otio import read_newer_otio_json
from .nle_export import for_edl, for_fcp_xml, media_list_path, refuse_aaf, stale_edls

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
        (m := _FCM.match(line)) and m.group(1).upper().replace("-", " ").startswith("DROP") for line in edl.splitlines()
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


def _one_timeline(result: object, path: str, which: int | None) -> otio.schema.Timeline:
    """The file's timeline, or its ``which``-th (from 1) when it holds several (an FCP X library)."""
    if isinstance(result, otio.schema.Timeline):
        if which not in (None, 1):
            raise TimelineError(f"--timeline {which}: it holds one timeline", path)
        return result
    if isinstance(result, otio.schema.SerializableCollection):
        timelines = list(result.find_children(descended_from_type=otio.schema.Timeline))
        if which is not None and 1 <= which <= len(timelines):
            return timelines[which - 1]
        if len(timelines) == 1 and which is None:
            return timelines[0]
        names = ", ".join(f"{n} {t.name!r}" for n, t in enumerate(timelines, 1))
        if which is not None:
            raise TimelineError(f"--timeline {which}: it holds {len(timelines)} timelines ({names or 'none'})", path)
        if timelines:
            raise TimelineError(f"holds {len(timelines)} timelines ({names}); choose one with --timeline N", path)
        raise TimelineError("holds no timeline (browser clips or media only); export a project or sequence", path)
    raise TimelineError(f"holds a {type(result).__name__}, not a timeline", path)


class _AdapterLog(logging.Handler):
    """Collects what adapters log while they read (pyaaf2 logs to the root logger), instead of stderr.

    Only records of the reading thread count: in a server, other threads log to the root logger too,
    and theirs go where they would have gone without this handler.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages[" ".join(record.getMessage().split())] += 1
        elif logging.lastResort is not None and not self._handled_elsewhere(record):
            logging.lastResort.handle(record)  # what Python does with a record no handler takes

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(None if record.name == "root" else record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


@contextlib.contextmanager
def _adapter_log(adapter: str, warnings: list[str] | None) -> Iterator[None]:
    """Collect what this thread logs inside the block; add it to ``warnings`` (counted, once per message), if given."""
    root = logging.getLogger()
    handler = _AdapterLog()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        if warnings is not None:
            warnings.extend(
                f"the {adapter} adapter logged: {message}" + (f" ({n} times)" if n > 1 else "")
                for message, n in handler.messages.items()
            )


def read_timeline(
    path: str | os.PathLike[str],
    rate: float | None = None,
    *,
    ignore_timecode_mismatch: bool = False,
    which: int | None = None,
    warnings: list[str] | None = None,
) -> otio.schema.Timeline:
    """Read a timeline in any format OTIO reads; ``rate`` is for formats without one (EDL).

    ``ignore_timecode_mismatch`` passes the EDL adapter's tolerance for events whose source and
    record durations differ; each such event is added to ``warnings``, as is what an adapter logs.
    ``which`` picks one timeline (from 1) of a file holding several.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TimelineError("no such file", path)
    adapter = _adapter_for(path)
    if ignore_timecode_mismatch and adapter.name != "cmx_3600":
        raise TimelineError(f"--ignore-timecode-mismatch is for EDLs (cmx_3600), not {adapter.name}", path)
    text = None
    try:
        with _adapter_log(adapter.name, warnings):
            if _takes_rate(adapter) and hasattr(adapter.module(), "read_from_string"):
                text = _read_text(path)
                drop = says_drop_frame(text)
                rate = rate or (NTSC_DROP_FRAME_RATES[0] if drop else 24.0)
                if drop and any(abs(rate - r) < 1e-6 for r in NTSC_DROP_FRAME_RATES):
                    text = drop_frame_separators(text)
                extra = {"ignore_timecode_mismatch": True} if ignore_timecode_mismatch else {}
                result = otio.adapters.read_from_string(text, adapter_name=adapter.name, rate=rate, **extra)
                if ignore_timecode_mismatch and warnings is not None:
                    warnings.extend(mismatched(text, rate))
            else:
                result = otio.adapters.read_from_file(path, adapter_name=adapter.name)
    except otio.exceptions.UnsupportedSchemaError:
        if adapter.name != "otio_json":
            raise TimelineError(f"cannot read it as {adapter.name}: written by a newer OpenTimelineIO", path) from None
        try:
            result = read_newer_otio_json(_read_text(path))
        except TimelineError as exc:
            raise TimelineError(exc.reason, path) from None
    except Exception as exc:  # noqa: BLE001 - an adapter's own parse error, whatever its type: name it and the file
        reason, hint = str(exc), ""
        if text is not None and adapter.name == "cmx_3600":

            def read(part: str) -> object:  # the same read of part of the text, for finding the failing event
                with _adapter_log(adapter.name, None):
                    return otio.adapters.read_from_string(part, adapter_name=adapter.name, rate=rate)

            reason = explain_failure(text, read, exc)
            if "duration don't match" in reason:
                hint = " (pass --ignore-timecode-mismatch to read it with each clip's source length)"
        if _takes_rate(adapter) and "rate" in str(exc).lower():
            hint = " (an EDL carries no frame rate: pass the right one, e.g. --rate 25)"
        raise TimelineError(f"cannot read it as {adapter.name}: {reason}{hint}", path) from None
    return _one_timeline(result, path, which)


def write_timeline(
    timeline: otio.schema.Timeline, path: str | os.PathLike[str], warnings: list[str] | None = None
) -> list[str]:
    """Write in the format the suffix names, atomically (temp file + rename); the files written.

    ``.otio`` (or any suffix an installed adapter writes) as it is; ``.xml`` (FCP 7 XML) and
    ``.edl`` (CMX 3600: one per video track, each with its media list) through `nle_export`,
    which adds to ``warnings`` each clip its flattening leaves out; EDLs of an earlier conform to
    the same path that this one does not write are removed, each with a warning. ``.aaf`` is
    refused (see `nle_export.refuse_aaf`).
    """
    path = os.fspath(path)
    adapter = _adapter_for(path)
    if adapter.name == "AAF":
        refuse_aaf(path)
    warnings = warnings if warnings is not None else []
    files: list[tuple[str, otio.schema.Timeline, dict[str, Any], str | None]]  # path, timeline, options, listing
    if adapter.name == "cmx_3600":
        files = [(edl, out, {"reelname_len": None}, listing) for edl, out, listing in for_edl(timeline, path, warnings)]
    else:
        files = [(path, for_fcp_xml(timeline, warnings) if adapter.name == "fcp_xml" else timeline, {}, None)]
    written: list[str] = []
    target = path
    try:  # every file to a temp file first; all are renamed into place once all are written
        with contextlib.ExitStack() as renames:
            for target, out, options, listing in files:
                temp = renames.enter_context(atomic_target(target))
                otio.adapters.write_to_file(out, temp, adapter_name=adapter.name, **options)
                written.append(target)
                if listing is not None:
                    Path(renames.enter_context(atomic_target(media_list_path(target)))).write_text(listing, "utf-8")
                    written.append(media_list_path(target))
    except OSError as exc:
        raise TimelineError(exc.strerror or str(exc), target) from None
    except Exception as exc:  # noqa: BLE001 - an adapter's own write error
        raise TimelineError(f"cannot write it as {adapter.name}: {exc}", target) from None
    if adapter.name == "cmx_3600":
        for stale in stale_edls(path, written):
            try:
                os.remove(stale)
            except OSError as exc:
                warnings.append(
                    f"{stale}: left from an earlier conform, not written now, and not removed: {exc.strerror or exc}"
                )
            else:
                warnings.append(f"{stale}: left from an earlier conform and not written now: removed")
    return written
