"""Temporal consistency: what carries over from frame t-1 to frame t along the motion vectors.

Each mechanism is a job setting (``consistency.mechanisms``) and can be measured alone:

- ``locked_seed``: the same seed every frame (the common baseline; the noise sticks to the screen).
- ``warped_noise``: frame t's initial noise is frame t-1's, moved along the vectors (nearest
  sample, so every value stays an exact N(0, 1) draw); fresh noise where the surface was not
  visible before (disocclusions, off-screen sources). It moves by whole latent cells (8 pixels
  with an f=8 VAE), so where the surface moves less than half a cell per frame the noise stays
  where it was.
- ``pixel_fusion``: the previous stylized frame, moved along the vectors, is blended into the
  current one's model image by ``fusion_strength`` outside disocclusions; then img2img denoises.
- ``keyframes``: every ``keyframe_interval``-th frame stylizes fully; the frames between start
  from the previous stylized frame moved along the vectors (the plate where it was not
  visible) and are re-stylized lightly, at ``KEYFRAME_HEAL`` of the strength, to heal.
- ``latent_fusion``: during the first ``LATENT_FUSION_STEPS`` of the denoising steps, the
  latents after each step are blended with the previous frame's latents after the step that
  ended at the same timestep (the same step unless the strengths differ, as with keyframes),
  moved along the vectors (bilinear, so motion under a latent cell counts), by
  ``fusion_strength`` outside disocclusions.
- ``cross_frame``: the UNet's self-attention layers also attend to the anchor (the shot's first
  frame) and the previous frame: their keys and values include those frames' hidden states at
  the same layer and step (SD 1.5 and SDXL; installed after any IP-Adapter, which replaces the
  cross-attention processors only).

Latent cells are ``vae_scale_factor`` pixels across (8 for SD 1.5, SDXL and Flux, 1 for
stylecomp's pixel-space model): the mechanisms take it from the model (``ModelGeometry``).

Each of these needs the previous frame, so a shot using them renders in order from its first
frame (``StageDescription.sequential``). ``latent_fusion`` and ``cross_frame`` carry state
that only rendering produces (latents, attention features), so when a frame of such a shot
must render, the frames before it are rendered again in memory (``RENDER_STATE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from .errors import JobError
from .motion import VectorConvention, visible_before, warp
from .resolution import ResolutionPlan
from .stage import FrameInputs

SEQUENTIAL = frozenset({"warped_noise", "cross_frame", "latent_fusion", "pixel_fusion", "keyframes"})
IMPLEMENTED = frozenset({"locked_seed", "warped_noise", "pixel_fusion", "keyframes", "latent_fusion", "cross_frame"})
RENDER_STATE = frozenset({"latent_fusion", "cross_frame"})  # their state exists only after rendering a frame
LATENT_FUSION_STEPS = 0.5  # share of the denoising steps that latent fusion runs in
KEYFRAME_HEAL = 0.5  # strength share for the frames between keyframes


def check_mechanisms(mechanisms: frozenset[str], family: str, tiled: bool, where: str) -> None:
    """Refuse mechanisms that cannot run with this model or with tiles, naming them."""
    if "cross_frame" in mechanisms and family == "flux":
        raise JobError("cross_frame attention works on UNet models (SD 1.5, SDXL), not on Flux's transformer", where)
    if tiled and mechanisms & SEQUENTIAL:
        raise JobError("consistency mechanisms that follow the motion vectors need resolution mode "
                       "native, downscale or auto (not tiles)", where)


@dataclass
class FrameMotion:
    """Where frame t's pixels were in t-1 (columns, rows; (H, W) each) and which were visible there."""

    xs: np.ndarray
    ys: np.ndarray
    visible: np.ndarray  # (H, W) bool

    @classmethod
    def between(cls, previous: FrameInputs, current: FrameInputs, convention: VectorConvention) -> FrameMotion:
        """Backward vectors of ``current`` checked against depth and object IDs of both frames."""
        vectors = current.images["Motion"]
        xs, ys = convention.source_positions(vectors)
        _, on_screen = warp(np.zeros((*vectors.shape[:2], 1), np.float32), xs, ys, nearest=True)

        def plane(inputs: FrameInputs, clip: str) -> np.ndarray | None:
            image = inputs.get(clip)
            return None if image is None else image[..., 0]

        visible = visible_before(xs, ys, on_screen, plane(current, "Depth"), plane(previous, "Depth"),
                                 plane(current, "ObjectID"), plane(previous, "ObjectID"))
        return cls(xs, ys, visible)

    def carry(self, previous_image: np.ndarray, current_image: np.ndarray, amount: float) -> np.ndarray:
        """``current_image`` with ``previous_image`` moved along the vectors blended in by ``amount`` where visible."""
        moved, _ = warp(previous_image, self.xs, self.ys)
        weight = (self.visible * np.float32(amount))[..., None]
        return ((1 - weight) * current_image + weight * moved).astype(np.float32)

    def carry_noise(self, previous: torch.Tensor, fresh: torch.Tensor, plan: ResolutionPlan) -> torch.Tensor:
        """Frame t's latent noise (1, C, h, w): t-1's moved along the vectors (nearest cell), ``fresh`` where
        not visible before."""
        moved, keep = self._latent_flow(previous, plan, nearest=True)
        return torch.where(keep, moved, fresh.to(moved.dtype))

    def carry_latents(self, previous: torch.Tensor, current: torch.Tensor, plan: ResolutionPlan,
                      amount: float) -> torch.Tensor:
        """``current`` latents (B, C, h, w) with ``previous`` moved along the vectors (bilinear) blended in by
        ``amount``."""
        moved, keep = self._latent_flow(previous, plan, nearest=False)
        weight = keep.to(current.dtype) * amount
        return (1 - weight) * current + weight * moved.to(current.device, current.dtype)

    def _latent_flow(self, previous: torch.Tensor, plan: ResolutionPlan,
                     nearest: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``previous`` (B, C, h, w) moved along the vectors to frame t's latent grid, and where that holds (1, 1, h, w).

        ``nearest`` moves whole cells (exact values: noise), so motion under half a cell per frame moves
        nothing; bilinear follows any motion.
        """
        _, _, rows, cols = previous.shape
        latent_x, latent_y, keep = self.grid_sources(rows, cols, plan, plan.geometry.vae_scale)
        cells = previous.permute(2, 3, 0, 1).reshape(rows, cols, -1).float().cpu().numpy()  # (h, w, B*C)
        moved, _ = warp(cells, latent_x, latent_y, nearest=nearest)
        moved_tensor = torch.from_numpy(moved).reshape(rows, cols, *previous.shape[:2]).permute(2, 3, 0, 1)
        return moved_tensor.to(previous.device, previous.dtype), torch.from_numpy(keep)[None, None].to(previous.device)

    def grid_sources(self, rows: int, cols: int, plan: ResolutionPlan,
                     cell: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each cell of a (rows, cols) grid over the working image was in t-1, in that grid's cells
        (columns, rows; (rows, cols) each), and where that holds: visible before, on the plate, source on the grid.

        Cell (i, j) covers working pixels ``cell`` * (i, j) onwards of the padded, scaled plate (a latent cell,
        or an attention token); its centre is mapped to the plate, its source read from the vectors there,
        and mapped back.
        """
        sx, sy = plan.scaled_width / plan.width, plan.scaled_height / plan.height
        pad_x, pad_y = (plan.working_width - plan.scaled_width) // 2, (plan.working_height - plan.scaled_height) // 2
        centre_x = ((np.arange(cols) + 0.5) * cell - pad_x) / sx - 0.5  # plate columns (cols,)
        centre_y = ((np.arange(rows) + 0.5) * cell - pad_y) / sy - 0.5  # plate rows (rows,)
        grid_x, grid_y = np.meshgrid(centre_x, centre_y)  # (rows, cols)
        pixel_y, pixel_x = np.indices(self.xs.shape)
        # each centre moves by the vector of its nearest pixel
        source_x = grid_x + warp((self.xs - pixel_x)[..., None], grid_x, grid_y, nearest=True)[0][..., 0]
        source_y = grid_y + warp((self.ys - pixel_y)[..., None], grid_x, grid_y, nearest=True)[0][..., 0]
        visible = warp(self.visible[..., None], grid_x, grid_y, nearest=True)[0][..., 0]
        inside = (grid_x >= 0) & (grid_x <= plan.width - 1) & (grid_y >= 0) & (grid_y <= plan.height - 1)
        cell_x = ((source_x + 0.5) * sx + pad_x) / cell - 0.5
        cell_y = ((source_y + 0.5) * sy + pad_y) / cell - 0.5
        on_grid = (cell_x >= -0.5) & (cell_x <= cols - 0.5) & (cell_y >= -0.5) & (cell_y <= rows - 0.5)
        return cell_x, cell_y, visible & inside & on_grid


class CrossFrameAttention:
    """Self-attention (a UNet's attn1) whose keys and values also come from the anchor and previous frames.

    Every call records the layer's input for later frames, so the processors of one UNet share
    one ``FrameFeatures``; each layer runs once per denoising step, so its n-th call is step n.
    """

    def __init__(self, name: str, features: FrameFeatures) -> None:
        self.name, self.features = name, features
        self.base = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: object, **kwargs: object) -> torch.Tensor:
        references = self.features.exchange(self.name, hidden_states)  # (B, N, C) each
        context = torch.cat([hidden_states, *references], dim=1) if references else hidden_states
        return self.base(attn, hidden_states, encoder_hidden_states=context, attention_mask=attention_mask, temb=temb)


