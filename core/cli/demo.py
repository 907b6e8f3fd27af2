"""`stylecomp demo`: render the built-in demo shot and stylize it."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import StyleCompError
from .options import DEVICE_OPTION
from .progress import stage_progress


@click.command()
@click.option(
    "--out",
    "out_dir",
    default="demo_out",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo plates, job file, stylized EXRs and contact sheet.",
)
@click.option(
    "--frames",
    default=24,
    show_default=True,
    type=click.IntRange(2, 1000),
    help="Number of frames to render (starting at 1001).",
)
@click.option("--size", default="960x540", show_default=True, help="Resolution as WIDTHxHEIGHT.")
@click.option(
    "--model",
    default=None,
    type=click.Path(exists=True),
    help="A local model (diffusers folder or .safetensors) to stylize with. Default: a tiny "
    "random-weight SD 1.5 built on the spot, which shows the pipeline, not a style.",
)
@DEVICE_OPTION
def demo(out_dir: str, frames: int, size: str, model: str | None, device: str) -> None:
    """Render the built-in demo shot and stylize it.

    Writes multi-layer EXR plates (beauty, Z, normals, backward motion vectors, object IDs)
    rendered by stylecomp itself, a job file for them (rerun it with `stylecomp render`), the
    stylized EXRs and a contact-sheet PNG.
    """
    from ..stylemodel.demo_run import run_demo

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise StyleCompError(f"--size must look like 960x540, not {size!r}") from None
    started = time.monotonic()
    summary = run_demo(
        Path(out_dir).resolve(),
        frames,
        width,
        height,
        progress=stage_progress,
        model=model,
        device=None if device == "auto" else device,
    )
    click.echo(f"\ndemo done in {time.monotonic() - started:.1f} s")
    for label, where in summary.items():
        click.echo(f"  {label:<14} {where}")
