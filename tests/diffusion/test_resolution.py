"""Plates to the model's size and back, against known answers: exact pad/crop, plans, downscale, seamless tiles."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from stylecomp.diffusion.resolution import ResolutionSettings, plan, stylize_at_resolution
from stylecomp.errors import JobError, StyleCompError
from stylecomp.families import family_spec

RNG = np.random.default_rng(11)
FAMILIES = ("sd15", "sdxl", "flux")


def noise(height: int, width: int) -> np.ndarray:
    """A float32 (H, W, 3) image of uniform noise in [0, 1]."""
    return RNG.uniform(0.0, 1.0, (height, width, 3)).astype(np.float32)


def gradient(height: int, width: int) -> np.ndarray:
    """A smooth float32 (H, W, 3) image in [0, 1]: ramps across x and y, a blend of both in blue."""
    y, x = np.mgrid[0:height, 0:width]
    u, v = x / (width - 1), y / (height - 1)
    return np.stack([u, v, 0.5 * (u + v)], axis=-1).astype(np.float32)


class Recorder:
    """A ModelCall that records what it is given and answers with ``respond(image, conditions, index)``."""

    def __init__(self, respond: Callable[[np.ndarray, list[np.ndarray], int], np.ndarray] | None = None) -> None:
        self.respond = respond or (lambda image, conditions, index: image)
        self.calls: list[tuple[np.ndarray, list[np.ndarray], int]] = []

    def __call__(self, image: np.ndarray, conditions: list[np.ndarray], index: int) -> np.ndarray:
        self.calls.append((image.copy(), [c.copy() for c in conditions], index))
        return self.respond(image, conditions, index)


def tile_grid(layout) -> tuple[list[int], list[int]]:
    """The tile starts along x and y of a plan, after checking its tiles form a row-major grid."""
    xs = [t.x for t in layout.tiles[: layout.columns]]
    ys = [t.y for t in layout.tiles[:: layout.columns]]
    assert len(layout.tiles) == layout.columns * layout.rows
    for index, tile in enumerate(layout.tiles):
        assert (tile.x, tile.y) == (xs[index % layout.columns], ys[index // layout.columns])
    return xs, ys


# ---------------------------------------------------------------------------------------------
# Native: pad to the multiple, crop back.


@pytest.mark.parametrize(("family", "padded"), [("sd15", (576, 1024)), ("sdxl", (576, 1024)), ("flux", (544, 976))])
def test_native_identity_is_bit_exact_and_the_call_sees_multiples(family: str, padded: tuple[int, int]) -> None:
    image = noise(541, 961)
    depth, edges = noise(541, 961), (noise(541, 961) > 0.9).astype(np.float32)
    call = Recorder()
    out = stylize_at_resolution(image, [("depth", depth), ("edges", edges)], call, family, ResolutionSettings("native"))
    assert out.dtype == np.float32 and np.array_equal(out, image)
    [(seen, conditions, index)] = call.calls
    assert seen.shape == (*padded, 3) and index == 0
    assert padded[0] % family_spec(family).size_multiple == 0 and padded[1] % family_spec(family).size_multiple == 0
    assert [c.shape for c in conditions] == [(*padded, 3)] * 2


def test_native_returns_exactly_what_the_call_did_cropped_back() -> None:
    image = noise(541, 961)
    out = stylize_at_resolution(image, [], Recorder(lambda x, c, i: 1.0 - x), "sd15", ResolutionSettings("native"))
    assert np.array_equal(out, 1.0 - image)


def test_native_padding_is_centred_reflected_for_the_image_and_replicated_for_conditions() -> None:
    image, depth = noise(37, 50), noise(37, 50)
    call = Recorder()
    stylize_at_resolution(image, [("depth", depth)], call, "flux", ResolutionSettings("native"))
    [(seen, [seen_depth], _)] = call.calls
    assert seen.shape == (48, 64, 3)
    top, left = 5, 7  # (48 - 37) // 2 and (64 - 50) // 2: the odd pixel goes to the bottom/right
    assert np.array_equal(seen[top : top + 37, left : left + 50], image)
    assert np.array_equal(seen[top - 1, left : left + 50], image[1])  # reflection skips the edge row
    assert np.array_equal(seen[top + 37, left : left + 50], image[35])
    assert np.array_equal(seen[top : top + 37, left - 2], image[:, 2])
    assert np.array_equal(seen_depth[top : top + 37, left : left + 50], depth)
    assert np.array_equal(seen_depth[0, left : left + 50], depth[0])  # replicated edge
    assert np.array_equal(seen_depth[top : top + 37, -1], depth[:, -1])


def test_native_works_on_a_plate_smaller_than_the_padding() -> None:
    image = noise(3, 1)
    call = Recorder(lambda x, c, i: x * 0.5)
    out = stylize_at_resolution(image, [], call, "sd15", ResolutionSettings("native"))
    assert call.calls[0][0].shape == (64, 64, 3)
    assert np.array_equal(out, image * 0.5)


# ---------------------------------------------------------------------------------------------
# Plans.


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_is_native_up_to_one_and_a_half_working_sizes(family: str) -> None:
    limit = family_spec(family).working_size * 3 // 2
    auto = ResolutionSettings()
    assert plan(limit, 300, family, auto).mode == "native"
    assert plan(300, limit, family, auto).mode == "native"
    assert plan(limit + 1, 300, family, auto).mode == "downscale"
    assert plan(300, limit + 1, family, auto).mode == "downscale"
    assert plan(limit + 1, 300, family, auto).describe().startswith(f"auto (long side {limit + 1} > 1.5 x ")


def test_working_size_overrides_the_family_and_rounds_to_the_multiple() -> None:
    assert plan(1152, 500, "sd15", ResolutionSettings(working_size=768)).mode == "native"
    assert plan(1153, 500, "sd15", ResolutionSettings(working_size=768)).mode == "downscale"
    assert plan(10, 10, "sdxl", ResolutionSettings(working_size=1000)).working_size == 1024
    assert plan(10, 10, "flux", ResolutionSettings(working_size=1000)).working_size == 1008
    assert plan(10, 10, "sd15", ResolutionSettings(working_size=5)).working_size == 64


def test_downscale_plan_keeps_the_aspect_and_pads_to_the_multiple() -> None:
    landscape = plan(3840, 2160, "sdxl", ResolutionSettings("downscale"))
    assert (landscape.scaled_width, landscape.scaled_height) == (1024, 576)
    assert (landscape.working_width, landscape.working_height) == (1024, 576)
    portrait = plan(1716, 4096, "flux", ResolutionSettings("downscale"))
    assert (portrait.scaled_width, portrait.scaled_height) == (429, 1024)  # 1716 * 1024 / 4096 = 429
    assert (portrait.working_width, portrait.working_height) == (432, 1024)


@pytest.mark.parametrize(
    ("width", "height", "family", "overlap"),
    [
        (3840, 2160, "sdxl", 128),
        (961, 541, "sd15", 128),  # three columns so close that tiles 0 and 2 overlap too
        (4096, 1716, "flux", 200),
        (3000, 300, "sd15", 64),  # one row, shorter than a tile: padded to 320
        (2049, 1025, "sd15", 0),
        (1100, 1100, "sd15", 256),  # the largest overlap allowed, half a tile
    ],
)
def test_tiles_cover_the_plate_evenly_with_the_overlap_asked_for(
    width: int, height: int, family: str, overlap: int
) -> None:
    layout = plan(width, height, family, ResolutionSettings("tiles", tile_overlap=overlap))
    size, multiple = family_spec(family).working_size, family_spec(family).size_multiple
    xs, ys = tile_grid(layout)
    coverage = np.zeros((height, width), int)
    for tile in layout.tiles:
        assert (tile.width, tile.height) == (min(width, size), min(height, size))
        assert tile.x >= 0 and tile.y >= 0 and tile.x + tile.width <= width and tile.y + tile.height <= height
        coverage[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] += 1
    assert coverage.min() >= 1
    assert layout.working_width % multiple == 0 and layout.working_height % multiple == 0
    assert layout.working_width >= layout.tiles[0].width and layout.working_height >= layout.tiles[0].height
    assert layout.working_width - layout.tiles[0].width < multiple  # padded only up to the multiple
    for starts, length, extent in ((xs, width, layout.tiles[0].width), (ys, height, layout.tiles[0].height)):
        steps = np.diff(starts)
        assert starts[0] == 0 and starts[-1] + extent == length
        if len(starts) > 1:
            assert (extent - steps >= overlap).all()  # neighbours share at least the overlap
            assert steps.max() - steps.min() <= 1  # evenly spread: no sliver tile at the end
            assert layout.overlap <= (extent - steps).min()
            n = len(starts)
            assert (n - 1) * extent - (n - 2) * overlap < length  # one tile fewer would not do
    assert layout.overlap >= overlap
    assert layout.feather <= overlap
    if 3 * overlap <= size:
        assert layout.feather == overlap


def test_tiles_are_numbered_row_major_for_the_call() -> None:
    call = Recorder(lambda x, c, i: np.full_like(x, i / 20.0))
    layout = plan(1500, 1100, "sd15", ResolutionSettings("tiles"))
    out = stylize_at_resolution(noise(1100, 1500), [], call, "sd15", ResolutionSettings("tiles"))
    assert [index for _, _, index in call.calls] == list(range(len(layout.tiles)))
    assert (layout.columns, layout.rows) == (4, 3)
    # a tile's centre, far from every seam, holds only that tile's answer
    for index, tile in enumerate(layout.tiles):
        if 0 < index % layout.columns < layout.columns - 1 and 0 < index // layout.columns < layout.rows - 1:
            assert out[tile.y + tile.height // 2, tile.x + tile.width // 2, 0] == np.float32(index / 20.0)


def test_plate_fitting_one_tile_is_one_padded_call() -> None:
    layout = plan(961, 541, "sdxl", ResolutionSettings("tiles"))
    assert len(layout.tiles) == 1 and (layout.working_width, layout.working_height) == (1024, 576)
    assert layout.describe() == "tiles: 961x541 plate fits one tile, padded to 1024x576 for sdxl"


# ---------------------------------------------------------------------------------------------
# Downscale.


def test_downscale_identity_with_detail_restore_returns_the_plate() -> None:
    image = noise(700, 1000)
    call = Recorder()
    conditions = [("depth", noise(700, 1000)), ("lineart", noise(700, 1000))]
    out = stylize_at_resolution(image, conditions, call, "sd15", ResolutionSettings("downscale"))
    [(seen, seen_conditions, index)] = call.calls
    assert seen.shape == (384, 512, 3) and index == 0  # 700 * 512 / 1000 = 358.4 -> 358, padded to 384
    assert [c.shape for c in seen_conditions] == [(384, 512, 3)] * 2
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.abs(out - image).max() < 1e-6


def test_downscale_without_detail_restore_loses_fine_detail_but_keeps_the_picture() -> None:
    detail = noise(600, 1200)
    settings = ResolutionSettings("downscale", detail_restore=False)
    blurred = stylize_at_resolution(detail, [], Recorder(), "sd15", settings)

    def sharpness(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x, axis=1)).mean())

    # uniform noise: neighbours differ by 1/3 on average; after a 2.34x reduction little of it is left
    assert sharpness(blurred) < 0.25 * sharpness(detail)
    restored = stylize_at_resolution(detail, [], Recorder(), "sd15", ResolutionSettings("downscale"))
    assert sharpness(restored) == pytest.approx(sharpness(detail), rel=1e-4)
    smooth = gradient(600, 1200)  # nothing above the working size's frequencies: survives the round trip
    assert np.abs(stylize_at_resolution(smooth, [], Recorder(), "sd15", settings) - smooth).max() < 2e-3


def test_downscale_restores_the_plates_detail_onto_the_stylized_image() -> None:
    image = noise(600, 1200) * np.float32(0.5) + np.float32(0.25)
    grey = Recorder(lambda x, c, i: np.full_like(x, 0.5))
    restore, no_restore = ResolutionSettings("downscale"), ResolutionSettings("downscale", detail_restore=False)
    assert np.abs(stylize_at_resolution(image, [], grey, "sd15", no_restore) - 0.5).max() < 1e-6
    restored = stylize_at_resolution(image, [], grey, "sd15", restore)
    low_pass = stylize_at_resolution(image, [], Recorder(), "sd15", no_restore)
    assert np.abs(restored - (0.5 + image - low_pass)).max() < 1e-6


@pytest.mark.parametrize("kind", ["lineart", "edges"])
def test_downscale_keeps_one_pixel_lines_white(kind: str) -> None:
    lines = np.zeros((1024, 2048, 3), np.float32)
    lines[:, 1001] = 1.0  # vertical, reduced 4x: lands in working column 250
    lines[517, :] = 1.0  # horizontal: working row 129
    call = Recorder()
    conditions = [(kind, lines), ("depth", lines)]
    stylize_at_resolution(noise(1024, 2048), conditions, call, "sd15", ResolutionSettings("downscale"))
    [(_, [line_map, depth_map], _)] = call.calls
    assert line_map.shape == (256, 512, 3)
    assert line_map[:, 250].min() == 1.0 and line_map[129, :].min() == 1.0
    assert (line_map[0, :, 0] == 1.0).sum() == 1 and (line_map[:, 0, 0] == 1.0).sum() == 1  # still thin
    assert depth_map[:, 248:253].max() < 0.5  # the smooth filter fades a line, hence max pooling for lines


def test_downscale_is_deterministic() -> None:
    image, depth = noise(500, 900), noise(500, 900)
    call = Recorder(lambda x, c, i: 0.5 * (x + c[0]))
    settings = ResolutionSettings("downscale", working_size=256)
    first = stylize_at_resolution(image, [("depth", depth)], call, "sd15", settings)
    assert np.array_equal(first, stylize_at_resolution(image, [("depth", depth)], call, "sd15", settings))


# ---------------------------------------------------------------------------------------------
# Tiles.


@pytest.mark.parametrize(("width", "height"), [(1500, 1100), (961, 541), (3000, 300)])
def test_tiles_identity_returns_the_plate_exactly(width: int, height: int) -> None:
    image = noise(height, width)

    def check_conditions(x: np.ndarray, conditions: list[np.ndarray], index: int) -> np.ndarray:
        # the condition is the image itself: each tile's crop must arrive at the same pixels
        # (the padding differs: reflected for the image, replicated for conditions)
        rows = slice((x.shape[0] - min(height, 512)) // 2, (x.shape[0] + min(height, 512)) // 2)
        assert np.array_equal(conditions[0][rows], x[rows])
        return x

    out = stylize_at_resolution(
        image, [("normals", image.copy())], Recorder(check_conditions), "sd15", ResolutionSettings("tiles")
    )
    assert np.array_equal(out, image)


@pytest.mark.parametrize(
    ("width", "height", "overlap", "feather"),
    [
        (1500, 1100, 128, 128),
        (961, 541, 128, 128),  # tiles 0 and 2 overlap too
        (1300, 1300, 64, 64),
        (1037, 600, 256, 175),  # tiles 175 px apart: seams 175 px apart, so the ramps narrow to 175
    ],
)
@pytest.mark.parametrize("levels", ["checkerboard", "by_index"])
def test_tiles_blend_without_a_step_at_any_seam(
    width: int, height: int, overlap: int, feather: int, levels: str
) -> None:
    settings = ResolutionSettings("tiles", tile_overlap=overlap)
    layout = plan(width, height, "sd15", settings)
    count, columns = len(layout.tiles), layout.columns
    if levels == "checkerboard":  # the worst case: every neighbour differs by the full range
        grey = [float((i // columns + i % columns) % 2) for i in range(count)]
    else:
        grey = [i / (count - 1) for i in range(count)]
    call = Recorder(lambda x, c, i: np.full_like(x, grey[i]))
    out = stylize_at_resolution(np.full((height, width, 3), 0.5, np.float32), [], call, "sd15", settings)
    # Across a vertical seam the two tiles' ramps move by 1 / feather per pixel, so no step
    # between columns can exceed that share of the largest difference between side-by-side
    # tiles' answers (where rows of tiles blend too, the step is a mix of such differences);
    # likewise between rows.
    assert layout.feather == feather
    levels_grid = np.array(grey).reshape(layout.rows, columns)
    bound_x = np.abs(np.diff(levels_grid, axis=1)).max() / layout.feather
    bound_y = np.abs(np.diff(levels_grid, axis=0)).max() / layout.feather
    step_x = np.abs(np.diff(out, axis=1)).max()
    step_y = np.abs(np.diff(out, axis=0)).max()
    assert step_x <= bound_x + 1e-6 and step_y <= bound_y + 1e-6
    # and the ramps are that steep, not smeared over the whole tile: the bound is reached
    assert step_x == pytest.approx(bound_x, rel=1e-4) and step_y == pytest.approx(bound_y, rel=1e-4)
    assert out.min() == min(grey) and out.max() == max(grey)  # tile interiors keep their own answer


# ---------------------------------------------------------------------------------------------
# Input validation.


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (noise(8, 8).astype(np.float64), "float32"),
        ((noise(8, 8) * 255).astype(np.uint8), "float32"),
        (noise(8, 8).tolist(), "float32"),
        (np.zeros((8, 8, 4), np.float32), r"\(H, W, 3\)"),
        (np.zeros((0, 8, 3), np.float32), r"\(H, W, 3\)"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.full((8, 8, 3), 4.0, np.float32), r"\[0, 1\]"),
    ],
)
def test_bad_images_are_refused(image: np.ndarray, message: str) -> None:
    with pytest.raises(StyleCompError, match=message):
        stylize_at_resolution(image, [], Recorder(), "sd15", ResolutionSettings())


def test_bad_conditions_are_refused() -> None:
    image = noise(8, 8)
    with pytest.raises(StyleCompError, match="does not match"):
        stylize_at_resolution(image, [("depth", noise(8, 9))], Recorder(), "sd15", ResolutionSettings())
    with pytest.raises(StyleCompError, match="unknown condition kind 'canny'"):
        stylize_at_resolution(image, [("canny", noise(8, 8))], Recorder(), "sd15", ResolutionSettings())
    with pytest.raises(StyleCompError, match="lineart condition must be a float32"):
        stylize_at_resolution(image, [("lineart", np.zeros((8, 8, 3), bool))], Recorder(), "sd15", ResolutionSettings())


@pytest.mark.parametrize(
    ("respond", "message"),
    [
        (lambda x, c, i: x[:-1], r"tile 0 returned shape \(63, 64, 3\), expected \(64, 64, 3\)"),
        (lambda x, c, i: np.full_like(x, np.nan), "tile 0 returned NaN"),
        (lambda x, c, i: (x * 255).astype(np.uint8), "tile 0 returned uint8"),
    ],
)
def test_bad_model_answers_are_refused(respond: Callable, message: str) -> None:
    with pytest.raises(StyleCompError, match=message):
        stylize_at_resolution(noise(8, 8), [], Recorder(respond), "sd15", ResolutionSettings())


def test_a_bad_answer_names_its_tile() -> None:
    respond = Recorder(lambda x, c, i: x if i < 2 else x[:, :-1])
    with pytest.raises(StyleCompError, match="tile 2 returned"):
        stylize_at_resolution(noise(600, 1500), [], respond, "sd15", ResolutionSettings("tiles"))


def test_bad_settings_and_plates_are_refused() -> None:
    with pytest.raises(JobError, match="mode"):
        ResolutionSettings("upscale")  # type: ignore[arg-type]  # wrong on purpose: the error is the test
    with pytest.raises(JobError, match="working_size"):
        ResolutionSettings(working_size=0)
    with pytest.raises(JobError, match="tile_overlap"):
        ResolutionSettings(tile_overlap=-1)
    with pytest.raises(JobError, match=r"at most half the tile size \(256\)"):
        plan(2000, 1000, "sd15", ResolutionSettings("tiles", tile_overlap=257))
    with pytest.raises(StyleCompError, match="unknown model family 'sd3'"):
        plan(100, 100, "sd3", ResolutionSettings())  # type: ignore[arg-type]  # wrong on purpose: the error is the test
    with pytest.raises(StyleCompError, match="positive integers"):
        plan(0, 100, "sd15", ResolutionSettings())
