"""Getting a plate to a size the diffusion model takes, and back: pad, downscale or tiles.

The caller hands over the plate already encoded to the model's display-referred [0, 1] space
as float32 ``(H, W, 3)``, the ControlNet condition images over the same pixels, and a
``ModelCall`` that runs the model on one image whose sides are multiples of the model's
``ModelGeometry.multiple`` (``geometry``: 64 pixels for SD 1.5 and SDXL, 16 for Flux, 4 for a
pixel-space UNet with two downsamplings); planning takes the model's geometry, or a family
name for the family's published model. ``stylize_at_resolution`` returns the stylized
``(H, W, 3)`` [0, 1] image at the plate's size; ``model_calls`` and ``assemble`` are its two
halves, for a caller that runs several plates' model calls together (frames batched into one
pipeline call). The modes (``plan`` resolves one and says how in ``describe()``):

- **native**: pad to the multiple (the image by reflection, conditions by replicating their
  edge; centred, so neither side carries all the padding), one call, crop back. A call that
  returns its input unchanged gives the plate back bit for bit.
- **downscale**: resize so the long side is the working size (the model's training size),
  pad as native, one call, resize back; with ``detail_restore`` the clean plate's high
  frequencies lost in the round trip are added back, ``out = up(model) + (plate - up(down(plate)))``.
  The plate is resized to the working size whatever its size, so an explicit ``downscale``
  of a small plate enlarges it.
- **tiles**: working-size tiles overlapping by at least ``tile_overlap``, spread evenly over
  the plate (no sliver at the edge), one call each, numbered row-major; the results are
  blended with linear ramps across each seam so neighbouring tiles meet without a step.
- **auto**: native while the long side is at most ``NATIVE_LIMIT`` working sizes, else
  downscale. SD-family models stay coherent somewhat beyond their training size (SDXL trains
  on aspect buckets of about 1024² pixels), but further out they repeat subjects and lose the
  composition. Downscale rather than tiles, because it is one call per frame (predictable
  cost; the temporal-consistency mechanisms work on whole frames) and the model sees the whole
  composition, while detail restore keeps the plate's fine detail. Tiles stylize the detail
  itself at full resolution, at the price of a call per tile and a prompt applied to each
  tile: ask for them explicitly.
"""

from __future__ import annotations

import functools
import itertools
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import JobError, StyleCompError
from ..families import FAMILIES, Family
from ..io.plates import Window
from .geometry import ModelGeometry

Mode = Literal["auto", "native", "downscale", "tiles"]
ConditionKind = Literal["depth", "normals", "lineart", "edges", "tile"]
ModelCall = Callable[[np.ndarray, list[np.ndarray], int], np.ndarray]
"""``(image (h, w, 3) [0, 1], conditions [(h, w, 3)] in the order given, tile_index) -> (h, w, 3) [0, 1]``;
h and w are multiples of the model's ``ModelGeometry.multiple``; ``tile_index`` is 0 for a single call and
row-major over the tiles otherwise, so the caller can derive a per-tile seed."""

NATIVE_LIMIT = 1.5  # auto: native while the long side is at most this many working sizes
LINE_KINDS = ("lineart", "edges")  # thin white lines on black: resized by max pooling


@dataclass(frozen=True)
class ResolutionSettings:
    """The job's ``resolution`` block; ``working_size`` None means the model's (``ModelGeometry.working_size``)."""

    mode: Mode = "auto"
    working_size: int | None = None
    tile_overlap: int = 128  # pixels shared by neighbouring tiles, at plate resolution
    detail_restore: bool = True  # downscale: add the clean plate's lost high frequencies back

    def __post_init__(self) -> None:
        if self.mode not in get_args(Mode):
            raise JobError(f"resolution mode must be one of {', '.join(get_args(Mode))}, got {self.mode!r}")
        if self.working_size is not None and not (_is_int(self.working_size) and self.working_size >= 1):
            raise JobError(f"resolution working_size must be a positive integer, got {self.working_size!r}")
        if not (_is_int(self.tile_overlap) and self.tile_overlap >= 0):
            raise JobError(f"resolution tile_overlap must be a non-negative integer, got {self.tile_overlap!r}")


