"""AOV conditioning: render passes turned into the images depth, normal, lineart and canny ControlNets expect.

Plain numpy on the plate's AOVs, below ``diffusion`` and ``comp``: the comp's line overlay (``comp.blend``) and
the built-in model's looks draw the same line art the line-art ControlNet is fed.

Every function returns a float32 ``(H, W, 3)`` RGB image in [0, 1], the size of its input, and
NaN/Inf in the input never reach the output. The conventions are those the ControlNet 1.1
models were trained on (lllyasviel/ControlNet-v1-1-nightly, its README and ``annotator/``):

- **Depth** (``control_v11f1p_sd15_depth``, trained on MiDaS, LeReS and Zoe maps): near is
  white, far is black. MiDaS/DPT predict relative *inverse* depth and the annotator stretches
  it min-max to [0, 1]; the Zoe annotator maps metric depth linearly between its 2nd and 85th
  percentiles and inverts it. ``depth_condition`` does the first by default (``mode="inverse"``)
  and the second on request (``mode="linear"``), with near/far from robust percentiles of the
  pixels that hold geometry. Background (sky) is black, as MiDaS renders it.
- **Normals** (``control_v11p_sd15_normalbae``, trained on Bae et al.'s estimator): the README
  says "blue is front, red is left, green is top"; the annotator writes ``(n + 1) / 2`` of
  Bae's camera-space normal. So with camera space +X right, +Y up, +Z toward the camera:
  ``R = (1 - x) / 2, G = (1 + y) / 2, B = (1 + z) / 2``; a surface facing the camera is
  (0.5, 0.5, 1.0), one facing right is (0, 0.5, 0.5), one facing up is (0.5, 1, 0.5).
- **Line art** (``control_v11p_sd15_lineart``): the model's input is white lines on black (the
  annotators draw black on white and ``gradio_lineart.py`` feeds ``1 - map``).
- **Canny** (``control_v11p_sd15_canny``): white one-pixel edges on black from ``cv2.Canny``;
  thresholds here are in the same units (gradient magnitude of the 0-255 image) so the
  annotator's defaults, 100 and 200, carry over.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import PlateError, StyleCompError

BACKGROUND_DEPTH = 1.0e9
"""Depth at or beyond which a pixel is background (Blender writes 1e10 for the sky, others 1e30
or Inf); non-finite and non-positive depths are background too."""

DEPTH_PERCENTILES = (2.0, 98.0)  # near and far from the pixels that hold geometry
FAR_PLANE_SHARE = 0.01  # a constant far-plane fill covers at least this share of those pixels...
FAR_PLANE_GAP = 10.0  # ...and lies this many times beyond the far percentile of the others
NORMAL_BACKGROUND = (0.5, 0.5, 1.0)  # zero or NaN normals: a flat surface facing the camera
CREASE_DEGREES = 30.0  # line art: angle between neighbouring normals that makes a crease
DEPTH_JUMP = 0.05  # line art: relative depth step (beyond the surface's own slope) that makes a line
CANNY_LOW, CANNY_HIGH = 100.0, 200.0  # ControlNet's canny annotator defaults, 0-255 gradient units
_MIN_NORMAL_LENGTH = 1e-6
_TAN_22_5 = float(np.tan(np.radians(22.5)))


# ---------------------------------------------------------------------------------------------
# Input checks and small helpers.


def _plane(name: str, values: np.ndarray) -> np.ndarray:
    """One AOV plane as float64 (H, W); PlateError for any other shape."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or 0 in array.shape:
        raise PlateError(f"{name} must be a non-empty (H, W) plane, got shape {array.shape}")
    return array


