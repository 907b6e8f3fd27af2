"""The editorial round trip on timelines stylecomp had not seen: OpenTimelineIO's own samples with
nested compositions, transitions that need handles, broken and mismatched EDLs (tests/data/timelines),
FCP 7 XML, FCP X XML and AAF from the shared test data, and conform back into .xml, .edl and .aaf.
Real adapters, real EXR files on disk; each written file is read back with OpenTimelineIO."""

from __future__ import annotations

import csv
import json
import logging
import re
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import opentimelineio as otio
import pytest

from stylecomp.jobspec import Job, Shot, load_job
from stylecomp_otio.editorial_record import time_range_of
from stylecomp_otio.timeline_file import read_timeline
from tests.otio.timelines import PLATES, conform, jobs, make_job, render
from tests.shared_data import TESTDATA

DATA = Path(__file__).resolve().parents[1] / "data" / "timelines"
RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange


def clip_at(timeline: otio.schema.Timeline, shot: Shot) -> otio.schema.Clip:
    """The clip a shot's editorial record points at, walked by hand through the nesting."""
    item = timeline.tracks[shot.editorial.track_index][shot.editorial.item_index]
    for index in shot.editorial.nesting:
        item = item[index]
    return item


def test_nested_example_gives_one_shot_per_visible_clip(tmp_path: Path) -> None:
    result = jobs(str(DATA / "nested_example.otio"), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j"))
    assert result.exit_code == 0, result.output
    job = load_job(tmp_path / "j")
    assert [s.editorial.clip for s in job.shots] == [
        "Normal Clip 1",
        "Clip Inside A Stack 1",
        "Normal Clip 2",
        "Clip Inside A Stack 2",
        "Normal Clip 3",
        "Clip Inside A Track",
        "Normal Clip 4",
    ]
    assert "skipped: nothing" in result.stdout
    by_clip = {s.editorial.clip: s for s in job.shots}
    # The file's numbers: Nested Stack 1 starts after Normal Clip 1 (238 frames) and shows 31 of its clip's 37
    # frames (373-409); the nested track starts after 238 + 31 + 33 + 29 + 63 frames.
    stacked = by_clip["Clip Inside A Stack 1"]
    assert (stacked.editorial.item_index, stacked.editorial.nesting) == (1, [0])
    assert (stacked.editorial.record.start, stacked.editorial.record.duration) == (238, 31)
    assert (stacked.editorial.source.start, stacked.editorial.source.duration) == (373, 31)
    assert (stacked.frames.first, stacked.frames.last) == (1001, 1031)
    in_track = by_clip["Clip Inside A Track"]
    assert (in_track.editorial.record.start, in_track.editorial.source.start, in_track.editorial.nesting) == (
        394,
        471,
        [0],
    )
    assert (by_clip["Normal Clip 2"].editorial.record.start, by_clip["Normal Clip 2"].editorial.nesting) == (269, [])
    assert "nested in 'Nested Stack 2 (with effects)', which has a speed of 0.854545x" in result.stderr
    assert "nested in 'Nested Track', which has a freeze frame" in result.stderr


def test_nested_clips_conform_back_onto_the_nested_clips(tmp_path: Path) -> None:
    path = DATA / "nested_example.otio"
    job = make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing", "--handles", "3")
    render(job, [s.name for s in job.shots])
    result = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "out.otio"))
    assert result.exit_code == 0, result.output
    assert "7 of 7 shots conformed" in result.stdout
    original, out = read_timeline(path), otio.adapters.read_from_file(str(tmp_path / "out.otio"))
    top = [(type(i).__name__, i.name, i.range_in_parent()) for i in original.tracks[0]]
    assert [(type(i).__name__, i.name, i.range_in_parent()) for i in out.tracks[0]] == top
    for shot in job.shots:
        clip = clip_at(out, shot)
        assert clip.name == shot.editorial.clip and clip.active_media_reference_key == "stylized"
        assert clip.trimmed_range() == clip_at(original, shot).trimmed_range()
        ref = clip.media_reference
        assert (ref.start_frame, ref.end_frame()) == shot.frame_range_with_handles()
        assert all(
            Path(otio.url_utils.filepath_from_url(ref.target_url_for_image_number(i))).is_file()
            for i in range(ref.number_of_images_in_sequence())
        )


