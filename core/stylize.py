"""The stylize stage: img2img diffusion of a plate, conditioned by the render's own AOVs.

One frame goes: premultiplied scene-linear RGBA -> the model's [0, 1] space (``color``) ->
diffusion at a resolution the model takes (``resolution``: pad, downscale or tiles), with
ControlNets fed by depth / normals / line art / edges built from the AOVs (``conditioning``)
-> the model's change transferred back onto the plate in scene-linear -> the plate's alpha.

Reproducible by construction: the prompt (and any style reference) is encoded once per
shot, and every frame (every tile) gets its own CPU generator seeded from the job's seed
policy, so a frame never depends on which other frames ran or on the device's RNG.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import OpenImageIO as oiio
import torch
from diffusers import DiffusionPipeline

from . import __version__
from .color import ModelEncoding
from .conditioning import beauty_edges, depth_condition, line_art, normal_condition
from .errors import JobError, PlateError
from .jobspec import ControlNet, Job, ModelSettings, Shot
from .models import check_model, ip_adapter_image_encoder, model_hash, style_reference_embeds
from .pipeline_pool import PipelinePool
from .plates import Window
from .resolution import ResolutionSettings, plan, stylize_at_resolution
from .stage import Cancelled, Clip, FrameInputs, FrameResult, StageDescription

# The AOV clips each ControlNet source is built from: (required, optional).
_SOURCE_CLIPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "depth": (("Depth",), ()),
    "normals": (("Normal",), ()),
    "lineart": ((), ("ObjectID", "Normal", "Depth")),
    "edges": ((), ()),
}
_CLIP_COMPONENTS = {"Source": 4, "Depth": 1, "Normal": 3, "ObjectID": 1}


@dataclass(frozen=True)
class StylizeParameters:
    """Everything that decides a shot's pixels apart from the inputs: the job's settings after the shot's overrides."""

    model: ModelSettings  # with absolute paths
    prompt: str
    negative_prompt: str
    seed: int  # the policy's value (per_frame adds the frame number)
    seed_policy: str
    strength: float
    steps: int
    guidance: float
    resolution: ResolutionSettings
    style_reference: str | None  # absolute path of the IP-Adapter image

    @classmethod
    def for_shot(cls, job: Job, shot: Shot) -> StylizeParameters:
        """The shot's parameters: job settings, shot overrides applied, paths resolved against the job."""
        if job.model is None:
            raise JobError("the job has no 'model' block: nothing to stylize with", shot.name)
        model = job.model.model_copy(deep=True)
        model.path = job.resolve(shot.overrides.model or model.path)
        for adapter in (*model.loras, *model.controlnets):
            adapter.path = job.resolve(adapter.path)
        reference = None
        if model.ip_adapter is not None:
            model.ip_adapter.path = job.resolve(model.ip_adapter.path)
            if model.ip_adapter.image_encoder is not None:
                model.ip_adapter.image_encoder = job.resolve(model.ip_adapter.image_encoder)
            reference = job.resolve(model.ip_adapter.image)
        overrides = shot.overrides
        return cls(
            model=model,
            prompt=overrides.prompt if overrides.prompt is not None else job.prompt,
            negative_prompt=overrides.negative_prompt if overrides.negative_prompt is not None else job.negative_prompt,
            seed=overrides.seed if overrides.seed is not None else job.seed.value,
            seed_policy=job.seed.policy,
            strength=overrides.strength if overrides.strength is not None else job.strength,
            steps=job.steps,
            guidance=job.guidance,
            resolution=ResolutionSettings(**job.resolution.model_dump()),
            style_reference=reference,
        )

    def frame_seed(self, frame: int) -> int:
        """The seed a frame renders with: the same every frame, or offset by the frame number."""
        return self.seed if self.seed_policy == "fixed" else self.seed + frame


