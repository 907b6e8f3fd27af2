"""The model families stylecomp runs (SD 1.5, SDXL, Flux): one frozen spec each, the one place a family is defined.

Everything that differs between families (pipeline classes, latent layout, size planning, guidance, prompt
encoding, worker memory, the tiny test model) is a field here, read by the modules that need it. Pipeline
classes are named as strings and resolved on use, so this module (and the job spec, which takes ``Family``
from it) imports neither torch nor diffusers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ModelError

Family = Literal["sd15", "sdxl", "flux"]
VideoFamily = Literal["wan", "ltx", "cogvideox"]
"""The image-to-video families the built-in video generator runs (``generators.video`` says what each can do)."""


@dataclass(frozen=True)
class FamilySpec:
    """What one model family is, as stylecomp plans, loads, conditions and schedules it."""

    name: Family
    img2img: str  # pipeline class stylization runs: diffusers' img2img with its noise open (diffusion/pipelines.py)
    controlnet_img2img: str  # ... with ControlNets
    text_to_image: str  # diffusers pipeline class the built-in image generator runs
    controlnet_text_to_image: str  # ... with ControlNets
    controlnet_model: str  # diffusers class a ControlNet of this family loads as
    denoiser: str  # the pipeline component that denoises, and the folder of its config: "unet" or "transformer"
    latent_channels: int  # channels of the initial noise (Flux: before its 2x2 packing)
    downsamplings: int  # the published denoiser's 2x downsamplings (Flux's transformer: none)
    sample_size: int | None  # the published UNet's configured latent size
    latent_packing: int  # latent cells per packed patch side (Flux packs 2x2; 1 for SD)
    size_multiple: int  # pixel multiple the published model needs (VAE 8x times UNet depth or latent packing)
    working_size: int  # long side the family was trained at, in pixels
    uses_cfg: bool  # runs classifier-free guidance (a negative branch); Flux is guidance-distilled instead
    prompt_encoding: Literal["clip", "dual_clip", "flux"]  # which encode_prompt signature its pipelines have
    safety_checker: bool  # its pipelines carry a safety checker stylecomp switches off
    single_file: bool  # single-file checkpoints load (from the configs in model_configs/<name>/)
    memory_mib: tuple[int, int]  # (GPU memory, system memory) in MiB a farm worker needs
    test_builder: str  # name of the builder in stylecomp.diffusion.testing.image_models that makes its tiny test model
    img2img_size: bool  # its plain img2img pipeline takes height and width (SD's take the image's own size)
    controlnet_modes: bool  # several ControlNets take a control_mode each (None: plain, not Union, ControlNets)
    vae_upcast: bool  # its img2img upcasts a force_upcast VAE to float32 around each encode (see vae_bfloat16)
    title: str  # the family's name in messages: "SD 1.5"
    clip_tokenizers: tuple[str, ...]  # pipeline components that are CLIP BPE tokenizers (vocab.json + merges.txt)
    ip_adapter_with_controlnets: bool  # its ControlNet img2img pipeline takes an IP-Adapter (diffusers' Flux one: no)

    def pipeline_class(self, controlnet: bool, text_to_image: bool = False) -> type[Any]:
        """The pipeline class for stylizing (stylecomp's img2img) or generating (diffusers' text-to-image), with or
        without ControlNets; imports diffusers on first use."""
        if text_to_image:
            return _diffusers_class(self.controlnet_text_to_image if controlnet else self.text_to_image)
        return _stylize_class(self.controlnet_img2img if controlnet else self.img2img)

    def controlnet_class(self) -> type[Any]:
        """The diffusers model class a ControlNet of this family loads as."""
        return _diffusers_class(self.controlnet_model)


FAMILIES: dict[Family, FamilySpec] = {
    "sd15": FamilySpec(
        name="sd15",
        img2img="SD15Img2Img",
        controlnet_img2img="SD15ControlNetImg2Img",
        text_to_image="StableDiffusionPipeline",
        controlnet_text_to_image="StableDiffusionControlNetPipeline",
        controlnet_model="ControlNetModel",
        denoiser="unet",
        latent_channels=4,
        downsamplings=3,
        sample_size=64,
        latent_packing=1,
        size_multiple=64,
        working_size=512,
        uses_cfg=True,
        prompt_encoding="clip",
        safety_checker=True,
        single_file=True,
        memory_mib=(8192, 16384),
        test_builder="_sd15",
        img2img_size=False,
        controlnet_modes=False,
        vae_upcast=False,
        title="SD 1.5",
        clip_tokenizers=("tokenizer",),
        ip_adapter_with_controlnets=True,
    ),
    "sdxl": FamilySpec(
        name="sdxl",
        img2img="SDXLImg2Img",
        controlnet_img2img="SDXLControlNetImg2Img",
        text_to_image="StableDiffusionXLPipeline",
        controlnet_text_to_image="StableDiffusionXLControlNetPipeline",
        controlnet_model="ControlNetModel",
        denoiser="unet",
        latent_channels=4,
        downsamplings=2,
        sample_size=128,
        latent_packing=1,
        size_multiple=64,
        working_size=1024,
        uses_cfg=True,
        prompt_encoding="dual_clip",
        safety_checker=False,
        single_file=True,
        memory_mib=(12288, 24576),
        test_builder="_sdxl",
        img2img_size=False,
        controlnet_modes=False,
        vae_upcast=True,
        title="SDXL",
        clip_tokenizers=("tokenizer", "tokenizer_2"),
        ip_adapter_with_controlnets=True,
    ),
    "flux": FamilySpec(
        name="flux",
        img2img="FluxImg2Img",
        controlnet_img2img="FluxControlNetImg2Img",
        text_to_image="FluxPipeline",
        controlnet_text_to_image="FluxControlNetPipeline",
        controlnet_model="FluxControlNetModel",
        denoiser="transformer",
        latent_channels=16,
        downsamplings=0,
        sample_size=None,
        latent_packing=2,
        size_multiple=16,
        working_size=1024,
        uses_cfg=False,
        prompt_encoding="flux",
        safety_checker=False,
        single_file=False,
        memory_mib=(24576, 49152),
        test_builder="_flux",
        img2img_size=True,
        controlnet_modes=True,
        vae_upcast=False,
        title="Flux",
        clip_tokenizers=("tokenizer",),  # its tokenizer_2 is T5's
        ip_adapter_with_controlnets=False,
    ),
}
"""Every family stylecomp runs, by the name jobs give in ``model.family``. Adding one is adding an entry here."""


def family_spec(family: str) -> FamilySpec:
    """The spec of ``family``; an unknown name is refused (ModelError) with the known ones."""
    try:
        return FAMILIES[family]  # type: ignore[index]  # an unchecked str is what this lookup validates
    except KeyError:
        raise ModelError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}") from None


def _stylize_class(name: str) -> type[Any]:
    # By name, as diffusers' classes: stylecomp.diffusion imports this table, so the table does not import it.
    pipelines = importlib.import_module("stylecomp.diffusion.pipelines")
    return getattr(pipelines, name)


def family_titles(conjunction: str = "and") -> str:
    """Every family's title for a message, in table order: ``SD 1.5, SDXL and Flux``."""
    titles = [spec.title for spec in FAMILIES.values()]
    return f"{', '.join(titles[:-1])} {conjunction} {titles[-1]}" if len(titles) > 1 else titles[0]


def _diffusers_class(name: str) -> type[Any]:
    import diffusers  # here, not at module level: the job spec and farm planners import this module without torch

    return getattr(diffusers, name)