def test_premiere_transition_frames_are_inside_the_shot(tmp_path: Path) -> None:
    path = DATA / "premiere_example.otio"
    result = jobs(str(path), "--plates", PLATES, "--allow-missing", "--unique-names", "-o", str(tmp_path / "job.json"))
    assert result.exit_code == 0, result.output
    job = load_job(tmp_path / "job.json")
    timeline = read_timeline(path)
    track = timeline.tracks[3]
    dissolve, clip = track[2], track[3]  # the cross dissolve into sc01_sh010_anim.mov, which plays media 18-99
    shot = next(s for s in job.shots if (s.editorial.track_index, s.editorial.item_index) == (3, 3))
    assert shot.editorial.clip == clip.name == "sc01_sh010_anim.mov"
    # Plate frames count from the cut's first frame (1001 = media frame 18): media 0-99 is 983-1082.
    assert (shot.frames.first, shot.frames.last) == (1001, 1082)
    dissolve_frames = range(1001 - round(dissolve.in_offset.value), 1001)
    assert list(dissolve_frames) == list(range(989, 1001))
    first, last = shot.frame_range_with_handles()
    assert first <= dissolve_frames[0] and (first, last) == (989, 1082)
    assert shot.handle_frames() == (12, 0)
    assert f"{clip.name!r} (track 'track4', item 3): handles raised from 0 to 12 before the cut" in result.stderr
    assert "item 3): handles" in result.stderr and "clamped" not in result.stderr

    render(job, [s.name for s in job.shots])
    done = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "out.otio"))
    assert done.exit_code == 0, done.output
    assert "transitions show frames" not in done.stderr
    out = otio.adapters.read_from_file(str(tmp_path / "out.otio"))
    ref = out.tracks[3][3].media_reference
    assert (ref.start_frame, ref.end_frame()) == (989, 1082)


def _cut(*items: otio.core.Composable) -> otio.schema.Timeline:
    """A one-track timeline at 24 fps of ``items``."""
    timeline = otio.schema.Timeline(name="cut")
    timeline.tracks.append(otio.schema.Track(name="V", children=list(items)))
    return timeline


def _movie_clip(name: str, start: int, duration: int) -> otio.schema.Clip:
    """A clip playing ``duration`` frames from ``start`` of a 100-frame movie."""
    media = otio.schema.ExternalReference(target_url=f"{name}.mov", available_range=TR(RT(0, 24), RT(100, 24)))
    return otio.schema.Clip(name=name, media_reference=media, source_range=TR(RT(start, 24), RT(duration, 24)))


@pytest.mark.parametrize("nested", ["trimmed head", "transition next to it"])
def test_handles_of_a_nested_clip_cover_only_the_frames_transitions_play(tmp_path: Path, nested: str) -> None:
    if nested == "trimmed head":  # a nested track shows frames 10-29 of its clip's 0-47; no transition anywhere
        inner = otio.schema.Track(
            name="inner", children=[_movie_clip("n", 0, 48)], source_range=TR(RT(10, 24), RT(20, 24))
        )
        timeline, source_start, expected = _cut(_movie_clip("a", 0, 24), inner), 10, (0, 0)
    else:  # a stack shows frames 10-29 of its time (its clip's 30-49); a top-level dissolve plays 6 more before
        inner = otio.schema.Stack(
            name="inner", children=[_movie_clip("n", 20, 40)], source_range=TR(RT(10, 24), RT(20, 24))
        )
        dissolve = otio.schema.Transition(in_offset=RT(6, 24), out_offset=RT(6, 24))
        timeline, source_start, expected = _cut(_movie_clip("a", 0, 24), dissolve, inner), 30, (6, 0)
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    job = make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing")
    shot = next(s for s in job.shots if s.editorial.clip == "n")
    assert (shot.editorial.source.start, shot.editorial.source.duration) == (source_start, 20)
    assert (shot.frames.first, shot.frames.last) == (1001, 1020) and shot.handle_frames() == expected
    render(job, [s.name for s in job.shots])
    result = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "out.otio"))
    assert result.exit_code == 0, result.output
    assert "transitions show frames" not in result.stderr
    ref = otio.adapters.read_from_file(str(tmp_path / "out.otio")).tracks[0][-1][0].media_reference
    assert (ref.start_frame, ref.end_frame()) == (1001 - expected[0], 1020)


