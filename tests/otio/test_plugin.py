"""The OpenTimelineIO plugin as OTIO finds it after install: the ``stylecomp_jobs`` adapter
(job documents <-> timelines) and the ``stylecomp_plates`` media linker."""

from __future__ import annotations

import os
from pathlib import Path

import opentimelineio as otio
import pytest

from stylecomp.jobspec import load_job, parse_job
from tests.otio.timelines import PLATES, make_job, write_frames

PACKAGE = Path(__file__).resolve().parents[2] / "otio_adapters"


@pytest.fixture(autouse=True)
def fresh_manifest() -> None:
    """OTIO caches the plugin manifest; read it again as a new process would."""
    otio.plugins.ActiveManifest(force_reload=True)


def test_otio_discovers_the_adapter_and_media_linker() -> None:
    assert "stylecomp_jobs" in otio.adapters.available_adapter_names()
    assert "stylecomp_plates" in otio.media_linker.available_media_linker_names()
    assert Path(otio.adapters.from_name("stylecomp_jobs").module_abs_path()) == PACKAGE / "stylecomp_jobs.py"
    assert Path(otio.media_linker.from_name("stylecomp_plates").module_abs_path()) == PACKAGE / "plate_linker.py"
    assert any(Path(p) == PACKAGE / "plugin_manifest.json" for p in otio.plugins.ActiveManifest().source_files)


def test_a_job_from_an_edl_round_trips_through_the_adapter(testdata: Path, tmp_path: Path) -> None:
    job = make_job(
        testdata / "timelines/screening_example.edl",
        tmp_path / "job.json",
        "--plates",
        PLATES,
        "--allow-missing",
        "--handles",
        "8",
    )
    timeline = otio.adapters.read_from_file(str(tmp_path / "job.json"), adapter_name="stylecomp_jobs")
    clips = list(timeline.find_clips())
    assert [c.name for c in clips] == [s.name for s in job.shots]
    first = clips[0].media_reference
    assert isinstance(first, otio.schema.ImageSequenceReference)
    assert (first.start_frame, first.end_frame(), first.frame_zero_padding) == (993, 1039, 4)
    assert first.target_url_for_image_number(8) == "plates/ZZ100_501_LAY3/ZZ100_501_LAY3.1001.exr"
    assert first.frame_for_time(clips[0].source_range.start_time) == 1001
    otio.adapters.write_to_file(
        timeline, str(tmp_path / "again.json"), adapter_name="stylecomp_jobs", allow_missing=True
    )
    assert load_job(tmp_path / "again.json").model_dump() == job.model_dump()


def test_a_written_job_with_real_plates_round_trips(tmp_path: Path) -> None:
    plates = tmp_path / "show dir" / "sh#1"  # a space and a '#' in the folder survive the file:// URL
    write_frames(plates / "a.%04d.exr", range(97, 125))
    write_frames(tmp_path / "rel/b.%d.exr", range(1, 11))
    text = f"""{{
      "shots": [
        {{"name": "sh010", "plate": "{plates}/a.####.exr", "frames": {{"first": 101, "last": 120}},
          "handles": 4, "output": "out/sh010.####.exr", "aovs": {{"depth": ["Z"]}}, "notes": ["hero"],
          "overrides": {{"prompt": "ink", "seed": 7, "strength": 0.25}}}},
        {{"name": "sh020", "plate": "rel/b.%d.exr", "frames": {{"first": 1, "last": 10}},
          "output": "out/sh020.%d.exr"}}
      ],
      "prompt": "watercolour", "seed": {{"policy": "per_frame", "value": 3}}, "steps": 30
    }}"""
    job = parse_job(text, base_dir=tmp_path)
    (tmp_path / "job.json").write_text(job.dumps())
    timeline = otio.adapters.read_from_file(str(tmp_path / "job.json"), adapter_name="stylecomp_jobs", rate=25)
    media = [c.media_reference for c in timeline.find_clips()]
    assert media[0].target_url_base.startswith("file://") and media[1].target_url_base == "rel/"
    for ref in media:
        for i in range(ref.number_of_images_in_sequence()):
            url = ref.target_url_for_image_number(i)
            path = otio.url_utils.filepath_from_url(url) if url.startswith("file:") else str(tmp_path / url)
            assert os.path.isfile(path), url
    otio.adapters.write_to_file(timeline, str(tmp_path / "again.json"), adapter_name="stylecomp_jobs")
    again = load_job(tmp_path / "again.json")
    assert again.shots[1].plate == "rel/b.%d.exr"
    assert again.model_dump() == job.model_dump()


def test_writing_a_timeline_as_a_job_matches_the_cli(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/no_spaces_test.edl"
    from_cli = make_job(path, tmp_path / "cli.json", "--plates", PLATES, "--allow-missing", "--handles", "6")
    timeline = otio.adapters.read_from_file(str(path))
    otio.adapters.write_to_file(
        timeline,
        str(tmp_path / "adapter.json"),
        adapter_name="stylecomp_jobs",
        plates=PLATES,
        handles=6,
        allow_missing=True,
        timeline_path=os.path.abspath(path),
    )
    assert load_job(tmp_path / "adapter.json").model_dump() == from_cli.model_dump()


def test_the_media_linker_points_clips_at_their_plates(
    testdata: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative template is relative to the current folder
    write_frames(tmp_path / "plates/ZZ100_501_LAY3/ZZ100_501_LAY3.%04d.exr", range(995, 1040))
    write_frames(tmp_path / "plates/ZZ100_502A_LAY3/ZZ100_502A_LAY3.%04d.exr", range(1001, 1030))  # short
    timeline = otio.adapters.read_from_file(
        str(testdata / "timelines/screening_example.edl"),
        media_linker_name="stylecomp_plates",
        media_linker_argument_map={"plates": PLATES},
    )
    linked, short, *rest = timeline.find_clips()
    ref = linked.media_reference
    assert isinstance(ref, otio.schema.ImageSequenceReference)
    assert (ref.start_frame, ref.end_frame(), ref.rate) == (995, 1039, 24)
    assert ref.frame_for_time(linked.source_range.start_time) == 1001
    assert otio.url_utils.filepath_from_url(ref.target_url_for_image_number(6)) == str(
        tmp_path / "plates/ZZ100_501_LAY3/ZZ100_501_LAY3.1001.exr"
    )
    assert isinstance(short.media_reference, otio.schema.MissingReference)
    assert all(isinstance(c.media_reference, otio.schema.MissingReference) for c in rest)
