"""The built-in image-to-video generator: Wan, LTX-Video and CogVideoX clips from local diffusers folders.

``stylecomp.generators.builtin.diffusers`` builds a ``VideoGenerator`` for ``kind="image_to_video"``. The family
comes from the folder's ``model_index.json``; weights load from local files only, pickles refused unless
``allow_pickle``. What each family can do (diffusers 0.42):

=========  =====================================  ======  ==========  =====================================
family     pipeline                               frames  sides       ends on a given frame (last_image)
=========  =====================================  ======  ==========  =====================================
wan        WanImageToVideoPipeline                4k+1    16 (Wan     Wan 2.2 I2V-A14B: yes. Wan 2.1 FLF2V:
                                                          2.2 TI2V    always needs one. Wan 2.1 I2V and
                                                          5B: 32)     Wan 2.2 TI2V-5B: no
ltx        LTXConditionPipeline (0.9.5 and        8k+1    32          0.9.5 and later: yes; 0.9.0/0.9.1: no
           later); LTXImageToVideoPipeline for
           0.9.0/0.9.1 folders
cogvideox  CogVideoXImageToVideoPipeline          8k+1    16          no
=========  =====================================  ======  ==========  =====================================

Clip lengths are rounded up to what the model makes (at least two latent frames, so that a clip moves),
and sizes up to the model's multiple; CogVideoX 1.0 I2V (learned position embeddings) makes one size only.
Provenance says when either was changed. Every request gets its own seeded ``torch.Generator`` on the CPU,
so the same request gives the same frames.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers import (
    CogVideoXImageToVideoPipeline,
    DiffusionPipeline,
    LTXConditionPipeline,
    LTXImageToVideoPipeline,
    WanImageToVideoPipeline,
)
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition
from diffusers.utils import is_ftfy_available
from PIL import Image

from ..diffusion import loading as models  # first: hides transformers' torchvision notice before diffusers imports
from ..diffusion.model_files import check_files
from ..errors import Cancelled, ModelError
from ..families import VideoFamily
from ..jobspec import VideoModelSettings
from .interface import Generated, Request, Setup

# Published diffusers folders by their model_index.json class. LTX-Video's own repositories are labelled
# LTXPipeline (text to video), but the same weights animate a still: its transformer is conditioned per frame.
_FAMILIES: dict[str, VideoFamily] = {
    "WanImageToVideoPipeline": "wan",
    "LTXPipeline": "ltx",
    "LTXImageToVideoPipeline": "ltx",
    "LTXConditionPipeline": "ltx",
    "CogVideoXImageToVideoPipeline": "cogvideox",
}
_SUPPORTED = (
    "Wan image-to-video (WanImageToVideoPipeline), LTX-Video (LTXPipeline, LTXImageToVideoPipeline, "
    "LTXConditionPipeline) and CogVideoX image-to-video (CogVideoXImageToVideoPipeline)"
)
_LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError)


_SCHEDULER_LOG = logging.getLogger("diffusers.schedulers.scheduling_flow_match_euler_discrete")


def _no_sigmas_notice(record: logging.LogRecord) -> bool:
    """LTXConditionPipeline hands the scheduler its own timesteps on every call, and the scheduler warns about
    sigmas each time: nothing a user can act on."""
    return "were passed without `sigmas`" not in record.getMessage()


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def detect_video_family(path: str | os.PathLike[str]) -> VideoFamily:
    """Which image-to-video family a diffusers folder holds, from its ``model_index.json`` class name."""
    folder = Path(path)
    index = _read_json(folder / "model_index.json", folder)
    name = str(index.get("_class_name", ""))
    if name not in _FAMILIES:
        raise ModelError(
            f"{name or 'this pipeline'} is not an image-to-video model stylecomp runs; it runs {_SUPPORTED}", folder
        )
    return _FAMILIES[name]


class VideoGenerator:
    """Image-to-video clips from one local Wan, LTX-Video or CogVideoX folder; loaded once, reused for every clip."""

    def __init__(self, setup: Setup) -> None:
        """Check the model folder and settings without reading weights, so a bad job fails before any work."""
        if not isinstance(setup.model, VideoModelSettings):
            raise ModelError("the built-in image-to-video generator needs animation.model: a local diffusers folder")
        if setup.options:
            names = ", ".join(sorted(setup.options))
            raise ModelError(f"the built-in generator takes no generator_options (got {names})")
        if setup.dtype is not None and setup.dtype not in _DTYPES:
            raise ModelError(f"unknown dtype {setup.dtype!r}; use one of {', '.join(_DTYPES)}")
        self.path = Path(setup.model.path).expanduser()
        self.allow_pickle = setup.model.allow_pickle
        check_files(self.path, self.allow_pickle)
        self.family = detect_video_family(self.path)
        if self.family == "wan" and not is_ftfy_available():
            raise ModelError("Wan's pipeline cleans prompts with the 'ftfy' package, which is not installed", self.path)
        if (self.path / "image_encoder").is_dir():  # Wan 2.1's CLIP image encoder, which check_files leaves out
            check_files(self.path / "image_encoder", self.allow_pickle)
        self.device = setup.device or models.pick_device()
        self.dtype = _DTYPES[setup.dtype] if setup.dtype else models.pick_dtype(self.device)
        self._pipe: DiffusionPipeline | None = None
        self._model_hashes: dict[str, str] = {}
        self._lock = threading.RLock()  # one load, and one clip at a time: a pipeline keeps per-call state

    def frame_count(self, frames: int) -> int:
        """The clip length made for ``frames``: rounded up to the family's 4k+1 or 8k+1 (at least two latent frames)."""
        if frames < 1:
            raise ValueError(f"a clip has at least one frame, not {frames}")
        step = self._frame_step(self._pipeline())
        return step * max(1, math.ceil((frames - 1) / step)) + 1

    def generate(self, request: Request, cancel: threading.Event) -> Generated:
        """A clip from ``request.image`` (to ``request.last_image``); stops between steps once ``cancel`` is set."""
        if cancel.is_set():
            raise Cancelled()
        if request.image is None:
            raise ValueError("an image-to-video request needs image: the first frame")
        first = _to_pil(request.image, "image")
        last = None if request.last_image is None else _to_pil(request.last_image, "last_image")

        # 1. The loaded pipeline, and what this request becomes on it.
        pipe = self._pipeline()
        self._check_last_frame(pipe, last is not None)
        frames = self.frame_count(request.frames)
        width, height, size_note = self._size(pipe, request.width, request.height)

        # 2. Seeded noise; between denoising steps, cancellation and progress.
        generator = torch.Generator(self._generator_device(pipe)).manual_seed(request.seed)

        def after_step(_pipe: DiffusionPipeline, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if cancel.is_set():
                raise Cancelled()
            if request.on_step is not None:
                request.on_step(step + 1, pipe.num_timesteps)
            return tensors

        # 3. Denoise and decode.
        # The notice filter is on only during the call, so that it hides nothing of anyone else's.
        with self._lock:
            _SCHEDULER_LOG.addFilter(_no_sigmas_notice)
            try:
                result = pipe(
                    **self._conditioning(pipe, first, last, frames, request.fps),
                    prompt=request.prompt,
                    negative_prompt=request.negative_prompt,
                    width=width,
                    height=height,
                    num_frames=frames,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance,
                    generator=generator,
                    output_type="np",
                    callback_on_step_end=after_step,
                )
            finally:
                _SCHEDULER_LOG.removeFilter(_no_sigmas_notice)
        clip = np.asarray(result.frames[0], dtype=np.float32)  # (frames, height, width, 3) in [0, 1]
        if len(clip) != frames:
            raise ModelError(f"the {self.family} pipeline made {len(clip)} frames, not {frames}", self.path)

        provenance = {
            "generator": "diffusers",
            "family": self.family,
            "pipeline": type(pipe).__name__,
            "model": str(self.path),
            **self._hashes(),
            "seed": request.seed,
            "steps": request.steps,
            "guidance": request.guidance,
            "frames": frames,
            "frames_requested": request.frames,
            "fps": request.fps,
            "fps_conditioned": isinstance(pipe, (LTXConditionPipeline, LTXImageToVideoPipeline)),
            "width": width,
            "height": height,
            "last_frame": last is not None,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "generator_device": generator.device.type,
            "diffusers": diffusers.__version__,
        }
        if size_note:
            provenance["size_note"] = size_note
        return Generated(frames=list(clip), provenance=provenance)

    # --- loading -------------------------------------------------------------------------------------

    def _pipeline(self) -> DiffusionPipeline:
        """The family's pipeline on ``self.device``, loaded at first use and kept."""
        with self._lock:
            if self._pipe is None:
                self._pipe = self._load()
            return self._pipe

    def _load(self) -> DiffusionPipeline:
        pipeline_class = self._pipeline_class()
        models.offline()
        try:
            pipe = pipeline_class.from_pretrained(
                self.path,
                dtype=self.dtype,
                local_files_only=True,
                use_safetensors=None if self.allow_pickle else True,  # True: diffusers refuses pickle weights too
            )
        except _LOAD_ERRORS as exc:
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise ModelError(f"cannot load the {self.family} model: {reason}", self.path) from exc
        pipe.set_progress_bar_config(disable=True)  # stylecomp reports progress per clip itself
        return pipe.to(self.device)

    def _pipeline_class(self) -> type[DiffusionPipeline]:
        """Wan and CogVideoX have one pipeline; LTX-Video's depends on its scheduler.

        ``LTXConditionPipeline`` conditions on any frames (first and last) and is the one for LTX-Video 0.9.5
        and later; it cannot run the dynamically shifted schedule of 0.9.0/0.9.1 folders, which get
        ``LTXImageToVideoPipeline`` (first frame only).
        """
        if self.family == "wan":
            return WanImageToVideoPipeline
        if self.family == "cogvideox":
            return CogVideoXImageToVideoPipeline
        scheduler = _read_json(self.path / "scheduler" / "scheduler_config.json", self.path)
        return LTXImageToVideoPipeline if scheduler.get("use_dynamic_shifting") else LTXConditionPipeline

    def _hashes(self) -> dict[str, str]:
        """The model's content hash, and its image encoder's (which ``models.model_hash`` leaves out), computed once."""
        if not self._model_hashes:
            self._model_hashes["model_hash"] = models.model_hash(self.path)
            if (self.path / "image_encoder").is_dir():
                self._model_hashes["image_encoder_hash"] = models.model_hash(self.path / "image_encoder")
        return self._model_hashes

    # --- what a request becomes on each family ------------------------------------------------------

    def _frame_step(self, pipe: DiffusionPipeline) -> int:
        """Frames per latent frame step: clips are ``step * k + 1`` frames long."""
        if isinstance(pipe, WanImageToVideoPipeline):
            return pipe.vae_scale_factor_temporal
        if isinstance(pipe, CogVideoXImageToVideoPipeline):
            # CogVideoX's VAE decodes L latent frames to 4(L-1)+1 frames only when L is odd (4L when even).
            return 2 * pipe.vae_scale_factor_temporal
        return pipe.vae_temporal_compression_ratio * pipe.transformer_temporal_patch_size

    def _size(self, pipe: DiffusionPipeline, width: int, height: int) -> tuple[int, int, str | None]:
        """Width and height rounded up to the model's pixel multiple (or its one size), with a note if changed."""
        config = pipe.transformer.config if pipe.transformer is not None else pipe.transformer_2.config
        if isinstance(pipe, CogVideoXImageToVideoPipeline) and config.use_learned_positional_embeddings:
            scale = pipe.vae_scale_factor_spatial
            fixed = (config.sample_width * scale, config.sample_height * scale)
            if fixed == (width, height):
                return width, height, None
            return *fixed, f"{width}x{height} asked; this CogVideoX model makes {fixed[0]}x{fixed[1]} only"
        if isinstance(pipe, WanImageToVideoPipeline):
            multiple = pipe.vae_scale_factor_spatial * config.patch_size[1]
        elif isinstance(pipe, CogVideoXImageToVideoPipeline):
            multiple = pipe.vae_scale_factor_spatial * config.patch_size
        else:  # LTX: the pipelines also insist on multiples of 32
            multiple = math.lcm(32, pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size)
        rounded = (-(-width // multiple) * multiple, -(-height // multiple) * multiple)
        if rounded == (width, height):
            return width, height, None
        return *rounded, f"{width}x{height} rounded up to {rounded[0]}x{rounded[1]}, multiples of {multiple}"

    def _check_last_frame(self, pipe: DiffusionPipeline, has_last: bool) -> None:
        """Refuse a last frame the model cannot take (and Wan 2.1 FLF2V's missing one) before any work is done."""
        reason = None
        if isinstance(pipe, WanImageToVideoPipeline):
            image_dim = pipe.transformer.config.image_dim if pipe.transformer is not None else None
            first_last = image_dim is not None and pipe.transformer.config.pos_embed_seq_len is not None
            if first_last and not has_last:
                raise ModelError("this Wan first-last-frame model (FLF2V) needs a last frame as well", self.path)
            if has_last and pipe.config.expand_timesteps:
                reason = "Wan 2.2 TI2V models condition on the first frame only"
            elif has_last and image_dim is not None and not first_last:
                reason = "Wan 2.1 I2V models condition on the first frame only (Wan 2.1 FLF2V can end on one)"
        elif has_last and isinstance(pipe, LTXImageToVideoPipeline):
            reason = "LTX-Video 0.9.0/0.9.1 folders condition on the first frame only (0.9.5 and later can end on one)"
        elif has_last and isinstance(pipe, CogVideoXImageToVideoPipeline):
            reason = "CogVideoX image-to-video conditions on the first frame only"
        if reason:
            raise ModelError(f"this {self.family} model cannot end on a given frame: {reason}", self.path)

    def _conditioning(
        self, pipe: DiffusionPipeline, first: Image.Image, last: Image.Image | None, frames: int, fps: float
    ) -> dict[str, Any]:
        """The pipeline-call arguments that pin the first (and last) frame, and tell LTX the frame rate."""
        if isinstance(pipe, LTXConditionPipeline):
            conditions = [LTXVideoCondition(image=first, frame_index=0)]
            if last is not None:
                conditions.append(LTXVideoCondition(image=last, frame_index=frames - 1))
            return {"conditions": conditions, "frame_rate": fps}
        if isinstance(pipe, LTXImageToVideoPipeline):
            return {"image": first, "frame_rate": fps}
        if isinstance(pipe, WanImageToVideoPipeline) and last is not None:
            return {"image": first, "last_image": last}
        return {"image": first}

    def _generator_device(self, pipe: DiffusionPipeline) -> str:
        """The CPU, except where diffusers draws noise on the model's device with the request's generator.

        LTXImageToVideoPipeline does so for a timestep-conditioned VAE (LTX-Video 0.9.1), which fails with a CPU
        generator on a GPU (diffusers PR #10543, open); there the generator lives on the model's device.
        """
        if isinstance(pipe, LTXImageToVideoPipeline) and pipe.vae.config.timestep_conditioning:
            return self.device
        return "cpu"


def _to_pil(image: np.ndarray, name: str) -> Image.Image:
    """An (H, W, 3) [0, 1] frame as 8-bit RGB: what the pipelines' resizers and image encoders take."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) image, not {image.shape}")
    return Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def _read_json(file: Path, model: Path) -> dict[str, Any]:
    """A pipeline folder's JSON config, or a clear error naming the folder."""
    if not file.is_file():
        missing = file.relative_to(model)
        raise ModelError(f"not an image-to-video diffusers folder (no {missing}); stylecomp runs {_SUPPORTED}", model)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {file.name}: {exc}", model) from None
    if not isinstance(data, dict):
        raise ModelError(f"{file.name} is not a JSON object", model)
    return data
