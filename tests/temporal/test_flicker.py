"""Flicker metrics on real EXRs: the demo shot (exact backward vectors), a translating texture with
forward NDC vectors, and Beachball (whose vectors reproduce nothing); and `stylecomp flicker`."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from stylecomp.cli import cli
from stylecomp.color import ModelEncoding
from stylecomp.demo.scene import OBJECT_NAMES, write_demo
from stylecomp.errors import PlateError, StyleCompError
from stylecomp.io.plates import ImagePart, Window, read_plate, write_plate
from stylecomp.temporal.flicker import (
    CONVENTION_NAMES,
    STYLIZED_CHANNELS,
    MotionConvention,
    PlateFrame,
    Sampler,
    check_conventions,
    masked_errors,
    measure_flicker,
    read_plate_frame,
    visibility,
)
from tests.shared_data import TESTDATA

WIDTH, HEIGHT, FRAMES, FIRST = 160, 90, 5, 1001
BACKWARD = MotionConvention.parse("backward-pixels-yup")
BALL = next(i for i, name in OBJECT_NAMES.items() if name == "ball")
GLOBE = next(i for i, name in OBJECT_NAMES.items() if name == "globe")
DAMAGED = sorted((TESTDATA / "exr-damaged").glob("*.exr"))

Transform = Callable[[int, np.ndarray], np.ndarray]  # (frame index, scene-linear RGB (H, W, 3)) -> RGB


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo shot's first frames at 160x90; its frame pattern."""
    return write_demo(tmp_path_factory.mktemp("demo"), FRAMES, WIDTH, HEIGHT, progress=None).pattern


@pytest.fixture(scope="module")
def demo_frames(demo: str) -> list[PlateFrame]:
    display = Window(0, 0, WIDTH, HEIGHT)
    return [read_plate_frame(demo % f, f, display, ModelEncoding()) for f in range(FIRST, FIRST + FRAMES)]


def stylize(plate_pattern: str, folder: Path, transform: Transform, channels: Sequence[str] = STYLIZED_CHANNELS) -> str:
    """Write ``transform`` of each plate frame as RGBA ``channels``; the new frame pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(range(FIRST, FIRST + FRAMES)):
        rgba = read_plate(plate_pattern % frame).channels(["R", "G", "B", "A"]).copy()  # (H, W, 4)
        rgba[..., :3] = transform(index, rgba[..., :3])
        write_plate(folder / f"styl.{frame:04d}.exr", [ImagePart.create(rgba, channels, pixel_type="half")])
    return str(folder / "styl.####.exr")


def noise(seed: int) -> np.ndarray:
    """Multiplicative noise (H, W, 3) around 1, as a diffusion model's texture might be."""
    return 1.0 + 0.1 * np.random.default_rng(seed).standard_normal((HEIGHT, WIDTH, 3))


def test_the_plate_warped_by_its_own_vectors_matches_outside_disocclusions(demo_frames: list[PlateFrame]) -> None:
    for previous, current in itertools.pairwise(demo_frames):
        sampler = Sampler.following(current.vectors, BACKWARD)
        seen = visibility(sampler, current, previous, 0.05)
        error = np.mean((sampler.bilinear(previous.image) - current.image) ** 2, axis=-1)  # (H, W)
        still = np.mean((previous.image - current.image) ** 2, axis=-1)
        assert 0.9 < seen.valid.mean() < 0.99 and seen.disoccluded.any()
        # Half-float beauty: most pixels agree to rounding; the mean is bilinear resampling of texture.
        assert np.median(error[seen.valid]) < 1e-6
        assert error[seen.valid].mean() < 0.05 * still[seen.valid].mean()
        mse, l1 = masked_errors(sampler.bilinear(previous.image), current.image, seen.valid)
        assert mse == pytest.approx(error[seen.valid].mean(), rel=1e-4) and 0 < mse < l1


def test_the_disocclusion_mask_holds_where_the_ball_uncovers_the_globe(demo_frames: list[PlateFrame]) -> None:
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    for previous, current in itertools.pairwise(demo_frames):
        sampler = Sampler.following(current.vectors, BACKWARD)
        seen = visibility(sampler, current, previous, 0.05)
        source_x = np.clip(np.rint(cols + current.vectors[..., 0]), 0, WIDTH - 1).astype(int)
        source_y = np.clip(np.rint(rows - current.vectors[..., 1]), 0, HEIGHT - 1).astype(int)
        revealed = (current.ids == GLOBE) & (previous.ids[source_y, source_x] == BALL)
        assert revealed.sum() >= 3
        assert seen.disoccluded[revealed].all() and not seen.valid[revealed].any()


