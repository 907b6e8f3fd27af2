"""Tiny random-weight diffusion models, built from the real diffusers/transformers classes.

No weights can be downloaded here, so tests (and anyone trying stylecomp without a GPU) use
these instead: each family's folder is laid out like its published model (``model_index.json``
plus component subfolders, ``.safetensors`` weights, tokenizers whose vocabularies stylecomp
writes itself), so they load through exactly the code path that real models take. The layouts
mirror the real ones where it matters to the pipelines: an 8x VAE, SDXL's two text encoders and
``text_time`` embedding, Flux's 16-channel VAE with packed 2x2 latents and its CLIP + T5 pair.
The same seed always gives byte-identical weight files.

A random VAE decodes structured noise whatever it is given, so nothing measured on its images
(temporal consistency above all) can follow the plate. ``vae="passthrough"`` swaps in a VAE of
the same class whose weights are set by construction, not trained: its latents are the image
box-filtered to 1/8 and its decoder scales them back up smoothly (``_passthrough_vae``), so
the random UNet's change is painted onto a recognisable plate.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

from .families import FAMILIES, Family
from .loading import CONFIG_DIR, detect_family, offline

offline()

from diffusers import (  # noqa: E402  (after the offline switch)
    AutoencoderKL,
    ControlNetModel,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxControlNetModel,
    FluxImg2ImgPipeline,
    FluxTransformer2DModel,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
    UNet2DConditionModel,
)
from diffusers.models.downsampling import Downsample2D  # noqa: E402
from diffusers.models.upsampling import Upsample2D  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)
from safetensors.torch import save_file  # noqa: E402

# SD1.x/SDXL noise schedule (the published scheduler configs).
SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
# A few BPE merges, so that common words become single tokens as with the real CLIP vocabulary.
_CLIP_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("in", "g</w>"), ("e", "r</w>")]
_T5_WORDS = ["the", "and", "a", "of", "in", "with", "style"]


def make_test_model(out_dir: str | os.PathLike[str], family: Family, controlnet: bool = False, seed: int = 0,
                    vae: Literal["random", "passthrough", "pixel"] = "random") -> Path:
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
        write_clip_vocab_files(out / "tokenizer")
        if family == "sdxl":
            write_clip_vocab_files(out / "tokenizer_2")
        if controlnet:
            net = (_flux_controlnet(pipe.transformer) if family == "flux"
                   else _unet_controlnet(pipe.unet, 2 ** (len(pipe.vae.config.block_out_channels) - 1)))
            net.save_pretrained(out / "controlnet", safe_serialization=True)
    return out


def make_full_size_model(
    out_dir: str | os.PathLike[str], family: Literal["sd15", "sdxl"], controlnet: bool = False, seed: int = 0,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a full-size random-weight SD1.5 or SDXL (from the shipped architecture configs) for GPU tests and
    benchmarks: true shapes and timings, noise for images. The ControlNet is copied from the UNet, as training starts."""
    if family not in ("sd15", "sdxl"):
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
            pipe = StableDiffusionImg2ImgPipeline(**parts, scheduler=scheduler, safety_checker=None,
                                                  feature_extractor=None, requires_safety_checker=False)
        else:
            scheduler = EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(configs / "scheduler"))
            encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(configs / "text_encoder_2"))
            pipe = StableDiffusionXLImg2ImgPipeline(**parts, text_encoder_2=encoder_2,
                                                    tokenizer_2=clip_tokenizer(pad_token="!"), scheduler=scheduler)
        pipe.to(dtype=dtype)
        pipe.save_pretrained(out, safe_serialization=True)
        for name in ("tokenizer", "tokenizer_2")[: 2 if family == "sdxl" else 1]:
            write_clip_vocab_files(out / name)
        if controlnet:
            ControlNetModel.from_unet(unet).to(dtype=dtype).save_pretrained(out / "controlnet", safe_serialization=True)
    return out


