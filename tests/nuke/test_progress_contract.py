"""The progress contract: what the engine prints with ``--progress json`` is what the Nuke plugin parses.

A real tiny render through the engine's own command line (the arguments the plugin builds, run by the CLI), with
frames rendered, cached and failed; every stdout line goes through the plugin's parser and progress bar. Renaming an
event or a field on either side fails here (the plugin reads them with ``.get``, so it would only show less).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stylecomp_nuke import engine, progress, runner
from tests.tiny_jobs import FIRST, invoke, job_document, write_job

pytestmark = [pytest.mark.usefixtures("private_cache"), pytest.mark.plates(3)]


def engine_events(tmp_path: Path, plates: Path, model: Path) -> list[str]:
    """The stdout lines of two renders of frames 1001-1003 (1003's plate damaged): rendered, then cached."""
    own = tmp_path / "plates"
    shutil.copytree(plates, own)
    (own / f"demo.{FIRST + 2}.exr").write_bytes(b"not an EXR")
    job = write_job(tmp_path / "job.json", job_document(own, model, str(tmp_path / "out" / "demo.####.exr"), 3))
    lines = []
    for _ in range(2):
        command = engine.render_command("stylecomp", str(job), "demo", FIRST, FIRST + 2)
        status, stdout, _stderr = invoke(*command[1:])
        assert status == 1, _stderr  # one frame failed
        lines += stdout.splitlines()
    return lines


def test_every_engine_progress_line_is_an_event_the_plugin_shows(tmp_path: Path, plates: Path, model: Path) -> None:
    lines = engine_events(tmp_path, plates, model)
    events = [progress.parse(line) for line in lines]
    assert None not in events, f"lines the plugin does not read as events: {lines}"
    assert [e["event"] for e in events] == ["start", "frame", "frame", "frame", "end"] * 2

    result = runner.RunResult(events=events)
    assert [e["frame"] for e in result.frames("rendered")] == [FIRST, FIRST + 1]
    assert [e["frame"] for e in result.frames("cached")] == [FIRST, FIRST + 1]
    failed = result.frames("failed")
    assert [e["frame"] for e in failed] == [FIRST + 2] * 2 and all(e["error"] for e in failed)

    for run in (events[:5], events[5:]):
        start, *frames, end = run
        assert progress.describe(start) == f"demo {FIRST}-{FIRST + 2}: 3 frames" and progress.percent(start) is None
        for event in frames:
            message = progress.describe(event)
            assert message.startswith(f"frame {event['frame']} {event['status']} ({event['done']}/3)"), message
            assert progress.percent(event) == 100 * event["done"] // 3
            assert isinstance(event["eta"], (int, float))  # the plugin shows "about N s left" from it
        statuses = [e["status"] for e in frames]
        counts = {status: statuses.count(status) for status in ("rendered", "cached", "failed")}
        assert progress.describe(end) == f"{counts['rendered']} rendered, {counts['cached']} cached, 1 failed"