@dataclass(frozen=True)
class ResolutionPlan:
    """How one plate size meets one model: the resolved mode, sizes and tile windows."""

    mode: Literal["native", "downscale", "tiles"]
    auto: bool  # chosen by mode "auto"
    geometry: ModelGeometry
    width: int  # the plate
    height: int
    working_size: int  # the effective working size: the setting rounded to the model's multiple
    scaled_width: int  # the plate after resizing (downscale); the plate's size otherwise
    scaled_height: int
    working_width: int  # what each model call sees: multiples of geometry.multiple
    working_height: int
    tiles: tuple[Window, ...]  # in plate pixels, row-major; one covering the plate unless tiling
    columns: int
    rows: int
    overlap: int  # tiles: the smallest overlap between neighbouring tiles (>= tile_overlap); 0 otherwise
    feather: int  # tiles: width of the linear ramp across each seam (<= tile_overlap); 0 otherwise
    detail_restore: bool

    @property
    def family(self) -> Family:
        return self.geometry.family

    def describe(self) -> str:
        """One line for logs and provenance."""
        plate = f"{self.width}x{self.height} plate"
        working = f"{self.working_width}x{self.working_height}"
        model = self.geometry.describe()
        if self.mode == "native":
            text = f"native: {plate} padded to {working} for {model} (multiple of {self.geometry.multiple})"
        elif self.mode == "downscale":
            text = (
                f"downscale: {plate} resized to {self.scaled_width}x{self.scaled_height}, padded to {working} "
                f"for {model}, detail restore {'on' if self.detail_restore else 'off'}"
            )
        elif len(self.tiles) == 1:
            text = f"tiles: {plate} fits one tile, padded to {working} for {model}"
        else:
            text = (
                f"tiles: {plate} as {self.columns}x{self.rows} = {len(self.tiles)} tiles of {working} "
                f"for {model}, overlap >= {self.overlap} px, feather {self.feather} px"
            )
        if self.auto:
            limit = f"{NATIVE_LIMIT:g} x {self.working_size}"
            side = max(self.width, self.height)
            text = f"auto (long side {side} {'<=' if self.mode == 'native' else '>'} {limit}) -> {text}"
        return text


