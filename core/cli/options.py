"""Options several commands share, and what they parse into: device, dtype, progress, frames, shots, regions, and
`render` and `comp`'s ``JobRun``."""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import JobError, StyleCompError
from .progress import ProgressPrinter

if TYPE_CHECKING:
    import torch
    from click.decorators import FC

    from ..diffusion.pool import PipelinePool
    from ..jobspec import Job, Region, Shot

_Summary = TypeVar("_Summary")

OVERWRITE_OPTION = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace existing output files that stylecomp did not write (no stylecomp provenance in their header). "
    "Outputs that are files the job reads (plates, models, style images) are refused even so.",
)


_DEVICE_HELP = "Where the model runs: auto picks CUDA, then Apple MPS, then the CPU."


_DTYPE_HELP = "Weights' precision: auto is bf16 on CUDA (fp16 where bf16 is missing), fp16 on MPS, fp32 on the CPU."


PROGRESS_HELP = (
    "text: a progress line with ETA (one line per frame in a log); json: one JSON event per line on "
    "stdout, for hosts such as the Nuke plugin (see the README)."
)


DEVICE_OPTION = click.option(
    "--device", type=click.Choice(["auto", "cuda", "mps", "cpu"]), default="auto", show_default=True, help=_DEVICE_HELP
)


DTYPE_OPTION = click.option(
    "--dtype",
    type=click.Choice(["auto", "float32", "float16", "bfloat16"]),
    default="auto",
    show_default=True,
    help=_DTYPE_HELP,
)


NO_CACHE_OPTION = click.option(
    "--no-cache", is_flag=True, help="Stylize every frame afresh; neither read nor fill the render cache."
)


def progress_option(help_text: str = PROGRESS_HELP) -> Callable[[FC], FC]:
    """--progress text|json, into ``progress_style``; ``batch`` says in its own help what its lines and events are."""
    return click.option(
        "--progress",
        "progress_style",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help=help_text,
    )


PROGRESS_OPTION = progress_option()


def torch_dtype(name: str) -> torch.dtype | None:
    """The --dtype choice as a torch dtype; None for auto (each device picks its own)."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(name)


def pipeline_pool(device: str, dtype: str) -> PipelinePool:
    """A pipeline pool for the --device and --dtype choices (auto: the pool picks)."""
    from ..diffusion.pool import PipelinePool

    return PipelinePool(None if device == "auto" else device, torch_dtype(dtype))


def pick_shot(job_: Job, name: str | None) -> Shot:
    """The --shot a one-shot command works on; the only shot when none is named (a JobError naming the shots else)."""
    if name is None:
        if len(job_.shots) > 1:
            raise JobError(
                f"the job has {len(job_.shots)} shots; name one with --shot ({', '.join(s.name for s in job_.shots)})"
            )
        return job_.shots[0]
    for shot in job_.shots:
        if shot.name == name:
            return shot
    raise JobError(f"no shot named {name!r}; the job's shots are {', '.join(s.name for s in job_.shots)}")


def frame_range(text: str | None) -> tuple[int, int] | None:
    """'1001-1048' or '1001' (negative frame numbers allowed: '-5--1')."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", text)
    if match is None:
        raise StyleCompError(f"--frames must look like 1001-1048 or 1001, not {text!r}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else low
    if high < low:
        raise StyleCompError(f"--frames {text}: the last frame is before the first")
    return low, high


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or Ctrl-C, so a run stops between denoising steps and keeps finished frames."""
    cancel = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda _signum, _frame: cancel.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield cancel
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parse_regions(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Region]:
    """--region values as Region models; a bad one is a usage error naming it."""
    from ..regions.mattes import parse_region

    regions = []
    for text in values:
        try:
            regions.append(parse_region(text))
        except ValueError as exc:
            raise click.BadParameter(f"{text!r}: {exc}", ctx, param) from None
    return regions


def apply_regions(job_: Job, regions: list[Region]) -> None:
    """Replace every shot's regions with the command line's (when it gives any)."""
    from pydantic import ValidationError

    if not regions:
        return
    try:
        job_.regions = regions
    except ValidationError as exc:
        raise JobError(f"--region: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    for shot in job_.shots:
        shot.regions = []


@dataclass
class JobRun:
    """What the options `render` and `comp` share ask for: which job, shots and frames, where the model runs,
    cache, progress, overwriting and regions."""

    job_path: str
    shots: tuple[str, ...]
    frames: str | None
    device: str
    dtype: str
    no_cache: bool
    progress_style: str
    overwrite: bool
    regions: list[Region]

    def run(self, render: Callable[..., _Summary]) -> _Summary:
        """Load JOB.json, apply --region and run ``render`` (``render_job`` or ``comp_job``) on it as asked, until
        it ends or SIGTERM / Ctrl-C stops it between denoising steps."""
        from ..jobspec import load_job
        from ..render.cache import RenderCache

        job_ = load_job(self.job_path)
        apply_regions(job_, self.regions)
        with cancel_on_signals() as cancel:
            return render(
                job_,
                shots=self.shots or None,
                frames=frame_range(self.frames),
                pool=pipeline_pool(self.device, self.dtype),
                cache=None if self.no_cache else RenderCache(),
                report=ProgressPrinter(self.progress_style),
                cancel=cancel,
                overwrite=self.overwrite,
            )


def render_options(command: Callable[[JobRun], None]) -> Callable[..., None]:
    """The options `render` and `comp` share, handed to the command as one ``JobRun``."""

    @functools.wraps(command)  # the command's name and docstring (its --help) stay
    def from_options(**options: Any) -> None:
        command(JobRun(**options))

    options = [
        click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False)),
        click.option(
            "--shot", "shots", multiple=True, help="Only this shot (repeat for several). Default: every shot."
        ),
        click.option(
            "--frames",
            default=None,
            metavar="A-B",
            help="Only frames A to B (inclusive), e.g. 1001-1010, or one frame.",
        ),
        DEVICE_OPTION,
        DTYPE_OPTION,
        NO_CACHE_OPTION,
        PROGRESS_OPTION,
        OVERWRITE_OPTION,
        click.option(
            "--region",
            "regions",
            multiple=True,
            metavar="'NAME: key=value; ...'",
            callback=_parse_regions,
            help="A per-object region replacing the job's and shots' regions (repeat for several), e.g. "
            "'car: prompt=cel shading, bold ink; strength=0.6'. Selects the Cryptomatte name NAME unless "
            "match=bld*,tower, ids=3,4, matte=mask.A or matte_sequence=mattes/car.####.exr says otherwise; "
            "other keys: negative_prompt, strength, seed, invert, layer, channel, loras=path[:weight], "
            "controlnet_weights=lineart:0.5, ip_adapter_image. A NAME that is not an identifier (Car.001, "
            "ns:car, bld*) is the pattern and names the region Car_001, ns_car, bld; write \\; for a ; "
            "inside a value (prompt=cel\\; ink).",
        ),
    ]
    decorated: Callable[..., None] = from_options
    for option in reversed(options):
        decorated = option(decorated)
    return decorated
