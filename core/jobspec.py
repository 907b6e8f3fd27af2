"""The job spec: one versioned JSON document that describes a piece of stylization work.

Nuke, the CLI, the OTIO adapter, Ray and the farm emitter all read and write this document.
Every model forbids unknown keys, so a typo is reported with its field path instead of being
silently ignored. Relative paths are resolved against the job file's folder.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .color import DEFAULT_DISPLAY, DEFAULT_LOG_SPACE, DEFAULT_PLATE_SPACE, DEFAULT_VIEW, PINNED_CONFIG, ModelEncoding
from .errors import JobError
from .families import Family
from .io.aovs import ROLES
from .io.atomic import atomic_target
from .io.plates import COMPRESSIONS
from .io.sequence import to_printf

JOB_VERSION: Literal[1] = 1
_FLOATING_CONFIGS = ("ocio://default", "ocio://cg-config-latest", "ocio://studio-config-latest")
_FRAME_TOKEN = re.compile(r"#+|@+|%0?\d*d")
_ASPECT = r"^\d+(\.\d+)?:\d+(\.\d+)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FrameRange(_Strict):
    """Inclusive cut range, without handles."""

    first: int
    last: int

    @model_validator(mode="after")
    def _ordered(self) -> FrameRange:
        if self.last < self.first:
            raise ValueError(f"last ({self.last}) is before first ({self.first})")
        return self


class ShotOverrides(_Strict):
    """Per-shot settings that replace the job's own (e.g. from an editorial clip's metadata)."""

    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**63, description="Replaces the seed policy's value for this shot")
    model: str | None = Field(None, description="Model path (diffusers folder or .safetensors) replacing model.path")
    strength: float | None = Field(None, ge=0.0, le=1.0)


class TimeSpan(_Strict):
    """A span of time as OpenTimelineIO stores it: start and duration in frames at ``rate``."""

    start: float
    duration: float = Field(ge=0)
    rate: float = Field(gt=0)


class Editorial(_Strict):
    """Where a shot was cut in its edit, so a conform can put the stylized frames back exactly."""

    timeline: str | None = Field(None, description="The timeline file the shot was read from")
    track: str = Field(description="Name of the clip's track")
    track_index: int = Field(ge=0, description="Position of the track in the timeline's stack")
    item_index: int = Field(ge=0, description="Position of the clip in its track (gaps and transitions count)")
    clip: str = Field(description="The clip's name in the edit")
    record: TimeSpan = Field(description="Where the clip plays in its track (record range)")
    source: TimeSpan = Field(description="The clip's source range, in its media's time")
    rate: float = Field(gt=0, description="Media frame rate that plate frame numbers count at")
    frame_offset: int = Field(description="Plate frame number = media frame at `rate` + frame_offset")
    nesting: list[int] = Field(
        default_factory=list,
        description="For a clip inside nested compositions (stacks, tracks) at item_index: "
        "its position in each, from the outermost down",
    )


class Lora(_Strict):
    path: str
    weight: float = 1.0


MAX_REGIONS = 8
"""Regions per shot at most: every region adds a prompt's tokens to each cross-attention and may add a UNet pass."""