def test_effects_otio_warns_only_about_real_clamps(tmp_path: Path) -> None:
    result = jobs(
        str(DATA / "effects.otio"),
        "--plates",
        PLATES,
        "--allow-missing",
        "--unique-names",
        "-o",
        str(tmp_path / "j.json"),
    )
    assert result.exit_code == 0, result.output
    assert not re.search(r"clamped from (\d+) to \1\b", result.stderr)
    # Its stills have one frame of media, so the dissolve's 30 frames cannot be handles: that clamp is real.
    assert (
        "clip 'Picchu_V7_310821_0003.png' (track 'Video 1', item 0): handles after the cut clamped from 30 to 0"
        in result.stderr
    )


def test_a_broken_edl_is_one_line_naming_the_file_and_event(tmp_path: Path) -> None:
    path = DATA / "dissolve_test_fail.edl"
    result = jobs(str(path), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2 and not (tmp_path / "j.json").exists()
    assert result.stderr == (
        f"error: {path}: cannot read it as cmx_3600: event 001 has 2 lines (3, 5) and line 5 is "
        "not a dissolve or wipe: lines that share an event number are a cut and the transition "
        "from it; number line 5 as the event it belongs to\n"
    )
    bad = tmp_path / "bad.edl"  # the third event has an edit type the adapter does not know: found by bisection
    bad.write_text(
        "TITLE: bad\n"
        "001  AX V C 01:00:00:00 01:00:01:00 01:00:00:00 01:00:01:00\n* FROM CLIP NAME:  sh010\n"
        "002  AX V C 01:00:00:00 01:00:01:00 01:00:01:00 01:00:02:00\n* FROM CLIP NAME:  sh020\n"
        "003  AX V X 01:00:00:00 01:00:01:00 01:00:02:00 01:00:03:00\n* FROM CLIP NAME:  sh030\n"
    )
    result = jobs(str(bad), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"error: {bad}: cannot read it as cmx_3600: event 003 (line 6, clip 'sh030'): incorrect edit type X"
    )


def test_a_broken_edl_is_blamed_on_the_event_the_adapter_stopped_at(tmp_path: Path) -> None:
    bad = tmp_path / "bad.edl"  # event 002's durations differ (2 s of source, 1 s of record); 003 is doubled
    bad.write_text(
        "TITLE: T\nFCM: NON-DROP FRAME\n\n"
        "001  A001 V C        01:00:00:00 01:00:01:00 00:00:00:00 00:00:01:00\n* FROM CLIP NAME: sh010\n"
        "002  A002 V C        01:00:00:00 01:00:02:00 00:00:01:00 00:00:02:00\n* FROM CLIP NAME: sh020\n"
        "003  A003 V C        01:00:00:00 01:00:01:00 00:00:02:00 00:00:03:00\n"
        "003  A004 V C        01:00:00:00 01:00:01:00 00:00:03:00 00:00:04:00\n* FROM CLIP NAME: sh030\n"
    )
    result = jobs(str(bad), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and not (tmp_path / "j.json").exists()
    assert result.stderr.startswith(
        f"error: {bad}: cannot read it as cmx_3600: event 002 (line 6, clip 'sh020'): "
        "Source and record duration don't match"
    ), result.stderr
    assert result.stderr.endswith("(pass --ignore-timecode-mismatch to read it with each clip's source length)\n")
    assert "event 003" not in result.stderr


def test_a_mismatched_edl_reads_with_the_flag_and_names_each_clip(tmp_path: Path) -> None:
    path = DATA / "timecode_mismatch.edl"
    refused = jobs(str(path), "--rate", "25", "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert refused.exit_code == 2
    assert "event 004 (line 13, clip 'sq001_s004'): Source and record duration don't match" in refused.stderr
    assert "(pass --ignore-timecode-mismatch to read it" in refused.stderr
    result = jobs(
        str(path),
        "--rate",
        "25",
        "--ignore-timecode-mismatch",
        "--unique-names",
        "--plates",
        PLATES,
        "--allow-missing",
        "-o",
        str(tmp_path / "j.json"),
    )
    assert result.exit_code == 0, result.output
    # The events whose durations differ, counted here from the file's own timecodes at 25 fps.
    expected = []
    for number, tcs, name in re.findall(r"^(\d{3}) .* C +(.+)\n\* FROM CLIP NAME: +(\S+)", path.read_text(), re.M):
        src_in, src_out, rec_in, rec_out = (otio.opentime.from_timecode(tc, 25).value for tc in tcs.split())
        if src_out - src_in != rec_out - rec_in:
            expected.append((number, name))
    warned = re.findall(r"event (\d{3}) \(line \d+, clip '(\S+)'\): its source is", result.stderr)
    assert warned == expected and ("004", "sq001_s004") in warned
    shots = {s.editorial.clip: s for s in load_job(tmp_path / "j.json").shots}
    assert len(load_job(tmp_path / "j.json").shots) == 20
    assert shots["sq001_s004"].frames.last - shots["sq001_s004"].frames.first + 1 == 49  # its source length


SHARED_FORMATS = {
    "premiere_enable_property.xml": ["--unique-names"],
    "hiero_xml_export.xml": [],
    "fcpx_project.fcpxml": ["--unique-names"],
    "fcpx_library.fcpxml": ["--unique-names", "--timeline", "2"],
    "multitrack.aaf": ["--unique-names"],
    "transitions.aaf": ["--unique-names"],
    "linear_speed_effects.aaf": ["--unique-names"],
    "nested_stack.aaf": ["--unique-names"],
    "2997fps-DFTC.aaf": [],
}


def _enabled_video(item: otio.core.Composable) -> bool:
    """Enabled, and so is everything holding it, and every track holding it is a video track."""
    if isinstance(item, otio.schema.Track) and item.kind != otio.schema.TrackKind.Video:
        return False
    return item.enabled and (item.parent() is None or _enabled_video(item.parent()))


@pytest.mark.parametrize("name", SHARED_FORMATS)
def test_fcp_xml_fcpx_and_aaf_samples_produce_jobs(testdata: Path, tmp_path: Path, name: str) -> None:
    path = testdata / "timelines" / name
    result = jobs(
        str(path),
        "--plates",
        PLATES,
        "--allow-missing",
        "--json",
        "-o",
        str(tmp_path / "j.json"),
        *SHARED_FORMATS[name],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    job = load_job(tmp_path / "j.json")
    which = int(SHARED_FORMATS[name][-1]) if "--timeline" in SHARED_FORMATS[name] else None
    timeline = read_timeline(path, which=which)
    candidates = [
        c
        for track in timeline.video_tracks()
        for c in track.find_clips()
        if _enabled_video(c) and not isinstance(c.media_reference, otio.schema.GeneratorReference)
    ]
    hidden = report["skipped"]["counts"].get("nested clip outside what its composition shows", 0)
    assert len(job.shots) + hidden == len(candidates) > 0
    assert [s["name"] for s in report["shots"]] == [s.name for s in job.shots]
    for shot in job.shots:
        clip = clip_at(timeline, shot)
        assert clip.name == shot.editorial.clip
        if not shot.editorial.nesting:
            assert time_range_of(shot.editorial.record) == clip.range_in_parent()
    assert "WARNING:root" not in result.stderr  # pyaaf2's log lines are warnings of the report, not raw stderr


def test_adapter_log_lines_become_warnings(testdata: Path, tmp_path: Path) -> None:
    result = jobs(
        str(testdata / "timelines/2997fps-DFTC.aaf"),
        "--plates",
        PLATES,
        "--allow-missing",
        "-o",
        str(tmp_path / "j.json"),
    )
    assert result.exit_code == 0, result.output
    assert "the AAF adapter logged: Fraction(0,0) not mathematically plausible" in result.stderr
    assert "WARNING:root" not in result.stderr


def test_adapter_log_leaves_out_what_other_threads_log(testdata: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class OtherThread(logging.Filter):
        """When the adapter first logs, another thread (a server's, say) logs a warning while the read goes on."""

        logged = False

        def filter(self, record: logging.LogRecord) -> bool:
            if "Fraction(0,0)" in record.getMessage() and not self.logged:
                self.logged = True
                other = threading.Thread(target=logging.getLogger("stylecomp.server.app").warning, args=("busy",))
                other.start()
                other.join()
            return True

    root, other = logging.getLogger(), OtherThread()
    handlers = root.handlers[:]  # pytest's own log capture: without it, as in the CLI, no handler takes the record
    root.handlers.clear()
    root.addFilter(other)
    try:
        warnings: list[str] = []
        read_timeline(testdata / "timelines/2997fps-DFTC.aaf", warnings=warnings)
    finally:
        root.removeFilter(other)
        root.handlers[:] = handlers
    assert other.logged and any(w.startswith("the AAF adapter logged: Fraction(0,0)") for w in warnings), warnings
    assert not any("busy" in w for w in warnings), warnings
    assert capsys.readouterr().err == "busy\n"  # printed as Python prints a record no handler takes


def _render_all(path: Path, tmp_path: Path, *args: str) -> Job:
    job = make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing", "--handles", "2", *args)
    render(job, [s.name for s in job.shots])
    return job


ROUND_TRIPS = [
    ("screening_example.edl", "edl"),
    ("screening_example.edl", "xml"),
    ("nested_example.otio", "edl"),
    ("nested_example.otio", "xml"),
    ("premiere_example.otio", "xml"),
    ("premiere_example.otio", "edl"),
    ("fcpx_project.fcpxml", "xml"),
    ("fcpx_project.fcpxml", "edl"),
]


def recorded(timeline: otio.schema.Timeline, track: otio.schema.Track, record: TR, transitions: tuple) -> TR:
    """A record range in timeline time (the timeline's start, and an EDL track's start at its first record
    timecode, counted in), widened by the transitions around the clip: a CMX 3600 dissolve starts where the
    cut was, so an EDL moves the cut point of the clips on either side, not the frames they show."""
    start = (timeline.global_start_time or RT(0, record.start_time.rate)) + record.start_time
    start -= track.source_range.start_time if track.source_range else RT(0, record.start_time.rate)
    before, after = (t or RT(0, record.start_time.rate) for t in transitions)
    return TR(start - before, record.duration + before + after)


@pytest.mark.parametrize("name, suffix", ROUND_TRIPS)
def test_conform_to_nle_formats_round_trips_through_otio(tmp_path: Path, name: str, suffix: str) -> None:
    path = DATA / name if (DATA / name).exists() else TESTDATA / "timelines" / name
    if not path.exists():
        pytest.skip(f"shared test data not found at {TESTDATA} (set STYLECOMP_TESTDATA)")
    job = _render_all(path, tmp_path, "--unique-names")
    out = tmp_path / f"review.{suffix}"
    result = conform(str(path), str(tmp_path / "job.json"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"{len(job.shots)} of {len(job.shots)} shots conformed" in result.stdout
    rate = job.shots[0].editorial.record.rate
    written = sorted(tmp_path.glob(f"review*.{suffix}"))  # an EDL per video track: review.edl, review.v2.edl, ...
    assert [f"also written: {f}" in result.stdout for f in written[1:]] == [True] * (len(written) - 1)
    backs = [otio.adapters.read_from_file(str(f), **({"rate": rate} if suffix == "edl" else {})) for f in written]
    played = [
        (back, c) for back in backs for track in back.video_tracks() for c in track if isinstance(c, otio.schema.Clip)
    ]
    original = read_timeline(path, rate)
    for shot in job.shots:
        track, clip = original.tracks[shot.editorial.track_index], clip_at(original, shot)
        around = clip.parent().handles_of_child(clip) if isinstance(clip.parent(), otio.schema.Track) else (None, None)
        record = recorded(original, track, time_range_of(shot.editorial.record), around)
        found = [
            c
            for back, c in played
            if c.name == shot.editorial.clip
            and recorded(back, c.parent(), c.range_in_parent(), c.parent().handles_of_child(c)) == record
        ]
        assert len(found) == 1, f"{shot.name}: no clip {shot.editorial.clip!r} at {record} in {out}"
        clip, ref = found[0], found[0].media_reference
        if suffix == "edl":  # the EDL names the sequence with the frames its event plays ('* FROM CLIP:')
            assert clip.metadata["cmx_3600"]["reel"] == shot.name  # what Avid relinks by
            to_clip = [c for c in clip.metadata["cmx_3600"].get("comments", []) if c.startswith("TO CLIP: ")]
            low, high = shot.frame_range_with_handles()
            if to_clip:  # OTIO's EDL reader gives the clip after a dissolve the FROM CLIP's media: read TO CLIP
                named = re.fullmatch(rf"TO CLIP: (.*/{re.escape(shot.name)}\.)\[(\d+)-(\d+)\]\.exr", to_clip[0])
                assert named and low <= int(named.group(2)) <= int(named.group(3)) <= high, to_clip
                files = [Path(job.resolve(shot.output) % f).as_uri() for f in range(int(named[2]), int(named[3]) + 1)]
                assert files[0].startswith(named.group(1))
            else:
                assert isinstance(ref, otio.schema.ImageSequenceReference)
                assert low <= ref.start_frame <= ref.end_frame() <= high
                # The frame at its record start: its first cut frame, less what a dissolve moved the cut point by.
                moved = clip.parent().handles_of_child(clip)[0] or RT(0, rate)
                assert ref.frame_for_time(clip.source_range.start_time) == shot.frames.first - round(moved.value)
                files = [ref.target_url_for_image_number(i) for i in range(ref.number_of_images_in_sequence())]
        else:  # FCP 7 XML names the first frame of the rendered sequence; its in point counts images from it
            assert isinstance(ref, otio.schema.ExternalReference)
            files = [ref.target_url]
            low = shot.frame_range_with_handles()[0]
            assert files[0].endswith(f"{shot.name}.{low:04d}.exr")
            shown = clip.source_range.start_time - ref.available_range.start_time
            assert low + round(shown.value) == shot.frames.first
        assert all(Path(otio.url_utils.filepath_from_url(url)).is_file() for url in files), files
    if suffix == "edl":
        rows = []
        for edl in written:
            listing = edl.with_suffix(".media.csv")
            assert f"also written: {listing}" in result.stdout
            rows += list(csv.DictReader(listing.open(newline="")))
        assert sorted((r["reel"], r["media"], int(r["first_frame"]), int(r["last_frame"])) for r in rows) == sorted(
            (s.name, job.resolve(s.output).replace("%04d", "####"), *s.frame_range_with_handles()) for s in job.shots
        )
    else:
        root = ET.parse(out).getroot()
        assert (root.tag, root.get("version")) == ("xmeml", "4")
        items = root.findall(".//sequence/media/video/track/clipitem")
        assert len(items) == len(played) >= len(job.shots)  # each clip item reads back as a clip
        for item in items:
            assert all(item.find(tag) is not None for tag in ("name", "start", "end", "in", "out", "file"))
            if "/stylized/" in item.findtext("file/pathurl", ""):  # nothing ties it to the original media
                assert all(item.find(tag) is None for tag in ("masterclipid", "link", "pproTicksIn", "pproTicksOut"))


def test_an_aaf_conform_is_refused_and_nothing_is_written(testdata: Path, tmp_path: Path) -> None:
    path = testdata / "timelines/multitrack.aaf"
    _render_all(path, tmp_path, "--unique-names")
    result = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "review.aaf"))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and not (tmp_path / "review.aaf").exists()
    assert result.stderr.startswith(
        f"error: {tmp_path / 'review.aaf'}: otio-aaf-adapter writes each clip's media from the AAF it was read from"
    )


def test_an_edl_per_video_track_without_fades_or_generator_tracks(tmp_path: Path) -> None:
    path = DATA / "premiere_example.otio"
    _render_all(path, tmp_path, "--unique-names")
    result = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "review.edl"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("review*")) == [
        "review.edl",
        "review.media.csv",
        "review.v2.edl",
        "review.v2.media.csv",
        "review.v4.edl",
        "review.v4.media.csv",
    ]
    assert (
        "video track 2 (''), item 5: the Cross Dissolve to or from a gap (a fade) is left out of the EDL"
        in result.stderr
    )
    assert (
        "video track 3 ('') holds no clip with media (only gaps, titles or other generators): no EDL for it"
        in result.stderr
    )
    # The dissolve between two clips of track 4 stays: a D event from the one to the other.
    v4 = (tmp_path / "review.v4.edl").read_text()
    assert re.search(r"^002 +sc01_sh010_anim\.mov_3 +V +D 025 ", v4, re.M), v4


def test_an_edl_conform_names_the_files_it_wrote_and_removes_stale_ones(tmp_path: Path) -> None:
    timeline = read_timeline(DATA / "premiere_example.otio")
    titles = timeline.tracks[2]  # only a gap and a title: no EDL for it
    del timeline.tracks[2]
    timeline.tracks.insert(0, titles)
    path = tmp_path / "titles_first.otio"
    otio.adapters.write_to_file(timeline, str(path))
    _render_all(path, tmp_path, "--unique-names")
    stale = ["review.edl", "review.media.csv", "review.v9.edl", "review.v9.media.csv"]
    for name in [*stale, "review.v9.notes.edl"]:  # the last is no name a conform writes: it stays
        (tmp_path / name).write_text("from an earlier run\n")
    result = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "review.edl"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("review*")) == [
        "review.v2.edl",
        "review.v2.media.csv",
        "review.v3.edl",
        "review.v3.media.csv",
        "review.v4.edl",
        "review.v4.media.csv",
        "review.v9.notes.edl",
    ]
    lines = result.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'review.v2.edl'}: 6 of 6 shots conformed into {path}"
    assert lines[1:6] == [
        f"  also written: {tmp_path / name}"
        for name in (
            "review.v2.media.csv",
            "review.v3.edl",
            "review.v3.media.csv",
            "review.v4.edl",
            "review.v4.media.csv",
        )
    ]
    for name in stale:
        assert f"{tmp_path / name}: left from an earlier conform and not written now: removed" in result.stderr


@pytest.mark.parametrize("suffix", ["xml", "edl"])
def test_a_stack_among_the_timelines_tracks_is_flattened_into_the_export(tmp_path: Path, suffix: str) -> None:
    timeline = _cut(_movie_clip("a", 0, 24))
    nested_video = otio.schema.Track(
        name="NV", children=[otio.schema.Gap(duration=RT(5, 24)), _movie_clip("b", 10, 30)]
    )
    nested_audio = otio.schema.Track(name="NA", kind=otio.schema.TrackKind.Audio, children=[_movie_clip("snd", 0, 30)])
    timeline.tracks.append(otio.schema.Stack(name="nested", children=[nested_video, nested_audio]))
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    _render_all(path, tmp_path)  # one shot, clip 'a': the stack is no track, so its clips make none
    result = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / f"review.{suffix}"))
    assert result.exit_code == 0, result.output
    assert "1 of 1 shots conformed" in result.stdout and "warning" not in result.stderr
    backs = [
        otio.adapters.read_from_file(str(f), **({"rate": 24} if suffix == "edl" else {}))
        for f in sorted(tmp_path.glob(f"review*.{suffix}"))
    ]
    played = sorted(
        (c.name, recorded(back, track, c.range_in_parent(), (None, None)).start_time.value, c.duration().value)
        for back in backs
        for track in back.video_tracks()
        for c in track.find_clips()
    )
    assert played == [("a", 0, 24), ("b", 5, 30)]