def make_test_checkpoint(out_file: str | os.PathLike[str], family: Literal["sd15", "sdxl"], seed: int = 0) -> Path:
    """Write the tiny model of ``family`` as one original-layout (LDM) .safetensors, like community checkpoints."""
    if family not in ("sd15", "sdxl"):
        raise ValueError(f"single-file test checkpoints are SD1.5 or SDXL, not {family!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _build(family)
    state = _unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config.layers_per_block, pipe.unet.config.up_block_types)
    state |= _vae_to_ldm(pipe.vae.state_dict(), len(pipe.vae.config.up_block_types))
    if family == "sd15":
        state |= _prefixed(pipe.text_encoder.state_dict(), "cond_stage_model.transformer.text_model.")
    else:
        state |= _prefixed(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer.text_model.")
        state |= _open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model.")
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sorted(state.items())}, str(out), metadata={"format": "pt"})
    return out


def make_test_lora(
    out_file: str | os.PathLike[str], model_dir: str | os.PathLike[str], seed: int = 0, rank: int = 4
) -> Path:
    """Write a tiny random LoRA .safetensors for the test model in ``model_dir``, in the trainers' own key format.

    SD1.5 and SDXL LoRAs use kohya-ss sd-scripts' layout (``lora_unet_*``/``lora_te*_*`` with ``lora_down``,
    ``lora_up`` and ``alpha``), the one most community LoRAs ship in: SD1.5 with the diffusers UNet's module
    names, SDXL with the original (LDM) ``input_blocks``/``output_blocks`` names, and the text encoders too.
    Flux LoRAs use the diffusers/PEFT layout (``transformer.<module>.lora_A/lora_B.weight``) that ai-toolkit
    writes. The up (B) matrices are random, not zero as at the start of training, so the LoRA changes the output.
    """
    model_dir = Path(model_dir)
    family = detect_family(model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "flux":
            transformer = FluxTransformer2DModel.from_pretrained(model_dir / "transformer", local_files_only=True)
            state = _peft_lora(transformer, "transformer.", _FLUX_LORA_TARGETS, rank)
        else:
            unet = UNet2DConditionModel.from_pretrained(model_dir / "unet", local_files_only=True)
            rename = _kohya_sd15_name if family == "sd15" else _kohya_ldm_namer(unet)
            state = _kohya_lora(unet, "lora_unet_", _UNET_LORA_TARGETS, rank, rename)
            encoders = ["text_encoder"] if family == "sd15" else ["text_encoder", "text_encoder_2"]
            prefixes = ["lora_te_"] if family == "sd15" else ["lora_te1_", "lora_te2_"]
            for folder, prefix in zip(encoders, prefixes):
                encoder_class = CLIPTextModel if folder == "text_encoder" else CLIPTextModelWithProjection
                encoder = encoder_class.from_pretrained(model_dir / folder, local_files_only=True)
                state |= _kohya_lora(encoder, prefix, _CLIP_LORA_TARGETS, rank, _kohya_clip_name)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sorted(state.items())}, str(out), metadata={"format": "pt"})
    return out


def make_test_ip_adapter(out_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a tiny random IP-Adapter for the test model in ``model_dir``; returns its ``ip-adapter.safetensors``.

    Laid out like h94/IP-Adapter's ``models/`` folder: ``ip-adapter.safetensors`` (the original
    ``image_proj.*`` + ``ip_adapter.<n>.to_k_ip/to_v_ip`` tensors, numbered by the position of each
    cross-attention in the UNet's list of attention processors) beside ``image_encoder/`` (a
    CLIPVisionModelWithProjection). For Flux the weights are in XLabs' layout
    (``ip_adapter_proj_model.*`` + ``double_blocks.<n>.processor.ip_adapter_double_stream_{k,v}_proj.*``).
    """
    model_dir, out = Path(model_dir), Path(out_dir)
    family = detect_family(model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
                projection_dim=24,  # unlike any other width here, so a mix-up of dimensions cannot pass unnoticed
            )
        )
        encoder.save_pretrained(out / "image_encoder")
        if family == "flux":
            state = _xlabs_ip_adapter(model_dir, encoder.config.projection_dim)
        else:
            state = _h94_ip_adapter(model_dir, encoder.config.projection_dim)
    file = out / "ip-adapter.safetensors"
    save_file({k: v.contiguous() for k, v in sorted(state.items())}, str(file), metadata={"format": "pt"})
    return file


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
    text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(tokenizer_2, hidden=64, projection_dim=64, act="gelu"))
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
    return globals()[FAMILIES[family].test_builder]()  # type: ignore[no-any-return]  # builders are untyped lookups


# --- components ---------------------------------------------------------------------------------


def _vae(latent_channels: int, scaling_factor: float, **kwargs: object) -> AutoencoderKL:
    """Four blocks like the real VAEs, so images map to latents at 1/8 size; narrow channels keep it tiny."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=latent_channels,
        sample_size=64,
        scaling_factor=scaling_factor,
        **kwargs,
    )


