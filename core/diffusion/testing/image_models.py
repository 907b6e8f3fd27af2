"""Tiny random-weight SD 1.5, SDXL and Flux img2img folders (and full-size SD ones for GPU tests)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxImg2ImgPipeline,
    FluxTransformer2DModel,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from ...families import FAMILIES, Family
from ..geometry import CONFIG_DIR
from .components import _CONTRAST, _flux_controlnet, _passthrough_vae, _unet_controlnet, _vae, pixel_vae
from .tokenizers import _t5_tokenizer, clip_text_config, clip_tokenizer, write_clip_vocab_files

# SD1.x/SDXL noise schedule (the published scheduler configs).
SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}


def make_test_model(
    out_dir: str | os.PathLike[str],
    family: Family,
    controlnet: bool = False,
    seed: int = 0,
    vae: Literal["random", "passthrough", "pixel"] = "random",
) -> Path:
    """Write a tiny random-weight diffusers folder of ``family`` (plus ``controlnet/``) for tests and dry runs.

    ``vae="passthrough"``: the VAE keeps the image at 1/8 (see ``_passthrough_vae``); ``vae="pixel"``: it keeps
    it at f=1 (``pixel_vae``, SD 1.5 only), as stylecomp's trained model does. Every other weight is the same as
    with the random one."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    if vae not in ("random", "passthrough", "pixel") or (vae == "pixel" and family != "sd15"):
        raise ValueError(f"unknown test VAE {vae!r} for {family}; use random or passthrough (pixel: sd15 only)")
    out = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _build(family)
        if vae == "passthrough":
            pipe.vae = _passthrough_vae(pipe.vae)
        elif vae == "pixel":
            pipe.vae = pixel_vae(pipe.vae.config.latent_channels, contrast=_CONTRAST)
        pipe.save_pretrained(out, safe_serialization=True)
        spec = FAMILIES[family]
        for name in spec.clip_tokenizers:
            write_clip_vocab_files(out / name)
        if controlnet:
            net = (
                _flux_controlnet(pipe.transformer)
                if spec.denoiser == "transformer"
                else _unet_controlnet(pipe.unet, 2 ** (len(pipe.vae.config.block_out_channels) - 1))
            )
            net.save_pretrained(out / "controlnet", safe_serialization=True)
    return out


def make_full_size_model(
    out_dir: str | os.PathLike[str],
    family: Literal["sd15", "sdxl"],
    controlnet: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a full-size random-weight SD1.5 or SDXL (from the shipped architecture configs) for GPU tests and
    benchmarks: true shapes and timings, noise for images. The ControlNet is copied from the UNet, as training
    starts."""
    if family not in FAMILIES or not FAMILIES[family].single_file:  # from the configs single-file checkpoints use
        raise ValueError(f"full-size test models are SD1.5 or SDXL, not {family!r}")
    configs, out = CONFIG_DIR / family, Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet"))
        parts = {
            "unet": unet,
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")),
            "tokenizer": clip_tokenizer(),
        }
        if family == "sd15":
            scheduler = PNDMScheduler.from_config(PNDMScheduler.load_config(configs / "scheduler"))
            pipe = StableDiffusionImg2ImgPipeline(
                **parts, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
        else:
            scheduler = EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(configs / "scheduler"))
            encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(configs / "text_encoder_2"))
            pipe = StableDiffusionXLImg2ImgPipeline(
                **parts, text_encoder_2=encoder_2, tokenizer_2=clip_tokenizer(pad_token="!"), scheduler=scheduler
            )
        pipe.to(dtype=dtype)
        pipe.save_pretrained(out, safe_serialization=True)
        for name in FAMILIES[family].clip_tokenizers:
            write_clip_vocab_files(out / name)
        if controlnet:
            ControlNetModel.from_unet(unet).to(dtype=dtype).save_pretrained(out / "controlnet", safe_serialization=True)
    return out


# --- the three families -------------------------------------------------------------------------


def _sd15() -> StableDiffusionImg2ImgPipeline:
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(clip_text_config(tokenizer, hidden=32))
    unet = UNet2DConditionModel(
        sample_size=32,  # latents 32x32 <-> images 256x256
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),  # SD1.5's order: attention first
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,  # = text_encoder hidden size
        attention_head_dim=2,
    )
    scheduler = PNDMScheduler(**SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionImg2ImgPipeline(
        vae=_vae(latent_channels=4, scaling_factor=0.18215),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _sdxl() -> StableDiffusionXLImg2ImgPipeline:
    tokenizer, tokenizer_2 = clip_tokenizer(), clip_tokenizer(pad_token="!")
    # Different widths for the two encoders, as in SDXL (768 / 1280): single-file loading tells them apart by it.
    text_encoder = CLIPTextModel(clip_text_config(tokenizer, hidden=32))
    text_encoder_2 = CLIPTextModelWithProjection(
        clip_text_config(tokenizer_2, hidden=64, projection_dim=64, act="gelu")
    )
    time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),  # SDXL's order: no attention at full resolution
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=32 + 64,  # both encoders' hidden states, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        # 6 size/crop numbers (original size, crop top-left, target size) + the pooled text embedding
        projection_class_embeddings_input_dim=6 * time_embed_dim + 64,
    )
    scheduler = EulerDiscreteScheduler(
        **SD_BETAS, timestep_spacing="leading", steps_offset=1, interpolation_type="linear", use_karras_sigmas=False
    )
    return StableDiffusionXLImg2ImgPipeline(
        vae=_vae(latent_channels=4, scaling_factor=0.13025),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        requires_aesthetics_score=False,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def _flux() -> FluxImg2ImgPipeline:
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(clip_text_config(tokenizer, hidden=32))
    tokenizer_2 = _t5_tokenizer()
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-gelu",  # T5 v1.1, as in Flux
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            decoder_start_token_id=tokenizer_2.pad_token_id,
        )
    )
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16 * 4,  # 16 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # = T5 d_model
        pooled_projection_dim=32,  # = CLIP hidden size (pooled output)
        guidance_embeds=True,  # FLUX.1-dev style guidance distillation
        axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,  # the shift grows with the number of image tokens
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    vae = _vae(
        latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False
    )
    return FluxImg2ImgPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def _build(family: Family) -> DiffusionPipeline:
    """The tiny random-weight pipeline of ``family``, from the builder its spec names."""
    return globals()[FAMILIES[family].test_builder]()
