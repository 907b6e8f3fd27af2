"""The ``stylecomp`` command line.

Every user-facing failure is a StyleCompError, printed as one line
``error: <where>: <reason>`` on stderr with exit status 2; never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import torch

    from ..jobspec import Job, Region, Shot
    from ..diffusion.pool import PipelinePool

from .. import __version__
from ..errors import JobError, ModelError, StyleCompError
from .group import StyleCompGroup, printable


@click.group(cls=StyleCompGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    from ..io.inspection import format_report, inspect_plates

    report = inspect_plates(path, count_nonfinite=not headers_only)
    click.echo(printable(json.dumps(report, indent=2) if as_json else format_report(report)))
    for problem in report["errors"]:
        click.echo(printable(f"error: {problem['file']}: {problem['error']}"), err=True)
    if report["errors"]:
        sys.exit(2)


@cli.group()
def job() -> None:
    """Job documents: the JSON schema, and validation of job files."""


@job.command()
def schema() -> None:
    """Print the job document's JSON Schema."""
    from ..jobspec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


_OVERWRITE_OPTION = click.option(
    "--overwrite", is_flag=True,
    help="Replace existing output files that stylecomp did not write (no stylecomp provenance in their header). "
         "Outputs that are files the job reads (plates, models, style images) are refused even so.")


@job.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_OVERWRITE_OPTION
def validate(files: tuple[str, ...], overwrite: bool) -> None:
    """Check job FILES; name every bad field and what is wrong with it. Outputs are checked too: none may be
    a file the job reads, and an existing file stylecomp did not write is refused unless --overwrite."""
    from ..jobspec import load_job
    from ..render.output_guard import check_outputs

    failed = False
    for file in files:
        try:
            job_ = load_job(file)
            problems = check_outputs(job_, overwrite=overwrite, comp=True)
            if problems:
                raise JobError("; ".join(problems), file, problems)
        except JobError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(printable(f"error: {file}: {problem}"), err=True)
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
    from ..io.aovs import beauty
    from ..color import ModelEncoding, quantize, roundtrip_error
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


@cli.group()
def model() -> None:
    """Diffusion models: tiny random-weight test models for trying the pipeline without weights."""


@model.command("make-test")
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--family", type=click.Choice(["sd15", "sdxl", "flux"]),
              help="Image model to build: Stable Diffusion 1.5, SDXL or Flux.")
@click.option("--video", type=click.Choice(["wan", "ltx", "cogvideox"]),
              help="Image-to-video model to build instead (for `stylecomp animate`): Wan 2.2 I2V, LTX-Video or "
                   "CogVideoX 1.5 I2V. Takes no adapters.")
@click.option("--controlnet", is_flag=True, help="Also write a matching tiny ControlNet in DIR/controlnet.")
@click.option("--lora", is_flag=True, help="Also write a matching tiny LoRA as DIR/lora.safetensors.")
@click.option("--ip-adapter", is_flag=True,
              help="Also write a matching tiny IP-Adapter: DIR/ip_adapter/ip-adapter.safetensors + image_encoder/.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the random weights.")
@click.option("--vae", type=click.Choice(["random", "passthrough"]), default="random", show_default=True,
              help="random: the VAE decodes noise whatever it is given. passthrough: its weights are set by "
                   "construction so that the latents are the image at 1/8 size and decode back to it, blurred; the "
                   "random UNet then paints a texture over a recognisable plate (for measuring what must follow "
                   "the plate, such as flicker).")
def make_test(
    out_dir: str, family: str | None, video: str | None, controlnet: bool, lora: bool, ip_adapter: bool, seed: int,
    vae: str,
) -> None:
    """Write a tiny random-weight model to DIR, built from the real diffusers and transformers
    classes and loadable like any local model. With the random VAE its images are noise: it
    shows that the pipeline runs, not a style.
    """
    from ..diffusion.testing import make_test_ip_adapter, make_test_lora, make_test_model, make_test_video_model

    if video:
        if family or controlnet or lora or ip_adapter or vae != "random":
            raise click.UsageError("--video builds an image-to-video model alone: leave out --family, --vae and adapters")
        folder = make_test_video_model(out_dir, video, seed=seed)  # type: ignore[arg-type]
        click.echo(f"{folder}: tiny {video} image-to-video test model")
        return
    if not family:
        raise click.UsageError("give --family (an image model) or --video (an image-to-video model)")
    folder = make_test_model(out_dir, family, controlnet=controlnet, seed=seed, vae=vae)  # type: ignore[arg-type]
    click.echo(f"{folder}: tiny {family} test model" + (" (passthrough VAE)" if vae == "passthrough" else "")
               + (" with a ControlNet in controlnet/" if controlnet else ""))
    if lora:
        click.echo(f"{make_test_lora(folder / 'lora.safetensors', folder, seed=seed)}: tiny LoRA")
    if ip_adapter:
        click.echo(f"{make_test_ip_adapter(folder / 'ip_adapter', folder, seed=seed)}: tiny IP-Adapter "
                   "(image encoder beside it)")


