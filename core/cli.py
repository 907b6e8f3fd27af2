"""The ``stylecomp`` command line.

Every user-facing failure is a StyleCompError, printed as one line
``error: <where>: <reason>`` on stderr with exit status 2; never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
from . import __version__
from .errors import JobError, StyleCompError


class _Group(click.Group):
    """A click group that turns StyleCompError into a one-line message and exit status 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except JobError as exc:
            for problem in exc.problems:
                click.echo(f"error: {exc.where}: {problem}" if exc.where else f"error: {problem}", err=True)
            ctx.exit(2)
        except StyleCompError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stylecomp")
def cli() -> None:
    """stylecomp: diffusion stylization of scene-linear EXR render plates for compositing.

    Start with `stylecomp demo` to render the built-in demo shot, `stylecomp inspect` to see
    what a plate holds, and `stylecomp job schema` for the job document.
    """


@cli.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of text.")
@click.option("--headers-only", is_flag=True, help="Read headers only: fast, but no NaN/Inf counts.")
def inspect(path: str, as_json: bool, headers_only: bool) -> None:
    """Report what PATH holds: frames found and missing, parts, layers and channels, data and
    display windows, compression, NaN/Inf counts and detected AOVs.

    PATH is one EXR or a frame pattern: name.####.exr, name.%04d.exr or name.@@@@.exr.
    Exits 2 if any frame cannot be read (after reporting the readable ones).
    """
    from .inspection import format_report, inspect_plates

    report = inspect_plates(path, count_nonfinite=not headers_only)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    for problem in report["errors"]:
        click.echo(f"error: {problem['file']}: {problem['error']}", err=True)
    if report["errors"]:
        sys.exit(2)


@cli.group()
def job() -> None:
    """Job documents: the JSON schema, and validation of job files."""


@job.command()
def schema() -> None:
    """Print the job document's JSON Schema."""
    from .jobspec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@job.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check job FILES; name every bad field and what is wrong with it."""
    from .jobspec import load_job

    failed = False
    for file in files:
        try:
            job_ = load_job(file)
        except JobError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(f"error: {file}: {problem}", err=True)
            continue
        shots = ", ".join(s.name for s in job_.shots)
        click.echo(f"{file}: valid (version {job_.version}; shots: {shots})")
    if failed:
        sys.exit(2)


@cli.group()
def color() -> None:
    """Colour: check what the trip to the model's space and back costs on a plate."""


@color.command()
@click.argument("path")
@click.option("--frame", type=int, default=None, help="Frame to check, for a pattern (default: the first).")
@click.option("--quantize", "bits", type=click.IntRange(1, 16), default=None,
              help="Quantise the model's image to this many bits per channel (8 = an 8-bit VAE).")
@click.option("--encoding", type=click.Choice(["view", "log"]), default="view", show_default=True,
              help="Model space: the display view transform or the log (ACEScct) encoding.")
@click.option("--config", default=None, help="OCIO config path or ocio:// URI (default: $OCIO, else pinned).")
@click.option("--plate-space", default="ACEScg", show_default=True, help="Colour space of the plate's RGB.")
def roundtrip(path: str, frame: int | None, bits: int | None, encoding: str, config: str | None,
              plate_space: str) -> None:
    """Encode a plate for the model, decode it back, and report the relative error.

    With no --quantize the model is an identity and the error must be 0: stylecomp restores
    the plate exactly. With --quantize 8 you see what an 8-bit model costs this plate.
    """
    from .aovs import beauty
    from .color import ModelEncoding, quantize, roundtrip_error
    from .plates import read_plate
    from .sequence import discover

    sequence = discover(path)
    file = sequence.path(frame if frame is not None else (sequence.frames or [0])[0])
    plate = read_plate(file)
    rgb, alpha = beauty(plate)
    encoding_ = ModelEncoding(config, plate_space=plate_space, encoding=encoding)
    model = quantize(bits) if bits else (lambda image: image)
    error = roundtrip_error(encoding_, rgb, alpha, model)
    click.echo(f"{file}\n  {encoding_.description} ({encoding_.config_uri})")
    click.echo(f"  model: {f'{bits}-bit quantisation' if bits else 'identity'}\n  {error}")


@cli.command()
@click.option("--out", "out_dir", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo plates, outputs, job file and contact sheet.")
@click.option("--frames", default=24, show_default=True, type=click.IntRange(2, 1000),
              help="Number of frames to render (starting at 1001).")
@click.option("--size", default="960x540", show_default=True, help="Resolution as WIDTHxHEIGHT.")
def demo(out_dir: str, frames: int, size: str) -> None:
    """Render the built-in demo shot and run the pipeline on it.

    Writes multi-layer EXR plates (beauty, Z, normals, backward motion vectors, object IDs)
    rendered by stylecomp itself, a job file for them, the pipeline's output EXRs and a
    contact-sheet PNG.
    """
    from .demo_run import run_demo

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise StyleCompError(f"--size must look like 960x540, not {size!r}") from None
    started = time.monotonic()
    summary = run_demo(Path(out_dir).resolve(), frames, width, height, progress=_progress)
    click.echo(f"\ndemo done in {time.monotonic() - started:.1f} s")
    for label, where in summary.items():
        click.echo(f"  {label:<14} {where}")


def _progress(stage: str, done: int, total: int) -> None:
    """One updating line on a terminal; a line per quarter in a log file."""
    if sys.stderr.isatty():
        click.echo(f"\r  {stage:<28} {done:>4}/{total}", nl=done == total, err=True)
    elif done == total or done % max(1, total // 4) == 0:
        click.echo(f"  {stage:<28} {done:>4}/{total}", err=True)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from local paths only
    cli(prog_name="stylecomp")


if __name__ == "__main__":
    main()