def plan(width: int, height: int, model: Family | ModelGeometry, settings: ResolutionSettings) -> ResolutionPlan:
    """Resolve the mode for a width x height plate and lay out the model calls (see the module docstring);
    ``model``: the model's geometry, or a family name for the family's published model."""
    geometry = _geometry(model)
    if not (_is_int(width) and _is_int(height) and width >= 1 and height >= 1):
        raise StyleCompError(f"plate size must be positive integers, got {width!r}x{height!r}")
    width, height = int(width), int(height)
    multiple = geometry.multiple
    requested = settings.working_size or geometry.working_size
    size = max(multiple, (requested + multiple // 2) // multiple * multiple)
    mode = settings.mode
    if mode == "auto":
        mode = "native" if max(width, height) <= NATIVE_LIMIT * size else "downscale"
    plan = functools.partial(
        ResolutionPlan,
        auto=settings.mode == "auto",
        geometry=geometry,
        width=width,
        height=height,
        working_size=size,
        detail_restore=settings.detail_restore,
    )

    if mode in ("native", "downscale"):
        scaled_width, scaled_height = width, height
        if mode == "downscale":
            long_side, short_side = max(width, height), min(width, height)
            short_scaled = max(1, (2 * short_side * size + long_side) // (2 * long_side))  # rounded, aspect kept
            scaled_width, scaled_height = (size, short_scaled) if width >= height else (short_scaled, size)
        return plan(
            mode=mode,
            scaled_width=scaled_width,
            scaled_height=scaled_height,
            working_width=_round_up(scaled_width, multiple),
            working_height=_round_up(scaled_height, multiple),
            tiles=(Window(0, 0, width, height),),
            columns=1,
            rows=1,
            overlap=0,
            feather=0,
        )

    overlap = settings.tile_overlap
    if overlap > size // 2:
        raise JobError(f"resolution tile_overlap must be at most half the tile size ({size // 2}), got {overlap}")
    xs, ys = _tile_starts(width, size, overlap), _tile_starts(height, size, overlap)
    tile_width, tile_height = min(width, size), min(height, size)
    shared = [tile_width - step for step in np.diff(xs)] + [tile_height - step for step in np.diff(ys)]
    return plan(
        mode="tiles",
        scaled_width=width,
        scaled_height=height,
        working_width=_round_up(tile_width, multiple),
        working_height=_round_up(tile_height, multiple),
        tiles=tuple(Window(x, y, tile_width, tile_height) for y in ys for x in xs),
        columns=len(xs),
        rows=len(ys),
        overlap=int(min(shared, default=0)),
        feather=min((_feather(starts, overlap) for starts in (xs, ys) if len(starts) > 1), default=0),
    )


@dataclass(frozen=True)
class ModelCalls:
    """A plate's model calls, ready to run (one unless tiling), and what ``assemble`` needs to put their results
    back together: call i takes ``images[i]`` and ``conditions[i]`` (in the order given), padded to the working size."""

    layout: ResolutionPlan
    images: list[np.ndarray]
    conditions: list[list[np.ndarray]]
    plate: np.ndarray  # the image at the plate's size
    low: np.ndarray | None  # downscale: the image at the scaled size, for detail restore


def stylize_at_resolution(
    image: np.ndarray,
    conditions: Sequence[tuple[ConditionKind, np.ndarray]],
    call: ModelCall,
    model: Family | ModelGeometry,
    settings: ResolutionSettings,
) -> np.ndarray:
    """Run ``call`` on the plate at a size the model takes; the result (H, W, 3) [0, 1] at the plate's size."""
    calls = model_calls(image, conditions, model, settings)
    return assemble(
        calls,
        [
            call(tile_image, maps, index)
            for index, (tile_image, maps) in enumerate(zip(calls.images, calls.conditions, strict=True))
        ],
    )


def model_calls(
    image: np.ndarray,
    conditions: Sequence[tuple[ConditionKind, np.ndarray]],
    model: Family | ModelGeometry,
    settings: ResolutionSettings,
) -> ModelCalls:
    """The model calls ``stylize_at_resolution`` makes for this plate, not made yet: a caller can run several
    plates' calls together, then ``assemble`` each plate from its calls' results."""
    image = _checked("image", image)
    height, width = image.shape[:2]
    kinds = [kind for kind, _ in conditions]
    for kind in kinds:
        if kind not in get_args(ConditionKind):
            raise StyleCompError(f"unknown condition kind {kind!r}; use one of {', '.join(get_args(ConditionKind))}")
    maps = [_checked(f"{kind} condition", array) for kind, array in conditions]
    for kind, array in zip(kinds, maps, strict=True):
        if array.shape != image.shape:
            raise StyleCompError(f"{kind} condition shaped {array.shape} does not match the image {image.shape}")
    layout = plan(width, height, model, settings)
    working = (layout.working_height, layout.working_width)

    low = None
    if layout.mode == "native":
        pieces = [(image, maps)]
    elif layout.mode == "downscale":
        scaled = (layout.scaled_height, layout.scaled_width)
        low = resize(image, scaled, "bicubic")
        pieces = [
            (
                low,
                [
                    resize(array, scaled, "max" if kind in LINE_KINDS else "bilinear")
                    for kind, array in zip(kinds, maps, strict=True)
                ],
            )
        ]
    else:
        pieces = [
            (
                image[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width],
                [array[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] for array in maps],
            )
            for tile in layout.tiles
        ]
    # The image pads by reflection, which continues its texture so the model sees no hard border; conditions pad
    # by replicating their edge, which continues depth and normals smoothly and invents no lines.
    return ModelCalls(
        layout,
        [_pad(piece, working, "reflect") for piece, _ in pieces],
        [[_pad(array, working, "edge") for array in piece_maps] for _, piece_maps in pieces],
        image,
        low,
    )


def assemble(calls: ModelCalls, outputs: Sequence[np.ndarray]) -> np.ndarray:
    """The stylized plate (H, W, 3) [0, 1] from the results of ``calls`` (one per call, in order), each checked."""
    layout, image = calls.layout, calls.plate
    height, width = image.shape[:2]
    if layout.mode == "native":
        return _cropped(outputs[0], layout, (height, width), 0)
    if layout.mode == "downscale":
        low = calls.low
        assert low is not None  # model_calls keeps it for downscale
        out = resize(_cropped(outputs[0], layout, low.shape[:2], 0), (height, width), "bicubic")
        if layout.detail_restore:
            out = np.clip(out + (image - resize(low, (height, width), "bicubic")), 0.0, 1.0)
        return out
    return _tiled(outputs, layout)


# ---------------------------------------------------------------------------------------------
# Input checks and padding.


def _geometry(model: Family | ModelGeometry) -> ModelGeometry:
    if isinstance(model, ModelGeometry):
        return model
    if model not in FAMILIES:
        raise StyleCompError(f"unknown model family {model!r}; use one of {', '.join(FAMILIES)}")
    return ModelGeometry.published(model)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _round_up(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def _checked(name: str, array: np.ndarray) -> np.ndarray:
    """A float32 (H, W, 3) array of finite values in [0, 1], else StyleCompError naming ``name``."""
    if not isinstance(array, np.ndarray) or array.dtype != np.float32:
        got = getattr(array, "dtype", type(array).__name__)
        raise StyleCompError(f"{name} must be a float32 numpy array, got {got}")
    if array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise StyleCompError(f"{name} must be a non-empty (H, W, 3) image, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise StyleCompError(f"{name} holds NaN or Inf")
    if array.min() < 0.0 or array.max() > 1.0:
        raise StyleCompError(f"{name} must lie in [0, 1] (the model's encoding), got [{array.min()}, {array.max()}]")
    return array


def _pad(array: np.ndarray, size: tuple[int, int], mode: Literal["reflect", "edge"]) -> np.ndarray:
    """``array`` (h, w, 3) padded to ``size`` (H, W), the padding split evenly, the extra pixel at the bottom/right."""
    (height, width), (target_height, target_width) = array.shape[:2], size
    top, left = (target_height - height) // 2, (target_width - width) // 2
    pads = ((top, target_height - height - top), (left, target_width - width - left), (0, 0))
    return np.pad(array, pads, mode=mode)


def _cropped(result: np.ndarray, layout: ResolutionPlan, size: tuple[int, int], index: int) -> np.ndarray:
    """Call ``index``'s result, checked, cropped back to the (h, w) = ``size`` piece the call was padded from."""
    height, width = size
    expected = (layout.working_height, layout.working_width, 3)
    out = np.asarray(result)
    if out.shape != expected:
        raise StyleCompError(f"the model call for tile {index} returned shape {out.shape}, expected {expected}")
    if not np.issubdtype(out.dtype, np.floating):
        raise StyleCompError(f"the model call for tile {index} returned {out.dtype}, expected floats in [0, 1]")
    if not np.isfinite(out).all():
        raise StyleCompError(f"the model call for tile {index} returned NaN or Inf")
    top, left = (expected[0] - height) // 2, (expected[1] - width) // 2
    return np.clip(out[top : top + height, left : left + width].astype(np.float32), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Downscale.


def resize(array: np.ndarray, size: tuple[int, int], how: Literal["bicubic", "bilinear", "max"]) -> np.ndarray:
    """``array`` (h, w, 3) [0, 1] resized to ``size`` (H, W), clipped to [0, 1].

    ``bicubic`` (the image, both ways) and ``bilinear`` (depth and normals: no overshoot at
    their silhouettes) widen their kernels with the reduction factor (``antialias=True``, as
    PIL resizes), so a reduction averages every source pixel instead of aliasing. ``max``
    (line art and edges) gives each output pixel the largest value of the source pixels it
    covers (``adaptive_max_pool2d``): a 1-px white line on black stays a full-white 1-px line
    at any reduction, where an averaging filter would fade it to grey by the reduction factor.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
    if how == "max":
        resized = F.adaptive_max_pool2d(tensor, size)
    else:
        resized = F.interpolate(tensor, size=size, mode=how, align_corners=False, antialias=True)
    return np.ascontiguousarray(np.clip(resized[0].numpy().transpose(1, 2, 0), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Tiles.


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the fewest ``tile``-long tiles covering ``length`` with neighbours sharing >= ``overlap``.

    The starts are spread evenly (rounded), so every overlap is ``overlap`` or a little more and
    no thin sliver tile is left at the end.
    """
    if length <= tile:
        return [0]
    count = -(-(length - overlap) // (tile - overlap))  # count * tile - (count - 1) * overlap >= length
    return [(2 * i * (length - tile) + count - 1) // (2 * (count - 1)) for i in range(count)]


def _feather(starts: list[int], overlap: int) -> int:
    """The feather ramp's width along one axis: ``overlap``, narrowed if needed to keep consecutive seams' ramps apart.

    Seam i is centred between tile i + 1's start and tile i's end; consecutive seam centres are
    ``(step_i + step_(i+1)) / 2`` apart, so ramps no wider never share a pixel and at most two
    tiles carry weight anywhere along the axis. With overlap <= tile / 3 this never narrows.
    """
    steps = np.diff(starts)
    return int(min([overlap, *((steps[:-1] + steps[1:]) // 2)]))


def _ramp(positions: np.ndarray, start: int, width: int) -> np.ndarray:
    """0 before ``start``, 1 from ``start + width`` on, linear between at pixel centres (a step when width is 0)."""
    if width == 0:
        return (positions >= start).astype(np.float64)
    return np.clip((positions - start + 0.5) / width, 0.0, 1.0)


def _axis_weights(starts: list[int], extent: int, feather: int) -> list[np.ndarray]:
    """Each tile's blend weight (extent,) along one axis: rising across the seam before it, falling across the next.

    Neighbours' ramps over a seam are t and 1 - t, so the weights along the axis sum to 1 and
    a tile's own ramp moves by at most 1 / feather per pixel.
    """
    seams = [(a + extent + b - feather) // 2 for a, b in itertools.pairwise(starts)]
    weights = []
    for i, start in enumerate(starts):
        positions = np.arange(start, start + extent, dtype=np.float64)
        weight = np.ones(extent)
        if i > 0:
            weight *= _ramp(positions, seams[i - 1], feather)
        if i < len(starts) - 1:
            weight *= 1.0 - _ramp(positions, seams[i], feather)
        weights.append(weight)
    return weights


def _tiled(outputs: Sequence[np.ndarray], layout: ResolutionPlan) -> np.ndarray:
    """The tiles' results blended by the product of each tile's x and y ramps, normalised."""
    tiles = layout.tiles
    xs = _axis_weights([t.x for t in tiles[: layout.columns]], tiles[0].width, layout.feather)
    ys = _axis_weights([t.y for t in tiles[:: layout.columns]], tiles[0].height, layout.feather)
    # float64 sums: where every tile returns the same value, the normalised sum rounds back to it exactly
    total = np.zeros((layout.height, layout.width, 3))
    weight_sum = np.zeros((layout.height, layout.width, 1))
    for index, tile in enumerate(tiles):
        rows, cols = slice(tile.y, tile.y + tile.height), slice(tile.x, tile.x + tile.width)
        out = _cropped(outputs[index], layout, (tile.height, tile.width), index)
        weight = np.outer(ys[index // layout.columns], xs[index % layout.columns])[..., None]
        total[rows, cols] += weight * out
        weight_sum[rows, cols] += weight
    return (total / weight_sum).astype(np.float32)
