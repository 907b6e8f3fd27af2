"""Stylizing from a job: `render`, `comp` (render, then the headless comp), `candidates` and `pick`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..errors import StyleCompError
from .options import (
    DEVICE_OPTION,
    DTYPE_OPTION,
    PROGRESS_OPTION,
    JobRun,
    cancel_on_signals,
    pick_shot,
    pipeline_pool,
    render_options,
)
from .progress import ProgressPrinter

if TYPE_CHECKING:
    from ..jobspec import Job, Shot


@click.command()
@render_options
def render(run: JobRun) -> None:
    """Stylize the shots of JOB.json into EXRs with a `stylized` RGBA layer and provenance.

    Frames whose output is already current, or whose result is in the render cache
    ($STYLECOMP_CACHE_DIR, default ~/.cache/stylecomp), are reused and reported as cached.
    A frame that fails (damaged or missing plate) is reported and the others still render.
    Exit status: 0 all frames done, 1 some failed or the run was stopped (finished frames are
    kept), 2 the job or its inputs are unusable.
    """
    from ..render.loop import render_job

    summary = run.run(render_job)
    if run.progress_style == "text":
        click.echo(
            f"rendered {summary.rendered}, from cache {summary.cached}, failed {len(summary.failed)} "
            f"in {summary.seconds:.1f} s" + ("  (stopped)" if summary.cancelled else "")
        )
        for shot, frame, reason in summary.failed:
            click.echo(f"error: {shot} {frame}: {reason}", err=True)
    if summary.failed or summary.cancelled:
        sys.exit(1)


@click.command()
@render_options
def comp(run: JobRun) -> None:
    """The headless comp: stylize JOB.json's shots (current outputs and the cache are reused),
    blend each stylized frame with its clean plate as the job's `comp` block says (the
    StyleCompBlend gizmo's knobs: mode, amount, weight by depth / matte / object IDs /
    Cryptomatte names, ID lines) and write RGBA EXRs to `comp.output` ({shot} = the shot name).

    Exit status as for `render`: 1 when some frames failed (the others are written).
    """
    from ..render.headless_comp import comp_job

    summary = run.run(comp_job)
    failed = summary.stylize.failed + summary.failed
    if run.progress_style == "text":
        click.echo(
            f"stylized {summary.stylize.rendered}, from cache {summary.stylize.cached}; comped "
            f"{summary.comped}, failed {len(failed)}" + ("  (stopped)" if summary.stylize.cancelled else "")
        )
        for shot, frame, reason in failed:
            click.echo(f"error: {shot} {frame}: {reason}", err=True)
    if failed or summary.stylize.cancelled:
        sys.exit(1)


@click.command()
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option("--shot", "shot_name", default=None, help="Shot to vary (needed when the job has several).")
@click.option("--frame", type=int, default=None, help="Frame to render the variants of. Default: the first cut frame.")
@click.option(
    "--count", type=click.IntRange(1, 64), default=None, help="How many variants (default: the job's candidates.count)."
)
@click.option(
    "--strengths",
    default=None,
    metavar="S1,S2,..",
    help="Strengths to cycle through, e.g. 0.3,0.5,0.7 (default: the job's candidates.strengths, else its strength).",
)
@click.option("--prompt", "prompts", multiple=True, help="A prompt variation to cycle through (repeat for several).")
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for the candidates (default: <shot output folder>/candidates/<shot>.<frame>/).",
)
@DEVICE_OPTION
@DTYPE_OPTION
@PROGRESS_OPTION
def candidates(
    job_path: str,
    shot_name: str | None,
    frame: int | None,
    count: int | None,
    strengths: str | None,
    prompts: tuple[str, ...],
    out_dir: str | None,
    device: str,
    dtype: str,
    progress_style: str,
) -> None:
    """Render variants of one frame to choose from: candidate k uses seed + k x seed_stride
    (and the k-th strength/prompt variation). Writes candidate_KK.exr and .png, a labelled
    contact_sheet.png and manifest.json, and prints the manifest's path last. Lock one in with
    `stylecomp pick`.
    """
    from ..jobspec import load_job
    from ..render.candidates import render_candidates

    job_ = load_job(job_path)
    shot = pick_shot(job_, shot_name)
    if count is not None:
        job_.candidates.count = count
    if strengths is not None:
        try:
            job_.candidates.strengths = [float(v) for v in strengths.split(",")]
        except ValueError:
            raise StyleCompError(f"--strengths must be numbers separated by commas, not {strengths!r}") from None
    if prompts:
        job_.candidates.prompts = list(prompts)
    if frame is None:
        frame = shot.frames.first if shot.frames else _first_frame_on_disk(job_, shot)
    with cancel_on_signals() as cancel:
        manifest = render_candidates(
            job_,
            job_path,
            shot,
            frame,
            out_dir,
            pool=pipeline_pool(device, dtype),
            report=ProgressPrinter(progress_style),
            cancel=cancel,
        )
    if progress_style == "text":
        click.echo(
            f"{job_.candidates.count} candidates of {shot.name} {frame}; contact sheet "
            f"{manifest.parent / 'contact_sheet.png'}"
        )
    click.echo(str(manifest))


@click.command()
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option("--candidate", "index", type=int, required=True, help="The candidate number (as in the contact sheet).")
@click.option(
    "--shot", "shot_name", default=None, help="Shot the candidates belong to (needed when the job has several)."
)
@click.option(
    "--frame", type=int, default=None, help="Frame the candidates were rendered for (default: the latest run)."
)
@click.option(
    "--ideation",
    is_flag=True,
    help="Pick from the shot's ideation candidates (`stylecomp ideate`, in ideation.output) instead.",
)
@click.option(
    "--manifest",
    "manifest_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="The candidates' manifest.json (stylization or ideation), if they were written somewhere other "
    "than the default folder.",
)
def pick(
    job_path: str, index: int, shot_name: str | None, frame: int | None, ideation: bool, manifest_path: str | None
) -> None:
    """Lock a candidate into JOB.json: its seed (and strength/prompt, if they were varied)
    become the shot's overrides, so every later render of the shot uses them.

    An ideation candidate (--ideation, or an ideation --manifest) is copied to picked.exr in the
    shot's ideation folder (the still `stylecomp animate` and `timeline conform --media ideation`
    use), the manifest records the pick, and its prompt becomes the shot's.
    """
    from ..generators.ideation import ideation_manifest, pick_still
    from ..jobspec import load_job
    from ..render.candidates import MANIFEST, candidates_folder, latest_manifest, read_manifest
    from ..render.candidates import pick as pick_candidate

    job_ = load_job(job_path)
    shot = pick_shot(job_, shot_name)
    if ideation and frame is not None:
        raise StyleCompError("--frame is for stylization candidates; ideation candidates have no frame")
    if manifest_path is None:
        if ideation:
            manifest_path = str(ideation_manifest(job_, shot))
        else:
            manifest_path = str(
                candidates_folder(job_, shot, frame) / MANIFEST if frame is not None else latest_manifest(job_, shot)
            )
    if read_manifest(manifest_path, "ideation" if ideation else None).get("kind") == "ideation":
        chosen = pick_still(job_, job_path, shot, manifest_path, index)
        click.echo(
            f"{job_path}: shot {shot.name} picked ideation candidate {index} (seed {chosen['seed']}) as "
            f"{job_.picked_still(shot)}; prompt {chosen['prompt']!r}"
        )
        return
    chosen = pick_candidate(job_, job_path, shot, manifest_path, index)
    click.echo(
        f"{job_path}: shot {shot.name} locked to candidate {index} (seed {chosen['seed']}, "
        f"strength {chosen['strength']:g})"
    )


def _first_frame_on_disk(job_: Job, shot: Shot) -> int:
    from ..render.loop import shot_frames

    _, frames = shot_frames(job_, shot)
    return frames[0]
