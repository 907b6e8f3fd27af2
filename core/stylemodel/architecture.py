"""The built-in style model's architecture: SD 1.5's layout and classes, working on pixels.

A diffusers folder like any user's SD 1.5 model (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``, plus ``controlnet/``), so it loads through
``model.path`` and runs through ``StableDiffusion(ControlNet)Img2ImgPipeline`` unchanged:

- VAE: ``pixel_vae`` (f=1, built by construction, not trained): latents are the image in
  [-1, 1] as (R, G, B, luma). A VAE trained on two CPU cores loses more than the whole style
  budget (see the guide), so every training step goes to the UNet and the ControlNet instead.
- UNet: 4 levels (32, 64, 128, 128 channels), attention (self + text) at the two coarsest,
  predicting the clean sample (``prediction_type="sample"``). With the tile ControlNet handing it
  the clean plate, the look is a near-deterministic function of that plate, which a sample
  prediction can give whatever the noise. (Measured here, 2 CPU cores: predicting v, whose
  clean-sample estimate ``sqrt(a) x_t - sqrt(1 - a) v`` must cancel the noise exactly, still left
  visible grain after 750 steps; predicting the sample without the tile ControlNet left an L1
  error of 0.10 on clean input after 2400 steps, as img2img noise hides the plate's detail.)
- Text encoder: a small frozen CLIP over stylecomp's byte-level vocabulary; the UNet learns to
  read the look's name from it.
- Two ControlNets, each a copy of the UNet's encoder with a conditioning embedding that keeps
  full resolution (f=1): ``controlnet_tile/``, fed by the display-referred plate itself (a tile
  ControlNet: img2img noise hides the plate's detail from the UNet, this gives it back), trained
  with the UNet; and ``controlnet/``, fed by ``conditioning.line_art`` (white on black), trained
  after them to draw the outlines.
- Scheduler: DDIM on SD 1.5's beta schedule.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
from transformers import CLIPTextModel

from ..diffusion.testing import SD_BETAS, clip_text_config, clip_tokenizer, pixel_vae, write_clip_vocab_files

TEXT_WIDTH = 32
WORKING_SIZE = 256  # the long side it was trained at; saved as the UNet's sample_size, which sets stylecomp's default
SAVED_DTYPE = torch.float16  # UNet and ControlNet: halves the files (about 23 MB in all); loading upcasts


def build_unet() -> UNet2DConditionModel:
    """A fresh UNet (6.4M parameters), initialised from the current torch seed."""
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 128, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def build_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet copied from the UNet's encoder (zero convolutions at zero, as training starts)."""
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16,))


def build_text_encoder() -> CLIPTextModel:
    """The frozen text encoder, initialised from the current torch seed."""
    return CLIPTextModel(clip_text_config(clip_tokenizer(), hidden=TEXT_WIDTH)).eval().requires_grad_(False)


def build_scheduler() -> DDIMScheduler:
    """DDIM predicting the clean sample, whose last step (t = 1) lands on alpha 1: it returns the prediction.
    SD's ``set_alpha_to_one=False`` lands it on alpha 0.99915, barely past t = 1's 0.99830, so the frame stays
    71% what the step before left, noise included: grain on every pixel at f=1. Ending on the prediction lowered
    both looks' L1 error by 5-14% (2 held-out scenes). Training uses only ``alphas_cumprod``."""
    return DDIMScheduler(**SD_BETAS, prediction_type="sample", clip_sample=False, set_alpha_to_one=True, steps_offset=1)


def save_model(
    out: Path, unet: UNet2DConditionModel, tile: ControlNetModel, lineart: ControlNetModel, text_encoder: CLIPTextModel
) -> None:
    """Write the diffusers folder: UNet and ControlNets as ``SAVED_DTYPE`` safetensors, the small VAE (whose
    constructed weights need float32 to round-trip to 1e-5) and text encoder as float32."""
    unet = build_unet_like(unet, SAVED_DTYPE)
    pipe = StableDiffusionImg2ImgPipeline(
        vae=pixel_vae(),
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    write_clip_vocab_files(out / "tokenizer")
    for folder, controlnet in (("controlnet_tile", tile), ("controlnet", lineart)):
        copy = ControlNetModel.from_config(controlnet.config)
        copy.load_state_dict(controlnet.state_dict())
        copy.to(dtype=SAVED_DTYPE).save_pretrained(out / folder, safe_serialization=True)


def build_unet_like(unet: UNet2DConditionModel, dtype: torch.dtype) -> UNet2DConditionModel:
    """A copy of ``unet`` in ``dtype`` whose config says it works at ``WORKING_SIZE`` (the trained one stays as it is).

    A fully convolutional UNet runs at any size; ``sample_size`` is only the size pipelines default to."""
    copy = UNet2DConditionModel.from_config({**unet.config, "sample_size": WORKING_SIZE})
    copy.load_state_dict(unet.state_dict())
    return copy.to(dtype=dtype)


def save_random_model(out: Path, seed: int = 1) -> Path:
    """The same architecture with random weights (the ControlNets' zero convolutions made random too): what
    quality tests and benchmarks compare the trained weights with."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder, unet = build_text_encoder(), build_unet()
        controlnets = build_controlnet(unet), build_controlnet(unet)
        with torch.no_grad():
            for param in (p for net in controlnets for p in net.parameters()):
                if not param.any():
                    param.normal_(0.0, 0.05)
    save_model(out, unet, *controlnets, text_encoder)
    return out