@pytest.mark.parametrize("channels", [STYLIZED_CHANNELS, ("R", "G", "B", "A")], ids=["stylized-layer", "plain-rgba"])
def test_a_copy_of_the_plate_gives_R_1_and_D_0(demo: str, tmp_path: Path, channels: Sequence[str]) -> None:
    report = measure_flicker(stylize(demo, tmp_path, lambda i, rgb: rgb, channels), demo)
    assert report.R == pytest.approx(1.0, abs=1e-9) and report.D == 0.0
    assert report.E_warp == report.E_warp_plate > 0
    assert report.drift == report.drift_plate > 0
    assert report.convention == BACKWARD and report.tests == ("on-screen", "depth", "object id")
    assert [p.frame for p in report.pairs] == list(range(FIRST + 1, FIRST + FRAMES))


def test_independent_noise_per_frame_gives_R_much_greater_than_1(demo: str, tmp_path: Path) -> None:
    report = measure_flicker(stylize(demo, tmp_path, lambda i, rgb: rgb * noise(i)), demo)
    assert report.R > 10 and report.D > 0.01


def test_a_fixed_colour_transform_is_consistent_but_stylized(demo: str, tmp_path: Path) -> None:
    report = measure_flicker(stylize(demo, tmp_path, lambda i, rgb: rgb * np.array([1.2, 0.9, 0.7])), demo)
    assert 0.8 < report.R < 1.25  # no flicker beyond the render's own...
    assert report.D > 0.03  # ...because it changed the picture, not because nothing changed


def test_noise_stuck_to_the_screen_flickers_on_a_moving_shot(demo: str, tmp_path: Path) -> None:
    locked = noise(7)  # the same noise every frame, like a locked seed
    report = measure_flicker(stylize(demo, tmp_path, lambda i, rgb: rgb * locked), demo)
    assert report.R > 3


def test_drift_catches_a_slow_change_that_adjacent_frames_hide(demo: str, tmp_path: Path) -> None:
    report = measure_flicker(stylize(demo, tmp_path, lambda i, rgb: rgb * (1 + 0.1 * i)), demo)
    drifts = [p.drift for p in report.pairs]
    assert drifts == sorted(drifts) and drifts[-1] > 5 * drifts[0]
    assert report.as_dict()["R_drift"] > 2 * report.R
    assert all(0.5 < p.drift_valid <= p.valid for p in report.pairs)


def test_auto_detection_picks_backward_pixels_y_up_and_flags_the_others(demo_frames: list[PlateFrame]) -> None:
    check = check_conventions(list(itertools.pairwise(demo_frames)))
    assert check.best == "backward-pixels-yup" and check.reproduces("backward-pixels-yup")
    assert check.scores["backward-pixels-yup"] < 0.05
    assert not any(check.reproduces(name) for name in CONVENTION_NAMES if name != "backward-pixels-yup")


def test_a_named_wrong_convention_is_refused(demo: str, tmp_path: Path) -> None:
    stylized = stylize(demo, tmp_path, lambda i, rgb: rgb)
    with pytest.raises(PlateError, match="vectors read as backward-pixels-ydown do not reproduce the plate"):
        measure_flicker(stylized, demo, vectors="backward-pixels-ydown")
    with pytest.raises(StyleCompError, match="unknown vector convention"):
        measure_flicker(stylized, demo, vectors="backward")
    assert measure_flicker(stylized, demo, vectors="backward-pixels-yup").R == pytest.approx(1.0)


