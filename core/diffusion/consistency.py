"""Temporal consistency: what carries over from frame t-1 to frame t along the motion vectors.

Each mechanism is a job setting (``consistency.mechanisms``) and can be measured alone:

- ``locked_seed``: the same seed every frame (the common baseline; the noise sticks to the screen).
- ``warped_noise``: frame t's initial noise is frame t-1's, moved along the vectors (nearest
  sample, so every value stays an exact N(0, 1) draw); fresh noise where the surface was not
  visible before (disocclusions, off-screen sources). It moves by whole latent cells (8 pixels
  with an f=8 VAE), so where the surface moves less than half a cell per frame the noise stays
  where it was.
- ``pixel_fusion``: the previous stylized frame, moved along the vectors, is blended into the
  current one's model image by ``fusion_strength`` where ``carried`` (below); then img2img denoises.
- ``keyframes``: every ``keyframe_interval``-th frame stylizes fully; the frames between start
  from the previous stylized frame moved along the vectors (the plate where it is not
  ``carried``) and are re-stylized lightly, at ``KEYFRAME_HEAL`` of the strength, to heal; so
  where the checks below stop the carry, those frames are only half stylized until the next keyframe.
- ``latent_fusion``: during the first ``latent_fusion_steps`` (a share) of the denoising steps, the
  latents after each step are blended with the previous frame's latents after the step that
  ended at the same timestep (the same step unless the strengths differ, as with keyframes),
  moved along the vectors (bilinear, so motion under a latent cell counts), by
  ``fusion_strength`` where ``carried`` (its mean over the cell).
- ``cross_frame``: the UNet's self-attention layers also attend to the anchor (the shot's first
  frame) and the previous frame: their keys and values include those frames' hidden states at
  the same layer and step (SD 1.5 and SDXL; installed after any IP-Adapter, which replaces the
  cross-attention processors only).
- ``flow_attention``: the UNet's self-attention layers also attend along the motion vectors: the
  previous frame's hidden states at the same layer and step, warped (bilinear) to this frame's
  token grid at that layer's resolution (latent size / 2^level), are extra keys and values, and
  each token may attend only to the one warped onto its own position, and only where its surface
  was visible in the previous frame (disoccluded and off-screen tokens are masked out). Self-
  attention has no positional encoding, so previous-frame tokens offered to every query alike
  (``cross_frame``) are a bag of features; tied to their own positions, they carry the previous
  frame's features along the surface as the renderer moved it. With ``cross_frame`` too, the
  previous frame is attended only this way, and the anchor as ``cross_frame`` does.

What carries the previous frame's look (``CARRY_LOOK``: ``pixel_fusion``, ``latent_fusion``, the
frames between ``keyframes``) does so only where two checks let it (``FrameMotion.carried``). The
vectors move surfaces, but a light switched or moving, a shadow sweeping over the ground or a
highlight sliding over a surface changes the plate in place: the plate must be the same along the
vectors (``where_plate_unchanged``, ``consistency.plate_change_tolerance``). And a model paints an
outline past the silhouette onto the surface behind it: when the object moves on, that surface moves
with the vectors but the paint belongs to the outline, so a pixel's distance to the nearest outline
must be the same too (``where_outlines_stay``). Without them the stylized frame lags behind the
render, and moving objects leave rings of old outlines behind.

Latent cells are ``vae_scale_factor`` pixels across (8 for SD 1.5, SDXL and Flux, 1 for
stylecomp's pixel-space model): the mechanisms take it from the model (``ModelGeometry``).

Each of these needs the previous frame, so a shot using them renders in order from its first
frame (``StageDescription.sequential``). ``latent_fusion`` and ``cross_frame`` (and ``flow_attention``)
carry state that only rendering produces (latents, attention features), so when a frame of such a shot
must render, the frames before it are rendered again in memory (``RENDER_STATE``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ..errors import JobError
from ..families import family_spec
from ..io.conditioning import line_art
from ..jobspec import ATTENTION_MECHANISMS, RENDER_STATE_MECHANISMS, SEQUENTIAL_MECHANISMS
from ..stage import FrameInputs
from ..temporal.motion import VectorConvention, line_distance, plate_unchanged, visible_before, warp
from .resolution import ResolutionPlan

ATTENTION = ATTENTION_MECHANISMS  # installed on the UNet's self-attention layers
SEQUENTIAL = SEQUENTIAL_MECHANISMS
IMPLEMENTED = frozenset({"locked_seed"}) | SEQUENTIAL
CARRY_LOOK = frozenset({"pixel_fusion", "latent_fusion", "keyframes"})  # carry t-1's look, checked (FrameMotion)
RENDER_STATE = RENDER_STATE_MECHANISMS  # their state exists only after rendering a frame
KEYFRAME_HEAL = 0.5  # strength share for the frames between keyframes
OUTLINE_REACH = 3  # model pixels: how far from an outline its paint may reach (FrameMotion.where_outlines_stay)
_Context = tuple[torch.Tensor, torch.Tensor | None]  # a frame-attention layer's keys and values (B, K, C), and mask


def check_mechanisms(mechanisms: frozenset[str], family: str, tiled: bool, where: str) -> None:
    """Refuse mechanisms that cannot run with this model or with tiles, naming them."""
    for name in sorted(mechanisms & ATTENTION):
        if family_spec(family).denoiser != "unet":
            raise JobError(f"{name} attention works on UNet models (SD 1.5, SDXL), not on Flux's transformer", where)
    if tiled and mechanisms & SEQUENTIAL:
        raise JobError(
            "consistency mechanisms that follow the motion vectors need resolution mode "
            "native, downscale or auto (not tiles)",
            where,
        )


def _plane(inputs: FrameInputs, clip: str) -> np.ndarray | None:
    image = inputs.get(clip)
    return None if image is None else image[..., 0]


def _outlines(inputs: FrameInputs) -> np.ndarray | None:
    """The frame's outlines (H, W) bool from its ID, normal and depth clips; None without any of them."""
    ids, normals, depth = _plane(inputs, "ObjectID"), inputs.get("Normal"), _plane(inputs, "Depth")
    if ids is None and normals is None and depth is None:
        return None
    return line_art(object_id=ids, normals=normals, depth=depth)[..., 0] > 0.5


