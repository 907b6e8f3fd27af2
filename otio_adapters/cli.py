"""``stylecomp timeline``: editorial round trips, a timeline to a job and the job's media conformed back.

stylecomp_otio registers this command group under the ``stylecomp.cli`` entry point, so that the
``stylecomp`` command line gains it when this package is installed without importing OpenTimelineIO
for any other command.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stylecomp.cli.group import printable

from .plate_template import DEFAULT_OUTPUT

if TYPE_CHECKING:
    from .report import Report


@click.group()
def timeline() -> None:
    """Editorial: a timeline (OTIO, EDL, ...) to a job, one shot per clip, and conform back."""


_RATE_HELP = (
    "Frame rate for formats that carry none (EDL): 24, 25, 23.976, 29.97, 24000/1001. "
    "NTSC rates are exact; drop-frame timecode is read as such."
)


def _reading_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options both timeline commands read a timeline with, and --json."""
    for option in reversed(
        (
            click.option(
                "--ignore-timecode-mismatch",
                is_flag=True,
                help="EDL: read events whose source and record durations differ (the EDL adapter's "
                "tolerance): each clip keeps its source length and later clips may move; a warning "
                "names each such event and clip.",
            ),
            click.option(
                "--timeline",
                "which",
                type=click.IntRange(1),
                default=None,
                metavar="N",
                help="For a file holding several timelines (an FCP X library): read the N-th (from 1).",
            ),
            click.option(
                "--json",
                "as_json",
                is_flag=True,
                help="Print the report as JSON on stdout (shots with frames, handles, status and notes; "
                "skipped items; warnings) instead of text.",
            ),
        )
    ):
        command = option(command)
    return command


@timeline.command("jobs")
@click.argument("timeline_path", metavar="TIMELINE", type=click.Path(dir_okay=False))
@click.option(
    "--plates",
    default=None,
    metavar="TEMPLATE",
    help="Plate path per clip, e.g. '/shows/x/{shot}/plates/{clip}.####.exr'. Fields: {clip}, "
    "{shot} (the clip name made path-safe), {reel}, {source_file}, {track}, {index} (clip number "
    "on its track). Relative paths are relative to the job file's folder. Default: each clip's own "
    "image-sequence media.",
)
@click.option(
    "--output",
    "output_template",
    default=DEFAULT_OUTPUT,
    show_default=True,
    metavar="TEMPLATE",
    help="Output path per shot for the stylized EXRs; same fields as --plates.",
)
@click.option(
    "--handles",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Frames added before and after each cut; each side is raised to cover transitions and "
    "clamped on its own (with a warning) to the frames the media and the plate on disk have.",
)
@click.option("--track", default=None, help="Only clips on the video track(s) with this name (default: every one).")
@click.option(
    "--start-frame",
    type=int,
    default=1001,
    show_default=True,
    help="Plate frame number of each clip's first cut frame, for clips whose media is not an image "
    "sequence. Image-sequence media keeps its own frame numbers.",
)
@click.option("--rate", default=None, help=_RATE_HELP + " Default: 29.97 for an EDL with FCM: DROP FRAME, else 24.")
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Write the job even when plates are not on disk (yet): each missing plate is a warning.",
)
@click.option(
    "--unique-names",
    is_flag=True,
    help="When clips make the same shot name, name the later ones NAME_2, NAME_3, ... instead of failing.",
)
@_reading_options
@click.option(
    "-o",
    "--out",
    "job_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Job file to write; relative paths in it resolve against its folder.",
)
def timeline_jobs(
    timeline_path: str,
    plates: str | None,
    output_template: str,
    handles: int,
    track: str | None,
    start_frame: int,
    rate: str | None,
    allow_missing: bool,
    unique_names: bool,
    ignore_timecode_mismatch: bool,
    which: int | None,
    as_json: bool,
    job_path: str,
) -> None:
    """Make a job from TIMELINE (.otio, .edl, FCP 7 .xml, FCP X .fcpxml, .aaf): one shot per enabled
    video clip, clips inside nested compositions included. Gaps, transitions, audio and generator
    clips are skipped and counted.

    Frame numbers are plate frame numbers: an image-sequence media's own, else the cut
    starting at --start-frame (1001). A clip's `stylecomp` metadata overrides prompt,
    negative_prompt, seed, model and strength for its shot; markers become shot notes.
    Then a report: each shot's frames and handles, and why any were raised or clamped.
    """
    from stylecomp.jobspec import save_job

    from .rates import parse_rate
    from .timeline_file import read_timeline
    from .timeline_to_job import JobOptions, timeline_to_job

    read_warnings: list[str] = []
    cut = read_timeline(
        timeline_path,
        parse_rate(rate) if rate else None,
        which=which,
        warnings=read_warnings,
        ignore_timecode_mismatch=ignore_timecode_mismatch,
    )
    options = JobOptions(
        plates=plates,
        output=output_template,
        handles=handles,
        start_frame=start_frame,
        track=track,
        allow_missing=allow_missing,
        unique_names=unique_names,
        timeline_path=os.path.abspath(timeline_path),
        base_dir=str(Path(job_path).resolve().parent),
    )
    job_, report = timeline_to_job(cut, options)
    report.warnings[:0] = read_warnings
    save_job(job_, job_path)
    _echo_report(
        report,
        timeline_path,
        as_json,
        f"{job_path}: {len(report.shots)} shot{'' if len(report.shots) == 1 else 's'} from {timeline_path}",
        {"job": job_path, "timeline": timeline_path},
    )