@model.command("train-demo")
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False))
@click.option("--steps", type=click.IntRange(1), default=None,
              help="UNet + tile ControlNet training steps (default 1600: about 27 min on one CPU core).")
@click.option("--controlnet-steps", type=click.IntRange(1), default=None,
              help="Line-art ControlNet training steps, after the UNet's (default 600).")
@click.option("--scenes", type=click.IntRange(1, 10_000), default=None,
              help="Random training scenes to render (default 320; each takes about 1.3 MB of memory).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed for the weights, the scenes and every batch: the same seed gives the same model "
                   "(on the CPU; CUDA kernels may round differently from run to run).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
              help="Where to train: auto picks CUDA when there is one.")
@click.option("--resume", is_flag=True,
              help="Continue a killed or finished run in OUT from its checkpoints (OUT/.training/) instead of "
                   "refusing a folder that holds one.")
@click.option("--eval-scenes", type=click.IntRange(0, 16), default=2, show_default=True,
              help="Held-out scenes the finished model stylizes in each look, for the card's metrics (0: none).")
def train_demo(out_dir: str, steps: int | None, controlnet_steps: int | None, scenes: int | None, seed: int,
               device: str, resume: bool, eval_scenes: int) -> None:
    """Train stylecomp's own style model into OUT: render random scenes with their ground-truth
    looks (cel, watercolor), build the f=1 VAE, train the UNet with its tile ControlNet, then
    the line-art ControlNet.

    Deterministic from --seed; checkpoints every 250 steps, so a killed run continues with
    --resume and ends with the same weights. OUT gets a diffusers folder (loadable through
    model.path; ControlNets in OUT/controlnet_tile, source tile, and OUT/controlnet, source
    lineart), README.md (the model card, with held-out metrics) and loss_curve.png.
    The shipped model, stylecomp/stylemodel/stylecomp-toon, was made by this command.
    """
    import torch
    from tqdm import tqdm

    from ..diffusion.pool import PipelinePool
    from ..stylemodel.card import write_card
    from ..stylemodel.evaluation import held_out_metrics, held_out_shot
    from ..stylemodel.training import Trainer, TrainingSettings

    out = Path(out_dir)
    if (out / ".training").exists() and not resume:
        raise click.UsageError(f"{out} holds a training run already: add --resume to continue it, or pick another OUT")
    defaults = TrainingSettings()
    settings = TrainingSettings(seed=seed, scenes=scenes or defaults.scenes,
                                unet_steps=steps or defaults.unet_steps,
                                controlnet_steps=controlnet_steps or defaults.controlnet_steps)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no CUDA device is available here")
    bars: dict[str, tqdm] = {}

    def progress(stage: str, step: int, total: int, figures: dict[str, float]) -> None:
        if stage not in bars:
            bars[stage] = tqdm(total=total, desc=stage, unit="scene" if stage == "data" else "step",
                               initial=step - 1, dynamic_ncols=True, mininterval=1.0)
        bars[stage].update(step - bars[stage].n)
        if figures:
            bars[stage].set_postfix({k: f"{v:.4f}" for k, v in figures.items()}, refresh=False)
        if step == total:
            bars[stage].close()

    report = Trainer(out, settings, device=device, progress=progress).run()
    metrics = None
    if eval_scenes:
        click.echo(f"measuring the model on {eval_scenes} held-out scene(s) per look", err=True)
        with tempfile.TemporaryDirectory(prefix="stylecomp-eval-") as temp:
            shots = [held_out_shot(i, Path(temp) / f"scene{i}") for i in range(eval_scenes)]
            metrics = held_out_metrics(shots, Path(temp) / "out", model=out, pool=PipelinePool(device))
    card = write_card(out, settings, report, device, metrics)
    click.echo(f"{out}: trained model; card {card}, loss curve {out / 'loss_curve.png'}")


_DEVICE_HELP = "Where the model runs: auto picks CUDA, then Apple MPS, then the CPU."
_DTYPE_HELP = "Weights' precision: auto is bf16 on CUDA (fp16 where bf16 is missing), fp16 on MPS, fp32 on the CPU."
_PROGRESS_HELP = ("text: a progress line with ETA (one line per frame in a log); json: one JSON event per line on "
                  "stdout, for hosts such as the Nuke plugin (see the README).")


def _torch_dtype(name: str) -> torch.dtype | None:
    """The --dtype choice as a torch dtype; None for auto (each device picks its own)."""
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(name)


def _pipeline_pool(device: str, dtype: str) -> PipelinePool:
    from ..diffusion.pool import PipelinePool

    return PipelinePool(None if device == "auto" else device, _torch_dtype(dtype))


def _pick_shot(job_: Job, name: str | None) -> Shot:
    if name is None:
        if len(job_.shots) > 1:
            raise JobError(f"the job has {len(job_.shots)} shots; name one with --shot ({', '.join(s.name for s in job_.shots)})")
        return job_.shots[0]
    for shot in job_.shots:
        if shot.name == name:
            return shot
    raise JobError(f"no shot named {name!r}; the job's shots are {', '.join(s.name for s in job_.shots)}")