# The passthrough VAE's feature maps: 16 channels in 4 GroupNorm groups, one group per component
# (R, G, B, luma), each holding (x, -x, +CARRIER, -CARRIER).
_PASS_WIDTH, _PASS_GROUPS = 16, 4
_CARRIER = 64.0  # the constant pair that makes a group's GroupNorm statistics (nearly) independent of the image
# Scaled latents = _CONTRAST x the image in [-1, 1]. A random UNet removes little of the noise it is
# given (its prediction correlates ~0.1 with its input), so at strength 0.5 about 1.6 x that noise is left
# in the latents; at 8 the image stays recognisable under it (at 4 it barely does).
_CONTRAST = 8.0
_LUMA = (0.2126, 0.7152, 0.0722)


def pixel_vae(latent_channels: int = 4, contrast: float = 1.0) -> AutoencoderKL:
    """A passthrough VAE at f=1 (one block: no down- or upsampling): the latents are the image itself.

    Scaled latents are ``contrast`` x the image in [-1, 1]. Without a mid-block attention, which at f=1
    would span every pixel; it round-trips to about 1e-5 (see ``_passthrough_vae``). stylecomp's trained
    model works on pixels through it: a VAE trained on a CPU costs more error than the whole style budget.
    """
    like = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",), block_out_channels=(_PASS_WIDTH,), layers_per_block=1,
        norm_num_groups=_PASS_GROUPS, latent_channels=latent_channels, sample_size=64, scaling_factor=1.0,
        mid_block_add_attention=False,
    )
    return _passthrough_vae(like, contrast)


def pixel_latents(images: torch.Tensor) -> torch.Tensor:
    """What ``pixel_vae()``'s scaled latents hold for (B, 3, H, W) images in [-1, 1]: (B, 4, H, W) R, G, B, luma."""
    luma = torch.einsum("bchw,c->bhw", images, torch.tensor(_LUMA, dtype=images.dtype))[:, None]
    return torch.cat([images, luma], dim=1)


