"""Temporal consistency: what carries over from frame t-1 to frame t along the motion vectors.

Each mechanism is a job setting (``consistency.mechanisms``) and can be measured alone:

- ``locked_seed``: the same seed every frame (the common baseline; the noise sticks to the screen).
- ``warped_noise``: frame t's initial noise is frame t-1's, moved along the vectors (nearest
  sample, so every value stays an exact N(0, 1) draw); fresh noise where the surface was not
  visible before (disocclusions, off-screen sources).
- ``pixel_fusion``: the previous stylized frame, moved along the vectors, is blended into the
  current one's model image by ``fusion_strength`` outside disocclusions; then img2img denoises.
- ``keyframes``: every ``keyframe_interval``-th frame stylizes fully; the frames between start
  from the previous stylized frame moved along the vectors (the plate where it was not
  visible) and are re-stylized lightly, at ``KEYFRAME_HEAL`` of the strength, to heal.

Each of these needs the previous frame, so a shot using them renders in order from its first
frame (``StageDescription.sequential``). ``cross_frame`` and ``latent_fusion`` are accepted by
the job spec but not implemented yet: a job naming them is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import JobError
from .motion import VectorConvention, visible_before, warp
from .resolution import ResolutionPlan
from .stage import FrameInputs

SEQUENTIAL = frozenset({"warped_noise", "cross_frame", "latent_fusion", "pixel_fusion", "keyframes"})
IMPLEMENTED = frozenset({"locked_seed", "warped_noise", "pixel_fusion", "keyframes"})
KEYFRAME_HEAL = 0.5  # strength share for the frames between keyframes
LATENT_SCALE = 8  # pixels per latent cell: the VAEs of SD 1.5, SDXL and Flux
LATENT_CHANNELS = {"sd15": 4, "sdxl": 4, "flux": 16}  # initial noise channels (Flux's before 2x2 packing)


def check_mechanisms(mechanisms: frozenset[str], tiled: bool, where: str) -> None:
    """Refuse mechanisms that cannot run (yet, or with tiles), naming them."""
    missing = sorted(mechanisms - IMPLEMENTED)
    if missing:
        raise JobError(f"consistency mechanisms {', '.join(missing)} are not implemented yet; use "
                       f"{', '.join(sorted(IMPLEMENTED))}", where)
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
        """Frame t's latent noise (1, C, h, w): t-1's moved along the vectors, ``fresh`` where not visible before.

        Latent cell (i, j) covers working pixels 8i..8i+7, 8j..8j+7 of the padded, scaled plate;
        its centre is mapped to the plate, its source read from the vectors there, and mapped back.
        """
        _, _, rows, cols = previous.shape
        sx, sy = plan.scaled_width / plan.width, plan.scaled_height / plan.height
        pad_x, pad_y = (plan.working_width - plan.scaled_width) // 2, (plan.working_height - plan.scaled_height) // 2
        centre_x = ((np.arange(cols) + 0.5) * LATENT_SCALE - pad_x) / sx - 0.5  # plate columns (w,)
        centre_y = ((np.arange(rows) + 0.5) * LATENT_SCALE - pad_y) / sy - 0.5  # plate rows (h,)
        grid_x, grid_y = np.meshgrid(centre_x, centre_y)  # (h, w)
        source_x = warp(self.xs[..., None], grid_x, grid_y, nearest=True)[0][..., 0]
        source_y = warp(self.ys[..., None], grid_x, grid_y, nearest=True)[0][..., 0]
        visible = warp(self.visible[..., None], grid_x, grid_y, nearest=True)[0][..., 0]
        inside = (grid_x >= 0) & (grid_x <= plan.width - 1) & (grid_y >= 0) & (grid_y <= plan.height - 1)
        latent_x = ((source_x + 0.5) * sx + pad_x) / LATENT_SCALE - 0.5
        latent_y = ((source_y + 0.5) * sy + pad_y) / LATENT_SCALE - 0.5
        noise = previous[0].permute(1, 2, 0).cpu().numpy()  # (h, w, C)
        moved, on_screen = warp(noise, latent_x, latent_y, nearest=True)
        keep = torch.from_numpy(visible & inside & on_screen)[None, None]  # (1, 1, h, w)
        return torch.where(keep, torch.from_numpy(moved).permute(2, 0, 1)[None].to(fresh.dtype), fresh)