def _frame_range(text: str | None) -> tuple[int, int] | None:
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
def _cancel_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or Ctrl-C, so a run stops between denoising steps and keeps finished frames."""
    cancel = threading.Event()
    previous = {sig: signal.signal(sig, lambda _signum, _frame: cancel.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield cancel
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _ProgressPrinter:
    """Render events as a progress line with ETA (text) or as JSON lines on stdout (json)."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.tty = sys.stderr.isatty()

    def __call__(self, event: dict[str, object]) -> None:
        if self.style == "json":
            click.echo(json.dumps(event))
            return
        kind = event["event"]
        if kind == "start":
            click.echo(f"{event['shot']}: {event['total']} frame(s) {event['frames'][0]}-{event['frames'][1]}", err=True)  # type: ignore[index]
            if "note" in event:
                click.echo(f"  note: {event['note']}", err=True)
            if "warning" in event:
                click.echo(f"warning: {event['shot']}: {event['warning']}", err=True)
        elif kind == "frame":
            eta = float(event.get("eta", 0))  # type: ignore[arg-type]
            line = (f"  {event['shot']} {event['frame']}  [{event['done']}/{event['total']}]  {event['status']:<8} "
                    f"{float(event.get('seconds', 0)):6.1f} s   ETA {int(eta // 60)}:{int(eta % 60):02d}")  # type: ignore[arg-type]
            if event["status"] == "failed":
                line += f"\n    {event['error']}"
            if "warning" in event:
                click.echo(("\n" if self.tty else "") + f"warning: {event['shot']} {event['frame']}: {event['warning']}",
                           err=True)
            last = event["done"] == event["total"]
            click.echo(("\r" + line) if self.tty and event["status"] != "failed" else line, nl=not self.tty or last
                       or event["status"] == "failed", err=True)
        elif kind == "step":  # one long generation (an animatic clip): denoising progress
            step, total = int(event["step"]), int(event["total"])  # type: ignore[call-overload]
            if self.tty or step == total or step % max(total // 4, 1) == 0:
                line = f"  {event['shot']}  denoising step {step}/{total}"
                click.echo(("\r" + line) if self.tty else line, nl=not self.tty or step == total, err=True)


_DEVICE_OPTION = click.option("--device", type=click.Choice(["auto", "cuda", "mps", "cpu"]), default="auto",
                              show_default=True, help=_DEVICE_HELP)
_DTYPE_OPTION = click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]), default="auto",
                             show_default=True, help=_DTYPE_HELP)
_NO_CACHE_OPTION = click.option("--no-cache", is_flag=True,
                                help="Stylize every frame afresh; neither read nor fill the render cache.")


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


def _apply_regions(job_: Job, regions: list[Region]) -> None:
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