class StylizeStage:
    """img2img stylization of one shot (see the module docstring); implements ``stage.Stage``."""

    name = "stylize"

    def __init__(self, params: StylizeParameters, encoding: ModelEncoding, pool: PipelinePool) -> None:
        self.params = params
        self.encoding = encoding
        self.pool = pool
        self._pipe: DiffusionPipeline | None = None
        self._embeds: dict[str, Any] = {}
        self._identity: dict[str, Any] = {}  # see identity()
        self._reference: np.ndarray | None = None  # the style image, (H, W, 3) [0, 1]

    # --- description --------------------------------------------------------------------------

    def describe(self) -> StageDescription:
        needed, optional = {"Source"}, set()
        for net in self.params.model.controlnets:
            required, extra = _SOURCE_CLIPS[net.source]
            needed |= set(required)
            optional |= set(extra)
        clips = [Clip(name, _CLIP_COMPONENTS[name], optional=name not in needed) for name in
                 ("Source", "Depth", "Normal", "ObjectID") if name in needed | optional]
        if self.params.style_reference:
            clips.append(Clip("StyleReference", 3, description="style image, read once per shot"))
        notes = ["frames are independent: any frame renders alone, in any order"]
        if self.params.model.family == "flux":
            notes.append("Flux is guidance-distilled: guidance is its embedded guidance and the negative prompt is unused")
        return StageDescription(self.name, tuple(clips), self.parameters(), sequential=False, notes=tuple(notes))

    def parameters(self) -> dict[str, Any]:
        """The shot's parameters as plain JSON values (for provenance, cache keys and hosts' UIs)."""
        p = self.params
        return {
            "family": p.model.family,
            "prompt": p.prompt,
            "negative_prompt": p.negative_prompt,
            "seed": p.seed,
            "seed_policy": p.seed_policy,
            "strength": p.strength,
            "steps": p.steps,
            "guidance": p.guidance,
            "controlnets": [{"source": c.source, "weight": c.weight} for c in p.model.controlnets],
            "loras": [{"weight": lora.weight} for lora in p.model.loras],
            "ip_adapter_scale": p.model.ip_adapter.scale if p.model.ip_adapter else None,
            "resolution": p.resolution.__dict__,
            "color": self.encoding.description,
            "ocio_config": self.encoding.config_uri,
        }

    def region_of_definition(self, frame: int, source_window: Window) -> Window:
        return source_window  # the stylized layer covers the plate's data window

    def regions_of_interest(self, frame: int, window: Window) -> dict[str, Window]:
        return {clip.name: window for clip in self.describe().clips if clip.name != "StyleReference"}

    def frames_needed(self, frame: int) -> list[int]:
        return [frame]

    def is_identity(self, frame: int) -> bool:
        return self.params.strength == 0.0

    # --- the sequence -------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Content hashes of the models and style image, the device and the version: what the pixels
        depend on besides parameters and inputs. Cheap after the first call (hashes are cached on disk)."""
        if not self._identity:
            p = self.params
            check_model(p.model)
            identity: dict[str, Any] = {
                "model": model_hash(p.model.path),
                "controlnets": [model_hash(c.path) for c in p.model.controlnets],
                "loras": [model_hash(lora.path) for lora in p.model.loras],
                "device": torch.device(self.pool.device).type,
                "dtype": str(self.pool.dtype).removeprefix("torch."),
                "version": __version__,
            }
            if p.model.ip_adapter is not None and p.style_reference is not None:
                self._reference = read_style_reference(p.style_reference, self.encoding)
                identity["ip_adapter"] = model_hash(p.model.ip_adapter.path)
                identity["image_encoder"] = model_hash(ip_adapter_image_encoder(p.model.ip_adapter))
                identity["style_reference"] = hashlib.sha256(self._reference.tobytes()).hexdigest()
            self._identity = identity
        return self._identity

    def begin_sequence(self, first: int, last: int) -> None:
        """Load (or reuse) the pipeline; encode the prompt and the style reference once for the shot."""
        p = self.params
        self.identity()
        self._pipe = self.pool.get(p.model)
        self._pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            self._embeds = _encode_prompt(self._pipe, p)
            if self._reference is not None:
                self._embeds |= style_reference_embeds(self._pipe, self._reference, _uses_cfg(p))

    def end_sequence(self) -> None:
        self._pipe, self._embeds = None, {}

    def cache_key(self, frame: int, inputs: FrameInputs) -> str:
        """A hash of everything the frame's pixels depend on: inputs, parameters, models, seed, version."""
        digest = hashlib.sha256()
        record = {"stage": self.name, "parameters": self.parameters(), "identity": self.identity(),
                  "frame_seed": self.params.frame_seed(frame), "window": inputs.window.as_list()}
        digest.update(json.dumps(record, sort_keys=True).encode())
        for name in sorted(inputs.images):
            image = np.ascontiguousarray(inputs.images[name], dtype=np.float32)
            digest.update(f"\0{name}{image.shape}".encode())
            digest.update(image.tobytes())
        return digest.hexdigest()

    def provenance(self, frame: int) -> dict[str, Any]:
        """What the frame's header records: the parameters, the models' hashes, the seed, the version."""
        p, identity = self.params, self.identity()
        return {
            "stage": self.name,
            "version": __version__,
            "model": p.model.path,
            "model_hash": identity.get("model", ""),
            "seed": p.frame_seed(frame),
            "parameters": json.dumps(self.parameters(), sort_keys=True),
            "controlnets": json.dumps([{"path": c.path, "source": c.source, "weight": c.weight, "hash": h}
                                       for c, h in zip(p.model.controlnets, identity.get("controlnets", []))]),
            "loras": json.dumps([{"path": lora.path, "weight": lora.weight, "hash": h}
                                 for lora, h in zip(p.model.loras, identity.get("loras", []))]),
            "ip_adapter": json.dumps(None if p.model.ip_adapter is None else {
                "path": p.model.ip_adapter.path, "image": p.style_reference, "scale": p.model.ip_adapter.scale,
                "hash": identity.get("ip_adapter"), "image_hash": identity.get("style_reference")}),
            "device": f"{identity.get('device')} {identity.get('dtype')}",
        }

    # --- one frame ----------------------------------------------------------------------------

    def render(self, frame: int, window: Window, inputs: FrameInputs, cancel: threading.Event) -> FrameResult:
        """Stylize one frame; ``cancel`` is checked between denoising steps."""
        source = inputs.images["Source"]  # (H, W, 4) premultiplied RGBA
        rgb, alpha = source[..., :3], source[..., 3]
        if self.is_identity(frame):
            return FrameResult(source.copy(), window, self.provenance(frame))
        if self._pipe is None:
            raise RuntimeError("begin_sequence() must run before render()")
        encoded = self.encoding.encode(rgb, alpha)
        conditions = [(net.source, _condition(net, inputs, encoded.image)) for net in self.params.model.controlnets]
        seed = self.params.frame_seed(frame)

        def run_model(image: np.ndarray, controls: list[np.ndarray], tile: int) -> np.ndarray:
            return self._diffuse(image, controls, _tile_seed(seed, tile), cancel)

        model_image = stylize_at_resolution(
            encoded.image, conditions, run_model, self.params.model.family, self.params.resolution
        )
        out = self.encoding.decode(encoded, model_image)  # (H, W, 3) premultiplied scene-linear
        out[(alpha <= 0) & ~rgb.any(axis=2)] = 0.0  # nothing appears where the plate is empty
        provenance = self.provenance(frame) | {"resolution": plan(
            window.width, window.height, self.params.model.family, self.params.resolution).describe()}
        return FrameResult(np.concatenate([out, alpha[..., None]], axis=2), window, provenance)

    def _diffuse(self, image: np.ndarray, controls: list[np.ndarray], seed: int, cancel: threading.Event) -> np.ndarray:
        """One pipeline call on an (h, w, 3) [0, 1] image of a size the model takes."""
        p, pipe = self.params, self._pipe
        height, width = image.shape[:2]

        def check_cancel(_pipe: object, _step: int, _t: object, tensors: dict[str, Any]) -> dict[str, Any]:
            if cancel.is_set():
                raise Cancelled()
            return tensors

        kwargs: dict[str, Any] = {
            "image": image[None],
            "strength": p.strength,
            "num_inference_steps": p.steps,
            "guidance_scale": p.guidance,
            "generator": torch.Generator("cpu").manual_seed(seed),
            "output_type": "np",
            "callback_on_step_end": check_cancel,
            **self._embeds,
        }
        if controls:
            weights = [net.weight for net in p.model.controlnets]
            kwargs["control_image"] = [c[None] for c in controls] if len(controls) > 1 else controls[0][None]
            kwargs["controlnet_conditioning_scale"] = weights if len(weights) > 1 else weights[0]
            if p.model.family == "flux" and len(controls) > 1:
                kwargs["control_mode"] = [None] * len(controls)  # plain (not Union) ControlNets: no mode each
        if controls or p.model.family == "flux":
            kwargs |= {"height": height, "width": width}
        with torch.no_grad():
            result = pipe(**kwargs).images  # type: ignore[misc]
        return np.asarray(result[0], dtype=np.float32)


