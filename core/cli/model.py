"""`stylecomp model`: tiny random-weight test models, and training the built-in model again."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import get_args

import click

from ..families import FAMILIES, VideoFamily, family_titles


@click.group()
def model() -> None:
    """Diffusion models: tiny random-weight test models for trying the pipeline without weights."""


@model.command("make-test")
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--family",
    type=click.Choice(list(FAMILIES)),
    help=f"Image model to build: {family_titles('or')}.",
)
@click.option(
    "--video",
    type=click.Choice(get_args(VideoFamily)),
    help="Image-to-video model to build instead (for `stylecomp animate`): Wan 2.2 I2V, LTX-Video or "
    "CogVideoX 1.5 I2V. Takes no adapters.",
)
@click.option("--controlnet", is_flag=True, help="Also write a matching tiny ControlNet in DIR/controlnet.")
@click.option("--lora", is_flag=True, help="Also write a matching tiny LoRA as DIR/lora.safetensors.")
@click.option(
    "--ip-adapter",
    is_flag=True,
    help="Also write a matching tiny IP-Adapter: DIR/ip_adapter/ip-adapter.safetensors + image_encoder/.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the random weights.")
@click.option(
    "--vae",
    type=click.Choice(["random", "passthrough"]),
    default="random",
    show_default=True,
    help="random: the VAE decodes noise whatever it is given. passthrough: its weights are set by "
    "construction so that the latents are the image at 1/8 size and decode back to it, blurred; the "
    "random UNet then paints a texture over a recognisable plate (for measuring what must follow "
    "the plate, such as flicker).",
)
def make_test(
    out_dir: str,
    family: str | None,
    video: str | None,
    controlnet: bool,
    lora: bool,
    ip_adapter: bool,
    seed: int,
    vae: str,
) -> None:
    """Write a tiny random-weight model to DIR, built from the real diffusers and transformers
    classes and loadable like any local model. With the random VAE its images are noise: it
    shows that the pipeline runs, not a style.
    """
    from ..diffusion.testing import make_test_ip_adapter, make_test_lora, make_test_model, make_test_video_model

    if video:
        if family or controlnet or lora or ip_adapter or vae != "random":
            raise click.UsageError(
                "--video builds an image-to-video model alone: leave out --family, --vae and adapters"
            )
        folder = make_test_video_model(out_dir, video, seed=seed)  # type: ignore[arg-type]  # click.Choice checked it
        click.echo(f"{folder}: tiny {video} image-to-video test model")
        return
    if not family:
        raise click.UsageError("give --family (an image model) or --video (an image-to-video model)")
    folder = make_test_model(out_dir, family, controlnet=controlnet, seed=seed, vae=vae)  # type: ignore[arg-type]  # click.Choice checked it
    click.echo(
        f"{folder}: tiny {family} test model"
        + (" (passthrough VAE)" if vae == "passthrough" else "")
        + (" with a ControlNet in controlnet/" if controlnet else "")
    )
    if lora:
        click.echo(f"{make_test_lora(folder / 'lora.safetensors', folder, seed=seed)}: tiny LoRA")
    if ip_adapter:
        click.echo(
            f"{make_test_ip_adapter(folder / 'ip_adapter', folder, seed=seed)}: tiny IP-Adapter "
            "(image encoder beside it)"
        )


@model.command("train-demo")
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False))
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=None,
    help="UNet + tile ControlNet training steps (default 4000: about 1 h 50 min on one CPU core).",
)
@click.option(
    "--controlnet-steps",
    type=click.IntRange(1),
    default=None,
    help="Line-art ControlNet training steps, after the UNet's (default 2500: about 50 min on one CPU core).",
)
@click.option(
    "--scenes",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Random training scenes to render (default 320; each takes about 1.3 MB of memory).",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Seed for the weights, the scenes and every batch: the same seed gives the same model "
    "(on the CPU; CUDA kernels may round differently from run to run).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cuda", "cpu"]),
    default="auto",
    show_default=True,
    help="Where to train: auto picks CUDA when there is one.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue a killed or finished run in OUT from its checkpoints (OUT/.training/) instead of "
    "refusing a folder that holds one.",
)
@click.option(
    "--eval-scenes",
    type=click.IntRange(0, 16),
    default=2,
    show_default=True,
    help="Held-out scenes the finished model stylizes in each look, for the card's metrics (0: none).",
)
def train_demo(
    out_dir: str,
    steps: int | None,
    controlnet_steps: int | None,
    scenes: int | None,
    seed: int,
    device: str,
    resume: bool,
    eval_scenes: int,
) -> None:
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
    settings = TrainingSettings(
        seed=seed,
        scenes=scenes or defaults.scenes,
        unet_steps=steps or defaults.unet_steps,
        controlnet_steps=controlnet_steps or defaults.controlnet_steps,
    )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no CUDA device is available here")
    bars: dict[str, tqdm] = {}

    def progress(stage: str, step: int, total: int, figures: dict[str, float]) -> None:
        if stage not in bars:
            bars[stage] = tqdm(
                total=total,
                desc=stage,
                unit="scene" if stage == "data" else "step",
                initial=step - 1,
                dynamic_ncols=True,
                mininterval=1.0,
            )
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
