"""Regions inside the diffusion, piece by piece on the tiny random models' real pipelines and schedulers: when each
latent pixel stops being put back to the plate (per-pixel strength), and the attention layers' grids and area
averages on latent sizes that do not halve evenly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stylecomp.families import FAMILIES
from stylecomp.regions.diffusion import Column, RegionalCall, RegionalCrossAttention, attention_grid, regional_call

STRENGTHS = (0.0, 0.15, 0.25, 0.5, 0.73, 1.0)
STEPS = 10
PUT_BACK = 1e6  # the latents the sampler hands the hook; a pixel put back to the plate no longer holds this


@pytest.mark.parametrize("family", ["sd15", "flux"])
def test_each_pixel_starts_where_img2img_at_its_strength_starts(tiny: dict[str, Path], family: str) -> None:
    """Stripes of strengths 0..1, two latent columns each: a pixel is put back to the noised plate up to the step
    where img2img at its own strength would start, so it denoises as many steps as diffusers' get_timesteps gives
    that strength (SD: steps - int(steps * s) is the start; Flux: int(steps - steps * s)). SD 1.5 runs PNDM,
    whose schedule holds 11 entries for 10 steps; a strength-0 pixel is put back at every step."""
    flux = family == "flux"
    pipe = FAMILIES[family].pipeline_class(controlnet=False).from_pretrained(tiny[family], local_files_only=True)
    scale = pipe.vae_scale_factor
    rows, cols = 2, 2 * len(STRENGTHS)  # latent size
    height, width = rows * scale, cols * scale
    weights = np.zeros((height, width, len(STRENGTHS)), np.float32)
    for index in range(len(STRENGTHS)):
        weights[:, index * 2 * scale : (index + 1) * 2 * scale, index] = 1.0
    columns = tuple(Column(s, 0, 0, 0, ()) for s in STRENGTHS)
    scheduler = pipe.scheduler
    if flux:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / STEPS, STEPS), mu=1.0)
    else:
        scheduler.set_timesteps(STEPS)
    timesteps = pipe.get_timesteps(STEPS, max(STRENGTHS), "cpu")[0]
    count = pipe._num_timesteps = len(timesteps)  # the pipeline's loop runs over these; its __call__ sets this
    channels = pipe.transformer.config.in_channels // 4 if flux else pipe.unet.config.in_channels
    plate = torch.zeros(1, channels, rows, cols)
    last = np.full((rows, cols), -1)
    with regional_call(pipe, RegionalCall(weights, columns), None, None, []) as hook:
        noise = torch.randn(plate.shape, generator=torch.Generator().manual_seed(0))
        pipe.initial_noise(plate, noise)  # as prepare_latents asks it, with the plate's latents and its draw
        for step in range(count):
            out = hook(step, pipe.packed(torch.full_like(plate, PUT_BACK)))
            grid = pipe.latent_grid(out, height, width)
            last[(grid[0] != PUT_BACK).all(dim=0).numpy()] = step
    for index, strength in enumerate(STRENGTHS):
        stripe = last[:, index * 2 : (index + 1) * 2]
        assert (stripe == stripe[0, 0]).all()
        denoised = count - 1 - stripe[0, 0]  # the steps after the last put-back
        expected = len(pipe.get_timesteps(STEPS, strength, "cpu")[0]) if strength > 0 else 0
        assert denoised == expected, (family, strength)


@pytest.mark.parametrize("size", [(45, 80), (33, 17)])
def test_attention_grids_follow_the_unets_downsampling_on_odd_sizes(size: tuple[int, int]) -> None:
    """Each attention level's grid is the size a stride-2, padding-1 convolution gives (a UNet's downsampler), and
    the area-averaged weights there still sum to 1 per query with each matte's share kept."""
    height, width = size
    sample = torch.zeros(1, 1, height, width)
    down = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1)
    rng = np.random.default_rng(4)
    maps = rng.uniform(0, 1, (height, width, 3)).astype(np.float32)
    maps /= maps.sum(axis=2, keepdims=True)
    call = RegionalCall(maps, tuple(Column(1.0, i, 0, 0, ()) for i in range(3)))
    for _ in range(4):
        rows, cols = sample.shape[-2:]
        assert attention_grid(rows * cols, height, width) == (rows, cols)
        pooled = call.at("segments", maps, rows, cols, torch.zeros((), dtype=torch.float64))
        assert pooled.shape == (1, 3, rows, cols) and pooled.dtype == torch.float64
        torch.testing.assert_close(pooled.sum(dim=1), torch.ones(1, rows, cols, dtype=torch.float64), atol=1e-6, rtol=0)
        assert abs(float(pooled[0, 0].mean()) - float(maps[..., 0].mean())) < 0.02
        sample = down(sample)
    with pytest.raises(ValueError, match="fit no level"):
        attention_grid(height * width - 1, height, width)


def test_segment_weights_reach_each_device_and_dtype_once(tiny: dict[str, Path]) -> None:
    """The masked cross-attention's weights for a layer are laid out, cast and moved once per (size, device, dtype),
    not at every attention call of every step."""
    pipe = FAMILIES["sd15"].pipeline_class(controlnet=False).from_pretrained(tiny["sd15"], local_files_only=True)
    scale = pipe.vae_scale_factor
    weights = np.zeros((6 * scale, 10 * scale, 2), np.float32)
    weights[..., 0], weights[:, : 5 * scale, 1] = 1.0, 1.0
    weights[:, : 5 * scale, 0] = 0.0
    call = RegionalCall(weights, (Column(0.5, 0, 0, 0, ()), Column(0.5, 1, 0, 0, ())))
    with regional_call(pipe, call, None, None, []):
        processors = [p for name, p in pipe.unet.attn_processors.items() if name.endswith("attn2.processor")]
        assert processors and all(isinstance(p, RegionalCrossAttention) for p in processors)
        like = torch.zeros((), dtype=torch.float64)
        first = processors[0].segment_weights(60, like)
        again = processors[-1].segment_weights(60, like)
        assert first.dtype == torch.float64 and first.shape == (1, 60, 2)
        assert first.data_ptr() == again.data_ptr()  # the cached tensor, not a fresh copy
        torch.testing.assert_close(first[0, :, 1].reshape(6, 10)[:, :5], torch.ones(6, 5, dtype=torch.float64))
