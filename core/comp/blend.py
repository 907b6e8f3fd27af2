"""Blend ops for the stylized and the clean render, with the same math as the Nuke gizmos.

Images are scene-linear, premultiplied RGBA float32 arrays shaped ``(H, W, 4)``; AOVs are
``(H, W)`` planes (``(H, W, 3)`` for normals) over the same pixels. Every op returns a new
float32 array and never NaN or Inf: a pixel holding NaN or Inf in any channel counts as
transparent black (``0, 0, 0, 0``), so it adds nothing to the blur of its neighbours either.

Conventions every op shares, each chosen so one native Nuke node does the same thing:

- **Which alpha.** Geometry comes from the clean render, so ops that rebuild colour (luminance
  from one input, detail transfer) keep the clean render's alpha. Nuke: ``Copy`` the clean
  alpha, then ``Premult``.
- **Premultiplication.** ``mix`` lerps premultiplied values (correct as is, Nuke's
  ``Dissolve``/``Keymix``); colour ops unpremultiply (``rgb / a`` where ``a > 0``, untouched
  elsewhere, as Nuke's ``Unpremult``), work on colour and premultiply by the clean alpha.
- **Weights.** ``depth_weight``, ``id_mask`` and ``matte_mask`` return the stylized share
  ``w`` (H, W) in [0, 1]; ``mix(clean, stylized, w)`` applies it. Nuke: the weight is an
  ``Expression`` node's alpha feeding ``Keymix`` (A = stylized, B = clean, mask = weight).
- **Data windows.** Inputs with different EXR data windows are brought onto their union first
  (``io.windows.align``; ``reframe`` for AOV planes): outside a data window is transparent black, as in
  EXR and Nuke. Nuke: the ``bbox`` knob of ``Merge``/``Keymix`` set to ``union``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..errors import StyleCompError
from ..io.conditioning import BACKGROUND_DEPTH, line_art

ACESCG_LUMINANCE = np.array([0.2722287168, 0.6740817658, 0.0536895174], dtype=np.float32)
"""Luminance weights of ACEScg (AP1 primaries, ACES white): the Y row of the AP1-to-XYZ matrix
(SMPTE ST 2065-1 / ACES S-2014-004). The engine's plates are ACEScg by default."""

REC709_LUMINANCE = np.array([0.2126390059, 0.7151686788, 0.0721923154], dtype=np.float32)
"""Luminance weights of linear Rec.709 / sRGB primaries (D65): the Y row of the RGB-to-XYZ matrix
(ITU-R BT.709). Nuke's ``nuke-default`` working space ``linear`` has these primaries."""

LUMINANCE_WEIGHTS = {"ACEScg": ACESCG_LUMINANCE, "Rec.709": REC709_LUMINANCE}
"""Luminance weights by name, the items of StyleCompBlend's ``luminance weights`` knob."""


def luminance_weights_for(working_space: str, ocio_config: str = "") -> str:
    """The LUMINANCE_WEIGHTS name for a working space (and the OCIO config it comes from): ACEScg or Rec.709.

    The same rule as StyleCompBlend's ``luminance weights: working space``, which reads the root's
    ``workingSpaceLUT`` and ``OCIO_config``: ACEScg when the space's name says ACEScg (``ACEScg``
    in the cg/studio configs, ``ACES - ACEScg`` in aces_1.x) or when it is the ``scene_linear`` role
    of a config whose name says ACES (its scene_linear is ACEScg); Rec.709 otherwise, which is
    right for nuke-default's ``linear``. Case is ignored.
    """
    space, config = working_space.lower(), ocio_config.lower()
    acescg = "acescg" in space or (space == "scene_linear" and "aces" in config)
    return "ACEScg" if acescg else "Rec.709"


NUKE_BLUR_SIZE_PER_SIGMA = 2.4
"""Nuke's Blur ``size`` knob is the filter's diameter; its Gaussian is taken to have sigma = size / 2.4.
Source: Natron's Nuke-compatible Blur, whose ``size`` hint reads "Size (diameter) of the filter kernel
... The standard deviation of the corresponding Gaussian is size/2.4" (NatronGitHub/openfx-misc,
CImg/Blur/CImgBlur.cpp, kParamSizeHint). Foundry's Blur reference does not state the relation, so it
is unconfirmed for Nuke itself until a Nuke render of the gizmo is compared (README, Nuke setup)."""