def test_forward_ndc_vectors_of_a_translating_texture(tmp_path: Path) -> None:
    """A texture sliding 3 px right and 2 px down a frame, vectors forward in NDC with y down."""
    width, height, shift = 96, 64, (2, 3)
    rows, cols = np.mgrid[0:height, 0:width] * (2 * np.pi / np.array([height, width]))[:, None, None]
    texture = np.stack(
        [0.4 + 0.3 * np.sin(3 * cols), 0.4 + 0.3 * np.sin(2 * rows + cols), 0.3 + 0.2 * np.cos(rows)], axis=-1
    )  # (H, W, 3), periodic: np.roll slides it
    vectors = np.broadcast_to([shift[1] / width, shift[0] / height], (height, width, 2))  # NDC: fractions
    for index in range(FRAMES):
        rgb = np.roll(texture, (shift[0] * index, shift[1] * index), axis=(0, 1)) * (1 + 0.001 * index)
        pixels = np.concatenate([rgb, np.ones((height, width, 1)), vectors], axis=-1)
        write_plate(
            tmp_path / f"slide.{FIRST + index:04d}.exr",
            [ImagePart.create(pixels, ["R", "G", "B", "A", "forward.u", "forward.v"], pixel_type="float")],
        )
    plate = str(tmp_path / "slide.####.exr")
    report = measure_flicker(plate, plate)
    assert report.convention.name == "forward-ndc-ydown" and report.tests == ("on-screen",)
    assert report.check.scores["forward-ndc-ydown"] < 0.01
    assert report.R == pytest.approx(1.0) and report.D == 0.0
    assert 0 < report.E_warp_plate < 1e-5 and 0 < report.drift_plate < 1e-4
    assert report.pairs[-1].drift_valid == pytest.approx((1 - 4 * 3 / width) * (1 - 4 * 2 / height), abs=0.02)


def test_beachball_vectors_reproduce_no_convention_and_are_refused(testdata: Path) -> None:
    plate = str(testdata / "plates/beachball/singlepart.####.exr")
    with pytest.raises(PlateError, match="do not reproduce the plate under any convention") as caught:
        measure_flicker(plate, plate, frames=(1, 3))
    assert "forward-pixels-yup" in str(caught.value) and caught.value.where.endswith("singlepart.%04d.exr")