class RegionSelect(_Strict):
    """Which pixels a region covers: exactly one of ``cryptomatte``, ``ids``, ``matte`` or ``matte_sequence``."""

    cryptomatte: list[str] | None = Field(
        None, min_length=1, description="Cryptomatte names, fnmatch wildcards allowed (bld*), from any layer"
    )
    layer: str | None = Field(None, description="cryptomatte: only this layer (CryptoObject, ...); None = any")
    ids: list[int] | None = Field(None, min_length=1, description="IDs of the shot's integer object-ID AOV")
    matte: str | None = Field(None, description="A channel of the plate holding the matte (mask.A)")
    matte_sequence: str | None = Field(
        None, description="A separate matte sequence (mattes/car.####.exr), read at the plate's frame numbers"
    )
    channel: str | None = Field(None, description="matte_sequence: the channel holding the matte; None = A")

    @model_validator(mode="after")
    def _exactly_one(self) -> RegionSelect:
        given = [name for name in ("cryptomatte", "ids", "matte", "matte_sequence") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "select needs exactly one of cryptomatte, ids, matte, matte_sequence"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.layer is not None and self.cryptomatte is None:
            raise ValueError("select.layer goes with cryptomatte")
        if self.channel is not None and self.matte_sequence is None:
            raise ValueError("select.channel goes with matte_sequence")
        return self


class Region(_Strict):
    """A part of the frame, chosen by a matte, with its own settings; what it leaves None comes from the shot.

    Regions apply in list order and later ones win, coverage-weighted and subtractive: from the last region
    to the first, region i gets min(c_i, 1 - the later regions' weights) of a pixel, the shot's own settings
    the rest.
    """

    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Region name: the output's regions.<name> channel and reports use it",
    )
    select: RegionSelect = Field(description="The matte that chooses the region's pixels")
    invert: bool = Field(False, description="Use 1 - the matte")
    prompt: str | None = None
    negative_prompt: str | None = None
    strength: float | None = Field(None, ge=0.0, le=1.0, description="0 = leave the plate alone there, bit for bit")
    loras: list[Lora] | None = Field(None, description="LoRAs replacing model.loras inside the region")
    ip_adapter_image: str | None = Field(None, description="Style reference image replacing ip_adapter.image")
    controlnet_weights: (
        dict[Literal["depth", "normals", "lineart", "edges", "tile"], Annotated[float, Field(ge=0.0, le=2.0)]] | None
    ) = Field(None, description='ControlNet weights by source ({"lineart": 0.5}) replacing the controlnets\' own')
    seed: int | None = Field(None, ge=0, lt=2**63, description="Seed of the region's noise")


def _unique_regions(regions: list[Region]) -> list[Region]:
    if len(regions) > MAX_REGIONS:
        raise ValueError(f"{len(regions)} regions; at most {MAX_REGIONS} per shot")
    seen: set[str] = set()
    for region in regions:
        if region.name in seen:
            raise ValueError(f"region name {region.name!r} is used twice")
        seen.add(region.name)
    return regions