def _render_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options `render` and `comp` share: which shots and frames, where the model runs, cache, progress."""
    options = [
        click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False)),
        click.option("--shot", "shots", multiple=True, help="Only this shot (repeat for several). Default: every shot."),
        click.option("--frames", default=None, metavar="A-B",
                     help="Only frames A to B (inclusive), e.g. 1001-1010, or one frame."),
        _DEVICE_OPTION, _DTYPE_OPTION, _NO_CACHE_OPTION,
        click.option("--progress", "progress_style", type=click.Choice(["text", "json"]), default="text",
                     show_default=True, help=_PROGRESS_HELP),
        _OVERWRITE_OPTION,
        click.option("--region", "regions", multiple=True, metavar="'NAME: key=value; ...'", callback=_parse_regions,
                     help="A per-object region replacing the job's and shots' regions (repeat for several), e.g. "
                     "'car: prompt=cel shading, bold ink; strength=0.6'. Selects the Cryptomatte name NAME unless "
                     "match=bld*,tower, ids=3,4, matte=mask.A or matte_sequence=mattes/car.####.exr says otherwise; "
                     "other keys: negative_prompt, strength, seed, invert, layer, channel, loras=path[:weight], "
                     "controlnet_weights=lineart:0.5, ip_adapter_image. A NAME that is not an identifier (Car.001, "
                     "ns:car, bld*) is the pattern and names the region Car_001, ns_car, bld; write \\; for a ; "
                     "inside a value (prompt=cel\\; ink)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command()
@_render_options
def render(job_path: str, shots: tuple[str, ...], frames: str | None, device: str, dtype: str, no_cache: bool,
           progress_style: str, overwrite: bool, regions: list[Region]) -> None:
    """Stylize the shots of JOB.json into EXRs with a `stylized` RGBA layer and provenance.

    Frames whose output is already current, or whose result is in the render cache
    ($STYLECOMP_CACHE_DIR, default ~/.cache/stylecomp), are reused and reported as cached.
    A frame that fails (damaged or missing plate) is reported and the others still render.
    Exit status: 0 all frames done, 1 some failed or the run was stopped (finished frames are
    kept), 2 the job or its inputs are unusable.
    """
    from ..render.cache import RenderCache
    from ..jobspec import load_job
    from ..render.loop import render_job

    job_ = load_job(job_path)
    _apply_regions(job_, regions)
    with _cancel_on_signals() as cancel:
        summary = render_job(job_, shots=shots or None, frames=_frame_range(frames),
                             pool=_pipeline_pool(device, dtype), cache=None if no_cache else RenderCache(),
                             report=_ProgressPrinter(progress_style), cancel=cancel, overwrite=overwrite)
    if progress_style == "text":
        click.echo(f"rendered {summary.rendered}, from cache {summary.cached}, failed {len(summary.failed)} "
                   f"in {summary.seconds:.1f} s" + ("  (stopped)" if summary.cancelled else ""))
        for shot, frame, reason in summary.failed:
            click.echo(f"error: {shot} {frame}: {reason}", err=True)
    if summary.failed or summary.cancelled:
        sys.exit(1)


@cli.command()
@_render_options
def comp(job_path: str, shots: tuple[str, ...], frames: str | None, device: str, dtype: str, no_cache: bool,
         progress_style: str, overwrite: bool, regions: list[Region]) -> None:
    """The headless comp: stylize JOB.json's shots (current outputs and the cache are reused),
    blend each stylized frame with its clean plate as the job's `comp` block says (the
    StyleCompBlend gizmo's knobs: mode, amount, weight by depth / matte / object IDs /
    Cryptomatte names, ID lines) and write RGBA EXRs to `comp.output` ({shot} = the shot name).

    Exit status as for `render`: 1 when some frames failed (the others are written).
    """
    from ..render.cache import RenderCache
    from ..comp.headless import comp_job
    from ..jobspec import load_job

    job_ = load_job(job_path)
    _apply_regions(job_, regions)
    with _cancel_on_signals() as cancel:
        summary = comp_job(job_, shots=shots or None, frames=_frame_range(frames), pool=_pipeline_pool(device, dtype),
                           cache=None if no_cache else RenderCache(), report=_ProgressPrinter(progress_style),
                           cancel=cancel, overwrite=overwrite)
    failed = summary.stylize.failed + summary.failed
    if progress_style == "text":
        click.echo(f"stylized {summary.stylize.rendered}, from cache {summary.stylize.cached}; comped "
                   f"{summary.comped}, failed {len(failed)}" + ("  (stopped)" if summary.stylize.cancelled else ""))
        for shot, frame, reason in failed:
            click.echo(f"error: {shot} {frame}: {reason}", err=True)
    if failed or summary.stylize.cancelled:
        sys.exit(1)


@cli.command()
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option("--shot", "shot_name", default=None, help="Shot to vary (needed when the job has several).")
@click.option("--frame", type=int, default=None, help="Frame to render the variants of. Default: the first cut frame.")
@click.option("--count", type=click.IntRange(1, 64), default=None,
              help="How many variants (default: the job's candidates.count).")
@click.option("--strengths", default=None, metavar="S1,S2,..",
              help="Strengths to cycle through, e.g. 0.3,0.5,0.7 (default: the job's candidates.strengths, else its strength).")
@click.option("--prompt", "prompts", multiple=True, help="A prompt variation to cycle through (repeat for several).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for the candidates (default: <shot output folder>/candidates/<shot>.<frame>/).")
@_DEVICE_OPTION
@_DTYPE_OPTION
@click.option("--progress", "progress_style", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help=_PROGRESS_HELP)
def candidates(job_path: str, shot_name: str | None, frame: int | None, count: int | None, strengths: str | None,
               prompts: tuple[str, ...], out_dir: str | None, device: str, dtype: str, progress_style: str) -> None:
    """Render variants of one frame to choose from: candidate k uses seed + k x seed_stride
    (and the k-th strength/prompt variation). Writes candidate_KK.exr and .png, a labelled
    contact_sheet.png and manifest.json, and prints the manifest's path last. Lock one in with
    `stylecomp pick`.
    """
    from ..render.candidates import render_candidates
    from ..jobspec import load_job

    job_ = load_job(job_path)
    shot = _pick_shot(job_, shot_name)
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
    with _cancel_on_signals() as cancel:
        manifest = render_candidates(job_, job_path, shot, frame, out_dir, pool=_pipeline_pool(device, dtype),
                                     report=_ProgressPrinter(progress_style), cancel=cancel)
    if progress_style == "text":
        click.echo(f"{job_.candidates.count} candidates of {shot.name} {frame}; contact sheet "
                   f"{manifest.parent / 'contact_sheet.png'}")
    click.echo(str(manifest))


@cli.command()
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option("--candidate", "index", type=int, required=True, help="The candidate number (as in the contact sheet).")
@click.option("--shot", "shot_name", default=None, help="Shot the candidates belong to (needed when the job has several).")
@click.option("--frame", type=int, default=None, help="Frame the candidates were rendered for (default: the latest run).")
@click.option("--ideation", is_flag=True,
              help="Pick from the shot's ideation candidates (`stylecomp ideate`, in ideation.output) instead.")
@click.option("--manifest", "manifest_path", default=None, type=click.Path(dir_okay=False),
              help="The candidates' manifest.json (stylization or ideation), if they were written somewhere other "
                   "than the default folder.")
def pick(job_path: str, index: int, shot_name: str | None, frame: int | None, ideation: bool,
         manifest_path: str | None) -> None:
    """Lock a candidate into JOB.json: its seed (and strength/prompt, if they were varied)
    become the shot's overrides, so every later render of the shot uses them.

    An ideation candidate (--ideation, or an ideation --manifest) is copied to picked.exr in the
    shot's ideation folder (the still `stylecomp animate` and `timeline conform --media ideation`
    use), the manifest records the pick, and its prompt becomes the shot's.
    """
    from ..render.candidates import candidates_folder, latest_manifest, pick as pick_candidate, read_manifest, MANIFEST
    from ..generators.ideation import ideation_manifest, pick_still
    from ..jobspec import load_job

    job_ = load_job(job_path)
    shot = _pick_shot(job_, shot_name)
    if ideation and frame is not None:
        raise StyleCompError("--frame is for stylization candidates; ideation candidates have no frame")
    if manifest_path is None:
        if ideation:
            manifest_path = str(ideation_manifest(job_, shot))
        else:
            manifest_path = str(candidates_folder(job_, shot, frame) / MANIFEST if frame is not None
                                else latest_manifest(job_, shot))
    if read_manifest(manifest_path, "ideation" if ideation else None).get("kind") == "ideation":
        chosen = pick_still(job_, job_path, shot, manifest_path, index)
        click.echo(f"{job_path}: shot {shot.name} picked ideation candidate {index} (seed {chosen['seed']}) as "
                   f"{job_.picked_still(shot)}; prompt {chosen['prompt']!r}")
        return
    chosen = pick_candidate(job_, job_path, shot, manifest_path, index)
    click.echo(f"{job_path}: shot {shot.name} locked to candidate {index} (seed {chosen['seed']}, "
               f"strength {chosen['strength']:g})")


def _first_frame_on_disk(job_: Job, shot: Shot) -> int:
    from ..render.loop import shot_frames

    _, frames = shot_frames(job_, shot)
    return frames[0]


@cli.command()
@click.option("--out", "out_dir", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo plates, job file, stylized EXRs and contact sheet.")
@click.option("--frames", default=24, show_default=True, type=click.IntRange(2, 1000),
              help="Number of frames to render (starting at 1001).")
@click.option("--size", default="960x540", show_default=True, help="Resolution as WIDTHxHEIGHT.")
@click.option("--model", default=None, type=click.Path(exists=True),
              help="A local model (diffusers folder or .safetensors) to stylize with. Default: a tiny "
                   "random-weight SD 1.5 built on the spot, which shows the pipeline, not a style.")
@_DEVICE_OPTION
def demo(out_dir: str, frames: int, size: str, model: str | None, device: str) -> None:
    """Render the built-in demo shot and stylize it.

    Writes multi-layer EXR plates (beauty, Z, normals, backward motion vectors, object IDs)
    rendered by stylecomp itself, a job file for them (rerun it with `stylecomp render`), the
    stylized EXRs and a contact-sheet PNG.
    """
    from ..demo.run import run_demo

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise StyleCompError(f"--size must look like 960x540, not {size!r}") from None
    started = time.monotonic()
    summary = run_demo(Path(out_dir).resolve(), frames, width, height, progress=_progress, model=model,
                       device=None if device == "auto" else device)
    click.echo(f"\ndemo done in {time.monotonic() - started:.1f} s")
    for label, where in summary.items():
        click.echo(f"  {label:<14} {where}")


def _progress(stage: str, done: int, total: int) -> None:
    """One updating line on a terminal; a line per quarter in a log file."""
    if sys.stderr.isatty():
        click.echo(f"\r  {stage:<28} {done:>4}/{total}", nl=done == total, err=True)
    elif done == total or done % max(1, total // 4) == 0:
        click.echo(f"  {stage:<28} {done:>4}/{total}", err=True)


class _BatchPrinter:
    """Batch events as text on stderr: a line per frame (one updating line on a terminal), one per shot, overall ETA."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            click.echo(f"{event['job']}: {event['shot']}: {event['total']} frame(s) {event['frames'][0]}-"
                       f"{event['frames'][1]}", err=True)
        elif kind == "frame":
            line = (f"  {event['shot']} {event['frame']}  [{event['done']}/{event['total']}]  {event['status']:<8} "
                    f"{float(event.get('seconds', 0)):6.1f} s   {_overall(event['overall'])}")
            if "warning" in event:
                click.echo(("\n" if self.tty else "") + f"warning: {event['job']}: {event['shot']} {event['frame']}: "
                           f"{event['warning']}", err=True)
            if event["status"] == "failed":
                click.echo(("\r" if self.tty else "") + f"{line}\n    {event['error']}", err=True)
            else:
                click.echo(("\r" + line) if self.tty else line, nl=not self.tty, err=True)
        elif kind == "shot_end":
            click.echo(("\n" if self.tty else "") + f"{event['job']} {event['shot']}: {event['done']}/{event['total']} "
                       f"frames (rendered {event['rendered']}, cached {event['cached']}, failed {event['failed']})   "
                       f"{_overall(event['overall'])}", err=True)
        elif kind == "resume":
            click.echo(f"{event['job']}: resuming: {event['complete']} complete output(s); removed "
                       f"{len(event['removed_temp'])} temp file(s) of a killed run and "
                       f"{len(event['removed_damaged'])} output(s) that did not read whole", err=True)
        elif kind == "job_failed":
            click.echo(f"error: {event['job']}: {event['error']}", err=True)


