"""`stylecomp timeline jobs`: real timelines (the shared OTIO/EDL samples and ones written here
with OTIO itself), real adapters, real EXR plates on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import opentimelineio as otio
import pytest
from click.testing import CliRunner

from stylecomp.cli import cli
from stylecomp.jobspec import load_job
from stylecomp_otio.timeline_file import read_timeline
from tests.otio.timelines import (
    DROP_FRAME_EDL,
    PLATES,
    RT,
    SHARED,
    TR,
    jobs,
    make_job,
    save_otio,
    video_clips,
    write_frames,
)


@pytest.mark.parametrize("name", SHARED)
def test_every_shared_timeline_gives_one_shot_per_video_clip(testdata: Path, tmp_path: Path, name: str) -> None:
    path = testdata / "timelines" / name
    job = make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing", *SHARED[name])
    rate = float(SHARED[name][1]) if "--rate" in SHARED[name] else None
    timeline = read_timeline(path, rate)
    clips = video_clips(timeline)
    assert len(job.shots) == len(clips)
    for shot, clip in zip(job.shots, clips, strict=True):
        assert shot.editorial is not None and shot.editorial.clip == clip.name
        record = shot.editorial.record
        assert TR(RT(record.start, record.rate), RT(record.duration, record.rate)) == clip.range_in_parent()
        if not clip.effects:  # a speed effect's shot covers the media it plays, not the cut's length
            assert shot.frames.last - shot.frames.first + 1 == round(clip.trimmed_range().duration.value)
        assert shot.plate == f"plates/{shot.name}/{shot.name}.####.exr"
        assert shot.output == f"stylized/{shot.name}/{shot.name}.####.exr"


def test_screening_edl_frame_ranges_match_its_events(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/screening_example.edl"
    events = re.findall(r"^\d{3}\s+\S+\s+V\s+C\s+(\S+) (\S+) (\S+) (\S+)", path.read_text(), re.M)
    result = jobs(str(path), "--plates", PLATES, "--handles", "8", "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 0, result.output
    job = load_job(tmp_path / "j.json")
    assert len(events) == len(job.shots) == 9
    start = otio.opentime.from_timecode(events[0][2], 24).value
    for shot, (src_in, src_out, rec_in, _rec_out) in zip(job.shots, events, strict=True):
        length = otio.opentime.from_timecode(src_out, 24).value - otio.opentime.from_timecode(src_in, 24).value
        assert (shot.frames.first, shot.frames.last, shot.handles) == (1001, 1000 + length, 8)
        assert shot.editorial.record.start == otio.opentime.from_timecode(rec_in, 24).value - start
        assert shot.editorial.source.start == otio.opentime.from_timecode(src_in, 24).value
    assert job.shots[0].name == "ZZ100_501_LAY3" and job.shots[0].editorial.clip == "ZZ100_501 (LAY3)"
    assert job.shots[3].notes == ["marker 01:00:01:14 RED: ANIM FIX NEEDED", "marker 01:00:02:14 PINK: ANIM FIX NEEDED"]
    assert "9 shots" in result.stdout and "skipped: nothing" in result.stdout
    assert result.stderr.count("no plate frames at") == 9 and "written anyway (--allow-missing)" in result.stderr


def test_the_otio_written_by_a_newer_otio_reads_like_its_edl(testdata: Path, tmp_path: Path) -> None:
    from_edl = make_job(
        testdata / "timelines/screening_example.edl", tmp_path / "a.json", "--plates", PLATES, "--allow-missing"
    )
    from_otio = make_job(
        testdata / "timelines/screening_example.otio", tmp_path / "b.json", "--plates", PLATES, "--allow-missing"
    )
    for a, b in zip(from_edl.shots, from_otio.shots, strict=True):
        assert (a.name, a.frames, a.notes, a.editorial.source) == (b.name, b.frames, b.notes, b.editorial.source)
    assert from_otio.shots[6].notes == ["marker 01:00:15:13 GREEN"]


def test_25_fps_edl_needs_its_rate(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/25fps.edl"
    result = jobs(str(path), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2 and not (tmp_path / "j.json").exists()
    assert result.stderr.startswith(
        f"error: {path}: cannot read it as cmx_3600: event 004 (line 13, clip 'sq001_s004'): Frame rate mismatch"
    )  # the first event with a frame 24
    assert "--rate 25" in result.stderr and result.stderr.count("\n") == 1
    job = make_job(path, tmp_path / "j.json", "--plates", PLATES, "--allow-missing", "--rate", "25")
    # 00:00:06:11, 00:00:08:00, 00:00:03:11, 00:00:01:24 at 25 fps
    assert [s.frames.last - s.frames.first + 1 for s in job.shots] == [161, 200, 86, 49]
    assert {s.editorial.rate for s in job.shots} == {25.0}


def test_23_976_source_ranges_round_to_the_nearest_frame(tmp_path: Path) -> None:
    ntsc = 24000 / 1001
    # An image sequence whose rate was stored as 23.976, cut by a clip timed at exactly
    # 24000/1001: rescaling gives 86399.91..., which OTIO's to_frames truncates to 86399.
    media = otio.schema.ImageSequenceReference(
        "plates/",
        "sh.",
        ".exr",
        start_frame=1001,
        rate=23.976,
        frame_zero_padding=4,
        available_range=TR(RT(86376, 23.976), RT(1100, 23.976)),
    )
    clip = otio.schema.Clip("sh010", media, TR(RT(86400, ntsc), RT(1000, ntsc)))
    path = save_otio(tmp_path, "ntsc", [otio.schema.Track("V", [clip])])
    assert int(RT(86400, ntsc).value_rescaled_to(23.976)) == 86399  # what truncation would give
    job = make_job(path, tmp_path / "j.json", "--allow-missing", "--handles", "4")
    shot = job.shots[0]
    assert shot.plate == "plates/sh.####.exr"  # the clip's own image sequence
    assert (shot.frames.first, shot.frames.last, shot.handles) == (1025, 2024, 4)  # 1001 + (86400 - 86376)
    assert shot.editorial.rate == 23.976 and shot.editorial.frame_offset == 1001 - 86376


def test_23_976_edl_reads_at_exact_ntsc_rate(tmp_path: Path) -> None:
    edl = tmp_path / "ntsc.edl"
    edl.write_text(
        "TITLE: ntsc\nFCM: NON-DROP FRAME\n"
        "001  AX       V     C        01:00:00:00 01:00:41:16 00:00:00:00 00:00:41:16\n"
        "* FROM CLIP NAME:  sh010\n"
    )
    job = make_job(edl, tmp_path / "j.json", "--plates", PLATES, "--allow-missing", "--rate", "23.976")
    assert job.shots[0].editorial.rate == 24000 / 1001
    assert job.shots[0].frames.last - job.shots[0].frames.first + 1 == 41 * 24 + 16


def test_drop_frame_edl_counts_dropped_frames(tmp_path: Path) -> None:
    edl = tmp_path / "df.edl"
    edl.write_text(DROP_FRAME_EDL)
    job = make_job(edl, tmp_path / "j.json", "--plates", PLATES, "--allow-missing")  # rate from FCM: 29.97
    # Frames ;00 and ;01 do not exist at minute 1 (drop frame): 59;28 59;29 00;02 00;03 are 4 frames.
    # Minute 10 drops none: 59:28 59:29 00:00 ... 00:03 are 6 frames, written with ':' under FCM: DROP FRAME.
    assert [(s.frames.first, s.frames.last) for s in job.shots] == [(1001, 1004), (1001, 1006)]
    assert {s.editorial.rate for s in job.shots} == {30000 / 1001}
    assert job.shots[0].editorial.source.start == otio.opentime.from_timecode("00:00:59;28", 30000 / 1001).value
    assert job.shots[1].editorial.record.start == 4


def test_handles_clamp_to_the_media_available_range(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/simple_cut.otio"
    result = jobs(str(path), "--plates", PLATES, "--allow-missing", "--handles", "4", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 0, result.output
    job = load_job(tmp_path / "j.json")
    # Each side is clamped on its own: Clip-001 plays 3-5 of media 0-7 (3 frames before it, 2 after),
    # Clip-002 2-7 (2 before, none after), Clip-003 0-3 (none before, 4 after); Clip-004 all of its media.
    assert [s.handle_frames() for s in job.shots] == [(3, 2), (2, 0), (0, 4), (0, 0)]
    assert job.shots[0].frame_range_with_handles() == (998, 1005)
    assert (
        "clip 'Clip-001' (track 'Track-001', item 0): handles before the cut clamped from 4 to 3: its media has "
        "frames 998-1005 and the cut plays 1001-1003"
    ) in result.stderr
    assert "clip 'Clip-001' (track 'Track-001', item 0): handles after the cut clamped from 4 to 2" in result.stderr
    assert "clip 'Clip-004' (track 'Track-001', item 3): handles before the cut clamped from 4 to 0" in result.stderr


def test_handles_clamp_to_the_plate_frames_on_disk(tmp_path: Path) -> None:
    clip = otio.schema.Clip("sh010", otio.schema.MissingReference(), TR(RT(100, 25), RT(10, 25)))
    path = save_otio(tmp_path, "cut", [otio.schema.Track("V", [clip])])
    write_frames(tmp_path / "plates/sh010/sh010.%04d.exr", range(998, 1013))  # cut 1001-1010, 3 before, 2 after
    result = jobs(str(path), "--plates", PLATES, "--handles", "5", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 0, result.output
    shot = load_job(tmp_path / "j.json").shots[0]
    assert (shot.frames.first, shot.frames.last, shot.editorial.rate) == (1001, 1010, 25.0)
    assert shot.handle_frames() == (3, 2)
    assert "clip 'sh010' (track 'V', item 0): handles before the cut clamped from 5 to 3: the plate" in result.stderr
    assert "clip 'sh010' (track 'V', item 0): handles after the cut clamped from 5 to 2: the plate" in result.stderr


def test_transitions_raise_handles_to_the_frames_they_play(testdata: Path, tmp_path: Path) -> None:
    result = jobs(
        str(testdata / "timelines/dissolve_test.edl"),
        "--plates",
        PLATES,
        "--allow-missing",
        "--unique-names",
        "-o",
        str(tmp_path / "j.json"),
    )
    assert result.exit_code == 0, result.output
    job = load_job(tmp_path / "j.json")
    assert [(s.name, s.frames.last - s.frames.first + 1, s.handle_frames()) for s in job.shots] == [
        ("clip_A", 9, (0, 10)),
        ("clip_B", 10, (0, 0)),
        ("clip_B_2", 1, (0, 0)),
    ]
    assert "handles raised from 0 to 10 after the cut" in result.stderr
    assert "skipped: 1 transition" in result.stdout


def test_speed_effects_cover_the_media_they_play(testdata: Path, tmp_path: Path) -> None:
    result = jobs(
        str(testdata / "timelines/speed_effects_small.edl"),
        "--plates",
        PLATES,
        "--allow-missing",
        "-o",
        str(tmp_path / "j.json"),
    )
    assert result.exit_code == 0, result.output
    job = load_job(tmp_path / "j.json")
    frames = {s.name: s.frames.last - s.frames.first + 1 for s in job.shots}
    assert frames["Z682_156_LAY3"] == 1  # a freeze frame
    assert frames["Z686_5A_LAY2_47.56_FPS"] == 72  # 36 record frames at 47.56/24 speed: 71.4 media frames
    assert "skipped: 2 gaps" in result.stdout and "a speed of 1.98333x" in result.stderr


def test_clip_metadata_overrides_the_jobs_settings(tmp_path: Path) -> None:
    media = otio.schema.MissingReference()
    clips = [
        otio.schema.Clip(
            "sh010",
            media.clone(),
            TR(RT(0, 24), RT(10, 24)),
            metadata={
                "stylecomp": {
                    "prompt": "ink wash, night",
                    "seed": 42,
                    "model": "models/ink.safetensors",
                    "strength": 0.35,
                    "handles": 3,
                    "aovs": {"depth": ["depth.Z"]},
                    "notes": ["hero shot"],
                }
            },
        ),
        otio.schema.Clip(
            "sh020",
            media.clone(),
            TR(RT(0, 24), RT(5, 24)),
            markers=[otio.schema.Marker("fix hand", TR(RT(2, 24), RT(0, 24)), "YELLOW", comment="frame 3")],
        ),
    ]
    path = save_otio(
        tmp_path,
        "cut",
        [otio.schema.Track("V", clips)],
        stylecomp={"prompt": "watercolour", "strength": 0.6, "steps": 12},
    )
    job = make_job(path, tmp_path / "j.json", "--plates", PLATES, "--allow-missing", "--handles", "8")
    assert (job.prompt, job.strength, job.steps) == ("watercolour", 0.6, 12)
    first, second = job.shots
    assert first.overrides.model_dump() == {
        "prompt": "ink wash, night",
        "negative_prompt": None,
        "seed": 42,
        "model": "models/ink.safetensors",
        "strength": 0.35,
    }
    assert (first.handles, first.aovs, first.notes) == (3, {"depth": ["depth.Z"]}, ["hero shot"])
    assert second.overrides.model_dump(exclude_none=True) == {} and second.handles == 8
    assert second.notes == ["marker 00:00:00:02 YELLOW: fix hand (frame 3)"]


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"strength": 2}, "metadata stylecomp.strength: Input should be less than or equal to 1"),
        ({"seed": -1}, "metadata stylecomp.seed: Input should be greater than or equal to 0"),
        ({"promt": "typo"}, "metadata stylecomp.promt: Extra inputs are not permitted"),
        (
            {"output": "out/{shot}.exr"},
            "metadata stylecomp.output 'out/{shot}.exr': the file name needs a frame-number",
        ),
    ],
)
def test_bad_clip_metadata_names_the_clip(tmp_path: Path, metadata: dict[str, object], message: str) -> None:
    clips = [
        otio.schema.Clip("ok", None, TR(RT(0, 24), RT(5, 24))),
        otio.schema.Clip("sh020", None, TR(RT(0, 24), RT(5, 24)), metadata={"stylecomp": metadata}),
    ]
    path = save_otio(tmp_path, "cut", [otio.schema.Track("V", clips)])
    result = jobs(str(path), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {path}: ")
    assert message in result.stderr
    if "output" not in metadata:
        assert "clip 'sh020' (track 'V', item 1)" in result.stderr


def test_gaps_transitions_audio_disabled_and_generators_are_skipped_and_counted(tmp_path: Path) -> None:
    def clip(name: str, **kw: object) -> otio.schema.Clip:
        return otio.schema.Clip(name, otio.schema.MissingReference(), TR(RT(0, 24), RT(12, 24)), **kw)

    black = otio.schema.Clip("slug", otio.schema.GeneratorReference(generator_kind="black"), TR(RT(0, 24), RT(12, 24)))
    disabled = clip("sh030")
    disabled.enabled = False
    video = otio.schema.Track(
        "V1",
        [
            clip("sh010"),
            otio.schema.Gap(source_range=TR(RT(0, 24), RT(5, 24))),
            clip("sh020"),
            otio.schema.Transition(in_offset=RT(2, 24), out_offset=RT(2, 24)),
            black,
            disabled,
        ],
    )
    other = otio.schema.Track("V2", [clip("sh040")])
    audio = otio.schema.Track("A1", [clip("dialogue")], kind=otio.schema.TrackKind.Audio)
    path = save_otio(tmp_path, "cut", [video, other, audio])
    result = jobs(
        str(path),
        "--plates",
        PLATES,
        "--allow-missing",
        "--track",
        "V1",
        "--handles",
        "2",
        "-o",
        str(tmp_path / "j.json"),
    )
    assert result.exit_code == 0, result.output
    assert [s.name for s in load_job(tmp_path / "j.json").shots] == ["sh010", "sh020"]
    assert (
        "skipped: 1 unselected video track, 1 audio track, 1 gap, 1 transition, 1 generator clip, 1 disabled clip"
    ) in result.stdout
    missing = jobs(str(path), "--plates", PLATES, "--track", "V9", "-o", str(tmp_path / "k.json"))
    assert (
        missing.exit_code == 2
        and "--track 'V9': no video track has that name (video tracks: 'V1', 'V2')" in missing.stderr
    )


def test_missing_plates_are_an_error_naming_the_clip_and_path(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/screening_example.edl"
    job_path = tmp_path / "j.json"
    write_frames(tmp_path / "plates/ZZ100_501_LAY3/ZZ100_501_LAY3.%04d.exr", range(1001, 1032))
    result = jobs(str(path), "--plates", PLATES, "-o", str(job_path))
    assert result.exit_code == 2 and not job_path.exists()
    plate = tmp_path / "plates/ZZ100_502A_LAY3/ZZ100_502A_LAY3.%04d.exr"
    assert result.stderr == (
        f"error: {path}: clip 'ZZ100_502A (LAY3)' (track 'V', item 1): no plate frames at "
        f"{plate} (pass --allow-missing to write the job anyway)\n"
    )
    (tmp_path / "plates/ZZ100_501_LAY3/ZZ100_501_LAY3.1010.exr").unlink()
    partial = jobs(str(path), "--plates", PLATES, "--allow-missing", "-o", str(job_path))
    assert partial.exit_code == 0
    assert "clip 'ZZ100_501 (LAY3)' (track 'V', item 0): the plate" in partial.stderr
    assert "lacks 1 of the cut's frames 1001-1031 (from frame 1010)" in partial.stderr


def test_clips_making_the_same_shot_name_are_an_error_or_suffixed(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/cdl.edl"
    result = jobs(str(path), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2
    assert (
        "clip 'ZZ100_501 (LAY3)' (track 'V', item 0) and clip 'ZZ100_501 (LAY3)' (track 'V', item 1) both make "
        "shot 'ZZ100_501_LAY3'; rename one, or pass --unique-names"
    ) in result.stderr
    job = make_job(path, tmp_path / "j.json", "--plates", PLATES, "--allow-missing", "--unique-names")
    assert [s.name for s in job.shots] == ["ZZ100_501_LAY3", "ZZ100_501_LAY3_2"]
    assert job.shots[1].output == "stylized/ZZ100_501_LAY3_2/ZZ100_501_LAY3_2.####.exr"


@pytest.mark.parametrize(
    "template, message",
    [
        (
            "plates/{shot_name}.####.exr",
            "unknown field {shot_name}; the fields are {clip}, {reel}, {shot}, {source_file}, {track}, {index}",
        ),
        ("plates/{shot.####.exr", "expected '}' before end of string"),
        ("plates/{shot}.exr", "the file name needs a frame-number token"),
    ],
)
def test_bad_templates_are_clear_errors(testdata: Path, tmp_path: Path, template: str, message: str) -> None:
    result = jobs(str(testdata / "timelines/screening_example.edl"), "--plates", template, "-o", str(tmp_path / "j"))
    assert result.exit_code == 2 and f"--plates {template!r}" in result.stderr and message in result.stderr


def test_template_fields(testdata: Path, tmp_path: Path) -> None:
    job = make_job(
        testdata / "timelines/screening_example.edl",
        tmp_path / "j.json",
        "--allow-missing",
        "--plates",
        "/shows/zz/{reel}/{track}/{index:03d}_{source_file}/{clip}.%04d.exr",
        "--output",
        "out/{shot}/{index}.@@@@.exr",
    )
    assert job.shots[1].plate == "/shows/zz/ZZ100_50/V/002_ZZ100_502A.LAY3.02/ZZ100_502A (LAY3).%04d.exr"
    assert job.shots[1].output == "out/ZZ100_502A_LAY3/2.@@@@.exr"
    no_reel = jobs(
        str(testdata / "timelines/cdl.edl"),
        "--plates",
        "p/{reel}.####.exr",
        "--unique-names",
        "-o",
        str(tmp_path / "k.json"),
    )
    assert no_reel.exit_code == 2
    assert "clip 'ZZ100_501 (LAY3)' (track 'V', item 0): has no reel for {reel} in --plates" in no_reel.stderr


def test_unreadable_timelines_are_one_line_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "cut.edl"
    garbage.write_text("001  AX  V  C  not timecode at all\n")
    broken = tmp_path / "cut.otio"
    broken.write_text('{"OTIO_SCHEMA": "Timeline.1", "tracks": ')
    xml = tmp_path / "cut.xml"
    xml.write_text("<xmeml/>")
    text = tmp_path / "cut.txt"
    text.write_text("sh010 1001 1010\n")
    for path, message in [
        (garbage, "cannot read it as cmx_3600: "),
        (broken, "cannot read it as otio_json: "),
        (xml, "cannot read it as fcp_xml: No top-level sequences found"),
        (text, "no OpenTimelineIO adapter here handles '.txt'"),
        (tmp_path / "absent.otio", "no such file"),
    ]:
        result = jobs(str(path), "--plates", PLATES, "-o", str(tmp_path / "j.json"))
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {path}: {message}") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_a_clip_without_image_sequence_media_needs_a_plates_template(testdata: Path, tmp_path: Path) -> None:
    result = jobs(str(testdata / "timelines/simple_cut.otio"), "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2
    assert "clip 'Clip-001' (track 'Track-001', item 0): its media is not an image sequence" in result.stderr


def test_job_file_is_valid_json_for_job_validate(testdata: Path, tmp_path: Path) -> None:
    make_job(testdata / "timelines/multitrack.otio", tmp_path / "j.json", "--plates", PLATES, "--allow-missing")
    result = CliRunner().invoke(cli, ["job", "validate", str(tmp_path / "j.json")])
    assert result.exit_code == 0 and "valid" in result.stdout
    shots = json.loads((tmp_path / "j.json").read_text())["shots"]
    assert [s["editorial"]["track"] for s in shots] == ["Sequence"] * 3 + ["Sequence 2", "Sequence 3"]
