"""Tiny random-weight diffusion models, built from the real diffusers/transformers classes.

No weights can be downloaded here, so tests (and anyone trying stylecomp without a GPU) use
these instead: each family's folder is laid out like its published model (``model_index.json``
plus component subfolders, ``.safetensors`` weights, tokenizers whose vocabularies stylecomp
writes itself), so they load through exactly the code path that real models take. The layouts
mirror the real ones where it matters to the pipelines: an 8x VAE, SDXL's two text encoders and
``text_time`` embedding, Flux's 16-channel VAE with packed 2x2 latents and its CLIP + T5 pair.
The same seed always gives byte-identical weight files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

import torch

from .models import Family, offline

offline()

from diffusers import (  # noqa: E402  (after the offline switch)
    AutoencoderKL,
    ControlNetModel,
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
from transformers import (  # noqa: E402
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)
from safetensors.torch import save_file  # noqa: E402

# SD1.x/SDXL noise schedule (the published scheduler configs).
_SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
# A few BPE merges, so that common words become single tokens as with the real CLIP vocabulary.
_CLIP_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("in", "g</w>"), ("e", "r</w>")]
_T5_WORDS = ["the", "and", "a", "of", "in", "with", "style"]


def make_test_model(out_dir: str | os.PathLike[str], family: Family, controlnet: bool = False, seed: int = 0) -> Path:
    """Write a tiny random-weight diffusers folder of ``family`` (plus ``controlnet/``) for tests and dry runs."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown model family {family!r}; use one of {', '.join(_BUILDERS)}")
    out = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _BUILDERS[family]()
        pipe.save_pretrained(out, safe_serialization=True)
        _write_clip_vocab_files(out / "tokenizer")
        if family == "sdxl":
            _write_clip_vocab_files(out / "tokenizer_2")
        if controlnet:
            net = _flux_controlnet(pipe.transformer) if family == "flux" else _unet_controlnet(pipe.unet)
            net.save_pretrained(out / "controlnet", safe_serialization=True)
    return out


def make_test_checkpoint(out_file: str | os.PathLike[str], family: Literal["sd15", "sdxl"], seed: int = 0) -> Path:
    """Write the tiny model of ``family`` as one original-layout (LDM) .safetensors, like community checkpoints."""
    if family not in ("sd15", "sdxl"):
        raise ValueError(f"single-file test checkpoints are SD1.5 or SDXL, not {family!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _BUILDERS[family]()
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


# --- the three families -------------------------------------------------------------------------


def _sd15() -> StableDiffusionImg2ImgPipeline:
    tokenizer = _clip_tokenizer()
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden=32))
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
    scheduler = PNDMScheduler(**_SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
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
    tokenizer, tokenizer_2 = _clip_tokenizer(), _clip_tokenizer(pad_token="!")
    # Different widths for the two encoders, as in SDXL (768 / 1280): single-file loading tells them apart by it.
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden=32))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer_2, hidden=64, projection_dim=64, act="gelu"))
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
        **_SD_BETAS, timestep_spacing="leading", steps_offset=1, interpolation_type="linear", use_karras_sigmas=False
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
    tokenizer = _clip_tokenizer()
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden=32))
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


_BUILDERS = {"sd15": _sd15, "sdxl": _sdxl, "flux": _flux}


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


def _unet_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet copied from the UNet (as ControlNet training starts) whose zero convolutions are made random."""
    # Four conditioning-embedding stages downsample the control image 8x, to the latent size.
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
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


def _clip_config(
    tokenizer: CLIPTokenizer, hidden: int, projection_dim: int | None = None, act: str = "quick_gelu"
) -> CLIPTextConfig:
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


def _clip_tokenizer(pad_token: str = _EOS) -> CLIPTokenizer:
    return CLIPTokenizer(vocab=_clip_vocab(), merges=list(_CLIP_MERGES), pad_token=pad_token, model_max_length=77)


def _write_clip_vocab_files(folder: Path) -> None:
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