@dataclass
class FrameMotion:
    """Where frame t's pixels were in t-1 (columns, rows; (H, W) each), which were visible there, and how much
    of t-1's look may carry onto each (``carried``)."""

    xs: np.ndarray
    ys: np.ndarray
    visible: np.ndarray  # (H, W) bool
    carried: np.ndarray  # (H, W) float32 in [0, 1]; 0 where not visible, and where the checks below stop it

    @classmethod
    def between(cls, previous: FrameInputs, current: FrameInputs, convention: VectorConvention) -> FrameMotion:
        """Backward vectors of ``current`` checked against depth and object IDs of both frames."""
        vectors = current.images["Motion"]
        xs, ys = convention.source_positions(vectors)
        _, on_screen = warp(np.zeros((*vectors.shape[:2], 1), np.float32), xs, ys, nearest=True)
        visible = visible_before(
            xs,
            ys,
            on_screen,
            _plane(current, "Depth"),
            _plane(previous, "Depth"),
            _plane(current, "ObjectID"),
            _plane(previous, "ObjectID"),
        )
        return cls(xs, ys, visible, visible.astype(np.float32))

    def where_plate_unchanged(
        self, previous_plate: np.ndarray, current_plate: np.ndarray, tolerance: float
    ) -> FrameMotion:
        """This motion, carrying only where the plate (t-1's and t's display-referred (H, W, 3)) is the same along
        the vectors (``plate_unchanged``): not where light, shadows or highlights changed in place."""
        moved, _ = warp(previous_plate, self.xs, self.ys)
        return replace(self, carried=self.carried * plate_unchanged(moved, current_plate, self.visible, tolerance))

    def where_outlines_stay(self, previous: FrameInputs, current: FrameInputs, scale: float) -> FrameMotion:
        """This motion, carrying only where a pixel's distance to the nearest outline (``line_art`` of the AOVs:
        silhouettes, creases) is the same along the vectors, within ``OUTLINE_REACH`` model pixels (``scale``
        plate pixels each); unchanged without AOVs to draw outlines from.

        A model paints an outline past the silhouette onto the surface behind; when the object moves on, that
        surface moves with the vectors but the paint belongs to the outline, and carrying it leaves rings
        where the outline was. A change of one model pixel in the distance stops the carry.
        """
        before, now = _outlines(previous), _outlines(current)
        if before is None or now is None:
            return self
        reach = int(np.ceil(OUTLINE_REACH * scale))
        moved = warp(line_distance(before, reach)[..., None], self.xs, self.ys)[0][..., 0]
        stays = np.clip(1.0 - np.abs(moved - line_distance(now, reach)) / scale, 0.0, 1.0)
        return replace(self, carried=(self.carried * stays).astype(np.float32))

    def carry(self, previous_image: np.ndarray, current_image: np.ndarray, amount: float) -> np.ndarray:
        """``current_image`` with ``previous_image`` moved along the vectors blended in by ``amount`` times
        ``carried``."""
        moved, _ = warp(previous_image, self.xs, self.ys)
        weight = (self.carried * np.float32(amount))[..., None]
        return ((1 - weight) * current_image + weight * moved).astype(np.float32)

    def carry_noise(self, previous: torch.Tensor, fresh: torch.Tensor, plan: ResolutionPlan) -> torch.Tensor:
        """Frame t's latent noise (1, C, h, w): t-1's moved along the vectors (nearest cell), ``fresh`` where
        not visible before."""
        moved, keep = self._latent_flow(previous, plan, nearest=True)
        return torch.where(keep, moved, fresh.to(moved.dtype))

    def carry_latents(
        self, previous: torch.Tensor, current: torch.Tensor, plan: ResolutionPlan, amount: float
    ) -> torch.Tensor:
        """``current`` latents (B, C, h, w) with ``previous`` moved along the vectors (bilinear) blended in by
        ``amount`` times ``carried`` (its mean over each cell)."""
        moved, keep = self._latent_flow(previous, plan, nearest=False)
        rows, cols = current.shape[-2:]
        carried = torch.from_numpy(self._carried_per_cell(rows, cols, plan, plan.geometry.vae_scale))
        weight = keep.to(current.dtype) * carried.to(current.device, current.dtype) * amount
        return (1 - weight) * current + weight * moved.to(current.device, current.dtype)

    def _latent_flow(
        self, previous: torch.Tensor, plan: ResolutionPlan, nearest: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``previous`` (B, C, h, w) moved along the vectors to frame t's latent grid; where that holds (1, 1, h, w).

        ``nearest`` moves whole cells (exact values: noise), so motion under half a cell per frame moves
        nothing; bilinear follows any motion.
        """
        _, _, rows, cols = previous.shape
        latent_x, latent_y, keep = self.grid_sources(rows, cols, plan, plan.geometry.vae_scale)
        cells = previous.permute(2, 3, 0, 1).reshape(rows, cols, -1).float().cpu().numpy()  # (h, w, B*C)
        moved, _ = warp(cells, latent_x, latent_y, nearest=nearest)
        moved_tensor = torch.from_numpy(moved).reshape(rows, cols, *previous.shape[:2]).permute(2, 3, 0, 1)
        return moved_tensor.to(previous.device, previous.dtype), torch.from_numpy(keep)[None, None].to(previous.device)

    def _carried_per_cell(self, rows: int, cols: int, plan: ResolutionPlan, cell: int) -> np.ndarray:
        """``carried`` over a (rows, cols) grid of ``cell``-pixel working cells: the mean over the plate pixels
        each covers (a latent cell decodes to all of them, not only its centre), 1 where it covers none."""
        sx, sy = plan.scaled_width / plan.width, plan.scaled_height / plan.height
        pad_x, pad_y = (plan.working_width - plan.scaled_width) // 2, (plan.working_height - plan.scaled_height) // 2
        height, width = self.carried.shape
        cell_x = np.clip(((np.arange(width) + 0.5) * sx + pad_x) // cell, 0, cols - 1).astype(np.int64)
        cell_y = np.clip(((np.arange(height) + 0.5) * sy + pad_y) // cell, 0, rows - 1).astype(np.int64)
        index = (cell_y[:, None] * cols + cell_x[None, :]).ravel()  # each plate pixel's cell, row-major
        total = np.bincount(index, weights=self.carried.ravel(), minlength=rows * cols).reshape(rows, cols)
        count = np.bincount(index, minlength=rows * cols).reshape(rows, cols)
        return np.where(count > 0, total / np.maximum(count, 1), 1.0).astype(np.float32)

    @staticmethod
    def _cell_centres(rows: int, cols: int, plan: ResolutionPlan, cell: int) -> tuple[np.ndarray, np.ndarray]:
        """The plate positions (columns, rows; (rows, cols) each) of the centres of a (rows, cols) grid whose cells
        are ``cell`` working pixels across."""
        sx, sy = plan.scaled_width / plan.width, plan.scaled_height / plan.height
        pad_x, pad_y = (plan.working_width - plan.scaled_width) // 2, (plan.working_height - plan.scaled_height) // 2
        centre_x = ((np.arange(cols) + 0.5) * cell - pad_x) / sx - 0.5  # plate columns (cols,)
        centre_y = ((np.arange(rows) + 0.5) * cell - pad_y) / sy - 0.5  # plate rows (rows,)
        grid_x, grid_y = np.meshgrid(centre_x, centre_y)
        return grid_x, grid_y

    def grid_sources(
        self, rows: int, cols: int, plan: ResolutionPlan, cell: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each cell of a (rows, cols) grid over the working image was in t-1, in that grid's cells
        (columns, rows; (rows, cols) each), and where that holds: visible before, on the plate, source on the grid.

        Cell (i, j) covers working pixels ``cell`` * (i, j) onwards of the padded, scaled plate (a latent cell,
        or an attention token); its centre is mapped to the plate, its source read from the vectors there,
        and mapped back.
        """
        sx, sy = plan.scaled_width / plan.width, plan.scaled_height / plan.height
        pad_x, pad_y = (plan.working_width - plan.scaled_width) // 2, (plan.working_height - plan.scaled_height) // 2
        grid_x, grid_y = self._cell_centres(rows, cols, plan, cell)
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


class TokenFlow:
    """How the previous frame's self-attention tokens move to this frame's token grids, one per attention level.

    UNet level l holds the latent grid / 2^l (rounded up, as its strided convolutions round), so a
    layer's grid is known by its token count; its sampling grid and mask are built once per frame.
    """

    def __init__(self, motion: FrameMotion, plan: ResolutionPlan) -> None:
        self.motion, self.plan = motion, plan
        self._grids: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # tokens -> (grid (1, h, w, 2), visible (N,))

    def warp(self, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``previous`` (B, N, C) moved along the vectors (bilinear) onto this frame's token grid, and whether each
        token's surface was visible in the previous frame (N,) bool."""
        batch, tokens, channels = previous.shape
        rows, cols, cell = self._level(tokens)
        if tokens not in self._grids:
            cell_x, cell_y, keep = self.motion.grid_sources(rows, cols, self.plan, cell)
            # align_corners=True puts -1 and 1 on the corner cells' centres; border padding clamps as motion.warp does
            sampling = np.stack([2 * cell_x / max(cols - 1, 1) - 1, 2 * cell_y / max(rows - 1, 1) - 1], axis=-1)
            self._grids[tokens] = torch.from_numpy(sampling.astype(np.float32))[None], torch.from_numpy(keep.ravel())
        grid, visible = self._grids[tokens]
        image = previous.transpose(1, 2).reshape(batch, channels, rows, cols)
        moved = F.grid_sample(
            image.float(),
            grid.to(previous.device).expand(batch, -1, -1, -1),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )  # (B, C, h, w)
        return moved.reshape(batch, channels, tokens).transpose(1, 2).to(previous.dtype), visible.to(previous.device)

    def _level(self, tokens: int) -> tuple[int, int, int]:
        """Rows, columns and pixels per token of the level whose grid holds ``tokens`` tokens."""
        scale = self.plan.geometry.vae_scale
        rows, cols, cell = self.plan.working_height // scale, self.plan.working_width // scale, scale
        while rows * cols > tokens and rows * cols > 1:
            rows, cols, cell = -(-rows // 2), -(-cols // 2), cell * 2
        if rows * cols != tokens:
            raise ValueError(
                f"{tokens} attention tokens are no level of the {self.plan.working_width}x"
                f"{self.plan.working_height} image's latent grid"
            )
        return rows, cols, cell


class _FrameAttention(abc.ABC):
    """A UNet self-attention processor (attn1) whose keys and values also come from other frames (``context`` says
    which). Every call records the layer's input for later frames, so the processors of one UNet share one
    ``FrameFeatures``; each layer runs once per denoising step, so its n-th call is step n."""

    def __init__(self, name: str, features: FrameFeatures) -> None:
        self.name, self.features = name, features
        self.base = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: object,
        **kwargs: object,
    ) -> torch.Tensor:
        """diffusers' processor call; self-attention has no ``encoder_hidden_states``: ``context`` makes its own."""
        context, mask = self.context(attn, hidden_states, attention_mask)
        return self.base(attn, hidden_states, encoder_hidden_states=context, attention_mask=mask, temb=temb)

    @abc.abstractmethod
    def context(self, attn: Attention, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> _Context:
        """The keys and values for the layer's (B, N, C) ``hidden_states``, and the attention mask to use with them."""


class CrossFrameAttention(_FrameAttention):
    """Self-attention whose keys and values also come from the anchor and previous frames (``cross_frame``)."""

    def context(self, attn: Attention, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> _Context:
        references = self.features.exchange(self.name, hidden_states)  # (B, N, C) each
        return torch.cat([hidden_states, *references], dim=1) if references else hidden_states, mask


class FlowAttention(_FrameAttention):
    """Self-attention that also attends along the motion vectors (``flow_attention``).

    The previous frame's input to this layer at this step, warped onto this frame's token grid
    (``FrameFeatures.flow``), is appended to the keys and values; a mask lets token i see only
    warped token i, and only where its surface was visible in the previous frame. With ``anchor``
    (``cross_frame`` on too) the anchor frame's tokens are keys and values for every token as well.
    """

    def __init__(self, name: str, features: FrameFeatures, anchor: bool) -> None:
        super().__init__(name, features)
        self.anchor = anchor

    def context(self, attn: Attention, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> _Context:
        """The layer's own ``mask`` is not used: the flow mask replaces it."""
        anchor, previous = self.features.record(self.name, hidden_states)  # (B, N, C) each, or None
        references = [anchor] if self.anchor and anchor is not None else []
        flow = self.features.flow
        if previous is None or flow is None:  # the shot's first frame: nothing to follow
            return torch.cat([hidden_states, *references], dim=1) if references else hidden_states, None
        warped, visible = flow.warp(previous)
        batch, tokens, _ = hidden_states.shape
        context = torch.cat([hidden_states, *references, warped], dim=1)  # (B, K, C)
        everyone = torch.ones(tokens, tokens * (1 + len(references)), dtype=torch.bool, device=visible.device)
        flow_mask = torch.cat([everyone, torch.diag(visible)], dim=1)  # (N, K): token i sees warped token i if visible
        # one (N, K) mask for every image and head: expanded, not copied (AttnProcessor2_0 repeats a smaller one)
        return context, flow_mask[None].expand(batch * attn.heads, -1, -1)


class FrameFeatures:
    """Self-attention inputs by layer and step: the current frame's (recorded), the anchor's and the previous one's;
    and, for ``flow_attention``, how the previous frame's tokens move to the current frame (None on its first)."""

    def __init__(self) -> None:
        self.current: dict[str, list[torch.Tensor]] = {}
        self.anchor: dict[str, list[torch.Tensor]] = {}
        self.previous: dict[str, list[torch.Tensor]] = {}
        self.flow: TokenFlow | None = None

    def record(self, name: str, hidden_states: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Record this step's input of layer ``name``; the anchor's and previous frame's at the same step, if any."""
        steps = self.current.setdefault(name, [])
        step = len(steps)
        steps.append(hidden_states.detach())

        def at(frame: dict[str, list[torch.Tensor]]) -> torch.Tensor | None:
            found = frame.get(name, ())
            return found[step] if len(found) > step and found[step].shape == hidden_states.shape else None

        return at(self.anchor), at(self.previous)

    def exchange(self, name: str, hidden_states: torch.Tensor) -> list[torch.Tensor]:
        """``record``, as a list of references: the anchor once when it is the previous frame."""
        anchor, previous = self.record(name, hidden_states)
        found = [frame for frame in (anchor, previous) if frame is not None]
        return found if len(found) < 2 or found[0] is not found[1] else found[:1]

    def finish_frame(self, is_anchor: bool) -> None:
        """The frame just rendered becomes the previous one (and the anchor, for the shot's first frame)."""
        if is_anchor:
            self.anchor = self.current
        self.previous, self.current, self.flow = self.current, {}, None


def install_cross_frame(
    unet: UNet2DConditionModel, features: FrameFeatures, mechanisms: frozenset[str] = frozenset({"cross_frame"})
) -> dict[str, object]:
    """Put frame attention on the UNet's self-attention layers (``FlowAttention`` with ``flow_attention``, else
    ``CrossFrameAttention``); returns the processors to restore."""
    original = dict(unet.attn_processors)

    def processor(name: str) -> object:
        if "flow_attention" in mechanisms:
            return FlowAttention(name, features, anchor="cross_frame" in mechanisms)
        return CrossFrameAttention(name, features)

    unet.set_attn_processor(
        {
            name: processor(name) if name.endswith("attn1.processor") else original_processor
            for name, original_processor in original.items()
        }
    )
    return original