class FrameFeatures:
    """Self-attention inputs by layer and step: the current frame's (recorded), the anchor's and the previous one's."""

    def __init__(self) -> None:
        self.current: dict[str, list[torch.Tensor]] = {}
        self.anchor: dict[str, list[torch.Tensor]] = {}
        self.previous: dict[str, list[torch.Tensor]] = {}

    def exchange(self, name: str, hidden_states: torch.Tensor) -> list[torch.Tensor]:
        """Record this step's input of layer ``name``; the anchor's and previous frame's at the same step."""
        steps = self.current.setdefault(name, [])
        step = len(steps)
        steps.append(hidden_states.detach())
        found = [frame[name][step] for frame in (self.anchor, self.previous)
                 if len(frame.get(name, ())) > step and frame[name][step].shape == hidden_states.shape]
        return found if len(found) < 2 or found[0] is not found[1] else found[:1]

    def finish_frame(self, is_anchor: bool) -> None:
        """The frame just rendered becomes the previous one (and the anchor, for the shot's first frame)."""
        if is_anchor:
            self.anchor = self.current
        self.previous, self.current = self.current, {}


def install_cross_frame(unet: torch.nn.Module, features: FrameFeatures) -> dict[str, object]:
    """Put CrossFrameAttention on the UNet's self-attention layers; returns the processors to restore."""
    original = dict(unet.attn_processors)
    unet.set_attn_processor({name: CrossFrameAttention(name, features) if name.endswith("attn1.processor") else processor
                             for name, processor in original.items()})
    return original