def _uses_cfg(p: StylizeParameters) -> bool:
    """Classifier-free guidance (a negative branch) runs for SD/SDXL at guidance > 1; Flux embeds guidance instead."""
    return p.model.family != "flux" and p.guidance > 1.0


def _encode_prompt(pipe: DiffusionPipeline, p: StylizeParameters) -> dict[str, Any]:
    """The prompt's embeddings, once per shot, as the keyword arguments each family's pipeline takes."""
    device, cfg = pipe._execution_device, _uses_cfg(p)
    if p.model.family == "sd15":
        positive, negative = pipe.encode_prompt(p.prompt, device, 1, cfg, negative_prompt=p.negative_prompt)
        return {"prompt_embeds": positive, "negative_prompt_embeds": negative}
    if p.model.family == "sdxl":
        positive, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=p.prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=cfg,
            negative_prompt=p.negative_prompt,
        )
        return {"prompt_embeds": positive, "negative_prompt_embeds": negative,
                "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": negative_pooled}
    positive, pooled, _text_ids = pipe.encode_prompt(prompt=p.prompt, prompt_2=None, device=device)
    return {"prompt_embeds": positive, "pooled_prompt_embeds": pooled}


def _tile_seed(seed: int, tile: int) -> int:
    """Tile 0 (a whole frame) keeps the frame's seed; other tiles get independent seeds derived from it."""
    if tile == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{tile}".encode()).digest()[:8], "little") >> 1