@timeline.command("conform")
@click.argument("timeline_path", metavar="TIMELINE", type=click.Path(dir_okay=False))
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Timeline to write, in the format its suffix names: .otio; .xml (FCP 7 XML, for Premiere and "
    "Resolve); .edl (CMX 3600, for Avid: one per video track, OUT.edl, OUT.v2.edl, ..., each with "
    "OUT.media.csv beside it listing each reel's frames); or any other format an installed OTIO "
    "adapter writes. .aaf is refused.",
)
@click.option("--rate", default=None, help=_RATE_HELP + " Default: the record rate the job noted.")
@click.option(
    "--media",
    type=click.Choice(["stylized", "animatic", "ideation"]),
    default="stylized",
    show_default=True,
    help="What the clips play: the stylized EXRs, the animatic clips of 'stylecomp animate', or the "
    "ideation stills picked with 'stylecomp pick --ideation' (held for the clip's length).",
)
@_reading_options
def timeline_conform(
    timeline_path: str,
    job_path: str,
    out_path: str,
    rate: str | None,
    media: str,
    ignore_timecode_mismatch: bool,
    which: int | None,
    as_json: bool,
) -> None:
    """Write a copy of TIMELINE whose clips play the stylized frames of JOB.json's shots
    (or their animatic clips or picked ideation stills, with --media).

    Each shot's clip (nested ones too) gets a reference to its media as its active media (the
    original stays, under its own key, in .otio); record timing, transitions, markers and gaps
    are kept exactly. Shots without that media yet keep their original media and are reported.
    """
    from stylecomp.jobspec import load_job

    from .conform import conform
    from .rates import parse_rate
    from .timeline_file import read_timeline, write_timeline

    job_ = load_job(job_path)
    if rate is None:
        rates = {shot.editorial.record.rate for shot in job_.shots if shot.editorial is not None}
        edit_rate = rates.pop() if len(rates) == 1 else None
    else:
        edit_rate = parse_rate(rate)
    read_warnings: list[str] = []
    cut = read_timeline(
        timeline_path, edit_rate, which=which, warnings=read_warnings, ignore_timecode_mismatch=ignore_timecode_mismatch
    )
    report = conform(cut, job_, timeline_path, media)
    report.warnings[:0] = read_warnings
    written = write_timeline(cut, out_path, report.warnings)
    conformed = len(report.done("conformed"))
    _echo_report(
        report,
        job_path,
        as_json,
        f"{written[0]}: {conformed} of {len(job_.shots)} shots conformed into "
        f"{timeline_path}" + "".join(f"\n  also written: {extra}" for extra in written[1:]),
        {"timeline": timeline_path, "job": job_path, "written": written},
    )


def _echo_report(report: Report, where: str, as_json: bool, headline: str, files: dict[str, object]) -> None:
    """Warnings on stderr; then the headline, a line per shot and what was skipped, or all of it as JSON."""
    for warning in report.warnings:
        click.echo(printable(f"warning: {where}: {warning}"), err=True)
    if as_json:
        click.echo(json.dumps({**files, **report.as_json()}, indent=2))
        return
    click.echo(printable(headline))
    for line in report.shot_lines():
        click.echo(printable(line))
    click.echo(f"  skipped: {report.skipped_text()}")
    click.echo(f"  warnings: {len(report.warnings)}")