def _overall(overall: dict) -> str:
    eta = overall["eta"]
    left = "--:--" if eta is None else f"{int(eta // 60)}:{int(eta % 60):02d}"
    return f"overall {overall['done']}/{overall['total']} frames, ETA {left}"


@cli.command()
@click.argument("job_paths", metavar="JOB.json...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--resume", is_flag=True,
              help="Continue a run that was killed: delete the temp files it left and outputs that do not read "
                   "whole (pixels checked, not only the header), then render what is not done.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a Ray cluster, one worker per GPU (per CPU when there is none), "
                   "shots split into frame chunks.")
@click.option("--address", default=None, help="--executor ray: the cluster to join (default: start a local one).")
@click.option("--chunk-size", type=click.IntRange(1), default=10, show_default=True,
              help="--executor ray: frames per task (a sequential shot is always one chunk).")
@_DEVICE_OPTION
@_DTYPE_OPTION
@_NO_CACHE_OPTION
@click.option("--progress", "progress_style", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: a line per frame and per shot with the overall frames done/total and ETA; json: one JSON "
                   "event per line on stdout (render's events with a job field, plus batch, shot_end, resume, "
                   "job_failed, job_end; see the README).")
@_OVERWRITE_OPTION
def batch(job_paths: tuple[str, ...], resume: bool, executor: str, address: str | None, chunk_size: int,
          device: str, dtype: str, no_cache: bool, progress_style: str, overwrite: bool) -> None:
    """Render the shots of many JOB.json files, one job after another; pipelines stay loaded between jobs.

    As with `render`, a frame whose output is current (the cache key in its header matches)
    is skipped and reported as cached, and the render cache is used. --resume, after a killed
    run, also reads every existing output whole: a truncated or damaged one is deleted and
    rendered again, temp files of the killed run are deleted, and cache entries are served
    only if they read whole. Exit status: 0 all frames done; 1 some frames failed or the run
    was stopped (finished frames are kept); 2 a job file is unusable (nothing renders) or a
    job was refused while the others rendered.
    """
    from ..farm.batch import BatchJob, LocalExecutor, run_batch
    from ..render.cache import RenderCache
    from ..jobspec import load_job
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
    report = _ProgressPrinter("json") if progress_style == "json" else _BatchPrinter()
    with contextlib.ExitStack() as stack:
        cancel = stack.enter_context(_cancel_on_signals())
        if executor == "ray":
            from ..farm.ray_cluster import RayExecutor

            runner = stack.enter_context(RayExecutor(address=address, cache=cache, chunk_size=chunk_size,
                                                     dtype=_torch_dtype(dtype)))
        else:
            runner = LocalExecutor(_pipeline_pool(device, dtype), cache)
        summary = run_batch(items, runner, resume=resume, report=report, cancel=cancel)
    if progress_style == "text":
        click.echo(f"{len(items)} job(s): rendered {summary.rendered}, from cache {summary.cached}, failed "
                   f"{len(summary.failed)}, refused {len(summary.refused)} in {summary.seconds:.1f} s"
                   + ("  (stopped)" if summary.cancelled else ""))
        for job_path, shot, frame, reason in summary.failed:
            click.echo(f"error: {job_path}: {shot} {frame}: {reason}", err=True)
    sys.exit(summary.exit_status)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address lets other machines in (a warning says so).")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True,
              help="Port to listen on; 0 picks a free one (the URL printed says which).")
