"""Tiny models as original-layout (LDM) single-file checkpoints: the inverse of diffusers' conversion."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import save_file

from ...families import FAMILIES
from .image_models import _build


def make_test_checkpoint(out_file: str | os.PathLike[str], family: Literal["sd15", "sdxl"], seed: int = 0) -> Path:
    """Write the tiny model of ``family`` as one original-layout (LDM) .safetensors, like community checkpoints."""
    if family not in FAMILIES or not FAMILIES[family].single_file:
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