class Shot(_Strict):
    """One shot: where its plates are, which frames, which channels mean what, where to write."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", description="Shot name, used in paths")]
    plate: str = Field(description="Plate file pattern: name.####.exr, name.%04d.exr, name.@@@@.exr or one file")
    frames: FrameRange | None = Field(None, description="Cut range; omitted = every frame found on disk")
    handles: int = Field(0, ge=0, description="Extra frames rendered before and after the cut range")
    head_handles: int | None = Field(None, ge=0, description="Frames before the cut, replacing `handles` there")
    tail_handles: int | None = Field(None, ge=0, description="Frames after the cut, replacing `handles` there")
    aovs: dict[Literal[ROLES], list[str]] = Field(  # type: ignore[valid-type]  # ROLES is a tuple of literals
        default_factory=dict, description="Explicit channel names per AOV role; overrides detection"
    )
    normals_space: Literal["auto", "camera", "world"] = Field(
        "auto",
        description="Space of the normals AOV: auto (layer name, renderer, depth fit), camera or world; world "
        "normals turn to camera space with the header's worldToCamera, else a rotation fitted to the depth pass",
    )
    output: str = Field(description="Output pattern for the stylized EXRs, with a frame token")
    notes: list[str] = Field(default_factory=list, description="Free-form notes (e.g. editorial markers)")
    overrides: ShotOverrides = Field(default_factory=ShotOverrides, description="Settings replacing the job's")
    editorial: Editorial | None = Field(None, description="Where the shot came from in an edit, for conforming")
    regions: list[Region] = Field(default_factory=list, description="Per-object settings; empty = the job's regions")

    @field_validator("regions")
    @classmethod
    def _regions(cls, regions: list[Region]) -> list[Region]:
        return _unique_regions(regions)

    @field_validator("plate", "output")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if len(_FRAME_TOKEN.findall(os.path.basename(value))) > 1:
            raise ValueError("more than one frame-number token in the file name")
        return value

    @model_validator(mode="after")
    def _output_has_frames(self) -> Shot:
        if _FRAME_TOKEN.search(os.path.basename(self.plate)) and not _FRAME_TOKEN.search(os.path.basename(self.output)):
            raise ValueError("output needs a frame token (e.g. ####) because the plate is a sequence")
        return self

    def handle_frames(self) -> tuple[int, int]:
        """Handles before and after the cut: head_handles and tail_handles where set, else handles."""
        head = self.handles if self.head_handles is None else self.head_handles
        return head, self.handles if self.tail_handles is None else self.tail_handles

    def frame_range_with_handles(self) -> tuple[int, int] | None:
        if self.frames is None:
            return None
        head, tail = self.handle_frames()
        return self.frames.first - head, self.frames.last + tail


class ColorSettings(_Strict):
    """How plates are encoded for the model and decoded back (OpenColorIO)."""

    config: str = Field(PINNED_CONFIG, description="OCIO config: a file path or a pinned ocio:// built-in URI")
    plate_space: str = Field(DEFAULT_PLATE_SPACE, description="Colour space of the plates' RGB")
    encoding: Literal["view", "log"] = Field("view", description="Model space: a display view or a log space")
    display: str = DEFAULT_DISPLAY
    view: str = DEFAULT_VIEW
    log_space: str = DEFAULT_LOG_SPACE

    def model_encoding(self) -> ModelEncoding:
        """The OCIO transforms these settings describe."""
        return ModelEncoding(self.config, self.plate_space, self.encoding, self.display, self.view, self.log_space)

    @field_validator("config")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if value.strip().lower() in _FLOATING_CONFIGS:
            raise ValueError(
                f"{value!r} changes between OpenColorIO releases; pin a config by full name, e.g. {PINNED_CONFIG}"
            )
        return value


class ControlNet(_Strict):
    path: str
    source: Literal["depth", "normals", "lineart", "edges", "tile"] = Field(
        description=(
            "What feeds it: an AOV conditioning, the beauty's edges, or (tile) the display-referred plate itself"
        ),
    )
    weight: float = Field(1.0, ge=0.0, le=2.0)


class IPAdapter(_Strict):
    """An IP-Adapter: a style reference image steers every frame through the model's cross-attention.

    ``path`` is the adapter's weights file, as published: e.g. h94/IP-Adapter's
    ``models/ip-adapter_sd15.safetensors`` or ``sdxl_models/ip-adapter_sdxl.safetensors`` (XLabs'
    ``ip_adapter.safetensors`` for Flux). Its CLIP image encoder (a transformers
    CLIPVisionModelWithProjection folder: config.json + model.safetensors) is the ``image_encoder``
    folder beside that file, as in those repositories, unless ``image_encoder`` names another one:
    e.g. h94's ``sdxl_models/ip-adapter_sdxl_vit-h.safetensors`` needs ``models/image_encoder``.
    """

    path: str = Field(description="The IP-Adapter weights file (.safetensors; .bin only with allow_pickle)")
    image: str = Field(description="Style reference image")
    scale: float = Field(0.6, ge=0.0, le=2.0)
    image_encoder: str | None = Field(
        None, description="The CLIP image encoder folder; default: the image_encoder folder beside path"
    )


class ModelSettings(_Strict):
    """The diffusion model and its adapters. Local paths only; nothing is downloaded."""

    family: Family
    path: str = Field(description="A diffusers folder or a single-file .safetensors checkpoint")
    loras: list[Lora] = Field(default_factory=list)
    controlnets: list[ControlNet] = Field(default_factory=list)
    ip_adapter: IPAdapter | None = None
    allow_pickle: bool = Field(False, description="Allow .ckpt/.bin/.pt files, which can run code when loaded")


class SeedPolicy(_Strict):
    policy: Literal["fixed", "per_frame"] = Field(
        "fixed", description="fixed: the same seed every frame; per_frame: seed + frame number"
    )
    value: int = Field(0, ge=0, lt=2**63)


# Mechanisms installed on the UNet's self-attention layers.
ATTENTION_MECHANISMS = frozenset({"cross_frame", "flow_attention"})
# Mechanisms that make a frame need the previous frame's output: the shot renders in order from its first frame.
SEQUENTIAL_MECHANISMS = frozenset({"warped_noise", "latent_fusion", "pixel_fusion", "keyframes"}) | ATTENTION_MECHANISMS
# Mechanisms whose state exists only after rendering a frame (a cached frame does not restore it).
RENDER_STATE_MECHANISMS = frozenset({"latent_fusion"}) | ATTENTION_MECHANISMS


class Consistency(_Strict):
    """Temporal-consistency mechanisms, each switchable on its own."""

    mechanisms: list[
        Literal[
            "locked_seed", "warped_noise", "cross_frame", "flow_attention", "latent_fusion", "pixel_fusion", "keyframes"
        ]
    ] = Field(default_factory=list, description="Empty: frames are independent (seeds as the seed policy says)")
    keyframe_interval: int = Field(8, ge=1, description="keyframes: every Nth frame is stylized fully")
    fusion_strength: float = Field(
        0.5, ge=0.0, le=1.0, description="pixel_fusion and latent_fusion: share of the previous frame"
    )
    latent_fusion_steps: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description=(
            "latent_fusion: share of the denoising steps it blends in, from the first; 1 includes the last, "
            "so each frame ends fusion_strength the previous one where it carries (see plate_change_tolerance)"
        ),
    )
    plate_change_tolerance: float = Field(
        0.1,
        gt=0.0,
        description=(
            "pixel_fusion, latent_fusion, keyframes: how much the plate may change along the vectors from one "
            "frame to the next (display-referred 0-1, worst channel, averaged over 5x5 pixels) before the previous "
            "frame stops carrying there; it carries fully below half of it. Light that changes on its own then "
            "shows at once instead of lagging; 2 or more turns the check off"
        ),
    )
    vector_units: Literal["pixels", "ndc"] = Field("pixels", description="Backward motion vectors' units")
    vector_y: Literal["up", "down"] = Field("up", description="Direction of positive v (Nuke: up)")

    @property
    def sequential(self) -> bool:
        """Whether each frame needs the previous one's output, answered from the settings alone (no torch)."""
        return bool(set(self.mechanisms) & SEQUENTIAL_MECHANISMS)

    @property
    def state_from_rendering(self) -> bool:
        """Whether a frame needs state only rendering the frames before it makes (not their cached outputs)."""
        return bool(set(self.mechanisms) & RENDER_STATE_MECHANISMS)