def test_json_report_after_jobs_and_conform(tmp_path: Path) -> None:
    path = DATA / "premiere_example.otio"
    made = jobs(
        str(path), "--plates", PLATES, "--allow-missing", "--unique-names", "--json", "-o", str(tmp_path / "job.json")
    )
    assert made.exit_code == 0, made.output
    report = json.loads(made.stdout)
    job = load_job(tmp_path / "job.json")
    assert report["job"] == str(tmp_path / "job.json") and len(report["shots"]) == len(job.shots) == 6
    entry = next(s for s in report["shots"] if s["clip"] == "clip 'sc01_sh010_anim.mov' (track 'track4', item 3)")
    assert (entry["frames"], entry["handles"], entry["status"]) == ([1001, 1082], [12, 0], "made")
    assert any(n.startswith("handles raised from 0 to 12 before the cut") for n in entry["notes"])
    assert report["skipped"]["counts"] == {
        "audio track": 4,
        "gap": 6,
        "transition": 2,
        "generator clip": 1,
        "empty nested composition": 1,
    }
    assert "empty nested composition (Track, item 7)" in report["skipped"]["items"]
    assert all(w in made.stderr for w in report["warnings"])

    render(job, [s.name for s in job.shots[:-1]])
    done = conform(str(path), str(tmp_path / "job.json"), "-o", str(tmp_path / "out.otio"), "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert [s["status"] for s in report["shots"]] == ["conformed"] * 5 + ["unrendered"]
    assert report["written"] == [str(tmp_path / "out.otio")]
    assert report["shots"][-1]["notes"][0].startswith("not rendered in")


def test_a_file_of_several_timelines_or_none_is_one_line(testdata: Path, tmp_path: Path) -> None:
    library = testdata / "timelines/fcpx_library.fcpxml"
    names = "(1 'OpenTimeline_Project', 2 'OpenTimeline_Project 1')"
    for args, message in [
        ([], f"holds 2 timelines {names}; choose one with --timeline N"),
        (["--timeline", "3"], f"--timeline 3: it holds 2 timelines {names}"),
    ]:
        result = jobs(str(library), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"), *args)
        assert result.exit_code == 2 and result.stderr == f"error: {library}: {message}\n"
    clips = testdata / "timelines/fcpx_clips.fcpxml"
    result = jobs(str(clips), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {clips}: holds no timeline (browser clips or media only); export a project or sequence\n"
    )