@click.option("--root", "roots", multiple=True, type=click.Path(file_okay=False),
              help="A folder requests may read and write in (repeat for several); every path a job names must "
                   "resolve inside one, else the request gets 403. Also read from the config folder's server.json "
                   "({\"roots\": [...]}). Default on a loopback address: your home and the stylecomp cache folder; "
                   "required on any other address.")
@_DEVICE_OPTION
@_DTYPE_OPTION
@_NO_CACHE_OPTION
def serve(host: str, port: int, roots: tuple[str, ...], device: str, dtype: str, no_cache: bool) -> None:
    """Run the engine server: an HTTP API on this machine that queues jobs and renders them one
    after another, keeping pipelines loaded between them (for the Nuke plugin and other hosts).

    Every request needs the token from the token file ($STYLECOMP_CONFIG_DIR, else
    $XDG_CONFIG_HOME/stylecomp, else ~/.config/stylecomp: server-token, made on first start,
    mode 0600) as `Authorization: Bearer <token>`. SIGTERM or Ctrl-C stops it: the running job
    stops mid-step and its finished frames stay; it and the queued jobs are kept in the queue file
    and run at the next start. See the README for the API.
    """
    from ..render.cache import RenderCache
    from ..server.app import EngineServer, bind_warning, configured_roots
    from ..server.access_token import load_or_create_token, token_file

    token, repaired = load_or_create_token()
    if repaired:
        click.echo(f"warning: {token_file()}: permissions were looser than 0600; repaired", err=True)
    warning = bind_warning(host)
    if warning:
        click.echo(f"WARNING: {warning}", err=True)
    chosen = [os.path.abspath(root) for root in roots] + configured_roots()
    server = EngineServer((host, port), token, _pipeline_pool(device, dtype), None if no_cache else RenderCache(),
                          roots=chosen or None)
    with _cancel_on_signals() as stop:
        server.start()
        click.echo(f"stylecomp engine server on {server.url} (device {server.pool.device})")
        click.echo(f"token file: {token_file()} (send 'Authorization: Bearer <token>')")
        click.echo(f"roots: {', '.join(server.roots)}" + ("" if chosen else " (the default: your home and the "
                   "stylecomp cache folder; name others with --root)"))
        while not stop.wait(0.5):
            pass
        click.echo("stopping: the running job stops now and resumes, with the queued ones, at the next start",
                   err=True)
        server.stop()
    click.echo("stopped", err=True)