class Candidates(_Strict):
    """Variants of one frame to choose from: candidate k has seed + k * seed_stride, and the k-th
    strength and prompt of the lists below (cycled) when they are given."""

    count: int = Field(4, ge=1, le=64, description="Variants rendered per frame to choose from")
    seed_stride: int = Field(1, ge=1, description="Seed step between candidates")
    strengths: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=list, description="Strength per candidate, cycled; empty = the job's strength"
    )
    prompts: list[str] = Field(default_factory=list, description="Prompt per candidate, cycled; empty = the job's")


class Resolution(_Strict):
    """How a plate meets the model's resolution. auto: native up to 1.5x the working size, else downscale."""

    mode: Literal["auto", "native", "downscale", "tiles"] = Field(
        "auto",
        description="native: pad to the model's multiple and crop back; downscale: stylize at the working size, "
        "scale back up and restore the clean plate's detail; tiles: overlapping working-size tiles, feathered",
    )
    working_size: int | None = Field(
        None,
        ge=64,
        le=8192,
        description="Long side the model works at; None = the family's (512 SD1.5, 1024 SDXL/Flux)",
    )
    tile_overlap: int = Field(128, ge=0, le=1024, description="Pixels shared by neighbouring tiles")
    detail_restore: bool = Field(True, description="downscale: add back the detail the clean plate lost in scaling")


