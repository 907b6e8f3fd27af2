"""Many shots at once: `batch` (local or on a Ray cluster) and `farm openjd` (OpenJD job templates)."""

from __future__ import annotations

import contextlib
import sys

import click

from ..errors import JobError
from .options import (
    DEVICE_OPTION,
    DTYPE_OPTION,
    NO_CACHE_OPTION,
    OVERWRITE_OPTION,
    cancel_on_signals,
    pipeline_pool,
    progress_option,
    torch_dtype,
)
from .progress import BatchPrinter, ProgressPrinter


@click.command()
@click.argument("job_paths", metavar="JOB.json...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--resume",
    is_flag=True,
    help="Continue a run that was killed: delete the temp files it left and outputs that do not read "
    "whole (pixels checked, not only the header), then render what is not done.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process; ray: a Ray cluster, one worker per GPU (per CPU when there is none), "
    "shots split into frame chunks.",
)
@click.option("--address", default=None, help="--executor ray: the cluster to join (default: start a local one).")
@click.option(
    "--chunk-size",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="--executor ray: frames per task (a sequential shot is always one chunk).",
)
@DEVICE_OPTION
@DTYPE_OPTION
@NO_CACHE_OPTION
@progress_option(
    "text: a line per frame and per shot with the overall frames done/total and ETA; json: one JSON "
    "event per line on stdout (render's events with a job field, plus batch, shot_end, resume, "
    "job_failed, job_end; see the README)."
)
@OVERWRITE_OPTION
def batch(
    job_paths: tuple[str, ...],
    resume: bool,
    executor: str,
    address: str | None,
    chunk_size: int,
    device: str,
    dtype: str,
    no_cache: bool,
    progress_style: str,
    overwrite: bool,
) -> None:
    """Render the shots of many JOB.json files, one job after another; pipelines stay loaded between jobs.

    As with `render`, a frame whose output is current (the cache key in its header matches)
    is skipped and reported as cached, and the render cache is used. --resume, after a killed
    run, also reads every existing output whole: a truncated or damaged one is deleted and
    rendered again, temp files of the killed run are deleted, and cache entries are served
    only if they read whole. Exit status: 0 all frames done; 1 some frames failed or the run
    was stopped (finished frames are kept); 2 a job file is unusable (nothing renders) or a
    job was refused while the others rendered.
    """
    from ..farm.batch import BatchJob, Executor, LocalExecutor, run_batch
    from ..jobspec import load_job
    from ..render.cache import RenderCache
    from ..render.resume import VerifiedCache

    items, unusable = [], False
    for path in dict.fromkeys(job_paths):
        try:
            items.append(BatchJob(path, load_job(path), overwrite=overwrite))
        except JobError as exc:
            unusable = True
            for problem in exc.problems:
                click.echo(f"error: {path}: {problem}", err=True)
    if unusable:
        sys.exit(2)
    cache = None if no_cache else VerifiedCache() if resume else RenderCache()
    report = ProgressPrinter("json") if progress_style == "json" else BatchPrinter()
    with contextlib.ExitStack() as stack:
        cancel = stack.enter_context(cancel_on_signals())
        if executor == "ray":
            from ..farm.ray_cluster import RayExecutor

            runner: Executor = stack.enter_context(
                RayExecutor(address=address, cache=cache, chunk_size=chunk_size, dtype=torch_dtype(dtype))
            )
        else:
            runner = LocalExecutor(pipeline_pool(device, dtype), cache)
        summary = run_batch(items, runner, resume=resume, report=report, cancel=cancel)
    if progress_style == "text":
        click.echo(
            f"{len(items)} job(s): rendered {summary.rendered}, from cache {summary.cached}, failed "
            f"{len(summary.failed)}, refused {len(summary.refused)} in {summary.seconds:.1f} s"
            + ("  (stopped)" if summary.cancelled else "")
        )
        for job_path, shot, frame, reason in summary.failed:
            click.echo(f"error: {job_path}: {shot} {frame}: {reason}", err=True)
    sys.exit(summary.exit_status)


@click.group()
def farm() -> None:
    """Render farms: Open Job Description job templates (AWS Deadline Cloud, `openjd run`)."""


@farm.command("openjd")
@click.argument("job_path", metavar="JOB.json", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o", "--out", "template_path", required=True, type=click.Path(dir_okay=False), help="Job template to write (YAML)."
)
@click.option(
    "--chunk-size",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Frames per task. A shot whose frames need the previous frame's output is always one task.",
)
@click.option(
    "--gpu/--no-gpu",
    default=True,
    show_default=True,
    help="Ask for a worker with a GPU and render on CUDA, or for any worker and render on its CPU.",
)
@OVERWRITE_OPTION
def farm_openjd(job_path: str, template_path: str, chunk_size: int, gpu: bool, overwrite: bool) -> None:
    """Write an OpenJD 2023-09 job template for JOB.json: one step per shot, one task per frame
    chunk running `stylecomp render JOB --shot S --frames A-B --progress json`. The template is
    validated with openjd-model before it is written. Job parameters: JobFile, Stylecomp (the
    executable on the worker, default `stylecomp`) and Device. Run one shot locally with
    `openjd run TEMPLATE --step SHOT [-p Stylecomp=/path/to/stylecomp]`.
    """
    from ..farm.openjd import job_template, write_job_template
    from ..jobspec import load_job

    template = job_template(
        load_job(job_path), job_path, template_path, chunk_size=chunk_size, gpu=gpu, overwrite=overwrite
    )
    write_job_template(template, job_path, template_path)
    steps = template["steps"]
    tasks = sum(len(step["parameterSpace"]["taskParameterDefinitions"][0]["range"]) for step in steps)
    click.echo(f"{template_path}: {len(steps)} step(s), {tasks} task(s), {'GPU' if gpu else 'CPU'} workers")
