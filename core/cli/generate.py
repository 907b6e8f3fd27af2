"""Generating from a job: `ideate` (treatment stills) and `animate` (animatic clips)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from ..errors import JobError, ModelError, StyleCompError
from .options import DEVICE_OPTION, DTYPE_OPTION, PROGRESS_OPTION, cancel_on_signals, pipeline_pool
from .progress import ProgressPrinter

if TYPE_CHECKING:
    from ..generators.animatic import Animatic
    from ..jobspec import Shot

_Result = TypeVar("_Result")


@click.command()
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option("--shot", "shot_names", multiple=True, help="Shot to animate (repeat for several). Default: every shot.")
@click.option(
    "--keyframe",
    type=int,
    default=None,
    help="Start from the shot's stylized frame N (rendered first if it is not on disk). "
    "Default: the job's animation.keyframe, else the first cut frame.",
)
@click.option(
    "--image",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="Start from this image instead (EXR is read as scene-linear, PNG/JPEG/TIFF as display-referred).",
)
@click.option(
    "--frames",
    type=click.IntRange(1, 1024),
    default=None,
    help="Clip length (rounded up to what the model allows). Default: the shot's cut length.",
)
@click.option(
    "--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="Seed (default: the job's animation.seed)."
)
@click.option(
    "--generator",
    default=None,
    help="Generator plugin to use instead of the job's animation.generator: diffusers (local models), "
    "sora, veo, kling, runway, luma (hosted; options from animation.generator_options), or another "
    "installed plugin.",
)
@DEVICE_OPTION
@DTYPE_OPTION
@PROGRESS_OPTION
def animate(
    job_path: str,
    shot_names: tuple[str, ...],
    keyframe: int | None,
    image: str | None,
    frames: int | None,
    seed: int | None,
    generator: str | None,
    device: str,
    dtype: str,
    progress_style: str,
) -> None:
    """Animatic clips: animate each shot's start image with a local image-to-video model
    (Wan, LTX-Video, CogVideoX; the job's `animation` block) or a hosted service (--generator
    sora, veo, kling, runway or luma; keys from the environment or the 0600 hosted-keys.json).

    The start image is the shot's stylized keyframe (by default; rendered first when missing),
    its picked ideation still (animation.source = "ideation") or an image. Frames are numbered
    from the shot's first cut frame and written as scene-linear EXRs to animation.output, with
    a PNG preview sequence in preview/ beside them. Put them in the edit with
    `stylecomp timeline conform --media animatic`. A hosted job is recorded beside the clip as
    soon as it is submitted; running again polls it (or reuses its download) instead of paying
    twice. Exit status: 0 all shots done; 1 some failed (the others are kept) or the run was
    stopped; 2 the job or its model is unusable.
    """
    from ..generators.animatic import animate as animate_shot
    from ..generators.animatic import video_generator
    from ..jobspec import load_job
    from ..render.loop import select_shots

    job_ = load_job(job_path)
    settings = job_.animation
    if keyframe is not None:
        settings.source, settings.keyframe = "stylized", keyframe
    if image is not None:
        settings.image = os.path.abspath(image)
        settings.source = "image"
    if frames is not None:
        settings.frames = frames
    if seed is not None:
        settings.seed = seed
    if generator is not None:
        settings.generator = generator
    shots = select_shots(job_, shot_names)
    clip_maker = video_generator(job_, None if device == "auto" else device, None if dtype == "auto" else dtype)
    pool, printer = pipeline_pool(device, dtype), ProgressPrinter(progress_style)

    def done(shot: Shot, clip: Animatic) -> None:
        if progress_style == "text":
            click.echo(
                f"{shot.name}: {len(clip.frames)} frames {clip.frames[0]}-{clip.frames[-1]} -> {clip.output} "
                f"(preview {clip.preview})"
            )

    # a keyframe that will not render, a missing still, a plugin failing on a shot: that shot fails
    _each_shot(
        shots,
        lambda shot, cancel: animate_shot(job_, job_path, shot, clip_maker, pool, printer, cancel),
        done,
        "its clip is not written whole",
    )


@click.command()
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option(
    "--shot", "shot_names", multiple=True, help="Shot to make stills for (repeat for several). Default: every shot."
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for the candidates, {shot} = the shot name (needed with several shots). "
    "Default: the job's ideation.output.",
)
@DEVICE_OPTION
@DTYPE_OPTION
@PROGRESS_OPTION
def ideate(
    job_path: str, shot_names: tuple[str, ...], out_dir: str | None, device: str, dtype: str, progress_style: str
) -> None:
    """Treatment stills: text-to-image candidates for each shot, one per prompt x seed x aspect
    ratio of the job's `ideation` block, made by its generator (a local model, or a plugin).

    With ControlNets in the model, the shot's plate at ideation.guide_frame guides the
    composition and sets the aspect ratio; with ideation.init_strength, generation starts from
    the plate's beauty. Writes candidate_KK.exr (scene-linear) and .png, a labelled
    contact_sheet.png and manifest.json per shot, and prints each manifest's path. Choose one
    with `stylecomp pick --ideation`. Exit status: 0 all shots done; 1 some failed or the run
    was stopped; 2 the job or its model is unusable.
    """
    from ..generators.ideation import ideate as ideate_shot
    from ..generators.ideation import ideation_generator
    from ..generators.interface import Generator
    from ..jobspec import load_job
    from ..render.loop import select_shots

    job_ = load_job(job_path)
    shots = select_shots(job_, shot_names)
    if out_dir is not None and len(shots) > 1 and "{shot}" not in out_dir:
        raise StyleCompError("--out needs {shot} in it when several shots are ideated")
    printer = ProgressPrinter(progress_style)
    generators: dict[str | None, Generator] = {}  # shots differ in their model only by overrides.model

    def ideate_one(shot: Shot, cancel: threading.Event) -> Path:
        if shot.overrides.model not in generators:
            generators[shot.overrides.model] = ideation_generator(
                job_, shot, None if device == "auto" else device, None if dtype == "auto" else dtype
            )
        return ideate_shot(
            job_,
            job_path,
            shot,
            out_dir.replace("{shot}", shot.name) if out_dir else None,
            generators[shot.overrides.model],
            printer,
            cancel,
        )

    def done(shot: Shot, manifest: Path) -> None:
        if progress_style == "text":
            click.echo(f"{shot.name}: contact sheet {manifest.parent / 'contact_sheet.png'}")
        click.echo(str(manifest))

    # a missing or damaged guide plate, a plugin failing on a shot: that shot fails
    _each_shot(shots, ideate_one, done, "its manifest is not written")


def _each_shot(
    shots: list[Shot],
    work: Callable[[Shot, threading.Event], _Result],
    done: Callable[[Shot, _Result], None],
    unfinished: str,
) -> None:
    """The per-shot loop of `animate` and `ideate`: ``work`` on each shot until Ctrl-C or SIGTERM, then ``done``.

    A shot that fails is reported on one line and the others go on (exit status 1 at the end); a
    stopped run exits 1 at once, saying what of the stopped shot is ``unfinished``; an unusable
    job or model stops the command (exit status 2).
    """
    from ..errors import Cancelled

    failed = []
    with cancel_on_signals() as cancel:
        for shot in shots:
            try:
                result = work(shot, cancel)
            except Cancelled:
                click.echo(f"{shot.name}: stopped; {unfinished}", err=True)
                sys.exit(1)
            except (JobError, ModelError):
                raise  # the job or its model is unusable: exit status 2
            except Exception as exc:  # noqa: BLE001  # any failure of one shot is reported; the others still run
                reason = str(exc) if isinstance(exc, StyleCompError) else f"{type(exc).__name__}: {exc}"
                click.echo(f"error: {shot.name}: {reason}", err=True)
                failed.append(shot.name)
                continue
            done(shot, result)
    if failed:
        sys.exit(1)