class Comp(_Strict):
    """The headless comp (``stylecomp comp``): the same blend as the StyleCompBlend gizmo, knob for knob.

    ``mode`` makes the styled image from the clean and stylized renders; ``weight`` (times
    ``amount``) says where it replaces the clean render (a Keymix); ``lines`` draws ID lines over.
    """

    output: str = Field("comp/{shot}/{shot}.####.exr", description="Comp EXRs per shot; {shot} is the shot name")
    mode: Literal["mix", "luminance_colour", "detail_transfer"] = "mix"
    amount: float = Field(1.0, ge=0.0, le=1.0, description="Share of the stylized result")
    luminance_from: Literal["clean", "stylized"] = Field("clean", description="luminance_colour: luminance source")
    luminance_weights: Literal["ACEScg", "Rec.709"] = Field(
        "ACEScg", description="luminance_colour: the plates' primaries (the gizmo reads Nuke's working space)"
    )
    detail_size: float = Field(8.0, ge=0.0, le=500.0, description="detail_transfer: blur size splitting detail off")
    weight: Literal["none", "depth", "matte", "object_ids", "cryptomatte"] = "none"
    depth_near: float = Field(1.0, gt=0.0)
    depth_far: float = Field(100.0, gt=0.0)
    depth_direction: Literal["near", "far"] = Field("near", description="Which end of [near, far] is stylized")
    matte_channel: str | None = Field(None, description="weight=matte: the plate channel holding the matte")
    matte_invert: bool = False
    object_ids: list[int] = Field(default_factory=list, description="weight=object_ids: the IDs to stylize")
    ids_invert: bool = False
    mattes: list[str] = Field(
        default_factory=list, description="weight=cryptomatte: object names to stylize; wildcards as in fnmatch (bld*)"
    )
    mattes_invert: bool = False
    cryptomatte_layer: str | None = Field(
        None, description="weight=cryptomatte: the layer (CryptoObject, CryptoMaterial, ...); None = the object layer"
    )
    lines: bool = Field(False, description="Draw lines where the object ID changes")
    line_colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    line_opacity: float = Field(1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _weight_has_its_input(self) -> Comp:
        if self.weight == "depth" and self.depth_far <= self.depth_near:
            raise ValueError("depth_far must be beyond depth_near")
        if self.weight == "matte" and not self.matte_channel:
            raise ValueError("weight 'matte' needs matte_channel")
        if self.weight == "object_ids" and not self.object_ids:
            raise ValueError("weight 'object_ids' needs object_ids")
        if self.weight == "cryptomatte" and not self.mattes:
            raise ValueError("weight 'cryptomatte' needs mattes (object names, wildcards allowed)")
        return self


class Ideation(_Strict):
    """Text-to-image candidates for a shot's treatment (``stylecomp ideate``): every prompt x seed x aspect ratio.

    With ControlNets in ``model``, the shot's plate at ``guide_frame`` (a blocking render) guides the
    composition through its depth, normals or lines and sets the aspect ratio. With ``init_strength``,
    generation starts from that plate's beauty instead of pure noise (image-to-image).
    """

    generator: str = Field(
        "diffusers", description="Generator plugin: a name in the 'stylecomp.generators' entry points"
    )
    generator_options: dict[str, Any] = Field(default_factory=dict, description="Settings passed to a plugin generator")
    prompts: list[str] = Field(default_factory=list, description="Prompts to try; empty = the job's (or shot's) prompt")
    seeds: list[Annotated[int, Field(ge=0, lt=2**63)]] = Field(default_factory=lambda: [0, 1, 2, 3], min_length=1)
    aspect_ratios: list[Annotated[str, Field(pattern=_ASPECT)]] = Field(
        default_factory=lambda: ["16:9"],
        min_length=1,
        description="Width:height, e.g. 16:9, 2.39:1; unused when a plate guides",
    )
    long_side: int | None = Field(None, ge=64, le=4096, description="None = the family's (512 SD 1.5, 1024 SDXL/Flux)")
    guide_frame: int | None = Field(None, description="Plate frame that guides; None = the shot's first frame")
    init_strength: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Start from the plate's beauty at this strength (image-to-image); None = text only",
    )
    output: str = Field("ideation/{shot}", description="Folder of each shot's candidates; {shot} is the shot name")

    @field_validator("aspect_ratios")
    @classmethod
    def _sides_not_zero(cls, ratios: list[str]) -> list[str]:
        for ratio in ratios:
            if any(float(side) == 0 for side in ratio.split(":")):
                raise ValueError(f"aspect ratio {ratio!r} has a zero side")
        return ratios


