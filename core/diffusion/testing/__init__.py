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

One module per concern: ``image_models`` (the SD 1.5, SDXL and Flux folders, full-size ones for GPU
tests), ``components`` (VAEs, ControlNets), ``tokenizers`` (text encoder configs, CLIP and T5
vocabularies), ``adapters`` (LoRAs, IP-Adapters), ``checkpoints`` (single-file LDM layout) and
``video_models`` (image-to-video folders).
"""

from __future__ import annotations

from ..loading import offline

offline()  # before diffusers' pipeline modules import: tiny models are built here, never fetched

from .adapters import make_test_ip_adapter, make_test_lora  # noqa: E402 - after offline()
from .checkpoints import make_test_checkpoint  # noqa: E402 - after offline()
from .components import pixel_latents, pixel_vae  # noqa: E402 - after offline()
from .image_models import SD_BETAS, make_full_size_model, make_test_model  # noqa: E402 - after offline()
from .tokenizers import clip_text_config, clip_tokenizer, write_clip_vocab_files  # noqa: E402 - after offline()
from .video_models import make_test_video_model  # noqa: E402 - after offline()

__all__ = [
    "SD_BETAS",
    "clip_text_config",
    "clip_tokenizer",
    "make_full_size_model",
    "make_test_checkpoint",
    "make_test_ip_adapter",
    "make_test_lora",
    "make_test_model",
    "make_test_video_model",
    "pixel_latents",
    "pixel_vae",
    "write_clip_vocab_files",
]