def _passthrough_vae(like: AutoencoderKL, contrast: float = _CONTRAST) -> AutoencoderKL:
    """A VAE with ``like``'s latent layout whose weights are set by construction (not trained) to keep the image.

    Every feature map holds, for each component c of (R, G, B, luma), four channels (x_c, -x_c, +C, -C)
    that form one GroupNorm group. All other weights are zero: convolutions act at their centre tap,
    ResNet and attention branches add nothing. The encoder's strided convolutions average 2x2 pixels;
    the decoder's upsampling convolutions apply a [1, 2, 1]/4 tent to x_c after the nearest 2x upsample
    (bilinear 2x) and leave the carriers as they are. The GroupNorm before each ``conv_out`` sees a
    group mean of exactly 0 and a variance of (mean(x_c^2) + C^2)/2, so it scales x_c by a constant to
    within mean(x_c^2)/2C^2 (1e-4), and silu(x) - silu(-x) = x takes it through the SiLU exactly.
    Latent channel k carries component k mod 4: the scaled latents (what the UNet sees) are
    ``contrast`` x the 8x8 box average of the image in [-1, 1], sampled with a std of exp(-15);
    decoding averages each component's channels. decode(encode(x)) is that box average upsampled
    bilinearly three times: detail under 8 pixels is lost, and the zero padding of the upsampling
    convolutions pulls the outermost few pixels towards mid-grey.
    """
    config = like.config
    with torch.random.fork_rng(devices=[]):  # every weight is set below: leave the seed's stream to the other parts
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=config.down_block_types,
            up_block_types=config.up_block_types, block_out_channels=(_PASS_WIDTH,) * len(config.block_out_channels),
            layers_per_block=config.layers_per_block, norm_num_groups=_PASS_GROUPS,
            latent_channels=config.latent_channels, sample_size=config.sample_size,
            scaling_factor=config.scaling_factor, shift_factor=config.shift_factor,
            use_quant_conv=config.use_quant_conv, use_post_quant_conv=config.use_post_quant_conv,
            mid_block_add_attention=config.mid_block_add_attention,
        )
    latents, shift = config.latent_channels, config.shift_factor or 0.0
    gain = contrast / config.scaling_factor  # unscaled latent units per image unit
    component = torch.arange(latents) % 4  # what each latent channel carries
    carriers = torch.zeros(_PASS_WIDTH)
    carriers[2::4], carriers[3::4] = _CARRIER, -_CARRIER

    def signals(components: torch.Tensor) -> torch.Tensor:
        """(16, n) rows x_c and -x_c from a (4, n) map of the inputs to the components."""
        rows = torch.zeros(_PASS_WIDTH, components.shape[1])
        rows[0::4], rows[1::4] = components, -components
        return rows

    def centre(conv: torch.nn.Conv2d, matrix: torch.Tensor, bias: torch.Tensor) -> None:
        middle = conv.weight.shape[-1] // 2
        conv.weight[:, :, middle, middle] = matrix
        conv.bias.copy_(bias)

    tent = torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])) / 16
    with torch.no_grad():
        for param in vae.parameters():
            param.zero_()
        for module in vae.modules():
            if isinstance(module, Downsample2D):
                for i in range(_PASS_WIDTH):
                    module.conv.weight[i, i, :2, :2] = 0.25  # padded right/bottom: reads pixels 2i, 2i+1
            elif isinstance(module, Upsample2D):
                for i in range(_PASS_WIDTH):
                    if i % 4 < 2:
                        module.conv.weight[i, i] = tent
                    else:
                        module.conv.weight[i, i, 1, 1] = 1.0  # the carriers stay exact at the borders
        for norm in (vae.encoder.conv_norm_out, vae.decoder.conv_norm_out):
            norm.weight[0::4] = norm.weight[1::4] = _CARRIER / 2**0.5  # x_c and -x_c come out as they went in
        to_components = torch.cat([torch.eye(3), torch.tensor([_LUMA])])  # (4, 3)
        centre(vae.encoder.conv_in, signals(to_components), carriers)
        means = torch.zeros(2 * latents, _PASS_WIDTH)
        means[torch.arange(latents), 4 * component] = gain  # silu(x) - silu(-x) = x
        means[torch.arange(latents), 4 * component + 1] = -gain
        bias = torch.full((2 * latents,), -30.0)  # log-variance: the clamp's floor
        bias[:latents] = shift
        centre(vae.encoder.conv_out, means, bias)
        average = torch.zeros(4, latents)
        average[component, torch.arange(latents)] = 1.0
        average /= average.sum(dim=1, keepdim=True) * gain
        offsets = carriers.clone()
        offsets[0::4], offsets[1::4] = -shift * average.sum(dim=1), shift * average.sum(dim=1)
        centre(vae.decoder.conv_in, signals(average), offsets)
        to_rgb = torch.zeros(3, _PASS_WIDTH)
        to_rgb[torch.arange(3), 4 * torch.arange(3)] = 1.0
        to_rgb[torch.arange(3), 4 * torch.arange(3) + 1] = -1.0
        centre(vae.decoder.conv_out, to_rgb, torch.zeros(3))
        if vae.quant_conv is not None:
            centre(vae.quant_conv, torch.eye(2 * latents), torch.zeros(2 * latents))
        if vae.post_quant_conv is not None:
            centre(vae.post_quant_conv, torch.eye(latents), torch.zeros(latents))
    return vae


def _unet_controlnet(unet: UNet2DConditionModel, vae_scale: int) -> ControlNetModel:
    """A ControlNet copied from the UNet (as ControlNet training starts) whose zero convolutions are made random."""
    # Each conditioning-embedding stage after the first halves the control image: 4 stages for f=8, 1 for f=1.
    stages = (8, 16, 16, 32)[: vae_scale.bit_length()]
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=stages)
    return _randomize_zeros(net)


def _flux_controlnet(transformer: FluxTransformer2DModel) -> FluxControlNetModel:
    """A Flux ControlNet matching the transformer, with its zero-initialised projections made random."""
    config = transformer.config
    net = FluxControlNetModel.from_transformer(
        transformer,
        num_layers=config.num_layers,
        num_single_layers=config.num_single_layers,
        attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads,
    )
    return _randomize_zeros(net)