class VideoModelSettings(_Strict):
    """An image-to-video model from a local diffusers folder; the family is read from its model_index.json."""

    path: str = Field(description="A diffusers image-to-video pipeline folder (Wan, LTX-Video, CogVideoX)")
    allow_pickle: bool = Field(False, description="Allow .ckpt/.bin/.pt files, which can run code when loaded")


class Animation(_Strict):
    """Image-to-video animatic clips (``stylecomp animate``), from a stylized keyframe, a picked still or an image."""

    generator: str = Field(
        "diffusers",
        description="Generator plugin: a name in the 'stylecomp.generators' entry "
        "points (diffusers; hosted: sora, veo, kling, runway, luma)",
    )
    generator_options: dict[str, Any] = Field(default_factory=dict, description="Settings passed to a plugin generator")
    model: VideoModelSettings | None = Field(None, description="Required by the built-in generator")
    source: Literal["stylized", "ideation", "image"] = Field(
        "stylized", description="stylized: the shot's stylized keyframe; ideation: its picked still; image: `image`"
    )
    image: str | None = Field(None, description="source=image: the first frame (any format OpenImageIO reads)")
    keyframe: int | None = Field(None, description="source=stylized: the stylized frame to start from; None = first")
    last_image: str | None = Field(
        None, description="A still the clip ends on, for models with last-frame conditioning"
    )
    prompt: str | None = Field(None, description="None = the shot's (or job's) prompt")
    negative_prompt: str | None = Field(None, description="None = the job's negative prompt")
    frames: int | None = Field(
        None, ge=1, le=1024, description="None = the shot's cut length; rounded up to what the model allows"
    )
    fps: float | None = Field(None, gt=0, description="None = the shot's editorial rate, else 24")
    seed: int = Field(0, ge=0, lt=2**63)
    steps: int = Field(30, ge=1, le=500)
    guidance: float = Field(5.0, ge=0.0, le=50.0)
    long_side: int | None = Field(None, ge=64, le=4096, description="Longer side in pixels; None = 832")
    output: str = Field("animatic/{shot}/{shot}.####.exr", description="Clip EXRs per shot; {shot} is the shot name")

    @field_validator("output")
    @classmethod
    def _output_has_frames(cls, value: str) -> str:
        if len(_FRAME_TOKEN.findall(os.path.basename(value))) != 1:
            raise ValueError("needs one frame-number token in the file name (e.g. ####)")
        return value

    @model_validator(mode="after")
    def _source_has_its_input(self) -> Animation:
        if self.source == "image" and not self.image:
            raise ValueError("source 'image' needs image")
        return self