def _rgb(name: str, values: np.ndarray) -> np.ndarray:
    """A three-channel AOV as float64 (H, W, 3); PlateError for any other shape."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise PlateError(f"{name} must be a non-empty (H, W, 3) image, got shape {array.shape}")
    return array


def _to_image(grey: np.ndarray) -> np.ndarray:
    """A grey (H, W) plane in [0, 1] as a float32 (H, W, 3) RGB conditioning image."""
    return np.repeat(np.clip(grey, 0.0, 1.0).astype(np.float32)[..., None], 3, axis=2)


def _depth_background(z: np.ndarray, sky_depth: float) -> np.ndarray:
    """Pixels (H, W) without usable depth: non-finite, <= 0, >= ``sky_depth``, or a far-plane fill.

    A far-plane fill is a renderer's constant sky value (the demo's 1e4, a camera's clip
    distance): the largest depth, held by at least FAR_PLANE_SHARE of the pixels with geometry
    and at least FAR_PLANE_GAP times the far percentile of the rest. A real backdrop that far
    away would map to black anyway; left in, it would drag the far percentile out to itself.
    """
    background = ~np.isfinite(z) | (z <= 0.0) | (z >= sky_depth)
    valid = z[~background]
    if valid.size == 0:
        return background
    farthest = valid.max()
    on_plane = valid == farthest
    if on_plane.mean() >= FAR_PLANE_SHARE and not on_plane.all():
        rest_far = np.percentile(valid[~on_plane], DEPTH_PERCENTILES[1])
        if farthest >= FAR_PLANE_GAP * rest_far:
            background |= z == farthest
    return background


def _unit_normals(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renormalised normals (H, W, 3) and where they are usable (H, W): finite and non-zero.

    Unusable pixels (background, NaN/Inf) get (0, 0, 1), the normal facing the camera.
    """
    length = np.linalg.norm(normals, axis=2)  # (H, W); NaN or Inf wherever a component is
    usable = np.isfinite(length) & (length > _MIN_NORMAL_LENGTH)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = normals / length[..., None]
    return np.where(usable[..., None], unit, (0.0, 0.0, 1.0)), usable


# ---------------------------------------------------------------------------------------------
# Depth.


def depth_condition(
    z: np.ndarray,
    background: np.ndarray | None = None,
    near: float | None = None,
    far: float | None = None,
    mode: Literal["inverse", "linear"] = "inverse",
    sky_depth: float = BACKGROUND_DEPTH,
) -> np.ndarray:
    """Z (H, W) as a depth-ControlNet image (H, W, 3): near white, far dark, background black.

    ``z`` is camera depth along the view axis. Background is what ``_depth_background`` finds
    (non-finite, <= 0, >= ``sky_depth``, a constant far-plane fill) plus ``background``, an
    optional (H, W) bool mask such as ``object_id == 0``. ``near``/``far`` default to the 2nd and
    98th percentiles of the other pixels. ``mode="inverse"`` (MiDaS/DPT) maps 1/z linearly from
    1/far (0) to 1/near (1), so near objects keep most of the range as in a MiDaS map;
    ``mode="linear"`` (Zoe annotator) maps z linearly from far (0) to near (1). Depths outside
    [near, far] clip to 1 or 0. A frame that is all background comes out black.
    """
    depth = _plane("depth", z)
    if not np.isfinite(depth).any():
        raise PlateError("depth holds no finite values (all NaN/Inf): cannot build a depth condition")
    if mode not in ("inverse", "linear"):
        raise StyleCompError(f"depth mode must be 'inverse' or 'linear', got {mode!r}")
    hidden = _depth_background(depth, sky_depth)
    if background is not None:
        mask = np.asarray(background)
        if mask.shape != depth.shape:
            raise PlateError(f"background mask shaped {mask.shape} does not match depth {depth.shape}")
        hidden |= mask.astype(bool)
    if hidden.all():
        return _to_image(np.zeros_like(depth))

    if near is None or far is None:
        low, high = np.percentile(depth[~hidden], DEPTH_PERCENTILES)
        near = low if near is None else near
        far = high if far is None else far
    if not (np.isfinite(near) and np.isfinite(far) and 0.0 < near <= far):
        raise StyleCompError(f"depth range needs 0 < near <= far, got near={near}, far={far}")

    safe = np.where(hidden, far, depth)  # (H, W), no background values in the arithmetic
    if near == far:  # one depth in the whole frame: it and anything nearer is "near"
        value = (safe <= near).astype(np.float64)
    elif mode == "inverse":
        value = (1.0 / safe - 1.0 / far) / (1.0 / near - 1.0 / far)
    else:
        value = (far - safe) / (far - near)
    return _to_image(np.where(hidden, 0.0, value))


# ---------------------------------------------------------------------------------------------
# Normals.


