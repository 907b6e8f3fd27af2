"""Prompt encoding: a prompt's embeddings as each family's pipelines take them, encoded once per shot.

Regional prompts (``regions``) are encoded each on their own and laid side by side on the token axis; their pooled
embeddings (SDXL, Flux: one vector per prompt) are stacked, to be mixed by area or given to each prompt's pass.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DiffusionPipeline

from ..families import FAMILIES, Family
from ..regions.diffusion import RegionalCall


def uses_cfg(family: Family, guidance: float) -> bool:
    """Classifier-free guidance (a negative branch) runs for SD/SDXL at guidance > 1; Flux embeds guidance instead."""
    return FAMILIES[family].uses_cfg and guidance > 1.0


def encode_prompt(
    pipe: DiffusionPipeline, family: Family, prompt: str, negative_prompt: str, cfg: bool
) -> dict[str, Any]:
    """The embeddings of ``prompt`` (and, with ``cfg``, ``negative_prompt``) as the keyword arguments each family's
    pipeline takes."""
    device = pipe.device  # where the text encoders are (stylecomp never turns on CPU offload)
    encoding = FAMILIES[family].prompt_encoding
    if encoding == "clip":
        positive, negative = pipe.encode_prompt(prompt, device, 1, cfg, negative_prompt=negative_prompt)
        return {"prompt_embeds": positive, "negative_prompt_embeds": negative}
    if encoding == "dual_clip":
        positive, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=cfg,
            negative_prompt=negative_prompt,
        )
        return {
            "prompt_embeds": positive,
            "negative_prompt_embeds": negative,
            "pooled_prompt_embeds": pooled,
            "negative_pooled_prompt_embeds": negative_pooled,
        }
    positive, pooled, _text_ids = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device)
    return {"prompt_embeds": positive, "pooled_prompt_embeds": pooled}


def segment_embeds(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Every prompt segment's embeddings (``encode_prompt``'s, the shot's first) in one set: token embeddings side by
    side (B, segments * T, C), pooled ones stacked (segments, B, C)."""
    return {
        name: value
        if value is None
        else torch.stack([part[name] for part in parts])
        if "pooled" in name
        else torch.cat([part[name] for part in parts], dim=1)
        for name, value in parts[0].items()
    }


def regional_pooled(
    embeds: dict[str, Any], call: RegionalCall, passes: bool, cfg: bool
) -> tuple[dict[str, Any], list[torch.Tensor] | None]:
    """The pipeline's embeddings for a regional call, and (passes, SDXL and Flux) each prompt's pooled embedding
    as its pass gives it to the model. A pooled embedding conditions the whole frame, so one pass gets the
    prompts' pooled embeddings mixed by their share of the frame."""
    if not any("pooled" in name for name in embeds):
        return embeds, None
    shares = torch.from_numpy(call.grouped(lambda c: c.segment, call.segments).mean(axis=(0, 1)))
    mixed = {
        name: (value * shares.to(value.device, value.dtype).view(-1, *[1] * (value.dim() - 1))).sum(0)
        if value is not None and "pooled" in name
        else value
        for name, value in embeds.items()
    }
    if not passes:
        return mixed, None
    positive, negative = embeds["pooled_prompt_embeds"], embeds.get("negative_pooled_prompt_embeds")
    per_pass = [
        torch.cat([negative[g], positive[g]]) if cfg and negative is not None else positive[g]
        for g in range(call.segments)
    ]
    return mixed, per_pass