@cli.group()
def farm() -> None:
    """Render farms: Open Job Description job templates (AWS Deadline Cloud, `openjd run`)."""


@farm.command("openjd")
@click.argument("job_path", metavar="JOB.json", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "template_path", required=True, type=click.Path(dir_okay=False),
              help="Job template to write (YAML).")
@click.option("--chunk-size", type=click.IntRange(1), default=10, show_default=True,
              help="Frames per task. A shot whose frames need the previous frame's output is always one task.")
@click.option("--gpu/--no-gpu", default=True, show_default=True,
              help="Ask for a worker with a GPU and render on CUDA, or for any worker and render on its CPU.")
@_OVERWRITE_OPTION
def farm_openjd(job_path: str, template_path: str, chunk_size: int, gpu: bool, overwrite: bool) -> None:
    """Write an OpenJD 2023-09 job template for JOB.json: one step per shot, one task per frame
    chunk running `stylecomp render JOB --shot S --frames A-B --progress json`. The template is
    validated with openjd-model before it is written. Job parameters: JobFile, Stylecomp (the
    executable on the worker, default `stylecomp`) and Device. Run one shot locally with
    `openjd run TEMPLATE --step SHOT [-p Stylecomp=/path/to/stylecomp]`.
    """
    from ..jobspec import load_job
    from ..farm.openjd import write_job_template

    template = write_job_template(load_job(job_path), job_path, template_path, chunk_size=chunk_size, gpu=gpu,
                                  overwrite=overwrite)
    steps = template["steps"]
    tasks = sum(len(step["parameterSpace"]["taskParameterDefinitions"][0]["range"]) for step in steps)
    click.echo(f"{template_path}: {len(steps)} step(s), {tasks} task(s), {'GPU' if gpu else 'CPU'} workers")


@cli.command()
@click.argument("stylized")
@click.option("--plate", required=True, metavar="PLATE", help="The plate sequence STYLIZED was made from (a frame pattern).")
@click.option("--frames", default=None, metavar="A-B", help="Only frames A to B (inclusive). Default: every stylized frame.")
@click.option("--vectors", default="auto", show_default=True, metavar="CONVENTION",
              help="How the plate's motion vectors are stored: auto (each convention is tried on the plate and the "
                   "one that reproduces it kept), or DIRECTION-UNITS-Y: backward|forward, pixels|ndc, yup|ydown, "
                   "e.g. backward-pixels-yup.")
@click.option("--job", "job_path", default=None, type=click.Path(dir_okay=False),
              help="Compare in this job's colour encoding (its `color` block). Default: the built-in default.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys R, E_warp, E_warp_plate, D, drift, per_frame, ...).")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Write a PNG chart of the per-frame warp error of the plate and the stylized frames.")
def flicker(stylized: str, plate: str, frames: str | None, vectors: str, job_path: str | None, as_json: bool,
            plot_path: str | None) -> None:
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
    report = measure_flicker(stylized, plate, frames=_frame_range(frames), vectors=vectors, encoding=encoding)
    if plot_path:
        write_plot(report, plot_path)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else format_report(report))
    if plot_path and not as_json:
        click.echo(f"plot      {plot_path}")


@cli.command()
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option("--shot", "shot_names", multiple=True, help="Shot to animate (repeat for several). Default: every shot.")
@click.option("--keyframe", type=int, default=None,
              help="Start from the shot's stylized frame N (rendered first if it is not on disk). "
                   "Default: the job's animation.keyframe, else the first cut frame.")