def normal_condition(
    normals: np.ndarray,
    space: Literal["camera", "world"] = "camera",
    world_to_camera: np.ndarray | None = None,
) -> np.ndarray:
    """Normals (H, W, 3) as a normalbae-ControlNet image (H, W, 3): red left, green up, blue front.

    Camera space is +X right, +Y up, +Z toward the camera (the demo's, OpenGL's); left-handed
    camera spaces looking down +Z (RenderMan's, Mantra's) need z negated first. Colours are
    ``R = (1 - x) / 2, G = (1 + y) / 2, B = (1 + z) / 2`` (source in the module docstring).
    World-space normals need ``world_to_camera``, the (3, 3) rotation taking world vectors to
    camera space as column vectors (``n_cam = M @ n_world``).
    Normals are renormalised; zero, NaN or Inf normals (background) become NORMAL_BACKGROUND,
    the colour of a flat backdrop facing the camera (the demo writes its sky's normals so).
    """
    vectors = _rgb("normals", normals)
    if space == "world":
        if world_to_camera is None:
            raise StyleCompError("world-space normals need world_to_camera, the (3, 3) rotation to camera space")
        rotation = np.asarray(world_to_camera, dtype=np.float64)
        if rotation.shape != (3, 3) or not np.isfinite(rotation).all():
            raise StyleCompError(f"world_to_camera must be a finite (3, 3) matrix, got shape {rotation.shape}")
        vectors = vectors @ rotation.T  # (H, W, 3) camera space
    elif space != "camera":
        raise StyleCompError(f"normal space must be 'camera' or 'world', got {space!r}")
    unit, _ = _unit_normals(vectors)
    colour = 0.5 + 0.5 * unit * (-1.0, 1.0, 1.0)  # (H, W, 3); x flipped: red is left
    return np.clip(colour, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Line art from AOV discontinuities.


def _depth_breaks(inverse: np.ndarray, hidden: np.ndarray, jump: float) -> np.ndarray:
    """Depth discontinuities (H, W-1) between each pixel and its right neighbour.

    ``inverse`` (H, W) is 1/z, 0 on ``hidden`` (background) pixels. A plane's inverse depth is
    linear across the image, so each side of a pair predicts the other by extrapolating its
    own slope; a break is where both predictions miss by more than ``jump`` of the inverse
    depth (a relative depth step). Slanted ground, steep as it gets near the horizon, is never
    a break; a pair with geometry on one side only always is.
    """
    padded = np.pad(inverse, ((0, 0), (1, 1)), mode="edge")  # (H, W+2)
    before, left, right, after = padded[:, :-3], padded[:, 1:-2], padded[:, 2:-1], padded[:, 3:]
    miss = np.minimum(np.abs(right - (2.0 * left - before)), np.abs(left - (2.0 * right - after)))
    both = ~hidden[:, :-1] & ~hidden[:, 1:]
    one = hidden[:, :-1] != hidden[:, 1:]
    return one | (both & (miss > jump * np.minimum(left, right)))


def dilate(mask: np.ndarray, size: int) -> np.ndarray:
    """Grow a bool mask (H, W) by a size x size square (the extra pixel right/below when even)."""
    height, width = mask.shape
    before, after = (size - 1) // 2, size // 2
    padded = np.pad(mask, ((before, after), (before, after)))
    grown = np.zeros_like(mask)
    for dy in range(size):
        for dx in range(size):
            grown |= padded[dy : dy + height, dx : dx + width]
    return grown


def line_art(
    object_id: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    crease_degrees: float = CREASE_DEGREES,
    depth_jump: float = DEPTH_JUMP,
    thickness: int = 1,
) -> np.ndarray:
    """Clean line art (H, W, 3), white on black, where object ID, orientation or depth breaks.

    Between each pixel and its right and lower neighbour there is a line when the IDs differ
    (non-finite IDs count as 0), the normals (any space, zero/NaN ones ignored) differ by more
    than ``crease_degrees``, or depth steps by more than ``depth_jump`` beyond the surface's own
    slope (see ``_depth_breaks``; background depth as in ``depth_condition``). The line takes
    the pixel nearer the camera when depth is given (the occluder's silhouette), else the left
    or upper one, so lines are one pixel wide; ``thickness`` widens them by dilation.
    """
    inputs = (("object_id", object_id), ("normals", normals), ("depth", depth))
    given = {name: plane for name, plane in inputs if plane is not None}
    if not given:
        raise StyleCompError("line art needs at least one of object_id, normals or depth")
    if not 0.0 < crease_degrees < 180.0 or not depth_jump > 0.0:
        raise StyleCompError(
            f"line art needs 0 < crease_degrees < 180 and depth_jump > 0, got {crease_degrees} and {depth_jump}"
        )
    if int(thickness) != thickness or thickness < 1:
        raise StyleCompError(f"line thickness must be a whole number of pixels >= 1, got {thickness}")
    shapes = {name: np.shape(plane)[:2] for name, plane in given.items()}
    if len(set(shapes.values())) > 1:
        raise PlateError(f"line art inputs differ in size: {shapes}")

    height, width = next(iter(shapes.values()))
    across = np.zeros((height, width - 1), dtype=bool)  # break between (y, x) and (y, x+1)
    down = np.zeros((height - 1, width), dtype=bool)  # break between (y, x) and (y+1, x)
    nearer_right = np.zeros_like(across)  # the line goes on the right/lower pixel of the pair
    nearer_below = np.zeros_like(down)

    if object_id is not None:
        ids = _plane("object_id", object_id)
        ids = np.where(np.isfinite(ids), ids, 0.0)
        across |= ids[:, 1:] != ids[:, :-1]
        down |= ids[1:] != ids[:-1]
    if normals is not None:
        unit, usable = _unit_normals(_rgb("normals", normals))
        limit = np.cos(np.radians(crease_degrees))
        across |= usable[:, 1:] & usable[:, :-1] & (np.sum(unit[:, 1:] * unit[:, :-1], axis=2) < limit)
        down |= usable[1:] & usable[:-1] & (np.sum(unit[1:] * unit[:-1], axis=2) < limit)
    if depth is not None:
        z = _plane("depth", depth)
        hidden = _depth_background(z, BACKGROUND_DEPTH)
        inverse = np.where(hidden, 0.0, 1.0 / np.where(hidden, 1.0, z))  # (H, W), 0 = infinitely far
        across |= _depth_breaks(inverse, hidden, depth_jump)
        down |= _depth_breaks(inverse.T, hidden.T, depth_jump).T
        nearer_right = inverse[:, 1:] > inverse[:, :-1]
        nearer_below = inverse[1:] > inverse[:-1]

    lines = np.zeros((height, width), dtype=bool)
    lines[:, :-1] |= across & ~nearer_right
    lines[:, 1:] |= across & nearer_right
    lines[:-1] |= down & ~nearer_below
    lines[1:] |= down & nearer_below
    if thickness > 1:
        lines = dilate(lines, int(thickness))
    return _to_image(lines.astype(np.float64))


# ---------------------------------------------------------------------------------------------
# Canny edges from the beauty.


def _correlate(image: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Correlate ``image`` along ``axis`` with an odd-length 1-D ``kernel``, mirrored borders.

    Mirrored without repeating the edge pixel, as OpenCV's default border (BORDER_REFLECT_101).
    """
    radius = len(kernel) // 2
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(image, pad, mode="reflect")
    size = image.shape[axis]
    window = [slice(None)] * image.ndim
    result = np.zeros_like(image)
    for offset, weight in enumerate(kernel):
        if weight != 0.0:
            window[axis] = slice(offset, offset + size)
            result += weight * padded[tuple(window)]
    return result


def _non_maximum_suppression(magnitude: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Pixels (H, W) whose gradient magnitude is a maximum across the edge.

    The gradient direction (gx right, gy down) is binned into four: horizontal, vertical and the
    two diagonals. Like OpenCV, a pixel must beat its upper/left neighbour and at least equal its
    lower/right one, so a symmetric ridge two pixels wide keeps exactly one.
    """
    height, width = magnitude.shape
    padded = np.pad(magnitude, 1)  # (H+2, W+2), zeros outside

    def neighbour(dy: int, dx: int) -> np.ndarray:
        return padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

    ax, ay = np.abs(gx), np.abs(gy)
    horizontal = ay <= _TAN_22_5 * ax
    vertical = ax <= _TAN_22_5 * ay
    falling = gx * gy > 0  # gradient along (+1, +1): the edge runs up-right to down-left
    before = np.select(
        [horizontal, vertical, falling], [neighbour(0, -1), neighbour(-1, 0), neighbour(-1, -1)], neighbour(-1, 1)
    )
    after = np.select(
        [horizontal, vertical, falling], [neighbour(0, 1), neighbour(1, 0), neighbour(1, 1)], neighbour(1, -1)
    )
    return (magnitude > before) & (magnitude >= after)


def _hysteresis(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Weak pixels (H, W) 8-connected, through weak pixels, to a strong one (strong within weak).

    Exact connected components on the weak pixels: union-find with min-label hooking and
    pointer jumping, vectorised over all neighbour pairs, so long edge chains cost a few passes.
    """
    height, width = weak.shape
    count = int(weak.sum())
    if count == 0:
        return weak
    labels = np.full((height + 2, width + 2), -1, dtype=np.int64)  # -1: not weak
    labels[1:-1, 1:-1][weak] = np.arange(count)
    centre = labels[1:-1, 1:-1]
    firsts, seconds = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each 8-neighbour pair once
        other = labels[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        linked = (centre >= 0) & (other >= 0)
        firsts.append(centre[linked])
        seconds.append(other[linked])
    first, second = np.concatenate(firsts), np.concatenate(seconds)

    parent = np.arange(count)  # parent[i] <= i always, so hooking never makes a cycle
    while True:
        root_a, root_b = parent[first], parent[second]
        split = root_a != root_b
        if not split.any():
            break
        low, high = np.minimum(root_a[split], root_b[split]), np.maximum(root_a[split], root_b[split])
        np.minimum.at(parent, high, low)
        while True:  # pointer jumping until every pixel points at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    anchored = np.zeros(count, dtype=bool)
    anchored[parent[labels[1:-1, 1:-1][strong]]] = True
    edges = np.zeros_like(weak)
    edges[weak] = anchored[parent]
    return edges


def beauty_edges(
    display_rgb: np.ndarray, low: float = CANNY_LOW, high: float = CANNY_HIGH, sigma: float = 1.0
) -> np.ndarray:
    """Canny edges (H, W, 3), white on black, of the display-referred beauty (H, W, 3) in [0, 1].

    Gaussian blur (``sigma`` pixels, 0 for none, as ControlNet's annotator), 3x3 Sobel per
    channel keeping the channel with the largest gradient (as OpenCV's Canny does for colour),
    non-maximum suppression, then hysteresis: pixels with magnitude >= ``high`` start edges,
    connected ones >= ``low`` continue them. Magnitudes are those of the image scaled to 0-255
    (L2 norm; OpenCV's default L1 norm is up to 1.41x larger on diagonals), so cv2.Canny
    thresholds carry over. NaN becomes 0 and values are clipped to [0, 1] first.
    """
    image = _rgb("display_rgb", display_rgb)
    if not 0.0 <= low <= high or not sigma >= 0.0:
        raise StyleCompError(f"canny needs 0 <= low <= high and sigma >= 0, got {low}, {high}, {sigma}")
    image = np.clip(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    image = (255.0 * image).astype(np.float32)  # (H, W, 3)
    if sigma > 0.0:
        radius = max(1, int(np.ceil(3.0 * sigma)))
        taps = np.arange(-radius, radius + 1)
        gaussian = np.exp(-0.5 * (taps / sigma) ** 2)
        gaussian /= gaussian.sum()
        image = _correlate(_correlate(image, gaussian, axis=0), gaussian, axis=1)

    smooth, difference = np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0])
    gx = _correlate(_correlate(image, smooth, axis=0), difference, axis=1)  # (H, W, 3), + rightwards
    gy = _correlate(_correlate(image, difference, axis=0), smooth, axis=1)  # (H, W, 3), + downwards
    magnitudes = np.hypot(gx, gy)  # (H, W, 3)
    strongest = np.argmax(magnitudes, axis=2)[..., None]  # (H, W, 1)
    magnitude = np.take_along_axis(magnitudes, strongest, axis=2)[..., 0]  # (H, W)
    gx = np.take_along_axis(gx, strongest, axis=2)[..., 0]
    gy = np.take_along_axis(gy, strongest, axis=2)[..., 0]

    thin = _non_maximum_suppression(magnitude, gx, gy)
    edges = _hysteresis(thin & (magnitude >= low), thin & (magnitude >= high))
    return _to_image(edges.astype(np.float64))