def _randomize_zeros(model: torch.nn.Module) -> torch.nn.Module:
    """Zero-initialised tensors get small random values, so the control signal actually changes the output."""
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(0.0, 0.05)
    return model


def clip_text_config(
    tokenizer: CLIPTokenizer, hidden: int, projection_dim: int | None = None, act: str = "quick_gelu"
) -> CLIPTextConfig:
    """A two-layer CLIP text encoder config of width ``hidden`` for ``tokenizer``'s vocabulary."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection_dim or hidden,
        hidden_act=act,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # the pooled output is taken at this token
        pad_token_id=tokenizer.pad_token_id,
    )


def _byte_chars() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in their vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def _clip_vocab() -> dict[str, int]:
    """Byte-level CLIP vocabulary: every byte alone and word-final, the merged pieces, then the specials."""
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(pair) for pair in _CLIP_MERGES] + [_BOS, _EOS]
    return {token: i for i, token in enumerate(tokens)}


def clip_tokenizer(pad_token: str = _EOS) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer whose vocabulary stylecomp writes itself (no download), for any prompt."""
    return CLIPTokenizer(vocab=_clip_vocab(), merges=list(_CLIP_MERGES), pad_token=pad_token, model_max_length=77)


def write_clip_vocab_files(folder: Path) -> None:
    """Also write vocab.json + merges.txt, the files SD repositories ship, beside tokenizer.json."""
    (folder / "vocab.json").write_text(json.dumps(_clip_vocab(), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    merges = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _CLIP_MERGES)
    (folder / "merges.txt").write_text(merges, encoding="utf-8")


def _t5_tokenizer() -> T5Tokenizer:
    """A SentencePiece-free T5 tokenizer: a Unigram model over printable ASCII plus a few whole words."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -1.0) for word in _T5_WORDS]
    pieces += [(chr(c), -3.0) for c in range(ord("!"), ord("~") + 1)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


# --- adapters ------------------------------------------------------------------------------------

# The layers LoRA trainers adapt by default: kohya's attention-block linears (and 1x1 projections) in
# the UNet and the CLIP text encoders' attention and MLP; ai-toolkit's attention and MLP linears in Flux.
_UNET_LORA_TARGETS = re.compile(
    r".*attentions\.\d+\.(proj_in|proj_out|.*\.(to_q|to_k|to_v|to_out\.0|ff\.net\.0\.proj|ff\.net\.2))$"
)
_CLIP_LORA_TARGETS = re.compile(r".*\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))$")
_FLUX_LORA_TARGETS = re.compile(
    r".*transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|ff(_context)?\.net\.(0\.proj|2)|proj_mlp|proj_out)$"
)


def _lora_pair(layer: torch.nn.Module, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random down (A) and up (B) matrices for a Linear or a 1x1 Conv2d, scaled so that B·A is about a quarter of W."""
    if isinstance(layer, torch.nn.Conv2d):
        inputs, outputs, tail = layer.in_channels, layer.out_channels, (1, 1)
    else:
        inputs, outputs, tail = layer.in_features, layer.out_features, ()
    down = torch.randn(rank, inputs, *tail) / inputs**0.5
    up = torch.randn(outputs, rank, *tail) * (0.25 * layer.weight.std().item() * inputs**0.5 / rank**0.5)
    return down, up


def _lora_layers(model: torch.nn.Module, targets: re.Pattern[str]) -> list[tuple[str, torch.nn.Module]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if targets.fullmatch(name) and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
    ]


def _kohya_lora(
    model: torch.nn.Module, prefix: str, targets: re.Pattern[str], rank: int, rename: Callable[[str], str]
) -> dict[str, torch.Tensor]:
    """kohya-ss keys: ``<prefix><module_name_with_underscores>.lora_down/lora_up.weight`` and ``.alpha``."""
    state = {}
    for name, layer in _lora_layers(model, targets):
        key = prefix + rename(name)
        down, up = _lora_pair(layer, rank)
        # alpha/rank scales the product; trainers commonly store alpha = rank / 2.
        state |= {
            f"{key}.lora_down.weight": down,
            f"{key}.lora_up.weight": up * 2,
            f"{key}.alpha": torch.tensor(rank / 2),
        }
    return state


def _peft_lora(model: torch.nn.Module, prefix: str, targets: re.Pattern[str], rank: int) -> dict[str, torch.Tensor]:
    """diffusers/PEFT keys: ``<prefix><module_name>.lora_A/lora_B.weight`` (scale 1: no alphas)."""
    state = {}
    for name, layer in _lora_layers(model, targets):
        down, up = _lora_pair(layer, rank)
        state |= {f"{prefix}{name}.lora_A.weight": down, f"{prefix}{name}.lora_B.weight": up}
    return state


def _kohya_sd15_name(module: str) -> str:
    """kohya trains SD1.x on a UNet with the diffusers module names."""
    return module.replace(".", "_")


def _kohya_clip_name(module: str) -> str:
    """CLIP layers as kohya names them, under ``text_model.`` (which transformers 5's CLIPTextModel no longer has)."""
    return ("text_model." + module.removeprefix("text_model.")).replace(".", "_")


def _kohya_ldm_namer(unet: UNet2DConditionModel) -> Callable[[str], str]:
    """kohya trains SDXL on the original UNet, so its LoRA keys use input_blocks/middle_block/output_blocks names."""
    config = unet.config

    def rename(module: str) -> str:
        (ldm,) = _unet_to_ldm({f"{module}.weight": torch.empty(0)}, config.layers_per_block, config.up_block_types)
        return ldm[len(_LDM_UNET) : -len(".weight")].replace(".", "_")

    return rename


def _h94_ip_adapter(model_dir: Path, image_embed_dim: int) -> dict[str, torch.Tensor]:
    """IP-Adapter (the plain one: 4 image tokens) for the tiny UNet, in the original training code's key layout."""
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet", local_files_only=True)
    context = unet.config.cross_attention_dim
    tokens = 4
    state = {
        "image_proj.proj.weight": torch.randn(tokens * context, image_embed_dim) / image_embed_dim**0.5,
        "image_proj.proj.bias": torch.randn(tokens * context) * 0.1,
        "image_proj.norm.weight": 1.0 + torch.randn(context) * 0.1,
        "image_proj.norm.bias": torch.randn(context) * 0.1,
    }
    # The original saves a ModuleList of every attention processor; only the cross-attentions have weights.
    for number, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            hidden = unet.get_submodule(name.removesuffix(".processor")).to_q.out_features
            for kind in ("k", "v"):
                state[f"ip_adapter.{number}.to_{kind}_ip.weight"] = torch.randn(hidden, context) / context**0.5
    return state


def _xlabs_ip_adapter(model_dir: Path, image_embed_dim: int) -> dict[str, torch.Tensor]:
    """XLabs' Flux IP-Adapter layout: 4 image tokens of the T5 width, k/v projections in each double block."""
    transformer = FluxTransformer2DModel.from_pretrained(model_dir / "transformer", local_files_only=True)
    context, hidden, tokens = transformer.config.joint_attention_dim, transformer.inner_dim, 4
    state = {
        "ip_adapter_proj_model.proj.weight": torch.randn(tokens * context, image_embed_dim) / image_embed_dim**0.5,
        "ip_adapter_proj_model.proj.bias": torch.randn(tokens * context) * 0.1,
        "ip_adapter_proj_model.norm.weight": 1.0 + torch.randn(context) * 0.1,
        "ip_adapter_proj_model.norm.bias": torch.randn(context) * 0.1,
    }
    for block in range(transformer.config.num_layers):
        for kind in ("k", "v"):
            key = f"double_blocks.{block}.processor.ip_adapter_double_stream_{kind}_proj"
            state[f"{key}.weight"] = torch.randn(hidden, context) / context**0.5
            state[f"{key}.bias"] = torch.randn(hidden) * 0.1
    return state


# --- original (LDM) checkpoint layout, the inverse of diffusers' single-file conversion ----------

_LDM_UNET = "model.diffusion_model."
_LDM_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_LDM_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
               "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}  # fmt: skip
_LDM_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}


