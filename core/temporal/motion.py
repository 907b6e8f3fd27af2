"""Moving pixels along the renderer's motion vectors: backward warps, the disocclusion mask, and where the
plate itself, or a pixel's place next to an outline, changed in place.

A backward vector at pixel (x, y) of frame t points to where that surface point was in frame
t-1. Vectors come in pixels (Nuke, Arnold, the demo) or NDC (fractions of the width/height),
with v pointing up (Nuke's convention: the demo's) or down (image rows). Rows in our arrays
run down from the top of the data window, so a y-up v is subtracted from the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import StyleCompError
from ..io.conditioning import dilate

DEPTH_TOLERANCE = 0.05  # a surface's depth changes less than this (relative) between frames
# A plate's change along the vectors is averaged over (2r + 1)^2 pixels before it is judged: render noise and
# resampling at edges change pixels in both directions and cancel, light that changes does not.
PLATE_CHANGE_RADIUS = 2


@dataclass(frozen=True)
class VectorConvention:
    """How a motion AOV is to be read."""

    units: Literal["pixels", "ndc"] = "pixels"
    y: Literal["up", "down"] = "up"

    def source_positions(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each pixel of frame t was in frame t-1: float columns and rows (H, W) from backward vectors
        (H, W, 2)."""
        if vectors.ndim != 3 or vectors.shape[2] < 2:
            raise StyleCompError(f"motion vectors must be (H, W, 2), got {vectors.shape}")
        height, width = vectors.shape[:2]
        u, v = np.nan_to_num(vectors[..., 0]), np.nan_to_num(vectors[..., 1])
        if self.units == "ndc":
            u, v = u * width, v * height
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
        return cols + u, (rows - v) if self.y == "up" else (rows + v)


def warp(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, nearest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W, C) sampled at (xs, ys) (H', W'): bilinear, or nearest to keep values exact (noise).

    Returns the warped image (H', W', C) and the on-screen mask (H', W') of sources inside the image.
    """
    height, width = image.shape[:2]
    on_screen = (xs >= -0.5) & (xs <= width - 0.5) & (ys >= -0.5) & (ys <= height - 0.5)
    if nearest:
        col = np.clip(np.rint(xs).astype(np.int64), 0, width - 1)
        row = np.clip(np.rint(ys).astype(np.int64), 0, height - 1)
        return image[row, col], on_screen
    xs, ys = np.clip(xs, 0, width - 1), np.clip(ys, 0, height - 1)
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, max(width - 2, 0))
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, max(height - 2, 0))
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(image.dtype), on_screen


def visible_before(
    xs: np.ndarray,
    ys: np.ndarray,
    on_screen: np.ndarray,
    depth: np.ndarray | None,
    previous_depth: np.ndarray | None,
    ids: np.ndarray | None,
    previous_ids: np.ndarray | None,
) -> np.ndarray:
    """(H, W) bool: pixels of frame t whose surface was visible at their source in t-1 (not disoccluded).

    The source must be on screen, hold the same object ID (nearest pixel) and a depth within
    DEPTH_TOLERANCE of the current one; missing AOVs skip their test.
    """
    valid = on_screen.copy()
    if ids is not None and previous_ids is not None:
        valid &= warp(previous_ids[..., None], xs, ys, nearest=True)[0][..., 0] == ids
    if depth is not None and previous_depth is not None:
        then = warp(previous_depth[..., None], xs, ys, nearest=True)[0][..., 0]
        with np.errstate(invalid="ignore"):
            valid &= np.abs(then - depth) <= DEPTH_TOLERANCE * np.abs(depth)
    return valid


def plate_unchanged(moved: np.ndarray, current: np.ndarray, visible: np.ndarray, tolerance: float) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how far frame t's plate is the same as t-1's moved along the vectors (both
    display-referred (H, W, 3)): 1 where the worst channel's change, averaged over visible pixels nearby
    (``PLATE_CHANGE_RADIUS``), is under half the ``tolerance``, 0 from the ``tolerance`` on, linear between.

    The vectors move surfaces; what changes on a surface in place (light switched or moving, shadows,
    highlights, animated textures) is not moved, so the previous frame's look must not carry there.
    """
    weight = visible.astype(np.float32)[..., None]
    change = np.where(visible[..., None], moved - current, 0.0).astype(np.float32)  # (H, W, 3) signed
    mean_change = box_sum(change, PLATE_CHANGE_RADIUS) / np.maximum(box_sum(weight, PLATE_CHANGE_RADIUS), 1.0)
    worst = np.abs(mean_change).max(axis=-1)
    return np.clip(2.0 - 2.0 * worst / tolerance, 0.0, 1.0).astype(np.float32)


def box_sum(image: np.ndarray, radius: int) -> np.ndarray:
    """Sum of ``image`` (H, W, C) over the (2 * radius + 1)^2 box around each pixel; the edges repeated."""
    size, (height, width) = 2 * radius + 1, image.shape[:2]
    padded = np.pad(image.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    table = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0), (0, 0)))  # table[i, j] = sum of padded[:i, :j]
    return (
        table[size : size + height, size : size + width]
        - table[:height, size : size + width]
        - table[size : size + height, :width]
        + table[:height, :width]
    )


def line_distance(lines: np.ndarray, reach: int) -> np.ndarray:
    """(H, W) float32: each pixel's distance to the nearest ``lines`` pixel (bool (H, W)), in steps to any of
    its 8 neighbours, capped at ``reach``."""
    distance = np.full(lines.shape, float(reach), np.float32)
    grown = lines
    for step in range(reach):
        if step:
            grown = dilate(grown, 3)
        distance[grown & (distance > step)] = step
    return distance