KERNEL_EXTENT = 1.5  # kernel half-width as a multiple of size (3.6 sigma), as Nuke-compatible blurs
ID_LIMIT = 2**24  # object IDs are held as float32: integers are exact up to here


# ---------------------------------------------------------------------------------------------
# Input checks and the shared premultiplication helpers.


def _rgba(name: str, image: np.ndarray) -> np.ndarray:
    """A premultiplied RGBA image as float32 (H, W, 4), pixels with NaN/Inf made transparent black."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 4 or 0 in array.shape:
        raise StyleCompError(f"{name} must be a non-empty premultiplied RGBA image (H, W, 4), got shape {array.shape}")
    damaged = np.asarray(~np.isfinite(array).all(axis=2))  # (H, W)
    return np.where(damaged[..., None], np.float32(0.0), array)


def _same_size(**arrays: np.ndarray) -> None:
    """Check the named arrays share (H, W); StyleCompError naming every shape if they differ."""
    shapes = {name: np.shape(array)[:2] for name, array in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise StyleCompError(f"inputs differ in size (H, W): {shapes}")


def _plane(name: str, values: np.ndarray) -> np.ndarray:
    """One AOV plane as float32 (H, W); StyleCompError for any other shape."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or 0 in array.shape:
        raise StyleCompError(f"{name} must be a non-empty (H, W) plane, got shape {array.shape}")
    return array


def _unpremultiply(image: np.ndarray) -> np.ndarray:
    """Colour (H, W, 3) of a premultiplied image (H, W, 4): rgb / a where a > 0, rgb elsewhere (Nuke's Unpremult)."""
    rgb, alpha = image[..., :3], image[..., 3:]
    covered = alpha > 0.0
    with np.errstate(over="ignore"):  # tiny alphas may overflow; _finite caps the result
        return np.where(covered, rgb / np.where(covered, alpha, 1.0), rgb)