def test_cli_table_json_and_plot(demo: str, tmp_path: Path) -> None:
    stylized = stylize(demo, tmp_path / "styl", lambda i, rgb: rgb * noise(i))
    plate = demo.replace("%04d", "####")
    text = CliRunner().invoke(cli, ["flicker", stylized, "--plate", plate, "--plot", str(tmp_path / "e.png")])
    assert text.exit_code == 0, text.output
    assert "backward-pixels-yup (auto-detected" in text.stdout
    assert "R = E_warp(stylized) / E_warp(plate)" in text.stdout and f"plot      {tmp_path / 'e.png'}" in text.stdout
    with Image.open(tmp_path / "e.png") as image:
        assert image.format == "PNG" and image.size == (800, 450)
        colours = {colour for _, colour in image.getcolors(1 << 16)}
        assert {(60, 110, 200), (220, 90, 40)} <= colours  # both lines drawn

    result = CliRunner().invoke(cli, ["flicker", stylized, "--plate", plate, "--json", "--frames", "1002-1004"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"R", "E_warp", "E_warp_plate", "D", "drift"} <= report.keys()
    assert report["R"] == pytest.approx(report["E_warp"] / report["E_warp_plate"]) and report["R"] > 10
    assert report["vectors"]["convention"] == "backward-pixels-yup"
    assert [f["frame"] for f in report["per_frame"]] == [1002, 1003, 1004]
    assert report["per_frame"][0]["E_warp"] is None and report["per_frame"][1]["E_warp"] > 0

    job = tmp_path / "job.json"  # --job: compare in the job's colour encoding (ACEScct log here)
    job.write_text(
        json.dumps(
            {
                "version": 1,
                "color": {"encoding": "log"},
                "shots": [{"name": "sh", "plate": plate, "output": "out.####.exr"}],
            }
        )
    )
    log = CliRunner().invoke(
        cli, ["flicker", stylized, "--plate", plate, "--json", "--frames", "1002-1004", "--job", str(job)]
    )
    assert log.exit_code == 0, log.output
    assert json.loads(log.stdout)["D"] != pytest.approx(report["D"], rel=0.05)


def test_cli_errors_name_the_file_and_exit_2(demo: str, tmp_path: Path) -> None:
    stylized = stylize(demo, tmp_path / "styl", lambda i, rgb: rgb)
    gap = tmp_path / "styl" / "styl.1003.exr"

    def flicker(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["flicker", *args])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return result.exit_code, result.stderr

    shutil.copy(DAMAGED[0], gap)
    code, stderr = flicker(stylized, "--plate", demo)
    assert code == 2 and stderr.startswith(f"error: {gap}: ")
    gap.unlink()
    assert flicker(stylized, "--plate", demo) == (2, f"error: {gap}: frame missing on disk\n")
    code, stderr = flicker(stylized, "--plate", demo, "--frames", "1004-1004")
    assert code == 2 and "at least two frames" in stderr
    code, stderr = flicker(stylized, "--plate", demo, "--vectors", "sideways")
    assert code == 2 and "unknown vector convention 'sideways'" in stderr

    wide = read_plate(stylized.replace("####", "1002")).parts[0]
    write_plate(
        tmp_path / "styl" / "styl.1002.exr",
        [ImagePart.create(wide.pixels, wide.channel_names, display_window=Window(0, 0, WIDTH + 10, HEIGHT))],
    )
    code, stderr = flicker(stylized, "--plate", demo, "--frames", "1001-1002")
    assert code == 2 and stderr.startswith(f"error: {tmp_path / 'styl' / 'styl.1002.exr'}: display window")

    no_vectors = stylize(demo, tmp_path / "bare", lambda i, rgb: rgb, ("R", "G", "B", "A"))
    code, stderr = flicker(no_vectors, "--plate", no_vectors, "--frames", "1001-1002")
    assert code == 2 and stderr.startswith(f"error: {tmp_path / 'bare' / 'styl.1001.exr'}: no motion-vector AOV")


STREET = "plates/blender_street/street.####.exr"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stylecomp.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def test_blender_street_against_itself_gives_R_1_and_inspect_names_the_convention(testdata: Path) -> None:
    """The noisy Cycles plate: its vectors are accepted (0.28 under the old noise-blind score, refused)."""
    plate = str(testdata / STREET)
    result = _cli("flicker", plate, "--plate", plate, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["R"] == pytest.approx(1.0, abs=1e-9) and report["D"] == 0.0
    assert report["vectors"]["convention"] == "backward-pixels-yup"
    assert report["vectors"]["scores"]["backward-pixels-yup"] < 0.15

    inspected = _cli("inspect", "--json", plate)
    assert inspected.returncode == 0, inspected.stderr
    vectors = json.loads(inspected.stdout)["vectors"]
    assert vectors["convention"] == "backward-pixels-yup"
    assert "vectors      backward-pixels-yup" in _cli("inspect", plate).stdout


@pytest.fixture(scope="module")
def street_pairs() -> list[tuple[PlateFrame, PlateFrame]]:
    testdata = TESTDATA
    pattern = str(testdata / STREET).replace("####", "%04d")
    display = read_plate(pattern % 1001, pixels=False).display_window
    frames = {f: read_plate_frame(pattern % f, f, display, ModelEncoding()) for f in (1004, 1005, 1011, 1012)}
    return [(frames[1004], frames[1005]), (frames[1011], frames[1012])]


def test_cycles_vector_xy_points_to_the_previous_frame_and_zw_from_the_next(
    street_pairs: list[tuple[PlateFrame, PlateFrame]],
) -> None:
    """XY: backward, pixels, y up. ZW: this frame minus the next, so its negation is the forward vector."""
    scores = check_conventions(street_pairs).scores
    assert scores["backward-pixels-yup"] < 0.15 and scores["forward-pixels-yup"] < 0.15
    assert scores["backward-pixels-yup"] < scores["backward-pixels-ydown"]
    assert not any(check_conventions(street_pairs).reproduces(name) for name in CONVENTION_NAMES if "ndc" in name)
    as_is = [
        tuple(replace(f, vectors=f.vectors * np.array([1, 1, -1, -1], np.float32)) for f in pair)
        for pair in street_pairs
    ]  # ZW read as stored: it does not point to the next frame
    assert check_conventions(as_is).scores["forward-pixels-yup"] > 1


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_detection_survives_noisier_renders(street_pairs: list[tuple[PlateFrame, PlateFrame]], sigma: float) -> None:
    """Noise added to the encoded beauty (RMS 0.02 to 0.1: 3 to 16 times the render's own) leaves the vectors
    accepted."""
    rng = np.random.default_rng(7)
    noisy = [
        tuple(replace(f, image=(f.image + rng.normal(0, sigma, f.image.shape)).astype(np.float32)) for f in pair)
        for pair in street_pairs
    ]
    check = check_conventions(noisy)
    assert check.best.startswith(("backward-pixels-", "forward-pixels-")) and check.reproduces(check.best)
    assert all(check.scores[check.best] < check.scores[name] for name in CONVENTION_NAMES if "ndc" in name)
