"""AOV conditioning on synthetic inputs with known answers, then on the demo shot."""

from __future__ import annotations

import numpy as np
import pytest

from stylecomp.demo.scene import OBJECT_NAMES, camera_at, render_frame
from stylecomp.errors import PlateError, StyleCompError
from stylecomp.io.conditioning import (
    NORMAL_BACKGROUND,
    _hysteresis,
    beauty_edges,
    depth_condition,
    line_art,
    normal_condition,
)

ID = {name: i for i, name in OBJECT_NAMES.items()}


def grey(image: np.ndarray) -> np.ndarray:
    """The single channel (H, W) of a grey conditioning image, after checking it is one."""
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    return image[..., 0]


def lines_of(image: np.ndarray) -> np.ndarray:
    """A line/edge image (H, W, 3) as a bool mask (H, W); it must be pure white on black."""
    plane = grey(image)
    assert set(np.unique(plane)) <= {0.0, 1.0}
    return plane == 1.0


def within(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels (H, W) with a True pixel of ``mask`` within ``radius`` (square neighbourhood)."""
    padded = np.pad(mask, radius)
    height, width = mask.shape
    near = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            near |= padded[dy : dy + height, dx : dx + width]
    return near


def sphere_normals(size: int, radius: float) -> np.ndarray:
    """Camera-space normals (size, size, 3) of a sphere centred in the frame; zero outside."""
    centre = (size - 1) / 2.0
    rows, cols = np.mgrid[0:size, 0:size]
    x, y = (cols - centre) / radius, (centre - rows) / radius  # +x right, +y up
    inside = x * x + y * y < 1.0
    z = np.sqrt(np.clip(1.0 - x * x - y * y, 0.0, None))
    return np.where(inside[..., None], np.stack([x, y, z], axis=-1), 0.0)


# ---------------------------------------------------------------------------------------------
# Depth.


def test_depth_inverse_and_linear_modes_have_near_white_and_known_values() -> None:
    z = np.array([[2.0, 4.0, 8.0, 1.0, 16.0]])
    inverse = grey(depth_condition(z, near=2.0, far=8.0))
    # 1/z between 1/8 and 1/2: z=4 is (1/4 - 1/8) / (1/2 - 1/8) = 1/3; outside clips.
    np.testing.assert_allclose(inverse[0], [1.0, 1.0 / 3.0, 0.0, 1.0, 0.0], atol=1e-6)
    linear = grey(depth_condition(z, near=2.0, far=8.0, mode="linear"))
    np.testing.assert_allclose(linear[0], [1.0, 2.0 / 3.0, 0.0, 1.0, 0.0], atol=1e-6)


def test_depth_range_defaults_to_robust_percentiles() -> None:
    z = np.linspace(1.0, 10.0, 1000).reshape(20, 50)
    z[0, 0], z[0, 1] = 0.01, 5000.0  # outliers must not set near or far
    image = grey(depth_condition(z))
    near, far = np.percentile(z, [2, 98])
    assert image[0, 0] == 1.0 and image[0, 1] == 0.0
    middle = (1.0 / z[10, 25] - 1.0 / far) / (1.0 / near - 1.0 / far)
    assert image[10, 25] == pytest.approx(middle, abs=1e-6)
    assert np.all(np.diff(image.ravel()[2:]) <= 0.0)  # farther is never brighter


def test_depth_background_is_black_and_never_nan() -> None:
    z = np.full((4, 6), 3.0)
    z[0, :5] = [np.nan, np.inf, -np.inf, 0.0, -2.0]
    z[1, 0] = 1e10  # Blender's sky depth
    z[1, 1] = 2.0
    image = grey(depth_condition(z))
    assert np.all(image[0, :5] == 0.0) and image[1, 0] == 0.0
    assert image[1, 1] == 1.0 and image[2, 2] == 0.0  # near = 2 (its own percentile), far = 3


def test_a_constant_far_plane_fill_is_background_but_a_backdrop_is_not() -> None:
    z = np.tile(np.linspace(2.0, 10.0, 60), (40, 1))  # (40, 60) ground ramp
    sky = z.copy()
    sky[:16] = 1.0e4  # 40% of the frame at the demo's sky depth
    auto = grey(depth_condition(sky))
    explicit = grey(depth_condition(sky, background=sky == 1.0e4))
    np.testing.assert_array_equal(auto, explicit)  # found on its own, and kept out of the percentiles
    assert np.all(auto[:16] == 0.0) and auto[16:, 0].min() == 1.0
    # Inside an explicit range the fill would be slightly grey if it were taken for geometry.
    assert np.all(grey(depth_condition(sky, near=1.0, far=1.0e5))[:16] == 0.0)

    backdrop = z.copy()
    backdrop[:16] = 12.0  # a wall just behind the set, as constant as the fill
    assert np.all(grey(depth_condition(backdrop, near=1.0, far=1.0e5))[:16] > 0.08)


def test_depth_explicit_background_mask() -> None:
    z = np.tile(np.linspace(2.0, 4.0, 8), (4, 1))
    ids = np.ones_like(z)
    ids[:, -2:] = 0
    image = grey(depth_condition(z, background=ids == 0))
    assert np.all(image[:, -2:] == 0.0) and image[0, 0] == 1.0
    assert image[0, 5] == 0.0  # the farthest remaining column is "far", at the 98th percentile


def test_depth_all_background_is_black_and_bad_input_is_refused() -> None:
    assert np.all(depth_condition(np.full((3, 4), 1e10)) == 0.0)
    with pytest.raises(PlateError, match="no finite"):
        depth_condition(np.full((3, 4), np.nan))
    with pytest.raises(PlateError, match=r"\(H, W\)"):
        depth_condition(np.ones((3, 4, 1)))
    with pytest.raises(PlateError, match="background mask"):
        depth_condition(np.ones((3, 4)), background=np.ones((4, 3), bool))
    with pytest.raises(StyleCompError, match="mode"):
        depth_condition(np.ones((3, 4)), mode="log")  # type: ignore[arg-type]  # wrong on purpose: the error is the test
    with pytest.raises(StyleCompError, match="near <= far"):
        depth_condition(np.ones((3, 4)), near=5.0, far=2.0)


# ---------------------------------------------------------------------------------------------
# Normals.


def test_normal_colours_follow_normalbae_red_left_green_up_blue_front() -> None:
    normals = np.array([[[0, 0, 1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]]], dtype=float)
    image = normal_condition(normals)
    assert image.dtype == np.float32 and image.shape == (1, 5, 3)
    expected = [[0.5, 0.5, 1.0], [0.0, 0.5, 0.5], [1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.0, 0.5]]
    np.testing.assert_allclose(image[0], expected, atol=1e-6)


def test_normal_colours_on_a_sphere() -> None:
    image = normal_condition(sphere_normals(41, 18.0))
    np.testing.assert_allclose(image[20, 20], [0.5, 0.5, 1.0], atol=1e-6)  # centre faces the camera
    right, left, top, bottom = image[20, 37], image[20, 3], image[3, 20], image[37, 20]
    assert right[0] < 0.1 and left[0] > 0.9 and abs(right[1] - 0.5) < 1e-6
    assert top[1] > 0.9 and bottom[1] < 0.1 and abs(top[0] - 0.5) < 1e-6
    assert np.all(image[20, 21:38, 0] < 0.5) and np.all(image[3:20, 20, 1] > 0.5)
    np.testing.assert_allclose(image[0, 0], NORMAL_BACKGROUND)  # outside the sphere: zero normals


def test_normals_are_renormalised_and_bad_ones_get_the_background_colour() -> None:
    normals = np.array([[[0, 0, 2], [3, 0, 0], [0, 0, 0], [np.nan, 0, 1], [np.inf, 0, 0]]])
    image = normal_condition(normals)
    assert np.isfinite(image).all()
    np.testing.assert_allclose(image[0, 0], [0.5, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(image[0, 1], [0.0, 0.5, 0.5], atol=1e-6)
    for column in (2, 3, 4):
        np.testing.assert_allclose(image[0, column], NORMAL_BACKGROUND)


def test_world_normals_rotate_into_camera_space() -> None:
    rotation = camera_at(5.0, 64, 36).rotation  # world -> camera, rows: camera axes in world space
    camera = sphere_normals(33, 15.0)
    world = camera @ rotation  # (rotation.T @ n) per pixel: camera -> world
    np.testing.assert_allclose(
        normal_condition(world, space="world", world_to_camera=rotation), normal_condition(camera), atol=1e-6
    )
    with pytest.raises(StyleCompError, match="world_to_camera"):
        normal_condition(world, space="world")
    with pytest.raises(StyleCompError, match=r"\(3, 3\)"):
        normal_condition(world, space="world", world_to_camera=np.eye(4))
    with pytest.raises(StyleCompError, match="space"):
        normal_condition(world, space="object")  # type: ignore[arg-type]  # wrong on purpose: the error is the test
    with pytest.raises(PlateError, match=r"\(H, W, 3\)"):
        normal_condition(world[..., :2])


# ---------------------------------------------------------------------------------------------
# Line art.


def test_id_boundary_gives_one_line_exactly_on_it() -> None:
    ids = np.ones((12, 20))
    ids[:, 10:] = 2
    lines = lines_of(line_art(object_id=ids))
    assert lines[:, 9].all() and lines.sum() == 12  # the left object's last column, nothing else

    depth = np.where(ids == 2, 3.0, 6.0)  # the right object is nearer: the line is its silhouette
    lines = lines_of(line_art(object_id=ids, depth=depth))
    assert lines[:, 10].all() and lines.sum() == 12


def test_slanted_planes_give_no_lines() -> None:
    rows, cols = np.mgrid[0:40, 0:60].astype(float)
    linear = 5.0 + 0.05 * cols + 0.02 * rows  # depth varying linearly across the frame
    assert not lines_of(line_art(depth=linear)).any()
    # Ground in perspective: inverse depth linear in rows, from 1000 m at the top row to 25 m,
    # so neighbouring rows near the top differ by up to 100% in depth; still one flat plane.
    ground = 1.0 / (0.001 * (rows + 1.0))
    assert not lines_of(line_art(depth=ground, normals=np.tile([0.0, 1.0, 0.0], (40, 60, 1)))).any()


def test_depth_steps_above_the_threshold_give_a_line_on_the_near_side() -> None:
    z = np.full((8, 16), 10.0)
    z[:, 8:] = 5.0
    lines = lines_of(line_art(depth=z))
    assert lines[:, 8].all() and lines.sum() == 8
    z[:, 8:] = 9.9  # 1% step: below the 5% default
    assert not lines_of(line_art(depth=z)).any()
    z[:, :3] = np.nan  # no geometry there: its edge is a silhouette, and no NaN comes out
    assert lines_of(line_art(depth=z))[:, 3].all()


def test_a_cube_crease_gives_a_line_and_a_smooth_sphere_none() -> None:
    s = np.sqrt(0.5)
    normals = np.zeros((10, 20, 3))
    normals[:, :10] = [-s, 0.0, s]  # two faces of a cube seen corner-on: 90 degrees apart
    normals[:, 10:] = [s, 0.0, s]
    lines = lines_of(line_art(normals=normals))
    assert lines[:, 9].all() and lines.sum() == 10
    shallow = np.radians(10.0)  # a 20 degree fold stays under the 30 degree default
    normals[:, :10] = [-np.sin(shallow), 0.0, np.cos(shallow)]
    normals[:, 10:] = [np.sin(shallow), 0.0, np.cos(shallow)]
    assert not lines_of(line_art(normals=normals)).any()
    assert not lines_of(line_art(normals=sphere_normals(64, 28.0))).any()  # zero normals outside: ignored


def test_line_thickness_and_bad_input() -> None:
    ids = np.ones((12, 20))
    ids[:, 10:] = 2
    ids[0, 0] = np.nan  # counts as id 0: a one-pixel object
    lines = lines_of(line_art(object_id=ids, thickness=3))
    assert lines[4:, 8:11].all() and not lines[4:, :8].any() and not lines[4:, 11:].any()
    with pytest.raises(StyleCompError, match="at least one"):
        line_art()
    with pytest.raises(PlateError, match="differ in size"):
        line_art(object_id=ids, depth=np.ones((5, 5)))
    with pytest.raises(StyleCompError, match="thickness"):
        line_art(object_id=ids, thickness=0)


# ---------------------------------------------------------------------------------------------
# Canny edges from the beauty.


def square(size: int = 64, first: int = 20, last: int = 39, value: float = 1.0) -> np.ndarray:
    """A display-referred (size, size, 3) image: a grey square (rows/cols first..last) on black."""
    image = np.zeros((size, size, 3))
    image[first : last + 1, first : last + 1] = value
    return image


def test_canny_edges_of_a_square_lie_on_its_border_one_pixel_thin() -> None:
    edges = lines_of(beauty_edges(square()))
    border = np.zeros((64, 64), bool)
    border[20:40, 20:40] = True
    border[21:39, 21:39] = False  # the square's outermost ring of pixels
    assert not (edges & ~within(border, 1)).any()  # nothing inside or outside the flat regions
    for row in range(23, 37):  # along the sides: exactly one edge pixel each on left and right
        assert edges[row, :30].sum() == 1 and edges[row, 30:].sum() == 1
        assert edges[:30, row].sum() == 1 and edges[30:, row].sum() == 1


def test_canny_hysteresis_keeps_weak_edges_only_when_connected_to_strong_ones() -> None:
    image = np.zeros((64, 96, 3))
    image[:, 32:64] = np.linspace(1.0, 0.15, 64)[:, None, None]  # one edge, strong at the top, weak below
    image[40:56, 76:90] = 0.15  # a weak outline on its own
    edges = lines_of(beauty_edges(image, low=50.0, high=200.0))
    assert edges[:, 30:34].any(axis=1).all()  # the whole edge: its weak end hangs on its strong one
    assert not edges[:, 66:].any()  # the lone weak outline is dropped...
    lower_high = lines_of(beauty_edges(image, low=50.0, high=90.0))
    assert lower_high[40:56, 74:78].any(axis=1).all()  # ...though it is there
    without_hysteresis = lines_of(beauty_edges(image, low=200.0, high=200.0))
    assert not without_hysteresis[56:, 30:34].any()  # the weak end alone


def test_hysteresis_matches_a_plain_flood_fill() -> None:
    """The vectorised union-find against the obvious definition: grow strong through weak, 8-connected."""
    rng = np.random.default_rng(7)
    for _ in range(10):
        weak = rng.random((40, 50)) < 0.45  # near the percolation threshold: long, winding components
        strong = weak & (rng.random((40, 50)) < 0.02)
        grown = strong
        while True:
            step = within(grown, 1) & weak
            if np.array_equal(step, grown):
                break
            grown = step
        np.testing.assert_array_equal(_hysteresis(weak, strong), grown)


def test_canny_sees_colour_edges_and_survives_nan() -> None:
    image = np.zeros((16, 16, 3))
    image[:, :8] = [0.6, 0.2, 0.2]
    image[:, 8:] = [0.2, 0.6, 0.2]  # same brightness, different hue
    image[0, 0] = [np.nan, np.inf, -np.inf]
    edges = lines_of(beauty_edges(image))
    assert edges[4:12, 7:9].any(axis=1).all()
    with pytest.raises(PlateError, match=r"\(H, W, 3\)"):
        beauty_edges(np.zeros((16, 16)))
    with pytest.raises(StyleCompError, match="low <= high"):
        beauty_edges(image, low=200.0, high=100.0)


# ---------------------------------------------------------------------------------------------
# The demo shot.


@pytest.fixture(scope="module")
def demo() -> dict[str, np.ndarray]:
    return render_frame(1001, 192, 108)


def test_demo_depth_has_near_objects_bright_and_the_sky_black(demo: dict[str, np.ndarray]) -> None:
    ids, z = demo["id"], demo["Z"]
    ground = ids == ID["ground"]
    far_ground = ground & (z > np.percentile(z[ground], 90))
    for background in (None, ids == ID["sky"]):  # the 1e4 sky is found without the mask too
        image = grey(depth_condition(z, background=background))
        assert np.all(image[ids == ID["sky"]] == 0.0)
        for near_object in ("lamp", "globe", "ball"):
            assert image[ids == ID[near_object]].mean() > image[far_ground].mean() + 0.2


def test_demo_line_art_outlines_the_ball_and_leaves_the_ground_clean(demo: dict[str, np.ndarray]) -> None:
    ids = demo["id"]
    normals = np.stack([demo["N.X"], demo["N.Y"], demo["N.Z"]], axis=-1)
    lines = lines_of(line_art(object_id=ids, normals=normals, depth=demo["Z"]))
    ball = ids == ID["ball"]
    outline_across = ball[:, 1:] != ball[:, :-1]  # every pixel pair where the ball starts or ends
    outline_down = ball[1:] != ball[:-1]
    assert outline_across.any() and outline_down.any()
    assert np.all((lines[:, 1:] | lines[:, :-1])[outline_across])
    assert np.all((lines[1:] | lines[:-1])[outline_down])
    open_ground = (ids == ID["ground"]) & ~within(ids != ID["ground"], 2)
    assert open_ground.sum() > 5000 and not lines[open_ground].any()


def test_demo_normals_and_edges(demo: dict[str, np.ndarray]) -> None:
    normals = np.stack([demo["N.X"], demo["N.Y"], demo["N.Z"]], axis=-1)
    image = normal_condition(normals)
    ground = demo["id"] == ID["ground"]
    assert image[ground][:, 1].min() > 0.9  # the ground faces up: green
    display = np.clip(np.stack([demo["R"], demo["G"], demo["B"]], axis=-1), 0.0, 1.0) ** (1 / 2.2)
    edges = lines_of(beauty_edges(display))
    assert edges[demo["id"] == ID["crate"]].any() and edges.shape == ground.shape