def _premultiply(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Colour (H, W, 3) times alpha (H, W) as a float32 RGBA image (H, W, 4), NaN/Inf-free."""
    image = np.concatenate([colour * alpha[..., None], alpha[..., None]], axis=2)
    return _finite(image)


def _finite(values: np.ndarray) -> np.ndarray:
    """float32 values with NaN as 0 and overflow as the largest float32, so nothing non-finite leaves."""
    return np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)


def _weights(name: str) -> np.ndarray:
    """The LUMINANCE_WEIGHTS entry ``name``; StyleCompError naming the choices otherwise."""
    if name not in LUMINANCE_WEIGHTS:
        raise StyleCompError(f"luminance weights must be one of {sorted(LUMINANCE_WEIGHTS)}, got {name!r}")
    return LUMINANCE_WEIGHTS[name]


def luminance(rgb: np.ndarray, weights: str = "ACEScg") -> np.ndarray:
    """Luminance (...) of colours (..., 3): the dot product with LUMINANCE_WEIGHTS[weights]."""
    return np.asarray(rgb, dtype=np.float32) @ _weights(weights)


# ---------------------------------------------------------------------------------------------
# Mix and the weights that drive it.


def mix(clean: np.ndarray, stylized: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """Lerp premultiplied RGBA (H, W, 4) from clean (weight 0) to stylized (weight 1), alpha included.

    ``out = (1 - w) * clean + w * stylized`` on premultiplied values, which is exact for
    premultiplied images (no unpremultiply needed). ``weight`` is a number in [0, 1] or a
    per-pixel (H, W) map (``depth_weight``, ``id_mask``, ``matte_mask``), whose NaN count as 0
    and whose values are clamped to [0, 1].

    Nuke: a number is ``Dissolve`` (input 0 = clean, input 1 = stylized, ``which`` = w); a map
    is ``Keymix`` (A = stylized, B = clean, mask = the map's alpha, clamped first by ``Clamp``
    or an ``Expression`` ``clamp(a)``), channels ``rgba``, bbox ``union``.
    """
    clean, stylized = _rgba("clean", clean), _rgba("stylized", stylized)
    _same_size(clean=clean, stylized=stylized)
    w: np.ndarray | np.float32
    if np.ndim(weight) == 0:
        if not 0.0 <= float(weight) <= 1.0:
            raise StyleCompError(f"mix weight must be in [0, 1], got {weight}")
        w = np.float32(weight)
    else:
        plane = np.clip(np.nan_to_num(_plane("weight", np.asarray(weight)), nan=0.0), 0.0, 1.0)
        _same_size(clean=clean, weight=plane)
        w = plane[..., None]  # (H, W, 1)
    return _finite((1.0 - w) * clean + w * stylized)


def depth_weight(z: np.ndarray, near: float, far: float, direction: Literal["near", "far"] = "near") -> np.ndarray:
    """Stylized share (H, W) from depth: 1 at the chosen end of [near, far], 0 at the other, smoothstep between.

    With ``t = clamp((Z - near) / (far - near), 0, 1)`` and ``s = t*t*(3 - 2*t)``,
    ``direction="near"`` gives ``w = 1 - s`` (the stylized look stays near the camera) and
    ``"far"`` gives ``w = s``. Smoothstep rather than linear, so the falloff has no visible
    kinks at near and far. Background (sky) is explicit: Z that is NaN, Inf, <= 0 (also outside
    a data window) or >= BACKGROUND_DEPTH counts as infinitely far (w = 0 for "near", 1 for
    "far"); a renderer's finite sky value such as the demo's 1e4 is beyond far anyway.

    Nuke: an ``Expression`` on the clean render's depth, alpha =
    ``depth.Z > 0 && depth.Z < 1e9 ? 1 - smooth : 0`` ("near"; ``smooth : 1`` for "far") with
    temp ``t = clamp((depth.Z - near) / (far - near))`` and ``smooth = t*t*(3 - 2*t)``; NaN
    fails both comparisons, so it takes the background branch. The alpha is Keymix's mask.
    """
    depth = _plane("z", z)
    if direction not in ("near", "far"):
        raise StyleCompError(f"depth falloff direction must be 'near' or 'far', got {direction!r}")
    if not (math.isfinite(near) and math.isfinite(far) and 0.0 <= near < far):
        raise StyleCompError(f"depth falloff needs 0 <= near < far (finite), got near={near}, far={far}")
    background = ~np.isfinite(depth) | (depth <= 0.0) | (depth >= BACKGROUND_DEPTH)  # (H, W)
    with np.errstate(invalid="ignore"):
        t = np.clip((depth - np.float32(near)) / np.float32(far - near), 0.0, 1.0)
    t = np.where(background, np.float32(1.0), t)  # background sits beyond far
    smooth = t * t * (3.0 - 2.0 * t)
    weight = 1.0 - smooth if direction == "near" else smooth
    return weight.astype(np.float32)


def id_mask(object_id: np.ndarray, ids: Sequence[int], invert: bool = False) -> np.ndarray:
    """Stylized share (H, W): 1 where the ID plane exactly equals one of ``ids``, else 0 (swapped by ``invert``).

    IDs are integers held as float32 (exact up to 2**24) and match exactly, never by
    tolerance, so a filtered (resized, motion-blurred) ID plane will not match at its edges.
    NaN/Inf IDs match nothing. No ``ids`` selects nothing.

    Nuke: an ``Expression`` on the unfiltered ID channel, alpha = ``(id == 3 || id == 5) ? 1 : 0``
    (``1 - (...)`` when inverted); its alpha is Keymix's mask.
    """
    plane = _plane("object_id", object_id)
    try:
        wanted = np.asarray(list(ids), dtype=np.float64)
    except (TypeError, ValueError):
        raise StyleCompError(f"object IDs must be a list of whole numbers, got {ids!r}") from None
    if wanted.ndim != 1 or not (np.isfinite(wanted) & (wanted == np.round(wanted))).all():
        raise StyleCompError(f"object IDs must be whole numbers, got {list(ids)}")
    if ((wanted < 0) | (wanted > ID_LIMIT)).any():
        raise StyleCompError(f"object IDs must be in [0, {ID_LIMIT}] (exact in float32), got {list(ids)}")
    selected = np.isin(plane, wanted.astype(np.float32))
    return (selected != invert).astype(np.float32)


def matte_mask(matte: np.ndarray, invert: bool = False) -> np.ndarray:
    """Stylized share (H, W) from a matte channel: clamped to [0, 1], NaN as 0, ``1 - m`` when inverted.

    Nuke: the matte channel as Keymix's mask (``Clamp`` first), with Keymix's ``invert`` checkbox.
    """
    weight = np.clip(np.nan_to_num(_plane("matte", matte), nan=0.0), 0.0, 1.0)
    return (1.0 - weight if invert else weight).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Colour ops: luminance from one input, colour from the other; detail transfer.


def luminance_colour(
    clean: np.ndarray,
    stylized: np.ndarray,
    luminance_from: Literal["clean", "stylized"] = "clean",
    weights: str = "ACEScg",
) -> np.ndarray:
    """Luminance of one input with the colour (chroma) of the other, as RGBA (H, W, 4) with the clean alpha.

    On unpremultiplied colour, ``out = C + (Y(L) - Y(C))``: every channel of the colour source
    ``C`` is shifted by the luminance difference, with ``Y`` the luminance of the plates' space
    (``weights``: a LUMINANCE_WEIGHTS name, ACEScg by default; ``luminance_weights_for`` picks it
    from a colour space's name as the gizmo does from Nuke's working space). As the weights sum
    to 1, ``Y(out) = Y(L)`` exactly and the chroma
    ``out - Y(out) = C - Y(C)`` is the colour source's exactly; the op is linear, so it maps
    onto matrices. Very saturated colour under a darker luminance can give negative channels,
    kept as scene-linear comps keep them. The result is premultiplied by the clean alpha.

    Nuke: ``Unpremult`` both inputs; ``ColorMatrix`` on the colour source with
    ``I - 1 w^T`` (rows ``[1 - 0.2722287168, -0.6740817658, -0.0536895174]``,
    ``[-0.2722287168, 1 - 0.6740817658, -0.0536895174]``,
    ``[-0.2722287168, -0.6740817658, 1 - 0.0536895174]``: colour minus its luminance);
    ``ColorMatrix`` on the luminance source with ``1 w^T`` (every row
    ``[0.2722287168, 0.6740817658, 0.0536895174]``: luminance as grey); ``Merge`` ``plus`` of
    the two; ``Copy`` alpha from the clean render; ``Premult``. (The built-in ``Saturation``
    node offers only Rec.709/CCIR 601 weights, so it is not used.)
    """
    clean, stylized = _rgba("clean", clean), _rgba("stylized", stylized)
    _same_size(clean=clean, stylized=stylized)
    if luminance_from not in ("clean", "stylized"):
        raise StyleCompError(f"luminance_from must be 'clean' or 'stylized', got {luminance_from!r}")
    clean_colour, stylized_colour = _unpremultiply(clean), _unpremultiply(stylized)  # (H, W, 3) each
    lum, colour = (clean_colour, stylized_colour) if luminance_from == "clean" else (stylized_colour, clean_colour)
    out = colour + (luminance(lum, weights) - luminance(colour, weights))[..., None]  # (H, W, 3)
    return _premultiply(out, clean[..., 3])


def gaussian_blur(image: np.ndarray, size: float) -> np.ndarray:
    """Gaussian blur of (H, W, C) as a Nuke Blur of ``size`` pixels: sigma = size / 2.4, edge pixels repeated.

    The kernel reaches KERNEL_EXTENT * size (3.6 sigma) each side and is normalised to sum 1.
    Edges are clamped (the outermost pixel repeats), as Nuke repeats the edge pixels of a
    bounding box, so a full-frame plate does not darken at its borders. ``size`` 0 is the
    identity. Nuke: ``Blur`` with ``filter`` gaussian and ``quality`` at least ``size`` (below
    that Nuke blurs a downscaled copy, which these numbers do not reproduce). Cost grows with
    ``size`` (direct separable convolution, exact zeros where nothing reaches).
    """
    values = np.asarray(image, dtype=np.float32)
    if not (math.isfinite(size) and size >= 0.0):
        raise StyleCompError(f"blur size must be a finite number of pixels >= 0, got {size}")
    if size == 0.0:
        return values.copy()
    sigma = size / NUKE_BLUR_SIZE_PER_SIGMA
    radius = max(1, math.ceil(KERNEL_EXTENT * size))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * values.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(values, pad, mode="edge")
        window = [slice(None)] * values.ndim
        blurred = np.zeros_like(values)
        for offset, weight in enumerate(kernel.astype(np.float32)):
            window[axis] = slice(offset, offset + values.shape[axis])
            blurred += weight * padded[tuple(window)]
        values = blurred
    return values


def detail_transfer(clean: np.ndarray, stylized: np.ndarray, size: float) -> np.ndarray:
    """Stylized low frequencies plus clean high frequencies, as RGBA (H, W, 4) with the clean alpha.

    ``out = S_low + (C - C_low)`` on colour, where ``C`` is the clean colour (unpremultiplied)
    and ``X_low = unpremult(blur(X))``: each premultiplied RGBA is blurred (``gaussian_blur``,
    Nuke Blur ``size``), then divided by its own blurred alpha, so transparent pixels (outside
    the geometry, outside a data window, NaN/Inf) add no black to the low frequencies. The
    result is premultiplied by the clean alpha. ``size`` 0 returns the stylized colour (no
    clean detail); a flat stylized input comes back as its value plus the clean detail; a
    flat clean input as the blurred stylized one. ``size`` is the issue's "radius" setting, in
    the units of Nuke's Blur knob. Like any additive detail transfer it can go negative where
    the clean detail is larger than the stylized level (around a bright lamp); that is kept.

    Nuke: ``Blur`` (``size``, gaussian, channels rgba) then ``Unpremult`` on each input;
    ``Unpremult`` on the clean render; ``Merge`` ``from`` (B - A: A = clean low, B = clean)
    gives the detail; ``Merge`` ``plus`` with the stylized low; ``Copy`` alpha from the clean
    render; ``Premult``.
    """
    clean, stylized = _rgba("clean", clean), _rgba("stylized", stylized)
    _same_size(clean=clean, stylized=stylized)
    both = gaussian_blur(np.concatenate([clean, stylized], axis=2), size)  # (H, W, 8), one pass
    clean_low, stylized_low = _unpremultiply(both[..., :4]), _unpremultiply(both[..., 4:])  # (H, W, 3) each
    out = stylized_low + (_unpremultiply(clean) - clean_low)
    return _premultiply(out, clean[..., 3])


# ---------------------------------------------------------------------------------------------
# Line overlay.


def line_overlay(
    image: np.ndarray,
    *,
    object_id: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    colour: Sequence[float] = (0.0, 0.0, 0.0),
    opacity: float = 1.0,
    thickness: int = 1,
) -> np.ndarray:
    """Lines of ``colour`` laid ``over`` the image (H, W, 4) where object ID, normals or depth break.

    The lines are ``stylecomp.io.conditioning.line_art`` of the given AOVs (one-pixel lines on the
    nearer side of each break, widened to ``thickness``), so the overlay and the line-art
    conditioning agree. Each line pixel has alpha ``L = line * opacity`` and premultiplied
    colour ``colour * L``, composited ``over``: ``out = line + (1 - L) * image``, alpha
    included (``L + (1 - L) * a``).

    Nuke: ``Constant`` (``colour``, alpha 1); ``Copy`` the line mask into its alpha (the
    engine's line-art pass, or rebuilt from IDs with a 1-pixel ``Transform`` (filter impulse)
    and an ``Expression`` ``id != shifted_id``); ``Multiply`` alpha by ``opacity``; ``Premult``;
    ``Merge`` ``over`` (A = lines, B = image).
    """
    base = _rgba("image", image)
    aovs = {
        name: plane
        for name, plane in (("object_id", object_id), ("normals", normals), ("depth", depth))
        if plane is not None
    }
    _same_size(image=base, **aovs)
    rgb = np.asarray(colour, dtype=np.float32)
    if rgb.shape != (3,) or not np.isfinite(rgb).all():
        raise StyleCompError(f"line colour must be three finite numbers (R, G, B), got {colour}")
    if not 0.0 <= opacity <= 1.0:
        raise StyleCompError(f"line opacity must be in [0, 1], got {opacity}")
    lines = line_art(object_id, normals, depth, thickness=thickness)[..., 0]  # (H, W) in [0, 1]; checks the AOVs
    cover = (lines * np.float32(opacity))[..., None]  # (H, W, 1)
    over = np.concatenate([rgb * cover, cover], axis=2)  # (H, W, 4) premultiplied lines
    return _finite(over + (1.0 - cover) * base)