def _condition(net: ControlNet, inputs: FrameInputs, display_rgb: np.ndarray) -> np.ndarray:
    """The ControlNet's (H, W, 3) [0, 1] image, built from the frame's AOV clips."""
    depth, normals, ids = inputs.get("Depth"), inputs.get("Normal"), inputs.get("ObjectID")
    if net.source == "depth":
        return depth_condition(depth[..., 0])  # type: ignore[index]
    if net.source == "normals":
        return normal_condition(normals)  # type: ignore[arg-type]
    if net.source == "lineart":
        return line_art(
            object_id=None if ids is None else ids[..., 0],
            normals=normals,
            depth=None if depth is None else depth[..., 0],
        )
    return beauty_edges(display_rgb)


def read_style_reference(path: str, encoding: ModelEncoding) -> np.ndarray:
    """A style image (any format OpenImageIO reads) as (H, W, 3) [0, 1] display-referred.

    Float images (EXR, HDR) are scene-linear and go through the job's colour encoding;
    integer images (PNG, JPEG, TIFF) are display-referred already.
    """
    image = oiio.ImageBuf(path)
    if image.has_error or image.spec().nchannels < 1:
        raise PlateError(f"cannot read the style reference: {image.geterror() or 'no image'}", path)
    pixels = image.get_pixels(oiio.FLOAT)  # (H, W, C), integer formats normalised to [0, 1]
    rgb = pixels[..., :3] if pixels.shape[2] >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    if image.spec().format.basetype in (oiio.HALF, oiio.FLOAT, oiio.DOUBLE):
        return encoding.encode(rgb).image
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)