def _unet_resnet(rest: str) -> str:
    name, tail = rest.split(".", 1)
    return f"{_LDM_RESNET.get(name, name)}.{tail}"


def _unet_to_ldm(state: dict[str, torch.Tensor], layers: int, up_types: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """UNet keys as in the original SD checkpoints (input_blocks / middle_block / output_blocks)."""
    out = {}
    for key, value in state.items():
        if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + block * (layers + 1) + layer
            new = f"input_blocks.{index}." + (f"0.{_unet_resnet(rest)}" if kind == "resnets" else f"1.{rest}")
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * (layers + 1)}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_unet_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = block * (layers + 1) + layer
            new = f"output_blocks.{index}." + (f"0.{_unet_resnet(rest)}" if kind == "resnets" else f"1.{rest}")
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            block = int(m[1])
            slot = 2 if up_types[block].startswith("CrossAttn") else 1  # after the attention, if there is one
            new = f"output_blocks.{block * (layers + 1) + layers}.{slot}.conv.{m[2]}"
        else:
            prefix = next(p for p in _LDM_UNET_TOP if key.startswith(p))
            new = _LDM_UNET_TOP[prefix] + key[len(prefix) :]
        out[_LDM_UNET + new] = value
    return out


def _vae_to_ldm(state: dict[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    """VAE keys as in the original checkpoints (first_stage_model.*; decoder blocks numbered bottom-up)."""
    def up(match: re.Match[str]) -> int:
        return num_blocks - 1 - int(match[1])

    out = {}
    for key, value in state.items():
        new = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{up(m)}.block.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{up(m)}.upsample.", new)
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)$", new):
            new = f"{m[1]}.mid.attn_1.{_LDM_VAE_ATTENTION[m[2]]}.{m[3]}"
            if m[2] != "group_norm" and m[3] == "weight":
                value = value[:, :, None, None]  # 1x1 convolutions in the original layout
        out["first_stage_model." + new] = value
    return out


def _open_clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection keys in OpenCLIP's layout (SDXL's second text encoder): fused q/k/v."""
    out = {}
    for key, value in state.items():
        if m := re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key):
            block, rest = m[1], m[2]
            if m := re.match(r"self_attn\.(q|k|v)_proj\.(weight|bias)", rest):
                if m[1] == "q":
                    qkv = [state[f"text_model.encoder.layers.{block}.self_attn.{p}_proj.{m[2]}"] for p in "qkv"]
                    out[f"{prefix}transformer.resblocks.{block}.attn.in_proj_{m[2]}"] = torch.cat(qkv)
                continue
            rest = (
                rest.replace("self_attn.", "attn.")
                .replace("layer_norm1", "ln_1")
                .replace("layer_norm2", "ln_2")
                .replace("mlp.fc1", "mlp.c_fc")
                .replace("mlp.fc2", "mlp.c_proj")
            )
            out[f"{prefix}transformer.resblocks.{block}.{rest}"] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T  # stored as (hidden, projection)
        else:
            names = {
                "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                "text_model.embeddings.position_embedding.weight": "positional_embedding",
                "text_model.final_layer_norm.weight": "ln_final.weight",
                "text_model.final_layer_norm.bias": "ln_final.bias",
            }
            out[prefix + names[key]] = value
    return out


# --- image-to-video models -----------------------------------------------------------------------
#
# Tiny Wan, LTX-Video and CogVideoX image-to-video folders for ``stylecomp.generators.video``, laid out
# like the published diffusers repositories and with their compression factors, so frame counts and
# pixel multiples follow the real rules: Wan 2.2 I2V-A14B (no CLIP image encoder; a high-noise and a
# low-noise transformer switched at ``boundary_ratio``; 8x spatial, 4x temporal VAE: 4k+1 frames),
# LTX-Video 0.9.5+ (32x spatial, 8x temporal, timestep-conditioned VAE; a scheduler without dynamic
# shifting, which ``LTXConditionPipeline`` needs: 8k+1 frames) and CogVideoX 1.5 I2V (RoPE only, so any
# size; latent frames in pairs; 8x/4x VAE).

from diffusers import (  # noqa: E402
    AutoencoderKLCogVideoX,
    AutoencoderKLLTXVideo,
    AutoencoderKLWan,
    CogVideoXDDIMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXTransformer3DModel,
    LTXConditionPipeline,
    LTXVideoTransformer3DModel,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanTransformer3DModel,
)
from diffusers.models.autoencoders.autoencoder_kl_wan import WanResample  # noqa: E402
from transformers import UMT5Config, UMT5EncoderModel  # noqa: E402

from ..generators.video import VideoFamily  # noqa: E402


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
