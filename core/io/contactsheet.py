"""Contact sheets: labelled grids of display-referred thumbnails, written as PNG.

Beauty goes through the job's view transform (``stylecomp.color``); AOVs get the usual
false-colour previews (inverse depth, near bright; normals as 0.5 + 0.5·N, motion as u/v in red/green,
IDs as distinct colours) so a compositor can check a plate at a glance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .atomic import atomic_target

LABEL_HEIGHT = 14


def depth_preview(depth: np.ndarray) -> np.ndarray:
    """Depth ``(H, W)`` to grey ``(H, W, 3)``: inverse depth, near bright, 1st-99th percentile."""
    inverse = 1.0 / np.maximum(np.nan_to_num(depth, nan=np.inf), 1e-6)
    near, far = np.percentile(inverse, [99, 1])
    grey = np.clip((inverse - far) / max(near - far, 1e-12), 0, 1)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32)


def normals_preview(normals: np.ndarray) -> np.ndarray:
    """Unit normals ``(H, W, 3)`` to colour: 0.5 + 0.5·N."""
    return np.clip(0.5 + 0.5 * np.nan_to_num(normals), 0, 1).astype(np.float32)


def motion_preview(motion: np.ndarray) -> np.ndarray:
    """Motion ``(H, W, 2+)`` in pixels to colour: 0.5 + u, v scaled by the largest motion."""
    uv = np.nan_to_num(motion[..., :2])
    scale = max(float(np.abs(uv).max()), 1e-6)
    rgb = np.full((*uv.shape[:2], 3), 0.5, np.float32)
    rgb[..., :2] = 0.5 + 0.5 * uv / scale
    return rgb


def id_preview(ids: np.ndarray) -> np.ndarray:
    """Integer IDs ``(H, W)`` to distinct colours; ID 0 is black."""
    ids = np.nan_to_num(ids).astype(np.int64)
    golden = 0.61803398875
    hue = (ids * golden) % 1.0
    rgb = np.stack([0.5 + 0.5 * np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)], axis=-1)
    return np.where((ids == 0)[..., None], 0.0, rgb).astype(np.float32)


def write_contact_sheet(
    path: str | os.PathLike[str],
    tiles: Sequence[tuple[str, np.ndarray]],
    columns: int = 4,
    tile_width: int = 320,
) -> None:
    """Write labelled ``(H, W, 3)`` [0, 1] images as a grid PNG (atomically)."""
    if not tiles:
        raise ValueError("a contact sheet needs at least one image")
    height0, width0 = tiles[0][1].shape[:2]
    tile_height = max(1, round(tile_width * height0 / width0))
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * tile_width, rows * (tile_height + LABEL_HEIGHT)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (label, image) in enumerate(tiles):
        pixels = (np.clip(np.nan_to_num(image[..., :3]), 0, 1) * 255 + 0.5).astype(np.uint8)
        thumb = Image.fromarray(pixels).resize((tile_width, tile_height), Image.Resampling.BILINEAR)
        x, y = (i % columns) * tile_width, (i // columns) * (tile_height + LABEL_HEIGHT)
        sheet.paste(thumb, (x, y + LABEL_HEIGHT))
        draw.text((x + 3, y + 1), label, fill=(220, 220, 220))
    with atomic_target(path) as temp:
        sheet.save(temp, format="PNG")
