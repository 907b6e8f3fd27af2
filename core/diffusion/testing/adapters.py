"""Tiny LoRAs (kohya and PEFT layouts) and IP-Adapters (h94 and XLabs layouts) for the tiny models."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import FluxTransformer2DModel, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

from ..model_files import detect_family
from .checkpoints import _LDM_UNET, _unet_to_ldm


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
            for folder, prefix in zip(encoders, prefixes, strict=True):
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


def _lora_pair(layer: torch.nn.Linear | torch.nn.Conv2d, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random down (A) and up (B) matrices for a Linear or a 1x1 Conv2d, scaled so that B·A is about a quarter of W."""
    tail: tuple[int, ...]
    if isinstance(layer, torch.nn.Conv2d):
        inputs, outputs, tail = layer.in_channels, layer.out_channels, (1, 1)
    else:
        inputs, outputs, tail = layer.in_features, layer.out_features, ()
    down = torch.randn(rank, inputs, *tail) / inputs**0.5
    up = torch.randn(outputs, rank, *tail) * (0.25 * layer.weight.std().item() * inputs**0.5 / rank**0.5)
    return down, up


def _lora_layers(
    model: torch.nn.Module, targets: re.Pattern[str]
) -> list[tuple[str, torch.nn.Linear | torch.nn.Conv2d]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if targets.fullmatch(name) and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
    ]


def _kohya_lora(
    model: torch.nn.Module, prefix: str, targets: re.Pattern[str], rank: int, rename: Callable[[str], str]
) -> dict[str, torch.Tensor]:
    """kohya-ss keys: ``<prefix><module_name_with_underscores>.lora_down/lora_up.weight`` and ``.alpha``."""
    state: dict[str, torch.Tensor] = {}
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
    state: dict[str, torch.Tensor] = {}
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