@click.option("--image", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Start from this image instead (EXR is read as scene-linear, PNG/JPEG/TIFF as display-referred).")
@click.option("--frames", type=click.IntRange(1, 1024), default=None,
              help="Clip length (rounded up to what the model allows). Default: the shot's cut length.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="Seed (default: the job's animation.seed).")
@click.option("--generator", default=None,
              help="Generator plugin to use instead of the job's animation.generator: diffusers (local models), "
                   "sora, veo, kling, runway, luma (hosted; options from animation.generator_options), or another "
                   "installed plugin.")
@_DEVICE_OPTION
@_DTYPE_OPTION
@click.option("--progress", "progress_style", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help=_PROGRESS_HELP)
def animate(job_path: str, shot_names: tuple[str, ...], keyframe: int | None, image: str | None, frames: int | None,
            seed: int | None, generator: str | None, device: str, dtype: str, progress_style: str) -> None:
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
    from ..generators.animatic import animate as animate_shot, video_generator
    from ..jobspec import load_job
    from ..render.loop import select_shots
    from ..stage import Cancelled

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
    pool, printer, failed = _pipeline_pool(device, dtype), _ProgressPrinter(progress_style), []
    with _cancel_on_signals() as cancel:
        for shot in shots:
            try:
                clip = animate_shot(job_, job_path, shot, clip_maker, pool, printer, cancel)
            except Cancelled:
                click.echo(f"{shot.name}: stopped; its clip is not written whole", err=True)
                sys.exit(1)
            except (JobError, ModelError):
                raise  # the job or its model is unusable: exit status 2
            except Exception as exc:  # a keyframe that will not render, a missing still, a plugin failing on this shot
                reason = str(exc) if isinstance(exc, StyleCompError) else f"{type(exc).__name__}: {exc}"
                click.echo(f"error: {shot.name}: {reason}", err=True)
                failed.append(shot.name)
                continue
            if progress_style == "text":
                click.echo(f"{shot.name}: {len(clip.frames)} frames {clip.frames[0]}-{clip.frames[-1]} -> {clip.output} "
                           f"(preview {clip.preview})")
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("job_path", metavar="JOB.json", type=click.Path(dir_okay=False))
@click.option("--shot", "shot_names", multiple=True, help="Shot to make stills for (repeat for several). Default: every shot.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for the candidates, {shot} = the shot name (needed with several shots). "
                   "Default: the job's ideation.output.")
@_DEVICE_OPTION
@_DTYPE_OPTION
@click.option("--progress", "progress_style", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help=_PROGRESS_HELP)
def ideate(job_path: str, shot_names: tuple[str, ...], out_dir: str | None, device: str, dtype: str,
           progress_style: str) -> None:
    """Treatment stills: text-to-image candidates for each shot, one per prompt x seed x aspect
    ratio of the job's `ideation` block, made by its generator (a local model, or a plugin).

    With ControlNets in the model, the shot's plate at ideation.guide_frame guides the
    composition and sets the aspect ratio; with ideation.init_strength, generation starts from
    the plate's beauty. Writes candidate_KK.exr (scene-linear) and .png, a labelled
    contact_sheet.png and manifest.json per shot, and prints each manifest's path. Choose one
    with `stylecomp pick --ideation`. Exit status: 0 all shots done; 1 some failed or the run
    was stopped; 2 the job or its model is unusable.
    """
    from ..generators.interface import Generator
    from ..generators.ideation import ideate as ideate_shot, ideation_generator
    from ..jobspec import load_job
    from ..render.loop import select_shots
    from ..stage import Cancelled

    job_ = load_job(job_path)
    shots = select_shots(job_, shot_names)
    if out_dir is not None and len(shots) > 1 and "{shot}" not in out_dir:
        raise StyleCompError("--out needs {shot} in it when several shots are ideated")
    printer, failed = _ProgressPrinter(progress_style), []
    generators: dict[str | None, Generator] = {}  # shots differ in their model only by overrides.model
    with _cancel_on_signals() as cancel:
        for shot in shots:
            try:
                if shot.overrides.model not in generators:
                    generators[shot.overrides.model] = ideation_generator(
                        job_, shot, None if device == "auto" else device, None if dtype == "auto" else dtype)
                manifest = ideate_shot(job_, job_path, shot, out_dir.replace("{shot}", shot.name) if out_dir else None,
                                       generators[shot.overrides.model], printer, cancel)
            except Cancelled:
                click.echo(f"{shot.name}: stopped; its manifest is not written", err=True)
                sys.exit(1)
            except (JobError, ModelError):
                raise  # the job or its model is unusable: exit status 2
            except Exception as exc:  # a missing or damaged guide plate, a plugin failing on this shot
                reason = str(exc) if isinstance(exc, StyleCompError) else f"{type(exc).__name__}: {exc}"
                click.echo(f"error: {shot.name}: {reason}", err=True)
                failed.append(shot.name)
                continue
            if progress_style == "text":
                click.echo(f"{shot.name}: contact sheet {manifest.parent / 'contact_sheet.png'}")
            click.echo(str(manifest))
    if failed:
        sys.exit(1)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from local paths only
    cli(prog_name="stylecomp")
