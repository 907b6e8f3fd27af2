"""`stylecomp timeline conform`: stylized EXR sequences (real files) back into every shared
timeline, with record timing, transitions and markers exactly as they were."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import opentimelineio as otio
import pytest

from stylecomp_otio.conform import STYLIZED
from stylecomp_otio.timeline_file import read_timeline
from tests.otio.timelines import DROP_FRAME_EDL, PLATES, SHARED, conform, make_job, render, video_clips, write_frames


def structure(timeline: otio.schema.Timeline) -> list[tuple[str, str, object, object]]:
    """Every item of every track: kind, name, record range and markers."""
    return [
        (
            type(item).__name__,
            item.name,
            item.range_in_parent()
            if not isinstance(item, otio.schema.Transition)
            else (item.in_offset, item.out_offset),
            [(m.name, m.color, m.marked_range) for m in getattr(item, "markers", [])],
        )
        for track in timeline.tracks
        for item in track
    ]


@pytest.mark.parametrize("name", SHARED)
def test_every_shared_timeline_conforms_with_its_record_ranges(testdata: Path, tmp_path: Path, name: str) -> None:
    path = testdata / "timelines" / name
    job = make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing", "--handles", "2", *SHARED[name])
    rendered = [shot.name for shot in job.shots[:-1]]  # the last shot is not rendered yet
    render(job, rendered)
    result = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "out.otio"))
    assert result.exit_code == 0, result.output
    assert f"{len(rendered)} of {len(job.shots)} shots conformed" in result.stdout
    assert "skipped: 1 unrendered shot" in result.stdout
    assert (
        f"shot {job.shots[-1].name}: not rendered in" in result.stderr and "keeps its original media" in result.stderr
    )

    original = read_timeline(path, job.shots[0].editorial.record.rate)
    out = otio.adapters.read_from_file(str(tmp_path / "out.otio"))  # plain OTIO reads what conform wrote
    assert structure(out) == structure(original)
    before, after = video_clips(original), video_clips(out)
    for shot, old, new in zip(job.shots, before, after, strict=True):
        assert new.range_in_parent() == old.range_in_parent()
        assert [(e.schema_name(), pytest.approx(getattr(e, "time_scalar", 1))) for e in new.effects] == [
            (e.schema_name(), getattr(e, "time_scalar", 1)) for e in old.effects
        ]  # OTIO JSON keeps 16 digits
        if shot.name not in rendered:
            assert new.active_media_reference_key == "DEFAULT_MEDIA"
            assert type(new.media_reference) is type(old.media_reference)
            continue
        ref = new.media_reference
        assert new.active_media_reference_key == STYLIZED and isinstance(ref, otio.schema.ImageSequenceReference)
        assert type(new.media_references()["DEFAULT_MEDIA"]) is type(old.media_reference)  # original kept
        assert (ref.rate, ref.frame_zero_padding, ref.name_suffix) == (shot.editorial.rate, 4, ".exr")
        first, last = shot.frame_range_with_handles()
        assert (ref.start_frame, ref.end_frame()) == (first, last)
        assert ref.frame_for_time(new.trimmed_range().start_time) == shot.frames.first
        for i in range(ref.number_of_images_in_sequence()):
            assert Path(otio.url_utils.filepath_from_url(ref.target_url_for_image_number(i))).is_file()


def test_a_timeline_that_no_longer_matches_the_job_is_an_error(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/screening_example.edl"
    make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing")
    other = testdata / "timelines/no_spaces_test.edl"  # the same clips, but a different file: it still matches
    assert conform(str(other), str(tmp_path / "job.json"), "-o", str(tmp_path / "a.otio")).exit_code == 0
    timeline = read_timeline(path)
    timeline.tracks[0][3].source_range = otio.opentime.TimeRange(
        timeline.tracks[0][3].source_range.start_time, otio.opentime.RationalTime(20, 24)
    )  # re-trimmed
    otio.adapters.write_to_file(timeline, str(tmp_path / "recut.otio"))
    result = conform(str(tmp_path / "recut.otio"), str(tmp_path / "job.json"), "-o", str(tmp_path / "b.otio"))
    assert result.exit_code == 2 and not (tmp_path / "b.otio").exists()
    assert result.stderr.startswith(
        f"error: {tmp_path / 'recut.otio'}: shot ZZ100_504C_LAY1: clip 'ZZ100_504C (LAY1)' "
    )
    assert "as when the job was made; make the job again" in result.stderr
    wrong = conform(str(testdata / "timelines/simple_cut.otio"), str(tmp_path / "job.json"), "-o", str(tmp_path / "c"))
    assert wrong.exit_code == 2
    assert "shot ZZ100_501_LAY3: no clip 'ZZ100_501 (LAY3)' at track 'V', item 0" in wrong.stderr


def test_jobs_and_conform_in_a_real_process(testdata: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("stylecomp")
    path = testdata / "timelines/screening_example.edl"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), "timeline", *args], check=False, capture_output=True, text=True, timeout=120
        )

    made = run("jobs", str(path), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "job.json"))
    assert made.returncode == 0, made.stderr
    assert "9 shots" in made.stdout
    from stylecomp.jobspec import load_job

    job = load_job(tmp_path / "job.json")
    render(job, [s.name for s in job.shots])
    done = run("conform", str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "out.otio"))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "9 of 9 shots conformed" in done.stdout and "skipped: nothing" in done.stdout
    out = otio.adapters.read_from_file(str(tmp_path / "out.otio"))
    assert all(isinstance(c.media_reference, otio.schema.ImageSequenceReference) for c in out.find_clips())


def test_a_drop_frame_edl_conforms_at_the_rate_the_job_noted(tmp_path: Path) -> None:
    edl = tmp_path / "df.edl"
    edl.write_text(DROP_FRAME_EDL)
    job = make_job(edl, tmp_path / "job.json", "--plates", PLATES, "--allow-missing", "--handles", "1")
    render(job, [s.name for s in job.shots])
    result = conform(str(edl), str(tmp_path / "job.json"), "-o", str(tmp_path / "out.otio"))  # no --rate
    assert result.exit_code == 0, result.output
    out = otio.adapters.read_from_file(str(tmp_path / "out.otio"))
    clips = list(out.find_clips())
    assert [c.range_in_parent().duration.value for c in clips] == [4, 6]
    assert [(c.media_reference.start_frame, c.media_reference.end_frame()) for c in clips] == [
        (1000, 1005),
        (1000, 1007),
    ]
    assert clips[0].media_reference.rate == 30000 / 1001


def test_animatic_clips_and_picked_stills_conform_under_their_own_keys(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/screening_example.otio"
    job = make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing")
    animated, still_shot, bare = job.shots[0], job.shots[1], job.shots[2]
    write_frames(job.shot_path(job.animation.output, animated), range(animated.frames.first, animated.frames.last + 1))
    still = job.picked_still(still_shot)
    write_frames(str(still.parent / "picked.%d.exr"), [0])
    (still.parent / "picked.0.exr").rename(still)

    result = conform(
        str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "animatic.otio"), "--media", "animatic"
    )
    assert result.exit_code == 0, result.output
    assert f"1 of {len(job.shots)} shots conformed" in result.stdout
    out = otio.adapters.read_from_file(str(tmp_path / "animatic.otio"))
    clips = video_clips(out)
    ref = clips[0].media_reference
    assert clips[0].active_media_reference_key == "animatic" and isinstance(ref, otio.schema.ImageSequenceReference)
    assert (ref.start_frame, ref.end_frame()) == (animated.frames.first, animated.frames.last)
    assert "DEFAULT_MEDIA" in clips[0].media_references()
    assert clips[1].active_media_reference_key == "DEFAULT_MEDIA"

    result = conform(
        str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "ideation.otio"), "--media", "ideation"
    )
    assert result.exit_code == 0, result.output
    out = otio.adapters.read_from_file(str(tmp_path / "ideation.otio"))
    edit = read_timeline(path, job.shots[0].editorial.record.rate)
    clips, original = video_clips(out), video_clips(edit)
    assert clips[1].active_media_reference_key == "ideation"
    assert otio.url_utils.filepath_from_url(clips[1].media_reference.target_url) == str(still)
    assert clips[1].range_in_parent() == original[1].range_in_parent()  # the still is held for the whole clip
    assert clips[1].media_reference.available_range == clips[1].trimmed_range()
    assert clips[2].active_media_reference_key == "DEFAULT_MEDIA"
    assert f"shot {bare.name}: no picked ideation still" in result.stderr
