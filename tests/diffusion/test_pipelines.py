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
    generator = [torch.Generator("cpu").manual_seed(seed)]
    if family == "flux":
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.25, 4), mu=1.0)
        channels = pipe.transformer.config.in_channels // 4
        height, width = image.shape[-2:]
        args = (image, scheduler.timesteps[1:2], 1, channels, height, width, torch.float32, "cpu", generator)
        return pipe.prepare_latents(*args)[0]
    scheduler.set_timesteps(4)
    return pipe.prepare_latents(image, scheduler.timesteps[1:2], 1, 1, torch.float32, "cpu", generator)


@pytest.mark.parametrize("family", ["sd15", "sdxl", "flux"])
def test_prepare_latents_is_diffusers_unless_the_noise_is_chosen(tiny: dict[str, Path], family: str) -> None:
    pipe = FAMILIES[family].pipeline_class(controlnet=False).from_pretrained(tiny[family], local_files_only=True)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    own = _prepare(pipe, family, image, seed=5)
    with pipe.noise_chosen_by(lambda plate, drawn: drawn):
        kept = _prepare(pipe, family, image, seed=5)
    assert torch.equal(own, kept)
    with pipe.noise_chosen_by(lambda plate, drawn: torch.zeros_like(drawn)):
        quiet = _prepare(pipe, family, image, seed=5)
    assert not torch.equal(own, quiet)
    assert pipe.initial_noise is None  # the choice lasts for the block only