class Performance(_Strict):
    """How fast frames render, not what they look like: each of these changes pixels by rounding at most, which in
    float32 is last bits and in bfloat16 about 1% (relative L2; a bfloat16 UNet's output moves that much with
    the batch size alone).

    That is why they are not part of cache keys (a frame cached by an eager run is reused by a
    compiled one), except ``vae_bfloat16`` where it takes effect (SDXL in bfloat16): it swaps a
    float32 encode for a bfloat16 one. Provenance records how each frame ran. Lossy speed-ups are other settings
    (fewer ``steps``). On by default: batching on CUDA (several frames per pipeline call is
    where most of plain diffusers' throughput on a GPU comes from), background plate I/O,
    channels-last and SDXL's bfloat16 VAE (both free, and what GPU convolutions prefer). Off by
    default: ``compile``, because a cold compile costs minutes before the first frame (it pays
    for long shots, and its persistent cache makes later starts take seconds).
    """

    batch_frames: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Independent frames (tiles count as frames) denoised together in one pipeline call, each with "
        "its own seed's generator; None = 4 on CUDA, 1 elsewhere (on the CPU a batch changes the last bits of a "
        "frame and gains little). Shots with sequential consistency mechanisms render one frame at a time",
    )
    prefetch: int = Field(
        1,
        ge=0,
        le=8,
        description="Batches of plates read ahead (EXR decoding, cache keys), and of finished frames written behind "
        "(EXR encoding, the render cache), in background threads while the model runs; 0 = read and write in "
        "the render loop",
    )
    compile: bool = Field(
        False,
        description="torch.compile the UNet (Flux: transformer) and ControlNets. The first start compiles for "
        "minutes; compiled code is kept in the stylecomp cache (torch-compile/), so later starts take seconds",
    )
    channels_last: bool = Field(
        True, description="Convolution weights and activations in channels-last (NHWC) layout, which GPUs prefer"
    )
    vae_bfloat16: bool = Field(
        True,
        description="SDXL with bfloat16 weights: encode plates with the VAE in bfloat16, which cannot overflow, "
        "instead of diffusers' float32 round trip of the VAE around every encode. float16 always upcasts "
        "(SDXL's VAE overflows in float16); SD 1.5 and Flux never do",
    )

    def frames_per_call(self, device: str) -> int:
        """``batch_frames``, or its default for ``device`` ("cuda", "cuda:1", "cpu", "mps")."""
        if self.batch_frames is not None:
            return self.batch_frames
        return 4 if device.split(":")[0] == "cuda" else 1


class ExrSettings(_Strict):
    pixel_type: Literal["half", "float"] | None = Field(None, description="None keeps the plate's channel types")
    compression: str | None = Field(None, description="None keeps the plate's compression")

    @field_validator("compression")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value.split(":")[0] not in COMPRESSIONS:
            raise ValueError(f"unknown EXR compression; use one of {', '.join(COMPRESSIONS)}")
        return value


