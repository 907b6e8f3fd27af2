"""The stylize stage: img2img diffusion of a plate, conditioned by the render's own AOVs.

One frame goes: premultiplied scene-linear RGBA -> the model's [0, 1] space (``color``) ->
diffusion at a resolution the model takes (``resolution``: pad, downscale or tiles), with
ControlNets fed by depth / normals / line art / edges built from the AOVs (``conditioning``)
-> the model's change transferred back onto the plate in scene-linear -> the plate's alpha.

Reproducible by construction: the prompt (and any style reference) is encoded once per
shot, and every frame (every tile) gets its own CPU generator seeded from the job's seed
policy, so a frame never depends on which other frames ran or on the device's RNG. The
consistency mechanisms (``consistency``) make a frame depend on the previous one on purpose:
such a shot renders in order from its first frame, and its cache keys form a chain.

Independent frames can render several to a pipeline call (``render_batch``, the job's
``performance.batch_frames``): each image keeps its own generator, so a frame gets what it gets
alone up to float rounding (kernels are picked by batch size; a batch of one is the same code).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..color import EncodedPlate, ModelEncoding
from ..errors import Cancelled, JobError, ModelError
from ..families import FAMILIES, FamilySpec
from ..io.conditioning import beauty_edges, depth_condition, line_art, normal_condition
from ..io.images import read_display_image
from ..io.plates import Window
from ..jobspec import ControlNet, Job, Lora, ModelSettings, Performance, Region, Shot
from ..regions.diffusion import Column, RegionalCall, controlnets_vary, flux_attention_kwargs, regional_call
from ..regions.mattes import FrameRegions
from ..stage import Clip, FrameInputs, FrameResult, StageDescription
from ..temporal.motion import VectorConvention
from .consistency import (
    ATTENTION,
    CARRY_LOOK,
    KEYFRAME_HEAL,
    RENDER_STATE,
    SEQUENTIAL,
    FrameFeatures,
    FrameMotion,
    TokenFlow,
    check_mechanisms,
    install_cross_frame,
)
from .geometry import ModelGeometry, model_geometry, pipeline_geometry
from .loading import model_hash, style_reference_embeds
from .model_files import check_model, ip_adapter_image_encoder
from .pipelines import NoiseChoice, StylizePipeline
from .pool import PipelinePool
from .prompts import encode_prompt, regional_pooled, segment_embeds, uses_cfg
from .resolution import ModelCalls, ResolutionPlan, ResolutionSettings, assemble, model_calls, plan

# The AOV clips each ControlNet source is built from: (required, optional).
_SOURCE_CLIPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "depth": (("Depth",), ()),
    "normals": (("Normal",), ()),
    "lineart": ((), ("ObjectID", "Normal", "Depth")),
    "edges": ((), ()),
    "tile": ((), ()),
}
StepHook = Callable[[int, torch.Tensor], torch.Tensor]  # (step, latents after it) -> latents to go on with
UNTOUCHED_WEIGHT = 1e-6  # a column weighing less than this on a pixel counts as absent there
Segment = tuple[str, str, int]  # a regional prompt: prompt, negative prompt, the LoRA set its text is encoded with
_CLIP_COMPONENTS = {"Source": 4, "Depth": 1, "Normal": 3, "ObjectID": 1, "Motion": 2}


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
    mechanisms: frozenset[str]  # consistency mechanisms (see diffusion/consistency.py)
    keyframe_interval: int
    fusion_strength: float
    latent_fusion_steps: float
    plate_change_tolerance: float
    vectors: VectorConvention
    regions: tuple[Region, ...] = ()  # with absolute paths
    region_loras: tuple[Lora, ...] = ()  # the regions' LoRAs the shot lacks, at weight 0: only StylizeStage loads them
    region_prompts: str = "attention"  # masked cross-attention, or a UNet pass per prompt

    @classmethod
    def for_shot(cls, job: Job, shot: Shot) -> StylizeParameters:
        """The shot's parameters: job settings, shot overrides applied, paths resolved against the job."""
        model = job.shot_model(shot)
        reference = job.resolve(model.ip_adapter.image) if model.ip_adapter is not None else None
        region_loras: list[Lora] = []
        regions = tuple(region.model_copy(deep=True) for region in job.shot_regions(shot))
        for region in regions:
            for lora in region.loras or []:
                lora.path = job.resolve(lora.path)
                if all(lora.path != loaded.path for loaded in (*model.loras, *region_loras)):
                    region_loras.append(Lora(path=lora.path, weight=0.0))
            if region.ip_adapter_image is not None:
                region.ip_adapter_image = job.resolve(region.ip_adapter_image)
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
            mechanisms=frozenset(job.consistency.mechanisms),
            keyframe_interval=job.consistency.keyframe_interval,
            fusion_strength=job.consistency.fusion_strength,
            latent_fusion_steps=job.consistency.latent_fusion_steps,
            plate_change_tolerance=job.consistency.plate_change_tolerance,
            vectors=VectorConvention(job.consistency.vector_units, job.consistency.vector_y),
            regions=regions,
            region_loras=tuple(region_loras),
            region_prompts=job.region_prompts,
        )

    def frame_seed(self, frame: int, seed: int | None = None) -> int:
        """The seed a frame renders with: the same every frame (policy fixed, or a locked seed), or offset by the frame.
        ``seed``: a region's own seed, under the same policy (default: the shot's)."""
        seed = self.seed if seed is None else seed
        return seed if self.seed_policy == "fixed" or "locked_seed" in self.mechanisms else seed + frame

    @property
    def loaded_loras(self) -> tuple[Lora, ...]:
        """The adapters the stylize pipeline loads, in loading._load_loras' order: the shot's, then the regions'."""
        return (*self.model.loras, *self.region_loras)

    def loaded_model(self) -> ModelSettings:
        """The model as StylizeStage loads it: the shot's settings with the regions' LoRAs added at weight 0."""
        return self.model.model_copy(update={"loras": list(self.loaded_loras)}) if self.region_loras else self.model

    @property
    def spec(self) -> FamilySpec:
        """The model family's spec."""
        return FAMILIES[self.model.family]

    @property
    def cfg(self) -> bool:
        """Whether the pipeline calls run classifier-free guidance (a negative branch)."""
        return uses_cfg(self.model.family, self.guidance)

    @property
    def sequential(self) -> bool:
        """Whether a frame needs the previous one (consistency along the motion vectors)."""
        return bool(self.mechanisms & SEQUENTIAL)


