"""stylecomp's img2img pipelines: diffusers' own, with the initial noise open to stylecomp.

img2img encodes the plate and noises it once, in ``prepare_latents``, before the first denoising step; that is
where stylecomp's noise goes in: warped noise carried from the previous frame (``consistency``), each region's
seed (``regions.diffusion``). A pipeline call gets it through ``noise_chosen_by``: the choice sees the plate's
latents and the noise the pipeline drew (drawn as diffusers draws it, so each generator's later draws stay the
same) and returns the noise to use. Per-step hooks read and write the latents through ``latent_grid`` and
``packed`` (Flux packs 2x2 latent patches into tokens). The families' table (``families.py``) names these classes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from diffusers import (
    DiffusionPipeline,
    FluxControlNetImg2ImgPipeline,
    FluxImg2ImgPipeline,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
from diffusers.utils.torch_utils import randn_tensor

NoiseChoice = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(the plate's latents (B, C, h, w) before noising, the noise the pipeline drew, alike) -> the noise to use."""


class StylizePipeline(DiffusionPipeline):
    """What stylecomp's img2img pipelines add to diffusers': the initial noise chosen per call, and the latents'
    layout for per-step hooks. Mixed in ahead of a diffusers img2img pipeline class."""

    initial_noise: NoiseChoice | None = None  # set for one call by noise_chosen_by

    @contextlib.contextmanager
    def noise_chosen_by(self, choice: NoiseChoice | None) -> Iterator[None]:
        """While a pipeline call runs, ``choice`` decides the noise its ``prepare_latents`` puts on the plate."""
        self.initial_noise = choice
        try:
            yield
        finally:
            self.initial_noise = None

    def noised(self, plate: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """``plate`` latents (B, C, h, w) noised to ``timestep`` with ``noise``, as this family's img2img does."""
        return self.scheduler.add_noise(plate, noise, timestep)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """The latent grid (rows, columns) of a ``height`` x ``width`` image."""
        scale = self.vae_scale_factor
        return math.ceil(height / scale), math.ceil(width / scale)

    def latent_grid(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The latents a step hook is given, as a (B, C, h, w) grid over the ``height`` x ``width`` image."""
        return latents

    def packed(self, grid: torch.Tensor) -> torch.Tensor:
        """A (B, C, h, w) grid in the layout the denoising loop holds its latents in (``latent_grid``'s inverse)."""
        return grid


class _UNetImg2Img(StylizePipeline):
    """SD 1.5 and SDXL: ``prepare_latents`` as diffusers', the noise chosen between the draw and ``add_noise``."""

    def prepare_latents(
        self,
        image: torch.Tensor,
        timestep: torch.Tensor,
        batch_size: int,
        num_images_per_prompt: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        # SDXL's add_noise=False (denoising_start: the latents arrive noised already) leaves nothing to choose.
        add_noise = kwargs.get("add_noise", args[0] if args else True)
        if self.initial_noise is None or not add_noise:
            return super().prepare_latents(
                image, timestep, batch_size, num_images_per_prompt, dtype, device, generator, *args, **kwargs
            )
        plate = self._plate_latents(image, timestep, batch_size * num_images_per_prompt, dtype, device, generator)
        drawn = randn_tensor(plate.shape, generator=generator, device=device, dtype=dtype)
        return self.noised(plate, self.initial_noise(plate, drawn), timestep)

    def _plate_latents(
        self,
        image: torch.Tensor,
        timestep: torch.Tensor,
        batch: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        """The plate's latents (B, C, h, w) before noising, one per image and generator."""
        raise NotImplementedError


class _SD15Img2Img(_UNetImg2Img):
    """SD 1.5's plate latents."""

    def _plate_latents(
        self,
        image: torch.Tensor,
        timestep: torch.Tensor,
        batch: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        # diffusers' SD 1.5 prepare_latents up to its noise draw (it has no add_noise=False, unlike SDXL's), for
        # what stylecomp passes: one image and one generator per image.
        if not isinstance(generator, list) or len(generator) != batch or image.shape[0] != batch:
            raise ValueError("a chosen initial noise needs one image and one generator per image")
        image = image.to(device=device, dtype=dtype)
        latents = [retrieve_latents(self.vae.encode(image[i : i + 1]), generator=generator[i]) for i in range(batch)]
        return self.vae.config.scaling_factor * torch.cat(latents, dim=0)


class _SDXLImg2Img(_UNetImg2Img):
    """SDXL's plate latents."""

    def _plate_latents(
        self,
        image: torch.Tensor,
        timestep: torch.Tensor,
        batch: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        # The diffusers class's own prepare_latents (VAE upcast, latents mean and std), without its noise.
        return super(_UNetImg2Img, self).prepare_latents(
            image, timestep, batch, 1, dtype, device, generator, add_noise=False
        )


class _FluxImg2Img(StylizePipeline):
    """Flux: ``prepare_latents`` as diffusers', the noise chosen between the draw and ``scale_noise``; the denoising
    loop holds the latents packed, one token per 2x2 latent patch."""

    def prepare_latents(
        self,
        image: torch.Tensor,
        timestep: torch.Tensor,
        batch_size: int,
        num_channels_latents: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.initial_noise is None or latents is not None:
            return super().prepare_latents(
                image, timestep, batch_size, num_channels_latents, height, width, dtype, device, generator, latents
            )
        # diffusers' Flux img2img prepare_latents, for what stylecomp passes (one image per generator); it has no
        # step between the draw and scale_noise, so this follows its private encoding and packing helpers.
        if image.shape[0] != batch_size:
            raise ValueError("a chosen initial noise needs one image per image generated")
        rows, cols = self.latent_size(height, width)
        image_ids = self._prepare_latent_image_ids(batch_size, rows // 2, cols // 2, device, dtype)
        plate = self._encode_vae_image(image=image.to(device=device, dtype=dtype), generator=generator)
        drawn = randn_tensor(
            (batch_size, num_channels_latents, rows, cols), generator=generator, device=device, dtype=dtype
        )
        noised = self.noised(plate, self.initial_noise(plate, drawn), timestep)
        return self._pack_latents(noised, batch_size, num_channels_latents, rows, cols), image_ids

    def noised(self, plate: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return self.scheduler.scale_noise(plate, timestep, noise)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.vae_scale_factor  # whole 2x2 patches only
        return 2 * (height // (scale * 2)), 2 * (width // (scale * 2))

    def latent_grid(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self._unpack_latents(latents, height, width, self.vae_scale_factor)

    def packed(self, grid: torch.Tensor) -> torch.Tensor:
        return self._pack_latents(grid, *grid.shape)


class SD15Img2Img(_SD15Img2Img, StableDiffusionImg2ImgPipeline):
    """SD 1.5 img2img (see the module docstring)."""


class SD15ControlNetImg2Img(_SD15Img2Img, StableDiffusionControlNetImg2ImgPipeline):
    """SD 1.5 img2img with ControlNets."""


class SDXLImg2Img(_SDXLImg2Img, StableDiffusionXLImg2ImgPipeline):
    """SDXL img2img (see the module docstring)."""


class SDXLControlNetImg2Img(_SDXLImg2Img, StableDiffusionXLControlNetImg2ImgPipeline):
    """SDXL img2img with ControlNets."""


class FluxImg2Img(_FluxImg2Img, FluxImg2ImgPipeline):
    """Flux img2img (see the module docstring)."""


class FluxControlNetImg2Img(_FluxImg2Img, FluxControlNetImg2ImgPipeline):
    """Flux img2img with ControlNets."""
