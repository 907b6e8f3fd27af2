"""Blend ops against known answers: exact mixes, luminance, detail transfer, weights, windows, lines."""

from __future__ import annotations

import numpy as np
import pytest

from stylecomp.comp.blend import (
    ACESCG_LUMINANCE,
    LUMINANCE_WEIGHTS,
    NUKE_BLUR_SIZE_PER_SIGMA,
    depth_weight,
    detail_transfer,
    gaussian_blur,
    id_mask,
    line_overlay,
    luminance,
    luminance_colour,
    luminance_weights_for,
    matte_mask,
    mix,
)
from stylecomp.errors import StyleCompError
from stylecomp.io.windows import Window, align, reframe, union_window

RNG = np.random.default_rng(7)


def opaque(rgb: np.ndarray) -> np.ndarray:
    """An opaque RGBA image (H, W, 4) from colours (H, W, 3)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return np.concatenate([rgb, np.ones((*rgb.shape[:2], 1), np.float32)], axis=2)


def with_alpha(image: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """The opaque image (H, W, 4) premultiplied by ``alpha`` (a number or (H, W))."""
    a = np.broadcast_to(np.asarray(alpha, np.float32), image.shape[:2])[..., None]
    return np.concatenate([image[..., :3] * a, a], axis=2).astype(np.float32)


def flat(h: int, w: int, rgb: tuple[float, float, float]) -> np.ndarray:
    return opaque(np.broadcast_to(np.asarray(rgb, np.float32), (h, w, 3)))


CLEAN = opaque(RNG.uniform(0.0, 4.0, (12, 10, 3)))
STYLIZED = opaque(RNG.uniform(0.0, 4.0, (12, 10, 3)))


# ---------------------------------------------------------------------------------------------
# Mix.


def test_mix_at_zero_one_and_half_is_exact() -> None:
    assert np.array_equal(mix(CLEAN, STYLIZED, 0.0), CLEAN)
    assert np.array_equal(mix(CLEAN, STYLIZED, 1.0), STYLIZED)
    quarters = flat(2, 2, (0.25, 1.0, 3.0))
    three = flat(2, 2, (0.75, 2.0, 5.0))
    assert np.array_equal(mix(quarters, three, 0.5), flat(2, 2, (0.5, 1.5, 4.0)))


def test_mix_lerps_premultiplied_values_alpha_included() -> None:
    clean = with_alpha(flat(1, 1, (1.0, 1.0, 1.0)), 1.0)
    stylized = with_alpha(flat(1, 1, (3.0, 3.0, 3.0)), 0.0)
    assert np.allclose(mix(clean, stylized, 0.25), [[[0.75, 0.75, 0.75, 0.75]]])


def test_mix_with_a_weight_map_is_per_pixel_and_clamped() -> None:
    weight = np.array([[0.0, 1.0], [0.5, 7.0]], np.float32)
    weight_nan = weight.copy()
    weight_nan[0, 0] = np.nan
    a, b = flat(2, 2, (0.0, 0.0, 0.0)), flat(2, 2, (2.0, 2.0, 2.0))
    out = mix(a, b, weight_nan)
    assert np.array_equal(out[..., 0], [[0.0, 2.0], [1.0, 2.0]])


# ---------------------------------------------------------------------------------------------
# Luminance from one input, colour from the other.


def test_acescg_luminance_weights_are_the_ap1_y_row() -> None:
    xy = {"r": (0.713, 0.293), "g": (0.165, 0.830), "b": (0.128, 0.044)}  # AP1 primaries
    white = (0.32168, 0.33767)  # ACES white

    def xyz(x: float, y: float) -> np.ndarray:
        return np.array([x / y, 1.0, (1.0 - x - y) / y])

    primaries = np.stack([xyz(*xy[c]) for c in "rgb"], axis=1)
    scale = np.linalg.solve(primaries, xyz(*white))
    assert np.allclose(ACESCG_LUMINANCE, (primaries * scale)[1], atol=1e-9)
    assert ACESCG_LUMINANCE.sum() == pytest.approx(1.0, abs=1e-7)


def test_luminance_from_clean_keeps_clean_luminance_and_stylized_chroma() -> None:
    out = luminance_colour(CLEAN, STYLIZED, luminance_from="clean")
    y_out = luminance(out[..., :3])
    assert np.allclose(y_out, luminance(CLEAN[..., :3]), rtol=1e-6, atol=1e-6)
    chroma_out = out[..., :3] - y_out[..., None]
    chroma_stylized = STYLIZED[..., :3] - luminance(STYLIZED[..., :3])[..., None]
    assert np.allclose(chroma_out, chroma_stylized, atol=2e-6)
    assert np.array_equal(out[..., 3], CLEAN[..., 3])


def test_rec709_weights_keep_rec709_luminance() -> None:
    """Under Rec.709 primaries (nuke-default's working space) the op keeps the Rec.709 luminance, not ACEScg's."""
    assert np.isclose(LUMINANCE_WEIGHTS["Rec.709"].sum(), 1.0, atol=1e-6)
    out = luminance_colour(CLEAN, STYLIZED, luminance_from="clean", weights="Rec.709")
    assert np.allclose(luminance(out[..., :3], "Rec.709"), luminance(CLEAN[..., :3], "Rec.709"), rtol=1e-6, atol=1e-6)
    assert not np.allclose(luminance(out[..., :3]), luminance(CLEAN[..., :3]), atol=1e-3)
    with pytest.raises(StyleCompError, match="luminance weights"):
        luminance_colour(CLEAN, STYLIZED, weights="Rec.2020")


@pytest.mark.parametrize(
    ("space", "config", "weights"),
    [
        ("ACES - ACEScg", "aces_1.2", "ACEScg"),
        ("ACEScg", "", "ACEScg"),
        ("scene_linear", "aces_1.3", "ACEScg"),
        ("scene_linear", "nuke-default", "Rec.709"),
        ("linear", "nuke-default", "Rec.709"),
        ("ACES - ACES2065-1", "aces_1.2", "Rec.709"),
    ],
)
def test_luminance_weights_for_a_working_space(space: str, config: str, weights: str) -> None:
    assert luminance_weights_for(space, config) == weights


def test_luminance_from_stylized_swaps_the_roles() -> None:
    out = luminance_colour(CLEAN, STYLIZED, luminance_from="stylized")
    assert np.allclose(luminance(out[..., :3]), luminance(STYLIZED[..., :3]), atol=1e-6)
    chroma_clean = CLEAN[..., :3] - luminance(CLEAN[..., :3])[..., None]
    assert np.allclose(out[..., :3] - luminance(out[..., :3])[..., None], chroma_clean, atol=2e-6)


def test_luminance_colour_of_half_transparent_pixels_is_the_opaque_result_times_alpha() -> None:
    alpha = RNG.uniform(0.05, 1.0, CLEAN.shape[:2]).astype(np.float32)
    opaque_out = luminance_colour(CLEAN, STYLIZED)
    out = luminance_colour(with_alpha(CLEAN, alpha), with_alpha(STYLIZED, alpha))
    assert np.allclose(out[..., :3], opaque_out[..., :3] * alpha[..., None], rtol=1e-5, atol=1e-6)
    assert np.array_equal(out[..., 3], alpha)


def test_luminance_colour_keeps_the_clean_alpha() -> None:
    stylized = with_alpha(STYLIZED, 0.5)
    out = luminance_colour(CLEAN, stylized)  # clean is opaque: geometry comes from it
    assert np.array_equal(out[..., 3], np.ones(CLEAN.shape[:2], np.float32))


# ---------------------------------------------------------------------------------------------
# Blur and detail transfer.


@pytest.mark.parametrize("size", [2.4, 6.0, 12.0])
def test_blur_of_an_impulse_has_sigma_size_over_2_4(size: float) -> None:
    impulse = np.zeros((61, 61, 1), np.float32)
    impulse[30, 30] = 1.0
    response = gaussian_blur(impulse, size)[..., 0]
    offsets = np.arange(61) - 30
    variance = float((response.sum(axis=0) * offsets**2).sum())
    assert response.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.sqrt(variance) == pytest.approx(size / NUKE_BLUR_SIZE_PER_SIGMA, rel=0.01)
    assert np.allclose(response, response.T, atol=1e-7)  # separable and isotropic


def test_blur_keeps_constants_and_linear_ramps_away_from_edges() -> None:
    ramp = np.broadcast_to(np.arange(40, dtype=np.float32)[None, :, None], (30, 40, 2))
    out = gaussian_blur(ramp, 6.0)
    reach = 9  # ceil(1.5 * size)
    assert np.allclose(out[:, reach:-reach], ramp[:, reach:-reach], atol=1e-4)
    assert np.allclose(gaussian_blur(np.full((9, 9, 4), 3.5, np.float32), 20.0), 3.5, atol=1e-5)


def test_detail_transfer_at_size_zero_returns_stylized() -> None:
    assert np.allclose(detail_transfer(CLEAN, STYLIZED, 0.0), STYLIZED, atol=1e-6)
    assert np.allclose(detail_transfer(CLEAN, STYLIZED, 1e-3), STYLIZED, atol=1e-5)


def test_detail_transfer_with_a_constant_clean_returns_the_blurred_stylized() -> None:
    clean = flat(30, 40, (0.3, 0.6, 0.9))
    ramp = np.arange(40, dtype=np.float32)[None, :, None] * np.float32([0.1, 0.2, 0.05])
    stylized = opaque(np.broadcast_to(ramp, (30, 40, 3)))
    out = detail_transfer(clean, stylized, 6.0)
    assert np.allclose(out[:, 9:-9], stylized[:, 9:-9], atol=1e-4)  # a ramp is its own blur
    constant = flat(30, 40, (2.0, 0.5, 1.0))
    assert np.allclose(detail_transfer(clean, constant, 6.0), constant, atol=1e-5)


def test_detail_transfer_puts_clean_detail_on_the_flat_stylized_value() -> None:
    stripes = np.where(np.arange(48) % 2 == 0, 0.25, -0.25).astype(np.float32)  # period 2: blurs away
    clean = opaque(1.0 + np.broadcast_to(stripes[None, :, None], (20, 48, 3)))  # mean 1, detail +-0.25
    stylized = flat(20, 48, (3.0, 2.0, 0.5))
    out = detail_transfer(clean, stylized, 8.0)
    expected = np.float32([3.0, 2.0, 0.5]) + stripes[None, :, None]  # stylized mean + clean detail
    inner = slice(12, -12)  # beyond the kernel's reach of the clamped edges
    assert np.allclose(out[:, inner, :3], expected[:, inner], atol=1e-3)
    assert np.array_equal(out[..., 3], clean[..., 3])


def test_detail_transfer_of_half_transparent_images_is_the_opaque_result_times_alpha() -> None:
    opaque_out = detail_transfer(CLEAN, STYLIZED, 5.0)
    out = detail_transfer(with_alpha(CLEAN, 0.5), with_alpha(STYLIZED, 0.5), 5.0)
    assert np.allclose(out[..., :3], opaque_out[..., :3] * 0.5, rtol=1e-5, atol=1e-5)
    assert np.allclose(out[..., 3], 0.5)


def test_detail_transfer_adds_no_black_from_transparent_pixels() -> None:
    alpha = np.ones((20, 20), np.float32)
    alpha[:, :10] = 0.0  # left half is empty in both renders
    clean = with_alpha(flat(20, 20, (1.0, 1.0, 1.0)), alpha)
    stylized = with_alpha(flat(20, 20, (2.0, 3.0, 4.0)), alpha)
    out = detail_transfer(clean, stylized, 8.0)
    assert np.allclose(out[:, 10:], stylized[:, 10:], atol=1e-5)  # no dark fringe at the edge
    assert np.array_equal(out[:, :10], np.zeros((20, 10, 4), np.float32))


# ---------------------------------------------------------------------------------------------
# Depth falloff and masks.


def test_depth_weight_at_near_far_and_between_both_directions() -> None:
    z = np.array([[1.0, 2.0, 2.5, 3.0, 4.0, 5.0]], np.float32)
    near = depth_weight(z, near=2.0, far=4.0, direction="near")
    assert np.allclose(near, [[1.0, 1.0, 0.84375, 0.5, 0.0, 0.0]])  # 1 - smoothstep(0.25) = 0.84375
    far = depth_weight(z, near=2.0, far=4.0, direction="far")
    assert np.allclose(far, 1.0 - near)


def test_depth_weight_treats_background_as_infinitely_far() -> None:
    z = np.array([[np.nan, np.inf, -np.inf, 0.0, -1.0, 1e10, 1e4]], np.float32)
    assert np.array_equal(depth_weight(z, 1.0, 10.0, "near"), np.zeros_like(z))
    assert np.array_equal(depth_weight(z, 1.0, 10.0, "far"), np.ones_like(z))


def test_id_mask_matches_exactly_and_inverts() -> None:
    ids = np.array([[0.0, 1.0, 2.0], [3.0, 5.0, 2.0000002], [np.nan, 16777216.0, 2.0]], np.float32)
    mask = id_mask(ids, [2, 5, 16777216])
    assert np.array_equal(mask, [[0, 0, 1], [0, 1, 0], [0, 1, 1]])
    assert np.array_equal(id_mask(ids, [2, 5, 16777216], invert=True), 1.0 - mask)
    assert np.array_equal(id_mask(ids, []), np.zeros_like(ids))


def test_matte_mask_clamps_and_inverts() -> None:
    matte = np.array([[-0.5, 0.25, 1.5, np.nan]], np.float32)
    assert np.array_equal(matte_mask(matte), [[0.0, 0.25, 1.0, 0.0]])
    assert np.array_equal(matte_mask(matte, invert=True), [[1.0, 0.75, 0.0, 1.0]])


# ---------------------------------------------------------------------------------------------
# Data windows.


def test_union_window_with_negative_origins() -> None:
    assert union_window(Window(-3, -2, 4, 3), Window(1, 0, 3, 2)) == Window(-3, -2, 7, 4)
    assert union_window(Window(-10, -10, 5, 5), Window(-8, -9, 2, 2)) == Window(-10, -10, 5, 5)


def test_align_places_each_image_in_the_union_and_leaves_transparent_black_elsewhere() -> None:
    a_window, b_window = Window(-3, -2, 4, 3), Window(1, 0, 3, 2)
    a = np.arange(4 * 3 * 4, dtype=np.float32).reshape(3, 4, 4) + 1.0
    b = -np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) - 1.0
    a_out, b_out, union = align(a, a_window, b, b_window)
    assert union == Window(-3, -2, 7, 4) and a_out.shape == b_out.shape == (4, 7, 4)
    assert np.array_equal(a_out[0:3, 0:4], a)  # a's origin (-3, -2) is the union's
    assert np.count_nonzero(a_out) == a.size
    assert np.array_equal(b_out[2:4, 4:7], b)  # b's origin (1, 0): row 0 - (-2), column 1 - (-3)
    assert np.count_nonzero(b_out) == b.size
    assert np.array_equal(mix(a_out, b_out, 0.0), a_out)


def test_reframe_crops_and_handles_planes() -> None:
    plane = np.arange(12, dtype=np.float32).reshape(3, 4)  # window (-1, -1, 4, 3)
    out = reframe(plane, Window(-1, -1, 4, 3), Window(0, 0, 2, 3))
    assert np.array_equal(out, [[5.0, 6.0], [9.0, 10.0], [0.0, 0.0]])
    with pytest.raises(StyleCompError, match="data window"):
        reframe(plane, Window(0, 0, 3, 3), Window(0, 0, 3, 3))


# ---------------------------------------------------------------------------------------------
# Line overlay.


def test_line_overlay_draws_exactly_on_the_id_boundary() -> None:
    ids = np.ones((6, 8), np.float32)
    ids[:, 5:] = 2.0  # boundary between columns 4 and 5; the line takes column 4
    image = flat(6, 8, (0.2, 0.4, 0.6))
    out = line_overlay(image, object_id=ids, colour=(1.0, 0.0, 0.0))
    assert np.array_equal(out[:, 4], np.tile([1.0, 0.0, 0.0, 1.0], (6, 1)).astype(np.float32))
    others = np.ones(8, bool)
    others[4] = False
    assert np.array_equal(out[:, others], image[:, others])


def test_line_overlay_is_a_premultiplied_over_with_opacity() -> None:
    ids = np.zeros((4, 4), np.float32)
    ids[2:] = 7.0  # horizontal boundary; the line takes row 1
    image = with_alpha(flat(4, 4, (2.0, 2.0, 2.0)), 0.5)
    out = line_overlay(image, object_id=ids, colour=(0.0, 1.0, 0.0), opacity=0.5)
    # line: alpha 0.5, premultiplied colour (0, 0.5, 0); over: line + 0.5 * image
    assert np.allclose(out[1], np.tile([0.5, 1.0, 0.5, 0.75], (4, 1)))
    assert np.array_equal(out[[0, 2, 3]], image[[0, 2, 3]])


def test_line_overlay_thickness_widens_the_line() -> None:
    ids = np.ones((5, 9), np.float32)
    ids[:, 5:] = 2.0
    out = line_overlay(flat(5, 9, (1.0, 1.0, 1.0)), object_id=ids, thickness=3)
    dark = (out[..., 0] == 0.0).all(axis=0)
    assert np.array_equal(np.flatnonzero(dark), [3, 4, 5])


# ---------------------------------------------------------------------------------------------
# NaN/Inf and bad input.


def test_nan_and_inf_never_come_out_or_spread() -> None:
    clean = flat(16, 16, (1.0, 1.0, 1.0))
    stylized = flat(16, 16, (2.0, 0.5, 0.25))
    clean[3, 3, 0], clean[8, 8, 3] = np.nan, np.inf
    stylized[5, 5, 1], stylized[10, 2, :] = -np.inf, np.nan
    ids = np.ones((16, 16), np.float32)
    ids[0, 0] = np.nan
    z = np.full((16, 16), 5.0, np.float32)
    z[1, 1] = np.nan
    outputs = [
        mix(clean, stylized, 0.5),
        mix(clean, stylized, depth_weight(z, 1.0, 10.0)),
        luminance_colour(clean, stylized),
        detail_transfer(clean, stylized, 6.0),
        line_overlay(stylized, object_id=ids, depth=z),
        depth_weight(z, 1.0, 10.0),
        id_mask(ids, [1]),
    ]
    for out in outputs:
        assert np.isfinite(out).all()
    # a damaged pixel is transparent, so it adds nothing to its neighbours' low frequencies
    out = detail_transfer(clean, stylized, 6.0)
    damaged = np.zeros((16, 16), bool)
    damaged[[3, 8], [3, 8]] = True  # transparent in clean: no output there
    assert np.allclose(out[~damaged], flat(16, 16, (2.0, 0.5, 0.25))[~damaged], atol=1e-5)


def test_bad_input_raises_a_clear_error() -> None:
    with pytest.raises(StyleCompError, match="differ in size"):
        mix(CLEAN, STYLIZED[:5], 0.5)
    with pytest.raises(StyleCompError, match=r"\(H, W, 4\)"):
        mix(CLEAN[..., :3], STYLIZED, 0.5)
    with pytest.raises(StyleCompError, match="in \\[0, 1\\]"):
        mix(CLEAN, STYLIZED, 1.5)
    with pytest.raises(StyleCompError, match="differ in size"):
        mix(CLEAN, STYLIZED, np.ones((3, 3), np.float32))
    with pytest.raises(StyleCompError, match="'near' or 'far'"):
        depth_weight(np.ones((2, 2)), 1.0, 2.0, direction="middle")  # type: ignore[arg-type]  # wrong on purpose: the error is the test
    with pytest.raises(StyleCompError, match="near < far"):
        depth_weight(np.ones((2, 2)), 3.0, 2.0)
    with pytest.raises(StyleCompError, match="luminance_from"):
        luminance_colour(CLEAN, STYLIZED, luminance_from="both")  # type: ignore[arg-type]  # wrong on purpose: the error is the test
    with pytest.raises(StyleCompError, match="size"):
        detail_transfer(CLEAN, STYLIZED, -1.0)
    with pytest.raises(StyleCompError, match="whole numbers"):
        id_mask(np.ones((2, 2)), [1.5])
    with pytest.raises(StyleCompError, match="whole numbers"):
        id_mask(np.ones((2, 2)), ["crate"])  # type: ignore[list-item]  # wrong on purpose: the error is the test
    with pytest.raises(StyleCompError, match="differ in size"):
        line_overlay(CLEAN, object_id=np.ones((3, 3), np.float32))
    with pytest.raises(StyleCompError, match="at least one"):
        line_overlay(CLEAN)
    with pytest.raises(StyleCompError, match="opacity"):
        line_overlay(CLEAN, object_id=np.ones((12, 10), np.float32), opacity=2.0)
