"""stylecomp's own still-image generator: text-to-image and image-to-image with a local SD 1.5/SDXL/Flux model.

It loads the job's model through ``loading.load_pipeline``, the code path stylization uses (the
img2img pipeline with its ControlNets, LoRAs and IP-Adapter), and for text-to-image makes the
matching text-to-image pipeline from the same components (diffusers' ``from_pipe``: no weights
are loaded twice). Every request gets its own CPU generator seeded with the request's seed, so
the same request gives the same image whatever ran before it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..diffusion.loading import (
    load_pipeline,
    model_hash,
    pick_device,
    pick_dtype,
    style_reference_embeds,
)
from ..diffusion.model_files import ip_adapter_image_encoder
from ..errors import Cancelled, ModelError, StyleCompError
from ..families import FAMILIES
from ..jobspec import ModelSettings
from .interface import Generated, Request, Setup

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _NoFloat32Notice(logging.Filter):
    """``from_pipe`` casts the shared components to the dtype they already have, and diffusers says so for each."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_NoFloat32Notice())


class ImageGenerator:
    """Stills from the job's local model (``Setup.kind`` text_to_image or image_to_image); implements ``Generator``."""

    def __init__(self, setup: Setup) -> None:
        if setup.kind not in ("text_to_image", "image_to_image"):
            raise ModelError(f"the image generator makes stills, not {setup.kind}")
        if not isinstance(setup.model, ModelSettings):
            raise ModelError("the built-in image generator needs the job's 'model' block (SD 1.5, SDXL or Flux)")
        if setup.dtype is not None and setup.dtype not in _DTYPES:
            raise ModelError(f"dtype must be one of {', '.join(_DTYPES)}, not {setup.dtype!r}")
        self.setup, self.model = setup, setup.model
        self.device = setup.device or pick_device()
        self.dtype = _DTYPES[setup.dtype] if setup.dtype else pick_dtype(self.device)
        self._image_to_image = load_pipeline(self.model, self.device, self.dtype)
        self._image_to_image.set_progress_bar_config(disable=True)
        self._pipe = self._image_to_image
        if setup.kind == "text_to_image":
            text_to_image = FAMILIES[self.model.family].pipeline_class(bool(self.model.controlnets), text_to_image=True)
            self._pipe = text_to_image.from_pipe(self._image_to_image, dtype=self._image_to_image.dtype)
            self._pipe.set_progress_bar_config(disable=True)
        self._identity = self._hashes()

    def frame_count(self, frames: int) -> int:
        """A still is one frame, however many are asked for."""
        return 1

    def generate(self, request: Request, cancel: threading.Event) -> Generated:
        """One still for ``request``; raises ``Cancelled`` between denoising steps once ``cancel`` is set."""
        model, pipe = self.model, self._pipe
        kwargs = self._inputs(request)

        def on_step(running: Any, step: int, _t: object, tensors: dict[str, Any]) -> dict[str, Any]:
            if cancel.is_set():
                raise Cancelled()
            if request.on_step is not None:
                request.on_step(step + 1, running.num_timesteps)  # the steps this call runs (img2img: by strength)
            return tensors

        kwargs |= {
            "prompt": request.prompt,
            "height": request.height,
            "width": request.width,
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "generator": torch.Generator("cpu").manual_seed(request.seed),
            "output_type": "np",
            "callback_on_step_end": on_step,
        }
        if FAMILIES[model.family].uses_cfg:  # Flux is guidance-distilled: no negative branch
            kwargs["negative_prompt"] = request.negative_prompt
        if self.setup.kind == "image_to_image" and model.family != "flux" and not model.controlnets:
            del kwargs["height"], kwargs["width"]  # SD's plain img2img pipelines take the size from the image
        with torch.no_grad():
            image = pipe(**kwargs).images[0]
        return Generated(
            frames=[np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)], provenance=self._provenance(request)
        )

    def _inputs(self, request: Request) -> dict[str, Any]:
        """The start image, ControlNet images and IP-Adapter embeddings of a request, as pipeline arguments."""
        model, kwargs = self.model, dict[str, Any]()
        size = (request.height, request.width)
        if self.setup.kind == "image_to_image":
            if request.image is None:
                raise StyleCompError("image_to_image needs a start image (Request.image)")
            kwargs |= {"image": _checked("the start image", request.image, size)[None], "strength": request.strength}
        elif request.image is not None:
            raise StyleCompError("a text_to_image generator takes no start image; set it up as image_to_image")
        if model.controlnets:
            missing = sorted({net.source for net in model.controlnets} - set(request.control))
            if missing:
                raise StyleCompError(
                    f"the model's ControlNets need {', '.join(missing)} image(s) "
                    f"(Request.control has {', '.join(sorted(request.control)) or 'none'})"
                )
            controls = [
                _checked(f"the {net.source} ControlNet image", request.control[net.source], size)[None]
                for net in model.controlnets
            ]
            weights = [net.weight for net in model.controlnets]
            # The text-to-image SD pipelines take the ControlNet image as `image`; the others as `control_image`.
            key = "image" if self.setup.kind == "text_to_image" and model.family != "flux" else "control_image"
            kwargs[key] = controls if len(controls) > 1 else controls[0]
            kwargs["controlnet_conditioning_scale"] = weights if len(weights) > 1 else weights[0]
            if model.family == "flux" and len(controls) > 1:
                kwargs["control_mode"] = [None] * len(controls)  # plain (not Union) ControlNets: no mode each
        if model.ip_adapter is not None:
            if request.style_image is None:
                raise StyleCompError("the model has an IP-Adapter: the request needs a style image")
            # Encoded by the img2img pipeline, which shares the image encoder and adapter with the text-to-image one
            # (and is the pipeline class style_reference_embeds knows for each family).
            guidance = FAMILIES[model.family].uses_cfg and request.guidance > 1.0  # classifier-free guidance runs
            kwargs |= style_reference_embeds(self._image_to_image, request.style_image, guidance)
        elif request.style_image is not None:
            raise StyleCompError("a style image needs an IP-Adapter in the model settings (model.ip_adapter)")
        return kwargs

    def _hashes(self) -> dict[str, Any]:
        """Content hashes of the model and its adapters, for provenance."""
        model = self.model
        hashes: dict[str, Any] = {
            "model": model_hash(model.path),
            "controlnets": [model_hash(net.path) for net in model.controlnets],
            "loras": [model_hash(lora.path) for lora in model.loras],
        }
        if model.ip_adapter is not None:
            hashes["ip_adapter"] = model_hash(model.ip_adapter.path)
            hashes["image_encoder"] = model_hash(ip_adapter_image_encoder(model.ip_adapter))
        return hashes

    def _provenance(self, request: Request) -> dict[str, Any]:
        """What the still's header records: the generator, the model and adapters with hashes, every parameter."""
        model, hashes = self.model, self._identity
        parameters: dict[str, Any] = {
            "family": model.family,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "guidance": request.guidance,
        }
        if self.setup.kind == "image_to_image":
            parameters["strength"] = request.strength
        ip_adapter = None
        if model.ip_adapter is not None:
            style = np.ascontiguousarray(request.style_image, dtype=np.float32)
            ip_adapter = {
                "path": model.ip_adapter.path,
                "scale": model.ip_adapter.scale,
                "hash": hashes["ip_adapter"],
                "image_encoder_hash": hashes["image_encoder"],
                "image_hash": hashlib.sha256(style.tobytes()).hexdigest(),
            }
        return {
            "generator": "diffusers",
            "kind": self.setup.kind,
            "version": __version__,
            "model": model.path,
            "model_hash": hashes["model"],
            "seed": request.seed,
            "parameters": json.dumps(parameters, sort_keys=True),
            "controlnets": json.dumps(
                [
                    {"path": net.path, "source": net.source, "weight": net.weight, "hash": h}
                    for net, h in zip(model.controlnets, hashes["controlnets"], strict=True)
                ]
            ),
            "loras": json.dumps(
                [
                    {"path": lora.path, "weight": lora.weight, "hash": h}
                    for lora, h in zip(model.loras, hashes["loras"], strict=True)
                ]
            ),
            "ip_adapter": json.dumps(ip_adapter),
            "device": f"{torch.device(self.device).type} {str(self.dtype).removeprefix('torch.')}",
        }


def _checked(what: str, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) [0, 1] input image of the request's size, as float32; else a clear error."""
    image = np.asarray(image, dtype=np.float32)
    if image.shape != (*size, 3):
        raise StyleCompError(
            f"{what} is {image.shape}, but the request is {size[1]}x{size[0]}: it must be ({size[0]}, {size[1]}, 3)"
        )
    return image
