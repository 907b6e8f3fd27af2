"""A model's geometry: pixels per latent cell, latent channels and UNet depth, read from its config files.

Resolution planning runs without the model loaded (cache keys of cached frames, warped noise
rebuilt for a cached frame, ideation sizes), so the geometry comes from the model's own
``vae/config.json`` and ``unet/config.json`` (``transformer/`` for Flux): cheap, and without
torch. A single-file checkpoint is built from the family's configs that stylecomp ships, so it
reads those. The pipeline computes ``vae_scale_factor`` from the same ``block_out_channels``;
the stylize stage checks the loaded pipeline against this description.

A model with its family's own VAE (f=8) is planned as the family's published model, whatever
its UNet's depth (the tiny test models have fewer levels): 64-pixel multiples for SD (8 x its
3 UNet downsamplings), 16 for Flux (8 x its 2x2 latent packing), and the family's training size.
Any other VAE (stylecomp's own pixel-space model at f=1) is planned from the model itself:
multiples of ``vae_scale`` x 2^downsamplings, and the UNet's ``sample_size`` in pixels.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..families import FAMILIES, Family, family_spec

FAMILY_VAE_SCALE = 8  # the VAEs of SD 1.5, SDXL and Flux
CONFIG_DIR = Path(__file__).parent / "model_configs"  # the family configs single-file checkpoints are built from


@dataclass(frozen=True)
class ModelGeometry:
    """How a model's latents relate to pixels: what resolution planning and the latent-space mechanisms need."""

    family: Family
    vae_scale: int = FAMILY_VAE_SCALE  # pixels per latent cell along a side (the pipeline's vae_scale_factor)
    latent_channels: int = 4  # channels of the initial noise (Flux: before its 2x2 packing)
    downsamplings: int = 3  # the UNet's 2x downsamplings (Flux's transformer: none)
    sample_size: int | None = None  # the UNet's configured latent size

    @classmethod
    def published(cls, family: Family) -> ModelGeometry:
        """The family's published architecture (what the bare family name stands for in planning)."""
        spec = family_spec(family)
        return cls(
            spec.name,
            latent_channels=spec.latent_channels,
            downsamplings=spec.downsamplings,
            sample_size=spec.sample_size,
        )

    @classmethod
    def from_configs(cls, family: Family, vae: dict[str, Any], denoiser: dict[str, Any]) -> ModelGeometry:
        """From the VAE's and the UNet's (Flux: transformer's) configs, as diffusers reads them."""
        try:
            scale = 2 ** (len(vae["block_out_channels"]) - 1)
            packing = FAMILIES[family].latent_packing
            if packing > 1:  # a transformer over packed patches: in_channels counts a patch's cells
                return cls(family, scale, int(denoiser["in_channels"]) // packing**2, 0, None)
            size = denoiser.get("sample_size")
            return cls(
                family,
                scale,
                int(denoiser["in_channels"]),
                len(denoiser["down_block_types"]) - 1,
                int(size if isinstance(size, int) else size[0]) if size else None,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"the model's vae or unet config lacks what sets its geometry ({exc!r})") from None

    @property
    def multiple(self) -> int:
        """Pixel multiple a plate is padded to, so that every UNet level divides it."""
        if self.vae_scale == FAMILY_VAE_SCALE:
            return FAMILIES[self.family].size_multiple
        return self.vae_scale * 2**self.downsamplings * FAMILIES[self.family].latent_packing

    @property
    def pixel_multiple(self) -> int:
        """The least multiple a pipeline takes: the VAE's cell (Flux: a 2x2 packed patch of cells)."""
        return self.vae_scale * FAMILIES[self.family].latent_packing

    @property
    def working_size(self) -> int:
        """The long side the model was trained at, in pixels."""
        if self.vae_scale == FAMILY_VAE_SCALE or not self.sample_size:
            return FAMILIES[self.family].working_size // FAMILY_VAE_SCALE * self.vae_scale
        return self.sample_size * self.vae_scale

    def describe(self) -> str:
        """The geometry in a few words, e.g. "sd15 at f=1"."""
        return self.family if self.vae_scale == FAMILY_VAE_SCALE else f"{self.family} at f={self.vae_scale}"


def model_geometry(path: str | os.PathLike[str], family: Family) -> ModelGeometry:
    """The geometry of the model at ``path`` (a diffusers folder, or a single file built from the family's configs)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        if not FAMILIES[family].single_file:  # refused by the loader; planned as published meanwhile
            return ModelGeometry.published(family)
        folder = Path(os.environ.get("STYLECOMP_MODEL_CONFIGS") or CONFIG_DIR) / family
    denoiser = FAMILIES[family].denoiser
    return ModelGeometry.from_configs(family, _config(folder / "vae"), _config(folder / denoiser))


def pipeline_geometry(pipe: Any, family: Family) -> ModelGeometry:
    """The geometry of a loaded pipeline, from its components' configs."""
    denoiser = getattr(pipe, FAMILIES[family].denoiser)
    return ModelGeometry.from_configs(family, dict(pipe.vae.config), dict(denoiser.config))


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read the model's config: {exc}", path) from None
    if not isinstance(data, dict):
        raise ModelError("not a JSON object", path)
    return data
