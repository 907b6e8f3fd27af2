"""Reading timelines the installed OTIO and adapters cannot read as they are: OTIO JSON from a
newer OpenTimelineIO, and EDLs that declare drop-frame but write ':' timecode."""

from __future__ import annotations

import json
from pathlib import Path

import opentimelineio as otio
import pytest

from stylecomp.errors import TimelineError
from stylecomp_otio.newer_otio import downgrade
from stylecomp_otio.timeline_file import drop_frame_separators, read_timeline


def test_markers_from_otio_0_19_keep_their_colours(testdata: Path) -> None:
    path = testdata / "timelines/screening_example.otio"
    with pytest.raises(otio.exceptions.UnsupportedSchemaError):
        otio.adapters.read_from_file(str(path))  # what the installed OTIO does alone
    markers = [m for clip in read_timeline(path).find_clips() for m in clip.markers]
    assert [(m.name, m.color) for m in markers] == [
        ("ANIM FIX NEEDED", "RED"),
        ("ANIM FIX NEEDED", "PINK"),
        ("", "GREEN"),
    ]


def test_a_colour_without_a_marker_name_becomes_the_nearest() -> None:
    marker = {
        "OTIO_SCHEMA": "Marker.3",
        "name": "m",
        "color": {"OTIO_SCHEMA": "Color.1", "r": 0.9, "g": 0.45, "b": 0.1, "a": 1.0, "name": "Amber"},
    }
    assert downgrade({"markers": [marker]}) == {
        "markers": [{"OTIO_SCHEMA": "Marker.2", "name": "m", "color": "ORANGE"}]
    }


def test_an_unknown_newer_schema_is_named(tmp_path: Path) -> None:
    path = tmp_path / "future.otio"
    path.write_text(
        json.dumps(
            {
                "OTIO_SCHEMA": "Timeline.1",
                "tracks": {
                    "OTIO_SCHEMA": "Stack.1",
                    "children": [{"OTIO_SCHEMA": "Track.1", "children": [{"OTIO_SCHEMA": "Clip.9", "name": "sh010"}]}],
                },
            }
        )
    )
    with pytest.raises(TimelineError) as raised:
        read_timeline(path)
    assert raised.value.where == str(path)
    assert raised.value.reason == (
        f"written by a newer OpenTimelineIO (Clip.9; OpenTimelineIO {otio.__version__} reads up to Clip.2)"
    )


def test_drop_frame_separators_only_touch_event_lines_under_drop_frame() -> None:
    edl = (
        "FCM: DROP FRAME\n001  AX V C 00:00:59:28 00:01:00:04 01:00:00:00 01:00:00:04\n* LOC: 01:00:00:01 RED\n"
        "FCM: NON-DROP FRAME\n002  AX V C 00:00:59:28 00:01:00:04 01:00:00:04 01:00:00:10\n"
    )
    assert drop_frame_separators(edl) == (
        "FCM: DROP FRAME\n001  AX V C 00:00:59;28 00:01:00;04 01:00:00;00 01:00:00;04\n* LOC: 01:00:00:01 RED\n"
        "FCM: NON-DROP FRAME\n002  AX V C 00:00:59:28 00:01:00:04 01:00:00:04 01:00:00:10\n"
    )
