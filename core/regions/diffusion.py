"""Regions inside the diffusion: per-pixel strength, masked cross-attention, LoRA sets and seeds by matte.

One model call (one image at the working size) gets a ``RegionalCall``: per pixel, the weight of
the shot's own settings (column 0) and of each region (columns 1..N, ``regions.overlap_weights``),
and per column its strength, prompt segment, LoRA set and noise seed. During the pipeline call:

- Per-pixel strength, the Differential Diffusion way (arXiv 2306.00950): the pipeline runs at the
  largest strength, and after each step the latents of pixels whose own strength has not started
  yet are put back to the plate's latents noised to the next timestep; a strength-0 pixel ends as
  the plate's latents (``StylizeStage`` then copies the plate's own values there).
- Regional prompts: every distinct prompt is a segment of the text embeddings, concatenated on the
  token axis; a cross-attention processor lets each query attend to each segment separately and
  blends the results by the segment's weight, area-averaged down to that attention layer's
  resolution (a hard matte gives exactly masked attention). One UNet pass for all prompts. Flux
  gets the same through its joint attention's mask (``flux_attention_mask``). Pooled embeddings
  (SDXL, Flux) condition the whole frame: one pass gets them mixed by each prompt's share.
- LoRA sets: one UNet pass per distinct set (adapters switched between passes), the noise
  predictions blended by the sets' weights in latent space. ``region_prompts: passes`` treats
  prompts the same way (a pass per distinct prompt): the built-in model mixes looks across the
  frame in one pass (its coarse self-attention and group norms see everything), see the README.
- Seeds: each seed's noise blended by weight, renormalised to unit variance.
- IP-Adapter style images: like LoRA sets, one UNet pass per distinct image.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

if TYPE_CHECKING:
    from ..diffusion.pipelines import StylizePipeline  # the type only: diffusion imports this module

StepHook = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Column:
    """The settings one weight column stands for: the shot's own (column 0) or a region's."""

    strength: float
    segment: int  # index of its prompt among the call's text segments
    lora_set: int  # index of its LoRA set among RegionalCall.lora_sets
    seed: int  # its noise's seed on this frame and tile; column 0's is the pipeline's own draw's
    controlnet_scales: tuple[float, ...]  # per ControlNet of the model, in order
    style: int = 0  # index of its IP-Adapter style image among the call's (0: the shot's own)


@dataclass
class RegionalCall:
    """One model call's regions: weights per pixel at the working size and what each column means."""

    weights: np.ndarray  # (h, w, 1 + N) float32, column 0 = the shot's own settings; rows sum to 1
    columns: tuple[Column, ...]
    lora_sets: tuple[tuple[float, ...], ...] = ((),)  # per set, the weight of each loaded adapter
    _cache: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False)

    def strength_map(self) -> np.ndarray:
        """(h, w): each pixel's strength, its columns' strengths weighted."""
        return self.weights @ np.array([c.strength for c in self.columns], np.float32)

    def grouped(self, key: Callable[[Column], int], count: int) -> np.ndarray:
        """(h, w, count): the weights summed per group (segment, LoRA set, ...)."""
        out = np.zeros((*self.weights.shape[:2], count), np.float32)
        for index, column in enumerate(self.columns):
            out[..., key(column)] += self.weights[..., index]
        return out

    @property
    def segments(self) -> int:
        """How many distinct prompts the call's columns use."""
        return 1 + max(c.segment for c in self.columns)

    def at(self, name: str, maps: np.ndarray, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """``maps`` (h, w, K) area-averaged to (1, K, height, width), as a tensor like ``like``; cached by name."""
        key = (name, height, width, like.device, like.dtype)
        if key not in self._cache:
            tensor = torch.from_numpy(np.ascontiguousarray(maps.transpose(2, 0, 1)))[None]
            self._cache[key] = F.adaptive_avg_pool2d(tensor, (height, width)).to(like.device, like.dtype)
        return self._cache[key]


class RegionalCrossAttention:
    """A cross-attention processor: each query attends to each prompt segment separately, the results blended
    by the segment weights at the layer's resolution (``segment_weights(tokens, like)`` gives (1, tokens, segments)
    on ``like``'s device and dtype)."""

    def __init__(self, segments: int, segment_weights: Callable[[int, torch.Tensor], torch.Tensor]) -> None:
        self.segments = segments
        self.segment_weights = segment_weights

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        if encoder_hidden_states is None or attention_mask is not None or attn.spatial_norm is not None:
            raise ValueError("regional prompts need plain cross-attention (no mask, no spatial norm)")
        residual, input_ndim = hidden_states, hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, tokens, _ = hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        query = attn.to_q(hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        weights = self.segment_weights(tokens, query)  # (1, tokens, segments)
        length = key.shape[2] // self.segments
        out = torch.zeros_like(query)
        for segment in range(self.segments):
            part = slice(segment * length, (segment + 1) * length)
            attended = F.scaled_dot_product_attention(query, key[:, :, part], value[:, :, part])
            out = out + attended * weights[:, None, :, segment, None]
        hidden_states = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def attention_grid(tokens: int, height: int, width: int) -> tuple[int, int]:
    """The (rows, columns) of an attention layer with ``tokens`` queries in a UNet whose input is height x width:
    each level halves the sides, rounding up as a stride-2 convolution with padding 1 does."""
    rows, cols = height, width
    while rows * cols > tokens:
        rows, cols = math.ceil(rows / 2), math.ceil(cols / 2)
    if rows * cols != tokens:
        raise ValueError(f"{tokens} attention queries fit no level of a {height}x{width} latent")
    return rows, cols


@contextlib.contextmanager
def regional_call(
    pipe: StylizePipeline,
    call: RegionalCall,
    noise: torch.Tensor | None,
    step_hook: StepHook | None,
    adapters: Sequence[str],
    prompt_passes: bool = False,
    pooled: Sequence[torch.Tensor] | None = None,
    styles: Sequence[Any] = (),
) -> Iterator[StepHook]:
    """While one pipeline call runs: the call's regions in its noise, attention, model passes and ControlNets.

    Yields the per-step hook (latents after step -> latents to go on with) that applies per-pixel
    strength, then ``step_hook`` (latent fusion). ``noise`` replaces the pipeline's own draw (the pipeline's
    ``noise_chosen_by``), each region's seed blended in. ``prompt_passes``: one model pass per distinct prompt (and LoRA
    set), blended by matte like LoRA sets, instead of masked attention in one pass. SD 1.5 and SDXL
    (cross-attention processors) and Flux (its joint attention's mask, ``flux_attention_mask``: the
    caller passes it as the pipeline's ``joint_attention_kwargs``). ``pooled`` (prompt passes, SDXL and Flux):
    each prompt's pooled embedding as the model takes it (SDXL: negative and positive, batched). ``styles``
    (SD 1.5, SDXL with an IP-Adapter): each style image's embeddings as the UNet takes them, the shot's first.
    """
    flux = hasattr(pipe, "transformer")
    unet, scheduler = (pipe.transformer if flux else pipe.unet), pipe.scheduler
    height, width = call.weights.shape[:2]
    latent_size = pipe.latent_size(height, width)
    captured: dict[str, torch.Tensor] = {}
    strengths = call.strength_map()

    # The initial noise: the pipeline's own draw (or ``noise``), each region's seed blended in by weight.
    def initial_noise(plate: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
        base = drawn if noise is None else noise.to(plate.device, plate.dtype)
        captured["plate"], captured["noise"] = plate, _seed_noise(call, base, latent_size)
        return captured["noise"]

    def per_pixel_strength(step: int, latents: torch.Tensor) -> torch.Tensor:
        # The schedule may hold more entries than steps (PNDM's PRK warm-up: 11 for 10; second-order schedulers
        # twice as many): img2img counts strength in steps and starts at schedule index that times ``order``.
        steps, total = scheduler.num_inference_steps, len(scheduler.timesteps)
        full = total - pipe.num_timesteps + step + 1  # the full schedule's index of the next step
        # A pixel of strength s starts denoising where img2img at strength s would start: at step
        # steps - int(steps * s) in SD and SDXL, int(steps - steps * s) in Flux (diffusers' get_timesteps);
        # a strength-0 pixel never starts (img2img would still run PNDM's last entry).
        share = steps * _area(strengths, latent_size)
        start = (np.floor(steps - share + 1e-6) if flux else steps - np.floor(share + 1e-6)) * scheduler.order
        start = np.where(share > 0.0, start, total)
        waiting = torch.from_numpy(start >= full).to(latents.device)[None, None]
        if waiting.any():
            plate = captured["plate"]
            if full < total:
                target = pipe.noised(plate, captured["noise"], scheduler.timesteps[full : full + 1])
            else:
                target = plate
            grid = pipe.latent_grid(latents, height, width)
            grid = torch.where(waiting, target.to(grid.dtype), grid)
            latents = pipe.packed(grid)
        return step_hook(step, latents) if step_hook is not None else latents

    segments = call.segments
    segment_maps = call.grouped(lambda c: c.segment, segments)

    # The UNet passes: one per distinct (LoRA set, style image), or (prompt passes) (prompt, LoRA set, style image).
    def key(column: Column) -> tuple[int | None, int, int]:
        return column.segment if prompt_passes else None, column.lora_set, column.style

    passes = sorted({key(c) for c in call.columns}, key=lambda item: (item[0] or 0, item[1], item[2]))
    index = {item: i for i, item in enumerate(passes)}
    pass_maps = call.grouped(lambda c: index[key(c)], len(passes))

    def segment_weights(tokens: int, like: torch.Tensor) -> torch.Tensor:
        rows, cols = attention_grid(tokens, *latent_size)
        maps = call.at("segments", segment_maps, rows, cols, like)  # cached per size, device and dtype
        return maps.flatten(2).transpose(1, 2)  # (1, tokens, segments)

    # Masked cross-attention in the UNet (one pass for every prompt), and in the ControlNets either way: the
    # pipeline runs them once per step with every prompt's embeddings.
    models = [*([] if prompt_passes or flux else [unet]), *_controlnets(pipe)]
    originals = [model.attn_processors for model in models]
    if segments > 1:
        for model in models:
            model.set_attn_processor(
                {
                    name: RegionalCrossAttention(segments, segment_weights)
                    if name.endswith("attn2.processor")
                    else processor
                    for name, processor in model.attn_processors.items()
                }
            )
    unet_forward = unet.forward
    if len(passes) > 1:
        # The pipelines pass the prompt embeddings (and Flux its text positions) by keyword.
        def forward(*args: Any, **kwargs: Any) -> Any:
            embeddings, text_ids = kwargs.pop("encoder_hidden_states"), kwargs.pop("txt_ids", None)
            attention = kwargs.pop("joint_attention_kwargs", None)
            length = embeddings.shape[1] // segments
            total = None
            for number, (segment, lora_set, style) in enumerate(passes):
                if adapters:
                    pipe.set_adapters(list(adapters), adapter_weights=list(call.lora_sets[lora_set]))
                part = slice(None) if segment is None else slice(segment * length, (segment + 1) * length)
                extra = {} if text_ids is None else {"txt_ids": text_ids[part]}
                if styles:  # the pass's IP-Adapter image embeddings, as the pipeline hands them to the UNet
                    kwargs["added_cond_kwargs"] = {**kwargs["added_cond_kwargs"], "image_embeds": styles[style]}
                if segment is not None and pooled is not None:  # the prompt's own pooled embedding
                    if flux:
                        kwargs["pooled_projections"] = pooled[segment]
                    else:
                        kwargs["added_cond_kwargs"] = {**kwargs["added_cond_kwargs"], "text_embeds": pooled[segment]}
                if segment is None and attention is not None:
                    extra["joint_attention_kwargs"] = attention  # Flux, LoRA-set passes: the mask still applies
                result = unet_forward(*args, encoder_hidden_states=embeddings[:, part], **kwargs, **extra)
                prediction = result[0] if isinstance(result, tuple) else result.sample
                if flux:  # packed (B, tokens, C): the share per 2x2 latent patch, in the packing's row order
                    rows, cols = latent_size[0] // 2, latent_size[1] // 2
                    share = call.at("passes", pass_maps, rows, cols, prediction)[:, number].flatten(1)[..., None]
                else:
                    share = call.at("passes", pass_maps, prediction.shape[-2], prediction.shape[-1], prediction)[
                        :, number : number + 1
                    ]
                total = prediction * share if total is None else total + prediction * share
            return (total,) if isinstance(result, tuple) else type(result)(sample=total)

        unet.forward = forward
    elif adapters:
        pipe.set_adapters(list(adapters), adapter_weights=list(call.lora_sets[0]))
    restore_controlnets = _scaled_controlnets(pipe, call)
    try:
        with pipe.noise_chosen_by(initial_noise):
            yield per_pixel_strength
    finally:
        restore_controlnets()
        if "forward" in unet.__dict__:
            del unet.forward
        if segments > 1:
            for model, original in zip(models, originals, strict=True):
                model.set_attn_processor(original)


def flux_attention_kwargs(pipe: StylizePipeline, call: RegionalCall, prompt_embeds: torch.Tensor) -> dict[str, Any]:
    """The Flux pipeline's ``joint_attention_kwargs`` for masked attention over the call's prompt segments."""
    latent_size = pipe.latent_size(*call.weights.shape[:2])
    mask = flux_attention_mask(call, prompt_embeds.shape[1] // call.segments, latent_size)
    return {"attention_mask": mask.to(prompt_embeds.device, pipe.transformer.dtype)}


def flux_attention_mask(call: RegionalCall, text_tokens: int, latent_size: tuple[int, int]) -> torch.Tensor:
    """Flux's joint attention bias (1, 1, T + N, T + N) over [text segments, image tokens]: image tokens attend
    to each prompt segment by its weight there (log weight), each segment's text attends to its own text and to
    the image tokens it covers; image tokens attend to each other freely. ``text_tokens`` per segment."""
    segments = call.segments
    rows, cols = latent_size[0] // 2, latent_size[1] // 2  # one token per 2x2 latent patch
    weights = call.at("flux", call.grouped(lambda c: c.segment, segments), rows, cols, torch.zeros(()))
    per_token = weights[0].flatten(1).repeat_interleave(text_tokens, dim=0)  # (segments * T, N)
    log = torch.log(per_token.clamp_min(1e-20))  # e^-46: a token of weight 0 gets none of the attention
    text = torch.block_diag(*[torch.ones(text_tokens, text_tokens)] * segments)
    size = segments * text_tokens + rows * cols
    bias = torch.zeros(size, size)
    bias[: segments * text_tokens, : segments * text_tokens] = torch.log(text.clamp_min(1e-20))
    bias[: segments * text_tokens, segments * text_tokens :] = log
    bias[segments * text_tokens :, : segments * text_tokens] = log.T
    return bias[None, None]


def _seed_noise(call: RegionalCall, base: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """``base`` (the shot's noise, drawn with column 0's seed) where the shot's seed rules, each other seed's own
    noise by weight, renormalised to unit variance."""
    seeds = sorted({c.seed for c in call.columns[1:]} - {call.columns[0].seed})
    if not seeds:
        return base
    index = {call.columns[0].seed: 0} | {seed: i + 1 for i, seed in enumerate(seeds)}
    maps = call.grouped(lambda c: index[c.seed], len(index))
    shares = call.at("seeds", maps, *latent_size, base)
    total = base * shares[:, :1]
    for i, seed in enumerate(seeds, start=1):
        drawn = torch.randn(base.shape, generator=torch.Generator("cpu").manual_seed(seed)).to(base.device, base.dtype)
        total = total + drawn * shares[:, i : i + 1]
    return total / shares.square().sum(dim=1, keepdim=True).sqrt().clamp_min(1e-6)


def _area(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) averaged over each latent pixel's area: (size)."""
    tensor = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[None, None]
    return F.adaptive_avg_pool2d(tensor, size)[0, 0].numpy()


def _controlnets(pipe: DiffusionPipeline) -> list[torch.nn.Module]:
    net = getattr(pipe, "controlnet", None)
    if net is None:
        return []
    return list(getattr(net, "nets", [net]))


def controlnets_vary(call: RegionalCall) -> bool:
    """Whether some region sets its own ControlNet weights: then the pipeline runs its nets at scale 1 and
    ``regional_call`` scales their residuals per pixel."""
    return len({c.controlnet_scales for c in call.columns}) > 1


def _scaled_controlnets(pipe: DiffusionPipeline, call: RegionalCall) -> Callable[[], None]:
    """Scale each ControlNet's residuals per pixel by its columns' weights, area-averaged to each residual's size
    (when ``controlnets_vary``; the pipeline's scale is 1 then). Returns the undo."""
    nets = _controlnets(pipe)
    if not nets or not controlnets_vary(call):
        return lambda: None
    for index, net in enumerate(nets):
        scales = call.weights @ np.array([c.controlnet_scales[index] for c in call.columns], np.float32)
        original = net.forward

        def forward(
            *args: Any,
            _original: Callable[..., Any] = original,
            _map: np.ndarray = scales,
            _name: str = f"controlnet{index}",
            **kwargs: Any,
        ) -> Any:
            down, mid = _original(*args, **{**kwargs, "return_dict": False})
            down = [r * call.at(_name, _map[..., None], r.shape[-2], r.shape[-1], r) for r in down]
            mid = mid * call.at(_name, _map[..., None], mid.shape[-2], mid.shape[-1], mid)
            return down, mid

        net.forward = forward

    def undo() -> None:
        for net in nets:
            if "forward" in net.__dict__:
                del net.forward

    return undo