@dataclass
class _Frame:
    """A frame between its inputs and its result: its model calls, and what turning their results into RGBA needs."""

    frame: int
    window: Window
    rgb: np.ndarray  # the plate's premultiplied (H, W, 3)
    alpha: np.ndarray  # (H, W)
    encoded: EncodedPlate
    motion: FrameMotion | None  # from the previous frame (sequential mechanisms)
    strength: float
    seed: int  # the frame's seed; tile i's is _tile_seed(seed, i)
    calls: ModelCalls
    regions: FrameRegions | None = None
    regional: list[RegionalCall] | None = None  # per model call, with regions
    untouched: np.ndarray | None = None  # with regions: (H, W) bool, pixels only strength-0 columns weigh on


class StylizeStage:
    """img2img stylization of one shot (see the module docstring); implements ``stage.Stage``."""

    name = "stylize"

    def __init__(
        self,
        params: StylizeParameters,
        encoding: ModelEncoding,
        pool: PipelinePool,
        performance: Performance | None = None,
    ) -> None:
        self.params = params
        self.encoding = encoding
        self.pool = pool
        self.performance = performance or Performance()
        # Images per pipeline call for render_batch; a sequential shot's frames (and a shot with regions, whose
        # calls each install their own mattes) render one at a time.
        self.frames_per_call = (
            1 if params.sequential or params.regions else self.performance.frames_per_call(pool.device)
        )
        self._segments = _segments(params)  # regions: the distinct prompt segments, the shot's first
        self._pipe: StylizePipeline | None = None
        self._embeds: dict[str, Any] = {}
        self._regional_embeds: dict[str, Any] = {}  # regions: every segment's embeddings, on the token axis
        self._identity: dict[str, Any] = {}  # see identity()
        self._geometry: ModelGeometry | None = None  # see geometry()
        self._reference: np.ndarray | None = None  # the style image, (H, W, 3) [0, 1]
        self._region_references: list[np.ndarray] = []  # the regions' style images, as _region_styles lists them
        self._styles: list[Any] = []  # regions with style images: each image's embeddings as the UNet takes them
        # Sequential consistency: the previous frame's inputs and output, and its initial latent noise.
        self._first = 0
        self._previous: tuple[FrameInputs, np.ndarray] | None = None
        self._noise: torch.Tensor | None = None
        self._noise_frame: int | None = None
        self._features = FrameFeatures()  # cross_frame, flow_attention: self-attention inputs of earlier frames
        self._latents: list[torch.Tensor] = []  # latent_fusion: the previous frame's latents after each step

    # --- description --------------------------------------------------------------------------

    def describe(self) -> StageDescription:
        clips = control_clips(self.params.model.controlnets)
        if self.params.sequential:
            have = {clip.name for clip in clips}
            clips += [Clip("Motion", 2, description="backward motion vectors")]
            clips += [Clip(name, 1, optional=True) for name in ("Depth", "ObjectID") if name not in have]
        if self.params.style_reference:
            clips.append(Clip("StyleReference", 3, description="style image, read once per shot"))
        if self.params.sequential:
            notes = [
                (
                    "sequential: each frame needs the previous one's output, so the shot renders in order from its "
                    "first frame (handles included)"
                )
            ]
        else:
            notes = ["frames are independent: any frame renders alone, in any order"]
        if not self.params.spec.uses_cfg:
            notes.append(
                "Flux is guidance-distilled: guidance is its embedded guidance and the negative prompt is unused"
            )
        return StageDescription(
            self.name,
            tuple(clips),
            self.parameters(),
            sequential=self.params.sequential,
            state_from_rendering=bool(self.params.mechanisms & RENDER_STATE),
            notes=tuple(notes),
        )

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
            "consistency": {
                "mechanisms": sorted(p.mechanisms),
                "keyframe_interval": p.keyframe_interval,
                "fusion_strength": p.fusion_strength,
                "latent_fusion_steps": p.latent_fusion_steps,
                "plate_change_tolerance": p.plate_change_tolerance,
            },
            "color": self.encoding.description,
            "ocio_config": self.encoding.config_uri,
            **(
                {"regions": [_region_parameters(region) for region in p.regions], "region_prompts": p.region_prompts}
                if p.regions
                else {}
            ),
        }

    def region_of_definition(self, frame: int, source_window: Window) -> Window:
        return source_window  # the stylized layer covers the plate's data window

    def regions_of_interest(self, frame: int, window: Window) -> dict[str, Window]:
        return {clip.name: window for clip in self.describe().clips if clip.name != "StyleReference"}

    def frames_needed(self, frame: int) -> list[int]:
        return [frame - 1] if self.params.sequential and frame > self._first else []

    def is_identity(self, frame: int) -> bool:
        return self.params.strength == 0.0 and not any(region.strength for region in self.params.regions)

    # --- the sequence -------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Content hashes of the models and style image, the device and the version: what the pixels
        depend on besides parameters and inputs. Cheap after the first call (hashes are cached on disk)."""
        if not self._identity:
            p = self.params
            check_mechanisms(p.mechanisms, p.model.family, p.resolution.mode == "tiles", "consistency.mechanisms")
            check_region_settings(p)
            check_model(p.loaded_model())
            self.geometry()
            identity: dict[str, Any] = {
                "model": model_hash(p.model.path),
                "controlnets": [model_hash(c.path) for c in p.model.controlnets],
                "loras": [model_hash(lora.path) for lora in p.loaded_loras],
                "device": torch.device(self.pool.device).type,
                "dtype": str(self.pool.dtype).removeprefix("torch."),
                # CPU kernels split work by thread count, and the last bits of a float sum follow the split.
                "threads": torch.get_num_threads() if torch.device(self.pool.device).type == "cpu" else None,
                "version": __version__,
            }
            if p.spec.vae_upcast and self.pool.dtype == torch.bfloat16:  # where vae_bfloat16 takes effect
                identity["vae_bfloat16"] = self.performance.vae_bfloat16
            if p.model.ip_adapter is not None and p.style_reference is not None:
                self._reference = read_display_image(p.style_reference, self.encoding)
                identity["ip_adapter"] = model_hash(p.model.ip_adapter.path)
                identity["image_encoder"] = model_hash(ip_adapter_image_encoder(p.model.ip_adapter))
                identity["style_reference"] = hashlib.sha256(self._reference.tobytes()).hexdigest()
            self._region_references = [read_display_image(path, self.encoding) for path in _region_styles(p)]
            if self._region_references:
                identity["region_style_references"] = [
                    hashlib.sha256(image.tobytes()).hexdigest() for image in self._region_references
                ]
            self._identity = identity
        return self._identity

    def geometry(self) -> ModelGeometry:
        """The model's latent scale, channels and UNet depth, from its config files (no weights loaded)."""
        if self._geometry is None:
            self._geometry = model_geometry(self.params.model.path, self.params.model.family)
        return self._geometry

    def begin_sequence(self, first: int, last: int) -> None:
        """Start a shot's frames ``first``..``last``: check the settings; the model loads at the first render."""
        self.identity()
        self._first, self._previous, self._noise, self._noise_frame = first, None, None, None
        self._features, self._latents = FrameFeatures(), []

    def _load(self) -> StylizePipeline:
        """Load (or reuse) the pipeline; encode the prompt and the style reference once for the shot."""
        if self._pipe is not None:
            return self._pipe
        p = self.params
        pipe: StylizePipeline = self.pool.get(p.loaded_model(), self.performance)
        self._pipe = pipe
        pipe.set_progress_bar_config(disable=True)
        loaded, planned = pipeline_geometry(pipe, p.model.family), self.geometry()
        if (loaded.vae_scale, loaded.latent_channels) != (planned.vae_scale, planned.latent_channels):
            raise ModelError(
                f"the loaded model has latent scale {loaded.vae_scale} and {loaded.latent_channels} "
                f"latent channels, but its configs say {planned.vae_scale} and "
                f"{planned.latent_channels}",
                p.model.path,
            )
        cfg = p.cfg
        with torch.no_grad():
            self._embeds = encode_prompt(pipe, p.model.family, p.prompt, p.negative_prompt, cfg)
            if len(self._segments) > 1:
                parts = [self._embeds] + [self._encode_segment(pipe, segment) for segment in self._segments[1:]]
                self._regional_embeds = segment_embeds(parts)
            if self._reference is not None:
                self._embeds |= style_reference_embeds(pipe, self._reference, cfg)
            if self._region_references:
                self._styles = [self._embeds["ip_adapter_image_embeds"]] + [
                    style_reference_embeds(pipe, image, cfg)["ip_adapter_image_embeds"]
                    for image in self._region_references
                ]
        return pipe

    def _encode_segment(self, pipe: StylizePipeline, segment: Segment) -> dict[str, Any]:
        """A region's prompt embeddings, encoded with its LoRA set's adapters (the shot's again afterwards)."""
        prompt, negative, lora_set = segment
        adapters = [f"lora{number}" for number in range(len(self.params.loaded_loras))]  # loading._load_loras' names
        sets = _lora_sets(self.params)
        if lora_set:
            pipe.set_adapters(adapters, adapter_weights=list(sets[lora_set]))
        try:
            return encode_prompt(pipe, self.params.model.family, prompt, negative, self.params.cfg)
        finally:
            if lora_set:
                pipe.set_adapters(adapters, adapter_weights=list(sets[0]))

    def end_sequence(self) -> None:
        self._pipe, self._embeds, self._regional_embeds, self._styles = None, {}, {}, []

    def cache_key(self, frame: int, inputs: FrameInputs, previous_key: str | None = None) -> str:
        """A hash of everything the frame's pixels depend on: inputs, parameters, models, seed, version; for a
        sequential shot also the previous frame's key (a chain) and the shot's first frame (keyframe phase)."""
        digest = hashlib.sha256()
        record = {
            "stage": self.name,
            "parameters": self.parameters(),
            "identity": self.identity(),
            "frame_seed": self.params.frame_seed(frame),
            "window": inputs.window.as_list(),
        }
        if self.params.sequential:
            record |= {"previous": previous_key, "first": self._first}
        digest.update(json.dumps(record, sort_keys=True).encode())
        for name in sorted(inputs.images):
            image = np.ascontiguousarray(inputs.images[name], dtype=np.float32)
            digest.update(f"\0{name}{image.shape}".encode())
            digest.update(image.tobytes())
        if inputs.regions is not None:
            digest.update(f"\0regions{inputs.regions.names}".encode())
            digest.update(np.ascontiguousarray(inputs.regions.weights, dtype=np.float32).tobytes())
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
            "controlnets": json.dumps(
                [
                    {"path": c.path, "source": c.source, "weight": c.weight, "hash": h}
                    for c, h in zip(p.model.controlnets, identity["controlnets"], strict=True)
                ]
            ),
            "loras": json.dumps(
                [
                    {"path": lora.path, "weight": lora.weight, "hash": h}
                    for lora, h in zip(
                        p.model.loras, identity["loras"], strict=False
                    )  # regions' LoRAs come after the job's
                ]
            ),
            "ip_adapter": json.dumps(
                None
                if p.model.ip_adapter is None
                else {
                    "path": p.model.ip_adapter.path,
                    "image": p.style_reference,
                    "scale": p.model.ip_adapter.scale,
                    "hash": identity.get("ip_adapter"),
                    "image_hash": identity.get("style_reference"),
                }
            ),
            "device": f"{identity.get('device')} {identity.get('dtype')}",
        }

    # --- one frame ----------------------------------------------------------------------------

    def render(self, frame: int, window: Window, inputs: FrameInputs, cancel: threading.Event) -> FrameResult:
        """Stylize one frame; ``cancel`` is checked between denoising steps. A sequential shot's frames must
        come in order, each followed by ``advance`` with what was written."""
        p = self.params
        if self.is_identity(frame):
            return self._untouched(inputs)
        # 1. The model, the prompt's embeddings; the frame up to its model calls (one per tile).
        pipe = self._load()
        work = self._prepare(frame, window, inputs)
        layout, outputs = work.calls.layout, []
        for tile, (image, controls) in enumerate(zip(work.calls.images, work.calls.conditions, strict=True)):
            # 2. What carries over from the previous frame: its noise, latents and attention features.
            noise = (
                self._initial_noise(frame, work.seed, work.motion, layout) if "warped_noise" in p.mechanisms else None
            )
            fusion = self._fuse_latents(pipe, work.motion, layout) if "latent_fusion" in p.mechanisms else None
            if "flow_attention" in p.mechanisms and work.motion is not None:
                self._features.flow = TokenFlow(work.motion, layout)
            # 3. The pipeline call.
            outputs += self._diffuse(
                [image],
                [controls],
                [_tile_seed(work.seed, tile)],
                work.strength,
                cancel,
                noise,
                fusion,
                work.regional[tile] if work.regional else None,
            )
        # 4. The result back onto the plate.
        self._features.finish_frame(is_anchor=frame == self._first or not self._features.anchor)
        return self._finish(work, outputs, batch=1)

    def render_batch(self, items: Sequence[FrameInputs], cancel: threading.Event) -> list[FrameResult | Exception]:
        """Stylize independent frames (not a sequential shot's) together, each as ``render`` would up to float
        rounding: their model calls run ``frames_per_call`` images to a pipeline call, each image with its own
        seed's generator. A frame that fails gets its exception in place of a result and the others still
        render; when a batched call fails, its images run one call each, so that the failure lands on the frame
        that causes it, and after running out of memory so does the rest of the shot. ``Cancelled`` stops them all."""
        if self.params.sequential:
            raise ValueError("a sequential shot's frames render one at a time, in order (render and advance)")
        results: list[FrameResult | Exception | None] = [None] * len(items)
        frames: dict[int, _Frame] = {}  # by position in items
        for index, inputs in enumerate(items):
            if self.is_identity(inputs.frame):
                results[index] = self._untouched(inputs)
                continue
            self._load()
            try:
                frames[index] = self._prepare(inputs.frame, inputs.window, inputs)
            except Exception as exc:  # noqa: BLE001 - a frame whose inputs cannot be stylized (NaN in a condition, ...)
                results[index] = exc
        outputs: dict[tuple[int, int], tuple[np.ndarray, int]] = {}  # (index, tile) -> (image, images in its call)
        by_size: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for index, work in frames.items():
            for tile, image in enumerate(work.calls.images):
                by_size.setdefault(image.shape, []).append((index, tile))
        for calls in by_size.values():
            while calls:
                group, calls = calls[: self.frames_per_call], calls[self.frames_per_call :]
                self._run_calls(
                    [call for call in group if not isinstance(results[call[0]], Exception)],
                    frames,
                    cancel,
                    outputs,
                    results,
                )
        for index, work in frames.items():
            if results[index] is None:
                tiles = [outputs[index, tile] for tile in range(len(work.calls.images))]
                try:
                    results[index] = self._finish(work, [image for image, _ in tiles], max(n for _, n in tiles))
                except Exception as exc:  # noqa: BLE001 - a model result assemble refuses (NaN, ...)
                    results[index] = exc
        finished = [result for result in results if result is not None]
        if len(finished) != len(items):
            raise RuntimeError("a frame of the batch was left without a result")
        return finished

    def _run_calls(
        self,
        calls: list[tuple[int, int]],
        frames: dict[int, _Frame],
        cancel: threading.Event,
        outputs: dict[tuple[int, int], tuple[np.ndarray, int]],
        results: list[FrameResult | Exception | None],
    ) -> None:
        """One pipeline call for ``calls`` ((frame index, tile) of one working size), into ``outputs``; a failing
        call's frames fail alone (see ``render_batch``)."""
        if not calls:
            return
        works = [frames[index] for index, _ in calls]
        try:
            images = self._diffuse(
                [work.calls.images[tile] for work, (_, tile) in zip(works, calls, strict=True)],
                [work.calls.conditions[tile] for work, (_, tile) in zip(works, calls, strict=True)],
                [_tile_seed(work.seed, tile) for work, (_, tile) in zip(works, calls, strict=True)],
                self.params.strength,
                cancel,
                regional=works[0].regional[calls[0][1]] if works[0].regional else None,
            )
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the batch is retried smaller, then reported per frame
            failure = exc.with_traceback(None)  # its traceback's frames hold the failed call's tensors
        else:
            for call, image in zip(calls, images, strict=True):
                outputs[call] = (image, len(calls))
            return
        # Retried outside the except block, so that the failed call's memory is free first.
        if len(calls) == 1:
            results[calls[0][0]] = failure
            return
        if isinstance(failure, torch.OutOfMemoryError):
            self.frames_per_call = 1  # a batch this size did not fit: the shot's other calls run one image each
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        for call in calls:  # each alone: a frame that breaks the call fails alone
            if not isinstance(results[call[0]], Exception):  # not an earlier tile's failure
                self._run_calls([call], frames, cancel, outputs, results)

    def _prepare(self, frame: int, window: Window, inputs: FrameInputs) -> _Frame:
        """A frame up to its model calls: encoded for the model, its conditions built, carried along the vectors
        from the previous frame (sequential mechanisms), laid out at the model's resolution."""
        p = self.params
        source = inputs.images["Source"]  # (H, W, 4) premultiplied RGBA
        rgb, alpha = source[..., :3], source[..., 3]
        encoded = self.encoding.encode(rgb, alpha)
        conditions = [(net.source, control_condition(net, inputs, encoded.image)) for net in p.model.controlnets]
        motion = self._motion(frame, inputs)
        if motion is not None and p.mechanisms & CARRY_LOOK:
            motion = self._carrying(motion, inputs, encoded.image)
        image, heal = encoded.image, 1.0
        if motion is not None and self._previous is not None and p.mechanisms & {"pixel_fusion", "keyframes"}:
            previous = self._previous[1]  # motion is from the previous frame, so there is one
            previous_image = self.encoding.encode(previous[..., :3], previous[..., 3]).image
            if "keyframes" in p.mechanisms and not self._is_keyframe(frame):
                image, heal = motion.carry(previous_image, image, 1.0), KEYFRAME_HEAL
            elif "pixel_fusion" in p.mechanisms:
                image = motion.carry(previous_image, image, p.fusion_strength)
        calls = model_calls(image, conditions, self.geometry(), p.resolution)
        work = _Frame(frame, window, rgb, alpha, encoded, motion, p.strength * heal, p.frame_seed(frame), calls)
        if p.regions and inputs.regions is not None:
            self._regional_frame(work, inputs.regions, heal)  # keyframes heal every region alike
        return work

    def _regional_frame(self, work: _Frame, regions: FrameRegions, heal: float) -> None:
        """Lay the frame's region weights out like its model calls (pad, downscale or tiles) with each column's
        settings; and each pixel's strength at the plate's size."""
        p = self.params
        weights = np.concatenate([1.0 - regions.weights.sum(axis=2, keepdims=True), regions.weights], axis=2)
        weights = np.clip(weights, 0.0, 1.0).astype(np.float32)
        columns = _columns(p, self._segments, heal, work.frame)
        # Untouched: every column that changes anything weighs (almost) nothing there. Deciding by the weights, not
        # by their product with the strengths, keeps float32 round-off (column 0 = 1 - sum of soft weights,
        # ~1e-7 where soft mattes overlap a full one) from making a strength-0 pixel differ from the plate.
        changing = np.array([c.strength > 0.0 for c in columns])
        work.untouched = np.all(weights[..., changing] < UNTOUCHED_WEIGHT, axis=2)
        pieces: list[list[np.ndarray]] = []
        for start in range(0, weights.shape[2], 3):  # model_calls lays out 3-channel images
            chunk = np.zeros((*weights.shape[:2], 3), np.float32)
            chunk[..., : min(3, weights.shape[2] - start)] = weights[..., start : start + 3]
            pieces.append(model_calls(chunk, [], self.geometry(), p.resolution).images)
        sets = _lora_sets(p)
        work.regional = []
        for tile in range(len(work.calls.images)):
            laid = np.clip(np.concatenate([piece[tile] for piece in pieces], axis=2)[..., : weights.shape[2]], 0, 1)
            laid /= np.maximum(laid.sum(axis=2, keepdims=True), 1e-6)
            seeded = tuple(replace(column, seed=_tile_seed(column.seed, tile)) for column in columns)  # as the shot's
            work.regional.append(RegionalCall(laid.astype(np.float32), seeded, sets))
        work.regions = regions

    def _finish(self, work: _Frame, outputs: list[np.ndarray], batch: int) -> FrameResult:
        """The frame's RGBA from its model calls' results; ``batch``: the most images a call of it ran with."""
        p = self.params
        model_image = assemble(work.calls, outputs)
        out = self.encoding.decode(work.encoded, model_image)  # (H, W, 3) premultiplied scene-linear
        out[(work.alpha <= 0) & ~work.rgb.any(axis=2)] = 0.0  # nothing appears where the plate is empty
        if work.untouched is not None:
            out[work.untouched] = work.rgb[work.untouched]  # the plate's own values, bit for bit
        provenance = self.provenance(work.frame) | {
            "resolution": work.calls.layout.describe(),
            "performance": json.dumps({"batch": batch, "compile": self.performance.compile}),
        }
        if p.sequential:
            provenance["consistency"] = (
                "keyframe"
                if self._is_keyframe(work.frame)
                else ("from the previous frame" if work.motion is not None else "first frame")
            )
        if work.regions is not None:
            provenance["regions"] = work.regions.describe()
        return FrameResult(np.concatenate([out, work.alpha[..., None]], axis=2), work.window, provenance, work.regions)

    def _untouched(self, inputs: FrameInputs) -> FrameResult:
        """A frame at strength 0 everywhere: the plate itself (and its region weights)."""
        provenance = self.provenance(inputs.frame)
        if inputs.regions is not None:
            provenance["regions"] = inputs.regions.describe()
        return FrameResult(inputs.images["Source"].copy(), inputs.window, provenance, inputs.regions)

    def advance(self, frame: int, inputs: FrameInputs, output: np.ndarray) -> None:
        """Remember a finished frame (rendered, or taken from the cache) for the next one of a sequential shot;
        ``output`` is its RGBA as written. A cached frame's initial noise is rebuilt so the chain goes on."""
        p = self.params
        if not p.sequential:
            return
        if "warped_noise" in p.mechanisms and (self._noise is None or self._noise_frame != frame):
            layout = plan(inputs.window.width, inputs.window.height, self.geometry(), p.resolution)
            self._initial_noise(frame, p.frame_seed(frame), self._motion(frame, inputs), layout)
        self._previous = (inputs, output)

    def _motion(self, frame: int, inputs: FrameInputs) -> FrameMotion | None:
        """How frame t relates to the previous frame, when that frame came just before."""
        p = self.params
        if not p.sequential or self._previous is None or self._previous[0].frame != frame - 1:
            return None
        return FrameMotion.between(self._previous[0], inputs, p.vectors)

    def _carrying(self, motion: FrameMotion, inputs: FrameInputs, display: np.ndarray) -> FrameMotion:
        """``motion`` narrowed to where the previous frame's look may carry: not where the plate changed in place
        (``display``: this frame's plate as the model sees it), nor where outlines moved away."""
        p = self.params
        assert self._previous is not None  # motion is from the previous frame
        previous = self._previous[0]
        source = previous.images["Source"]
        previous_display = self.encoding.encode(source[..., :3], source[..., 3]).image
        motion = motion.where_plate_unchanged(previous_display, display, p.plate_change_tolerance)
        layout = plan(inputs.window.width, inputs.window.height, self.geometry(), p.resolution)
        return motion.where_outlines_stay(previous, inputs, layout.width / layout.scaled_width)

    def _is_keyframe(self, frame: int) -> bool:
        return (frame - self._first) % self.params.keyframe_interval == 0

    def _initial_noise(self, frame: int, seed: int, motion: FrameMotion | None, layout: ResolutionPlan) -> torch.Tensor:
        """Frame ``frame``'s initial latent noise (1, C, h, w): fresh for the first frame, else the previous
        frame's moved along the vectors (fresh where not visible before). Remembered for the next frame."""
        if self._noise is not None and self._noise_frame == frame:
            return self._noise
        geometry = layout.geometry
        shape = (
            1,
            geometry.latent_channels,
            layout.working_height // geometry.vae_scale,
            layout.working_width // geometry.vae_scale,
        )
        fresh = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
        noise = fresh if motion is None or self._noise is None else motion.carry_noise(self._noise, fresh, layout)
        self._noise, self._noise_frame = noise, frame
        return noise

    def _fuse_latents(self, pipe: StylizePipeline, motion: FrameMotion | None, layout: ResolutionPlan) -> StepHook:
        """latent_fusion's per-step hook: keep this frame's latents; blend the previous frame's into the early steps."""
        previous, self._latents = self._latents, []

        def fuse(step: int, latents: torch.Tensor) -> torch.Tensor:
            grid = pipe.latent_grid(latents, layout.working_height, layout.working_width)  # (B, C, h, w)
            steps = pipe.num_timesteps
            # img2img runs the tail of one schedule, so step s here ends at the timestep of the previous frame's
            # step s + len(previous) - steps (they differ where the strength does: keyframes heal at less).
            same = step + len(previous) - steps
            fusing = motion is not None and 0 <= same < len(previous) and step < self.params.latent_fusion_steps * steps
            if motion is not None and fusing:
                grid = motion.carry_latents(previous[same], grid, layout, self.params.fusion_strength)
            self._latents.append(grid.detach())
            if not fusing:
                return latents
            return pipe.packed(grid)

        return fuse

    def _diffuse(
        self,
        images: list[np.ndarray],
        controls: list[list[np.ndarray]],
        seeds: list[int],
        strength: float,
        cancel: threading.Event,
        noise: torch.Tensor | None = None,
        fusion: StepHook | None = None,
        regional: RegionalCall | None = None,
    ) -> list[np.ndarray]:
        """One pipeline call on (h, w, 3) [0, 1] images of one size the model takes, each with its ControlNets'
        images and its own seed's generator; the results in the same order. ``noise`` replaces the pipeline's
        own initial noise (1, C, h/f, w/f for the VAE's scale f) and ``fusion`` sees (and may replace) the latents
        after each step, when given (one image only). ``regional``: the image's regions (one image only)."""
        p, pipe, spec = self.params, self._load(), self.params.spec
        height, width = images[0].shape[:2]
        count = len(images)

        # 1. The prompt's embeddings: the shot's, or with regions every segment's (mixed or per pass).
        embeds, pooled = self._embeds, None
        if regional is not None:
            strength = float(regional.strength_map().max())
            if strength <= 0.0:
                return [images[0].copy()]  # every pixel untouched: _finish puts the plate's own values back
            if regional.segments > 1:
                embeds, pooled = regional_pooled(self._regional_embeds, regional, p.region_prompts == "passes", p.cfg)

        # 2. The call's arguments: images, one generator per image, embeddings once per image, per-step callback.
        def on_step(_pipe: object, step: int, _t: object, tensors: dict[str, Any]) -> dict[str, Any]:
            if cancel.is_set():
                raise Cancelled()
            if step_hook is not None:
                tensors["latents"] = step_hook(step, tensors["latents"])
            return tensors

        kwargs: dict[str, Any] = {
            "image": np.stack(images),
            "strength": strength,
            "num_inference_steps": p.steps,
            "guidance_scale": p.guidance,
            # A generator per image: each draws its VAE sample and noise as it would alone (diffusers' img2img).
            "generator": [torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            "output_type": "np",
            "callback_on_step_end": on_step,
            "callback_on_step_end_tensor_inputs": ["latents"],
            # The prompt's embeddings once per image; the pipelines repeat IP-Adapter embeddings themselves.
            # (None: no negative prompt without classifier-free guidance, at guidance <= 1.)
            **{
                name: value if value is None or "ip_adapter" in name else torch.cat([value] * count)
                for name, value in embeds.items()
            },
        }

        # 3. ControlNet images and weights (with regions that set their own weights: scaled per pixel instead).
        if controls[0]:
            weights = [net.weight for net in p.model.controlnets]
            per_net = [np.stack([image_controls[net] for image_controls in controls]) for net in range(len(weights))]
            kwargs["control_image"] = per_net if len(per_net) > 1 else per_net[0]
            if regional is not None and controlnets_vary(regional):
                weights = [1.0] * len(weights)  # scaled per pixel instead (regions.diffusion)
            kwargs["controlnet_conditioning_scale"] = weights if len(weights) > 1 else weights[0]
            if spec.controlnet_modes and len(per_net) > 1:
                kwargs["control_mode"] = [None] * len(per_net)  # plain (not Union) ControlNets: no mode each
        if controls[0] or spec.img2img_size:
            kwargs |= {"height": height, "width": width}
        if regional is not None and regional.segments > 1 and spec.denoiser == "transformer":
            if p.region_prompts == "attention":  # a transformer's joint attention takes the regions as a mask
                kwargs["joint_attention_kwargs"] = flux_attention_kwargs(pipe, regional, embeds["prompt_embeds"])

        # 4. The call, with the initial noise chosen, the regions and the cross-frame attention installed for it.
        attention = p.mechanisms & ATTENTION
        step_hook: StepHook | None
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if regional is not None:
                adapters = [f"lora{number}" for number in range(len(p.loaded_loras))]  # loading._load_loras' names
                step_hook = stack.enter_context(
                    regional_call(
                        pipe, regional, noise, fusion, adapters, p.region_prompts == "passes", pooled, self._styles
                    )
                )
            else:
                step_hook = fusion
                stack.enter_context(pipe.noise_chosen_by(None if noise is None else _given(noise)))
            stack.enter_context(_frame_attention_installed(pipe, self._features, attention))
            result = pipe(**kwargs).images
        return [np.asarray(image, dtype=np.float32) for image in result]


def _given(noise: torch.Tensor) -> NoiseChoice:
    """The initial noise choice that puts ``noise`` (1, C, h, w) on the plate instead of the pipeline's draw."""

    def choose(plate: torch.Tensor, _drawn: torch.Tensor) -> torch.Tensor:
        return noise.to(plate.device, plate.dtype)

    return choose


@contextlib.contextmanager
def _frame_attention_installed(
    pipe: StylizePipeline, features: FrameFeatures, mechanisms: frozenset[str]
) -> Iterator[None]:
    """While a pipeline call runs, the UNet's self-attention also attends to earlier frames (``cross_frame``:
    the anchor and previous frames; ``flow_attention``: the previous frame along the motion vectors).

    Installed per call (the pipeline is shared with other shots) and after any IP-Adapter, whose
    processors on the cross-attention layers stay as they are.
    """
    if not mechanisms:
        yield
        return
    original = install_cross_frame(pipe.unet, features, mechanisms)
    try:
        yield
    finally:
        pipe.unet.set_attn_processor(original)


def _segments(p: StylizeParameters) -> list[Segment]:
    """The distinct prompt segments of the shot and its regions, the shot's first: a LoRA's text-encoder layers
    change a prompt's embeddings, so a prompt under another LoRA set is another segment."""
    segments = [(p.prompt, p.negative_prompt, 0)]
    for region in p.regions:
        if (segment := _segment(p, region, _lora_sets(p))) not in segments:
            segments.append(segment)
    return segments


def _segment(p: StylizeParameters, region: Region, sets: tuple[tuple[float, ...], ...]) -> Segment:
    lora_set = 0 if region.loras is None else sets.index(_lora_weights(p, region.loras))
    return _or(region.prompt, p.prompt), _or(region.negative_prompt, p.negative_prompt), lora_set


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _lora_weights(p: StylizeParameters, loras: Sequence[Lora]) -> tuple[float, ...]:
    """Each loaded adapter's weight (``loaded_loras``' order) when ``loras`` are the active set."""
    weights = {lora.path: lora.weight for lora in loras}
    return tuple(weights.get(loaded.path, 0.0) for loaded in p.loaded_loras)


def _lora_sets(p: StylizeParameters) -> tuple[tuple[float, ...], ...]:
    """The distinct LoRA sets (adapter weights), the shot's own first."""
    sets = [_lora_weights(p, p.model.loras)]
    for region in p.regions:
        if region.loras is not None and (weights := _lora_weights(p, region.loras)) not in sets:
            sets.append(weights)
    return tuple(sets)


def _columns(p: StylizeParameters, segments: list[Segment], heal: float, frame: int) -> tuple[Column, ...]:
    """Column 0 (the shot's own settings) and one per region: strength (times ``heal``), prompt segment, LoRA
    set, seed on ``frame`` under the seed policy (before ``_tile_seed``), ControlNet weights and style image."""
    sets, styles = _lora_sets(p), _region_styles(p)
    own_scales = tuple(net.weight for net in p.model.controlnets)
    own_seed = p.frame_seed(frame)
    columns = [Column(p.strength * heal, 0, 0, own_seed, own_scales)]
    for region in p.regions:
        segment = _segment(p, region, sets)
        scales = tuple((region.controlnet_weights or {}).get(net.source, net.weight) for net in p.model.controlnets)
        style = 0 if region.ip_adapter_image is None else 1 + styles.index(region.ip_adapter_image)
        columns.append(
            Column(
                _or(region.strength, p.strength) * heal,
                segments.index(segment),
                segment[2],
                own_seed if region.seed is None else p.frame_seed(frame, region.seed),
                scales,
                style,
            )
        )
    return tuple(columns)


def _region_parameters(region: Region) -> dict[str, Any]:
    """A region as parameters() records it, without the machine's paths: its LoRAs as their weights (the
    identity's hashes name the files, as for the shot's own), its style image by the file's hash."""
    document = region.model_dump(mode="json", exclude_none=True)
    if region.loras is not None:
        document["loras"] = [{"weight": lora.weight} for lora in region.loras]
    if region.ip_adapter_image is not None:
        document["ip_adapter_image"] = {"sha256": model_hash(region.ip_adapter_image)}
    return document


def _region_styles(p: StylizeParameters) -> list[str]:
    """The distinct style images (absolute paths) the regions set, in order."""
    styles: list[str] = []
    for region in p.regions:
        if region.ip_adapter_image is not None and region.ip_adapter_image not in styles:
            styles.append(region.ip_adapter_image)
    return styles


def check_region_settings(p: StylizeParameters) -> None:
    """Refuse (JobError, one line) region settings this model cannot honour, before any frame renders."""
    if not p.regions:
        return
    sources = {net.source for net in p.model.controlnets}
    for region in p.regions:
        where = f"regions.{region.name}"
        if region.controlnet_weights and p.spec.denoiser != "unet":
            raise JobError("controlnet_weights per region work on SD 1.5 and SDXL, not on Flux yet", where)
        if region.ip_adapter_image is not None and (p.model.ip_adapter is None or p.spec.denoiser != "unet"):
            raise JobError("ip_adapter_image per region needs the model's ip_adapter, on SD 1.5 or SDXL", where)
        unknown = sorted(set(region.controlnet_weights or {}) - sources)
        if unknown:
            raise JobError(
                f"controlnet_weights names {', '.join(unknown)}, but the model has no such ControlNet "
                f"(its sources: {', '.join(sorted(sources)) or 'none'})",
                where,
            )
    if len(_segments(p)) > 1 and p.model.ip_adapter is not None and p.region_prompts == "attention":
        raise JobError(
            "regional prompts with an IP-Adapter need region_prompts 'passes' (masked cross-attention "
            "would replace the adapter's)",
            "regions",
        )


def _tile_seed(seed: int, tile: int) -> int:
    """Tile 0 (a whole frame) keeps the frame's seed; other tiles get independent seeds derived from it."""
    if tile == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{tile}".encode()).digest()[:8], "little") >> 1


def control_clips(controlnets: Sequence[ControlNet]) -> list[Clip]:
    """The clips (``Source`` and the AOVs) that ``controlnets``' condition images are built from."""
    needed, optional = {"Source"}, set()
    for net in controlnets:
        required, extra = _SOURCE_CLIPS[net.source]
        needed |= set(required)
        optional |= set(extra)
    return [
        Clip(name, _CLIP_COMPONENTS[name], optional=name not in needed)
        for name in ("Source", "Depth", "Normal", "ObjectID")
        if name in needed | optional
    ]


def control_condition(net: ControlNet, inputs: FrameInputs, display_rgb: np.ndarray) -> np.ndarray:
    """The ControlNet's (H, W, 3) [0, 1] image, built from the frame's AOV clips (see ``control_clips``)."""
    depth, normals, ids = inputs.get("Depth"), inputs.get("Normal"), inputs.get("ObjectID")
    if net.source == "depth":
        return depth_condition(inputs.images["Depth"][..., 0])  # a required clip (control_clips)
    if net.source == "normals":
        return normal_condition(inputs.images["Normal"])
    if net.source == "tile":
        return display_rgb  # the image itself, as SD 1.5's tile ControlNet takes it
    if net.source == "lineart":
        return line_art(
            object_id=None if ids is None else ids[..., 0],
            normals=normals,
            depth=None if depth is None else depth[..., 0],
        )
    return beauty_edges(display_rgb)
