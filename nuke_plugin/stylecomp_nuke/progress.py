"""The engine's progress lines (``--progress json``): one JSON event object per stdout line."""

from __future__ import annotations

import json


def parse(line: str) -> dict | None:
    """The event a stdout line holds (``{"event": "start" | "frame" | "end", ...}``), None for other lines."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def percent(event: dict) -> int | None:
    """Progress 0-100 after a frame event, None when the event does not say."""
    done, total = event.get("done"), event.get("total")
    if not isinstance(done, (int, float)) or not isinstance(total, (int, float)) or total <= 0:
        return None
    return max(0, min(100, int(100 * done / total)))


def describe(event: dict) -> str:
    """A one-line message for the progress bar."""
    kind = event.get("event")
    if kind == "start":
        frames = event.get("frames") or []
        span = f" {frames[0]}-{frames[-1]}" if len(frames) == 2 else ""
        return f"{event.get('shot', '')}{span}: {event.get('total', '?')} frames"
    if kind == "frame":
        text = f"frame {event.get('frame')} {event.get('status', '')} ({event.get('done')}/{event.get('total')})"
        eta = event.get("eta")
        if isinstance(eta, (int, float)) and event.get("done") != event.get("total"):
            text += f", about {eta:.0f} s left"
        return text
    if kind == "end":
        return f"{event.get('rendered', 0)} rendered, {event.get('cached', 0)} cached, {event.get('failed', 0)} failed"
    return kind or ""