class Job(_Strict):
    """A stylization job: shots plus the settings shared by all of them."""

    version: Literal[1] = JOB_VERSION
    shots: list[Shot] = Field(min_length=1)
    color: ColorSettings = Field(default_factory=ColorSettings)
    model: ModelSettings | None = Field(None, description="Required to stylize; absent = plates only")
    prompt: str = ""
    negative_prompt: str = ""
    seed: SeedPolicy = Field(default_factory=SeedPolicy)
    strength: float = Field(0.5, ge=0.0, le=1.0)
    steps: int = Field(20, ge=1, le=500, description="Scheduler steps (strength x steps of them run)")
    guidance: float = Field(7.0, ge=0.0, le=50.0)
    consistency: Consistency = Field(default_factory=Consistency)
    candidates: Candidates = Field(default_factory=Candidates)
    resolution: Resolution = Field(default_factory=Resolution)
    comp: Comp = Field(default_factory=Comp)
    exr: ExrSettings = Field(default_factory=ExrSettings)
    ideation: Ideation = Field(default_factory=Ideation)
    animation: Animation = Field(default_factory=Animation)
    performance: Performance = Field(default_factory=Performance)
    regions: list[Region] = Field(default_factory=list, description="Regions of every shot whose own list is empty")
    region_prompts: Literal["attention", "passes"] = Field(
        "attention",
        description="How regions' prompts reach the model: attention = masked cross-attention, one UNet "
        "pass for all prompts; passes = one UNet pass per distinct prompt, blended by matte (slower, no mixing)",
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _expand: bool = PrivateAttr(default=True)  # $VARS and ~ in paths; off for jobs from the server's clients

    @field_validator("shots")
    @classmethod
    def _unique_names(cls, shots: list[Shot]) -> list[Shot]:
        seen: set[str] = set()
        for shot in shots:
            if shot.name in seen:
                raise ValueError(f"shot name {shot.name!r} is used twice")
            seen.add(shot.name)
        return shots

    @field_validator("regions")
    @classmethod
    def _regions(cls, regions: list[Region]) -> list[Region]:
        return _unique_regions(regions)

    @model_validator(mode="after")
    def _per_shot_outputs(self) -> Job:
        if len(self.shots) > 1:
            for name, template in (
                ("comp.output", self.comp.output),
                ("ideation.output", self.ideation.output),
                ("animation.output", self.animation.output),
            ):
                if "{shot}" not in template:
                    raise ValueError(
                        f"{name} needs {{shot}} when the job has several shots, or they overwrite each other's files"
                    )
        return self

    def shot_regions(self, shot: Shot) -> list[Region]:
        """The regions that apply to ``shot``: its own, or the job's when it has none."""
        return shot.regions or self.regions

    def shot_model(self, shot: Shot) -> ModelSettings:
        """The model ``shot`` stylizes with: the job's, the shot's override applied, every file path resolved.
        JobError when the job has no model block."""
        if self.model is None:
            raise JobError("the job has no 'model' block: nothing to stylize with", shot.name)
        model = self.model.model_copy(deep=True)
        model.path = self.resolve(shot.overrides.model or model.path)
        adapters: list[Lora | ControlNet] = [*model.loras, *model.controlnets]
        for adapter in adapters:
            adapter.path = self.resolve(adapter.path)
        if model.ip_adapter is not None:
            model.ip_adapter.path = self.resolve(model.ip_adapter.path)
            if model.ip_adapter.image_encoder is not None:
                model.ip_adapter.image_encoder = self.resolve(model.ip_adapter.image_encoder)
        return model

    def resolve(self, path: str) -> str:
        """A path from the job, absolute, with frame tokens as printf (``%04d``)."""
        expanded = os.path.expanduser(os.path.expandvars(path)) if self._expand else path
        return to_printf(self._base_dir / expanded if not os.path.isabs(expanded) else expanded)

    def shot_path(self, template: str, shot: Shot) -> str:
        """A per-shot path from the job (``comp.output``, ``animation.output``, ...), ``{shot}`` filled in, resolved."""
        return self.resolve(template.replace("{shot}", shot.name))

    def picked_still(self, shot: Shot) -> Path:
        """Where ``stylecomp pick`` puts the shot's chosen ideation still (animatic clips and conform read it)."""
        return Path(self.shot_path(self.ideation.output, shot)) / "picked.exr"

    def dumps(self) -> str:
        return self.model_dump_json(indent=2, exclude_defaults=False) + "\n"


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


def parse_job(
    text: str, where: str = "<job>", base_dir: str | os.PathLike[str] | None = None, expand: bool = True
) -> Job:
    """Parse and validate a job document. Raises JobError naming every bad field. ``expand`` False takes paths
    literally ($VARS and ~ are not expanded: the engine server's clients may not read its environment)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", where) from None
    except RecursionError:
        raise JobError("not a job document: JSON nested too deeply", where) from None
    try:
        job = Job.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_field_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise JobError("; ".join(problems), where, problems) from None
    job._base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    job._expand = expand
    return job


def load_job(path: str | os.PathLike[str]) -> Job:
    """Read a job file; relative paths in it resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobError(exc.strerror or "cannot read file", path) from None
    except UnicodeDecodeError as exc:
        raise JobError(f"not UTF-8 text (byte {exc.start}): a job file is JSON in UTF-8", path) from None
    return parse_job(text, str(path), path.resolve().parent)


def save_job(job: Job, path: str | os.PathLike[str]) -> None:
    """Write a job file atomically."""
    with atomic_target(path) as temp:
        Path(temp).write_text(job.dumps(), encoding="utf-8")


def json_schema() -> dict[str, object]:
    """The job spec as JSON Schema, for editors and other tools."""
    return Job.model_json_schema()
