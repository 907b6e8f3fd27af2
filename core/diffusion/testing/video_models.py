"""Tiny Wan, LTX-Video and CogVideoX image-to-video folders for ``stylecomp.generators.video``.

Laid out like the published diffusers repositories and with their compression factors, so frame counts and
pixel multiples follow the real rules: Wan 2.2 I2V-A14B (no CLIP image encoder; a high-noise and a
low-noise transformer switched at ``boundary_ratio``; 8x spatial, 4x temporal VAE: 4k+1 frames),
LTX-Video 0.9.5+ (32x spatial, 8x temporal, timestep-conditioned VAE; a scheduler without dynamic
shifting, which ``LTXConditionPipeline`` needs: 8k+1 frames) and CogVideoX 1.5 I2V (RoPE only, so any
size; latent frames in pairs; 8x/4x VAE).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    AutoencoderKLLTXVideo,
    AutoencoderKLWan,
    CogVideoXDDIMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXTransformer3DModel,
    FlowMatchEulerDiscreteScheduler,
    LTXConditionPipeline,
    LTXVideoTransformer3DModel,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanTransformer3DModel,
)
from diffusers.models.autoencoders.autoencoder_kl_wan import WanResample
from transformers import T5Config, T5EncoderModel, T5Tokenizer, UMT5Config, UMT5EncoderModel

from ...families import VideoFamily
from .image_models import SD_BETAS
from .tokenizers import _t5_tokenizer


def make_test_video_model(out_dir: str | os.PathLike[str], family: VideoFamily, seed: int = 0) -> Path:
    """Write a tiny random-weight image-to-video diffusers folder of ``family`` for tests and dry runs."""
    if family not in _VIDEO_BUILDERS:
        raise ValueError(f"unknown video model family {family!r}; use one of {', '.join(_VIDEO_BUILDERS)}")
    out = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _VIDEO_BUILDERS[family]().save_pretrained(out, safe_serialization=True)
    return out


def _wan_i2v() -> WanImageToVideoPipeline:
    tokenizer = _t5_tokenizer()

    def transformer() -> WanTransformer3DModel:
        return WanTransformer3DModel(
            patch_size=(1, 2, 2),  # with the 8x VAE: sides are multiples of 16
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16 + 4 + 16,  # noisy latents + first/last-frame mask (one per VAE frame) + condition latents
            out_channels=16,
            text_dim=32,  # = UMT5 d_model
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        )

    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=UMT5EncoderModel(_t5_config(UMT5Config, tokenizer)),
        vae=_wan_vae(),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
        transformer=transformer(),
        transformer_2=transformer(),
        boundary_ratio=0.9,  # timesteps above 900 go to the high-noise transformer, the rest to transformer_2
    )


def _wan_vae() -> AutoencoderKLWan:
    """Wan's causal VAE (8x spatial, 4x temporal), whose temporal downsamplings keep their newest frame.

    With random weights alone, the strided time convolutions all but lose the last frame of each chunk of
    four, and with it the last-frame condition of a clip; an identity on the newest-frame tap passes it on.
    """
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    with torch.no_grad():
        for module in vae.modules():
            if isinstance(module, WanResample) and module.mode == "downsample3d":
                weight = module.time_conv.weight  # (out, in, time, 1, 1)
                weight[:, :, -1, 0, 0] += torch.eye(weight.shape[0])
    return vae


def _ltx_i2v() -> LTXConditionPipeline:
    tokenizer = _t5_tokenizer()
    scaling = (True, True, True, False)  # three 2x space-time steps after a 4x4 patchify: 32x spatial, 8x temporal
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=scaling,
        decoder_spatio_temporal_scaling=scaling,
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=True,  # as LTX-Video 0.9.1 and later
        patch_size=4,
        patch_size_t=1,
    )
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,  # = T5 d_model
    )
    return LTXConditionPipeline(
        tokenizer=tokenizer,
        text_encoder=T5EncoderModel(_t5_config(T5Config, tokenizer)),
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def _cogvideox_i2v() -> CogVideoXImageToVideoPipeline:
    tokenizer = _t5_tokenizer()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,  # RoPE needs a multiple of 16
        in_channels=2 * 16,  # noisy latents + the first frame's latents
        out_channels=16,
        time_embed_dim=8,
        ofs_embed_dim=8,
        text_embed_dim=32,  # = T5 d_model
        num_layers=1,
        sample_width=8,  # latent size the RoPE grid is scaled to (64x48 pixels)
        sample_height=6,
        sample_frames=49,
        patch_size=2,
        patch_size_t=2,
        patch_bias=False,
        temporal_compression_ratio=4,
        max_text_seq_length=226,  # the pipeline's prompt length
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False,
    )
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    scheduler = CogVideoXDDIMScheduler(
        **SD_BETAS,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        clip_sample=False,
    )
    return CogVideoXImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=T5EncoderModel(_t5_config(T5Config, tokenizer)),
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )


def _t5_config(config_class: type[T5Config] | type[UMT5Config], tokenizer: T5Tokenizer) -> T5Config | UMT5Config:
    """A tiny T5 v1.1 (or UMT5, Wan's) encoder config for ``tokenizer``."""
    return config_class(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


_VIDEO_BUILDERS = {"wan": _wan_i2v, "ltx": _ltx_i2v, "cogvideox": _cogvideox_i2v}
