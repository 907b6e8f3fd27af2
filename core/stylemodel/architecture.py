"""The built-in style model's architecture: SD 1.5's layout and classes, working on pixels.

A diffusers folder like any user's SD 1.5 model (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``, plus ``controlnet/``), so it loads through
``model.path`` and runs through ``StableDiffusion(ControlNet)Img2ImgPipeline`` unchanged:

- VAE: ``pixel_vae`` (f=1, built by construction, not trained): latents are the image in
  [-1, 1] as (R, G, B, luma). A VAE trained on two CPU cores loses more than the whole style
  budget (see the guide), so every training step goes to the UNet and the ControlNet instead.
- UNet: 4 levels (32, 64, 128, 128 channels), attention (self + text) at the two coarsest,
  predicting the clean sample (``prediction_type="sample"``): stylization is a near-deterministic
  mapping, and an x0 target keeps flat areas flat where an epsilon target adds grain.
- Text encoder: a small frozen CLIP over stylecomp's byte-level vocabulary; the UNet learns to
  read the look's name from it.
- ControlNet: a copy of the UNet's encoder fed by ``conditioning.line_art`` (white on black),
  with a conditioning embedding that keeps full resolution (f=1).
- Scheduler: DDIM on SD 1.5's beta schedule.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
from transformers import CLIPTextModel

from ..testmodels import SD_BETAS, clip_text_config, clip_tokenizer, pixel_vae, write_clip_vocab_files

TEXT_WIDTH = 32
SAVED_DTYPE = torch.float16  # UNet and ControlNet: halves the files (about 19 MB in all); loading upcasts


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
    """A ControlNet copied from the trained UNet's encoder (zero convolutions at zero, as training starts)."""
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16,))


def build_text_encoder() -> CLIPTextModel:
    """The frozen text encoder, initialised from the current torch seed."""
    return CLIPTextModel(clip_text_config(clip_tokenizer(), hidden=TEXT_WIDTH)).eval().requires_grad_(False)


def build_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SD_BETAS, prediction_type="sample", clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1)


def save_model(out: Path, unet: UNet2DConditionModel, controlnet: ControlNetModel | None,
               text_encoder: CLIPTextModel) -> None:
    """Write the diffusers folder: UNet and ControlNet as ``SAVED_DTYPE`` safetensors, the small VAE (whose
    constructed weights need float32 to round-trip to 1e-5) and text encoder as float32."""
    unet = build_unet_like(unet, SAVED_DTYPE)
    pipe = StableDiffusionImg2ImgPipeline(
        vae=pixel_vae(), text_encoder=text_encoder, tokenizer=clip_tokenizer(), unet=unet,
        scheduler=build_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    write_clip_vocab_files(out / "tokenizer")
    if controlnet is not None:
        copy = ControlNetModel.from_config(controlnet.config)
        copy.load_state_dict(controlnet.state_dict())
        copy.to(dtype=SAVED_DTYPE).save_pretrained(out / "controlnet", safe_serialization=True)


def build_unet_like(unet: UNet2DConditionModel, dtype: torch.dtype) -> UNet2DConditionModel:
    """A copy of ``unet`` in ``dtype`` (the trained one stays as it is)."""
    copy = UNet2DConditionModel.from_config(unet.config)
    copy.load_state_dict(unet.state_dict())
    return copy.to(dtype=dtype)
