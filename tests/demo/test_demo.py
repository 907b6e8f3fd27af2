"""The demo shot is ground truth for consistency metrics: check that its AOVs really are exact.

The key check warps frame t-1 by frame t's backward vectors and compares it with frame t
outside disocclusions, with the disocclusion mask built only from what the files hold.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stylecomp.demo.scene import DEMO_PATTERN, OBJECT_NAMES, render_frame, write_demo
from stylecomp.io.plates import Plate, Window, read_plate

WIDTH, HEIGHT, FRAMES = 480, 270, 3
CHANNELS = {"R", "G", "B", "A", "Z", "N.X", "N.Y", "N.Z", "backward.u", "backward.v", "id"}
BALL = next(i for i, name in OBJECT_NAMES.items() if name == "ball")
GLOBE = next(i for i, name in OBJECT_NAMES.items() if name == "globe")


@pytest.fixture(scope="module")
def demo_frames(tmp_path_factory: pytest.TempPathFactory) -> list[Plate]:
    """The first FRAMES frames at 480x270, written and read back through the plate API."""
    calls: list[tuple[int, int]] = []
    sequence = write_demo(
        tmp_path_factory.mktemp("demo"),
        frames=FRAMES,
        width=WIDTH,
        height=HEIGHT,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(n, FRAMES) for n in range(1, FRAMES + 1)]
    assert sequence.frames == tuple(range(1001, 1001 + FRAMES)) and not sequence.missing
    assert sequence.pattern.endswith(DEMO_PATTERN)
    return [read_plate(sequence.path(frame)) for frame in sequence.frames]


def bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample ``image`` (H, W, C) at float pixel positions (H, W), pixel centres at integers."""
    x0 = np.clip(np.floor(xs).astype(int), 0, image.shape[1] - 2)
    y0 = np.clip(np.floor(ys).astype(int), 0, image.shape[0] - 2)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def warp_error(previous: Plate, current: Plate, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel relative beauty error (H, W) of t-1 warped onto t, and the valid mask (H, W).

    Valid: the source lies on screen, all four bilinear neighbours at t-1 hold the same object
    ID as the pixel at t, and the warped t-1 depth agrees with the depth at t within 5% (the
    camera dollies 0.09 m a frame and nothing is closer than ~4 m, so a surface point's depth
    changes < 3% a frame; a hidden surface behind the same object is far further off).
    ``scale`` multiplies the vectors (0 for the control).
    """
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    xs = cols + scale * current.channel("backward.u")
    ys = rows - scale * current.channel("backward.v")  # v is y-up, rows go down
    on_screen = (xs >= 0) & (xs <= WIDTH - 1) & (ys >= 0) & (ys <= HEIGHT - 1)
    xs, ys = np.clip(xs, 0, WIDTH - 1), np.clip(ys, 0, HEIGHT - 1)

    x0 = np.clip(np.floor(xs).astype(int), 0, WIDTH - 2)
    y0 = np.clip(np.floor(ys).astype(int), 0, HEIGHT - 2)
    same_id = np.ones((HEIGHT, WIDTH), bool)
    for dy in (0, 1):
        for dx in (0, 1):
            same_id &= previous.channel("id")[y0 + dy, x0 + dx] == current.channel("id")
    depth_now = current.channel("Z")
    depth_then = bilinear(previous.channel("Z")[..., None], xs, ys)[..., 0]
    depth_ok = np.abs(depth_then - depth_now) <= 0.05 * depth_now
    mask = on_screen & same_id & depth_ok

    warped = bilinear(previous.channels(["R", "G", "B"]), xs, ys)
    now = current.channels(["R", "G", "B"])
    # Relative to the pixel's brightness, floored so near-black pixels do not dominate.
    error = np.abs(warped - now).sum(axis=-1) / np.maximum(now.sum(axis=-1), 0.15)
    return error, mask


def test_backward_vectors_reproduce_the_next_frame(demo_frames: list[Plate]) -> None:
    for previous, current in itertools.pairwise(demo_frames):
        error, mask = warp_error(previous, current)
        control, control_mask = warp_error(previous, current, scale=0.0)
        median, p99 = np.median(error[mask]), np.percentile(error[mask], 99)
        # Half-float beauty rounds to ~5e-4 relative, so most pixels agree to that. The tail is
        # bilinear resampling of texture: soft checker edges on the far ground, the crate's top
        # face at a grazing angle, the Lambert terminator; measured ~3.6% at 480x270 (~1% at
        # 960x540).
        assert mask.mean() > 0.9
        assert median < 1e-3
        assert p99 < 0.05
        # Without the vectors, the same comparison is far off: the test can fail.
        assert np.median(control[control_mask]) > 5 * median
        assert np.percentile(control[control_mask], 99) > 5 * p99


def test_the_ball_occludes_and_reveals_the_globe(demo_frames: list[Plate]) -> None:
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    for previous, current in itertools.pairwise(demo_frames):
        before, after = previous.channel("id"), current.channel("id")
        assert np.count_nonzero((before == BALL) != (after == BALL)) > 100
        covered = (before == GLOBE) & (after == BALL)
        # Revealed: globe surface seen at t whose position at t-1 (by the vectors) was the ball.
        source_x = np.clip(np.rint(cols + current.channel("backward.u")), 0, WIDTH - 1).astype(int)
        source_y = np.clip(np.rint(rows - current.channel("backward.v")), 0, HEIGHT - 1).astype(int)
        revealed = (after == GLOBE) & (before[source_y, source_x] == BALL)
        assert covered.sum() > 20 and revealed.sum() > 20
        _, mask = warp_error(previous, current)
        assert not mask[revealed].any()


def test_channels_types_windows_and_values(demo_frames: list[Plate]) -> None:
    for plate in demo_frames:
        (part,) = plate.parts
        assert set(part.channel_names) == CHANNELS and len(part.channel_names) == len(CHANNELS)
        types = dict(zip(part.channel_names, part.channel_types, strict=True))
        assert {types[c] for c in ("Z", "backward.u", "backward.v")} == {"float"}
        assert types["id"] == "uint"
        assert {types[c] for c in ("R", "G", "B", "A", "N.X", "N.Y", "N.Z")} == {"half"}
        assert part.data_window == part.display_window == Window(0, 0, WIDTH, HEIGHT)
        assert "backward" in part.attributes["stylecomp/demo:motion"]

        assert np.isfinite(part.pixels).all()
        beauty = plate.channels(["R", "G", "B"])
        assert beauty.max() > 1.0 and beauty.min() >= 0.0
        assert (plate.channel("A") == 1.0).all()
        normals = plate.channels(["N.X", "N.Y", "N.Z"])
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=2e-3)
        ids = plate.channel("id")
        assert set(np.unique(ids).tolist()) == set(OBJECT_NAMES)
        assert (plate.channel("Z")[ids == 0] == 1.0e4).all()
        assert (plate.channel("Z")[ids != 0] < 1.0e4).all()


def test_rendering_is_deterministic() -> None:
    first, second = render_frame(1002, 192, 108), render_frame(1002, 192, 108)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_default_size_and_smaller_renders_show_the_same_scene() -> None:
    full = render_frame(1001)
    small = render_frame(1001, 192, 108)
    assert all(plane.shape == (540, 960) and plane.dtype == np.float32 for plane in full.values())
    # Small pixel (i, j) has its centre exactly at the centre of full pixel (5i+2, 5j+2).
    sampled = {name: plane[2::5, 2::5] for name, plane in full.items()}
    np.testing.assert_array_equal(small["id"], sampled["id"])
    np.testing.assert_allclose(small["Z"], sampled["Z"], rtol=1e-5)
    np.testing.assert_allclose(small["R"], sampled["R"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(5 * small["backward.u"], sampled["backward.u"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(5 * small["backward.v"], sampled["backward.v"], rtol=1e-4, atol=1e-3)
