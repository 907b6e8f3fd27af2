"""stylecomp's img2img pipelines (diffusion/pipelines.py) on the tiny random models: with a noise choice that keeps
the pipeline's own draw, ``prepare_latents`` gives diffusers' latents bit for bit; a chosen noise is what goes in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stylecomp.families import FAMILIES


def _prepare(pipe: Any, family: str, image: torch.Tensor, seed: int) -> torch.Tensor:
    scheduler = pipe.scheduler
    batch = image.shape[0]
    generator = [torch.Generator("cpu").manual_seed(seed + i) for i in range(batch)]
    if family == "flux":
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.25, 4), mu=1.0)
        channels = pipe.transformer.config.in_channels // 4
        height, width = image.shape[-2:]
        timestep = scheduler.timesteps[1:2].repeat(batch)
        args = (image, timestep, batch, channels, height, width, torch.float32, "cpu", generator)
        return pipe.prepare_latents(*args)[0]
    scheduler.set_timesteps(4)
    timestep = scheduler.timesteps[1:2].repeat(batch)
    return pipe.prepare_latents(image, timestep, batch, 1, torch.float32, "cpu", generator)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("family", ["sd15", "sdxl", "flux"])
def test_prepare_latents_is_diffusers_unless_the_noise_is_chosen(
    tiny: dict[str, Path], family: str, batch: int
) -> None:
    pipe = FAMILIES[family].pipeline_class(controlnet=False).from_pretrained(tiny[family], local_files_only=True)
    image = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    own = _prepare(pipe, family, image, seed=5)
    with pipe.noise_chosen_by(lambda plate, drawn: drawn):
        kept = _prepare(pipe, family, image, seed=5)
    assert torch.equal(own, kept)
    with pipe.noise_chosen_by(lambda plate, drawn: torch.zeros_like(drawn)):
        quiet = _prepare(pipe, family, image, seed=5)
    assert not torch.equal(own, quiet)
    assert pipe.initial_noise is None  # the choice lasts for the block only


def test_sdxl_without_add_noise_leaves_nothing_to_choose(tiny: dict[str, Path]) -> None:
    """denoising_start makes SDXL pass add_noise=False (the latents arrive noised): a choice must not noise them."""
    pipe = FAMILIES["sdxl"].pipeline_class(controlnet=False).from_pretrained(tiny["sdxl"], local_files_only=True)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    pipe.scheduler.set_timesteps(4)
    timestep = pipe.scheduler.timesteps[1:2]

    def prepare(**kwargs: Any) -> torch.Tensor:
        generator = [torch.Generator("cpu").manual_seed(5)]
        return pipe.prepare_latents(image, timestep, 1, 1, torch.float32, "cpu", generator, **kwargs)

    own = prepare(add_noise=False)
    with pipe.noise_chosen_by(lambda plate, drawn: torch.ones_like(drawn)):
        assert torch.equal(prepare(add_noise=False), own)
        assert not torch.equal(prepare(), own)
