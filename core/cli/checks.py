"""Commands that look at plates and results: `inspect`, `color roundtrip`, `flicker`."""

from __future__ import annotations

import json
import sys

import click

from .group import printable
from .options import frame_range


@click.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of text.")
@click.option("--headers-only", is_flag=True, help="Read headers only: fast, but no NaN/Inf counts.")
def inspect(path: str, as_json: bool, headers_only: bool) -> None:
    """Report what PATH holds: frames found and missing, parts, layers and channels, data and
    display windows, compression, NaN/Inf counts and detected AOVs.

    PATH is one EXR or a frame pattern: name.####.exr, name.%04d.exr or name.@@@@.exr.
    Exits 2 if any frame cannot be read (after reporting the readable ones).
    """
    from ..io.inspection import format_report, inspect_plates
    from ..io.plates import Window
    from ..temporal.flicker import vector_report

    report = inspect_plates(path, count_nonfinite=not headers_only)
    if "nonfinite" in report and "motion" in report["aovs"] and len(report["frames"]) > 1:  # pixels read: check vectors
        report["vectors"] = vector_report(report["path"], report["frames"], Window(*report["display_window"]))
    click.echo(printable(json.dumps(report, indent=2) if as_json else format_report(report)))
    for problem in report["errors"]:
        click.echo(printable(f"error: {problem['file']}: {problem['error']}"), err=True)
    if report["errors"]:
        sys.exit(2)


@click.group()
def color() -> None:
    """Colour: check what the trip to the model's space and back costs on a plate."""


@color.command()
@click.argument("path")
@click.option("--frame", type=int, default=None, help="Frame to check, for a pattern (default: the first).")
@click.option(
    "--quantize",
    "bits",
    type=click.IntRange(1, 16),
    default=None,
    help="Quantise the model's image to this many bits per channel (8 = an 8-bit VAE).",
)
@click.option(
    "--encoding",
    type=click.Choice(["view", "log"]),
    default="view",
    show_default=True,
    help="Model space: the display view transform or the log (ACEScct) encoding.",
)
@click.option("--config", default=None, help="OCIO config path or ocio:// URI (default: $OCIO, else pinned).")
@click.option("--plate-space", default="ACEScg", show_default=True, help="Colour space of the plate's RGB.")
def roundtrip(
    path: str, frame: int | None, bits: int | None, encoding: str, config: str | None, plate_space: str
) -> None:
    """Encode a plate for the model, decode it back, and report the relative error.

    With no --quantize the model is an identity and the error must be 0: stylecomp restores
    the plate exactly. With --quantize 8 you see what an 8-bit model costs this plate.
    """
    from ..color import ModelEncoding, quantize, roundtrip_error
    from ..io.aovs import beauty
    from ..io.plates import read_plate
    from ..io.sequence import discover

    sequence = discover(path)
    file = sequence.path(frame if frame is not None else (sequence.frames or [0])[0])
    plate = read_plate(file)
    rgb, alpha = beauty(plate)
    encoding_ = ModelEncoding(config, plate_space=plate_space, encoding=encoding)
    model = quantize(bits) if bits else (lambda image: image)
    error = roundtrip_error(encoding_, rgb, alpha, model)
    click.echo(f"{file}\n  {encoding_.description} ({encoding_.config_uri})")
    click.echo(f"  model: {f'{bits}-bit quantisation' if bits else 'identity'}\n  {error}")


@click.command()
@click.argument("stylized")
@click.option(
    "--plate", required=True, metavar="PLATE", help="The plate sequence STYLIZED was made from (a frame pattern)."
)
@click.option(
    "--frames", default=None, metavar="A-B", help="Only frames A to B (inclusive). Default: every stylized frame."
)
@click.option(
    "--vectors",
    default="auto",
    show_default=True,
    metavar="CONVENTION",
    help="How the plate's motion vectors are stored: auto (each convention is tried on the plate and the "
    "one that reproduces it kept), or DIRECTION-UNITS-Y: backward|forward, pixels|ndc, yup|ydown, "
    "e.g. backward-pixels-yup.",
)
@click.option(
    "--job",
    "job_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Compare in this job's colour encoding (its `color` block). Default: the built-in default.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (keys R, E_warp, E_warp_plate, D, drift, per_frame, ...)."
)
@click.option(
    "--plot",
    "plot_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write a PNG chart of the per-frame warp error of the plate and the stylized frames.",
)
def flicker(
    stylized: str,
    plate: str,
    frames: str | None,
    vectors: str,
    job_path: str | None,
    as_json: bool,
    plot_path: str | None,
) -> None:
    """Measure the flicker of STYLIZED frames against their plate with the render's motion vectors.

    STYLIZED and --plate are frame patterns (name.####.exr, name.%04d.exr); STYLIZED holds the
    `stylized` layer `stylecomp render` writes, or plain RGBA (a comp). Prints R = E_warp(stylized)
    / E_warp(plate) (1: no flicker beyond the render's own), both warp errors, D = mean |stylized -
    plate| (0: nothing was stylized) and the drift from the first frame, in the model's [0, 1] space.
    Plates whose vectors do not reproduce the plate itself are refused.
    """
    from ..temporal.flicker import format_report, measure_flicker, write_plot

    encoding = None
    if job_path is not None:
        from ..jobspec import load_job

        encoding = load_job(job_path).color.model_encoding()
    report = measure_flicker(stylized, plate, frames=frame_range(frames), vectors=vectors, encoding=encoding)
    if plot_path:
        write_plot(report, plot_path)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else format_report(report))
    if plot_path and not as_json:
        click.echo(f"plot      {plot_path}")
