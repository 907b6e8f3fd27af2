"""Consistency mechanisms: known-answer checks of the motion carry-over, and sequential renders of the demo."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from stylecomp.demo.scene import DEMO_SCENE, SKY_AMBIENT, SUN_COLOUR, SUN_DIRECTION, Lighting, write_demo
from stylecomp.diffusion.consistency import RENDER_STATE, FlowAttention, FrameFeatures, FrameMotion, TokenFlow
from stylecomp.diffusion.geometry import ModelGeometry, model_geometry
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.diffusion.resolution import ResolutionPlan, ResolutionSettings, plan
from stylecomp.diffusion.testing import make_test_model
from stylecomp.io.plates import Window, read_plate
from stylecomp.jobspec import parse_job
from stylecomp.render.loop import render_job
from stylecomp.stage import FrameInputs
from stylecomp.temporal.flicker import FlickerReport, measure_flicker
from stylecomp.temporal.motion import (
    PLATE_CHANGE_RADIUS,
    VectorConvention,
    line_distance,
    plate_unchanged,
    visible_before,
    warp,
)
from tests.tiny_jobs import invoke, stylized, write_controlnet_job

FRAMES = (1001, 1002, 1003, 1004)
pytestmark = [pytest.mark.usefixtures("private_cache"), pytest.mark.plates(len(FRAMES), width=128, height=72)]


def shifted_inputs(frame: int, shift: float, size: tuple[int, int] = (32, 64)) -> FrameInputs:
    """A frame whose every pixel came from ``shift`` pixels to the left in the previous frame (u = -shift)."""
    height, width = size
    vectors = np.zeros((height, width, 2), np.float32)
    vectors[..., 0] = -shift
    depth = np.full((height, width, 1), 10.0, np.float32)
    ids = np.ones((height, width, 1), np.float32)
    return FrameInputs(frame, Window(0, 0, width, height), {"Motion": vectors, "Depth": depth, "ObjectID": ids})


def test_carry_moves_the_previous_image_along_the_vectors() -> None:
    previous, current = shifted_inputs(1, 0.0), shifted_inputs(2, 3.0)
    motion = FrameMotion.between(previous, current, VectorConvention())
    before = np.random.default_rng(0).random((32, 64, 3)).astype(np.float32)
    now = np.zeros_like(before)
    carried = motion.carry(before, now, 1.0)
    np.testing.assert_array_equal(carried[:, 3:], before[:, :-3])
    assert not motion.visible[:, :3].any() and motion.visible[:, 3:].all(), "sources left of the frame are fresh"
    np.testing.assert_array_equal(carried[:, :3], 0.0)
    np.testing.assert_allclose(motion.carry(before, now, 0.25)[:, 3:], 0.25 * before[:, :-3], rtol=1e-6)


def test_disocclusion_by_depth_and_id() -> None:
    xs, ys = np.meshgrid(np.arange(4, dtype=np.float32), np.arange(2, dtype=np.float32))
    on = np.ones((2, 4), bool)
    depth, ids = np.full((2, 4), 10.0), np.ones((2, 4))
    before_depth, before_ids = depth.copy(), ids.copy()
    before_depth[0, 1] = 5.0  # something nearer covered this pixel: it is revealed now
    before_ids[1, 2] = 7.0  # another object was here
    valid = visible_before(xs, ys, on, depth, before_depth, ids, before_ids)
    assert valid.sum() == 6 and not valid[0, 1] and not valid[1, 2]


def test_the_plate_changing_in_place_stops_the_carry_there() -> None:
    # The plate moves 3 pixels; then a light brightens its right half, and render noise is on every pixel.
    previous, current = shifted_inputs(1, 0.0), shifted_inputs(2, 3.0)
    rng = np.random.default_rng(3)
    before = rng.random((32, 64, 3)).astype(np.float32)
    moved = np.zeros_like(before)
    moved[:, 3:] = before[:, :-3]
    now = moved + rng.uniform(-0.04, 0.04, moved.shape).astype(np.float32)
    now[:, 32:] += 0.2
    motion = FrameMotion.between(previous, current, VectorConvention()).where_plate_unchanged(before, now, 0.1)
    edge = PLATE_CHANGE_RADIUS
    assert np.all(motion.carried[:, 3 : 32 - edge] == 1.0), "noise alone averages out: the carry stays"
    assert np.all(motion.carried[:, 32 + edge :] == 0.0), "the light changed here: nothing carries"
    assert np.all(motion.carried[:, :3] == 0.0), "not visible before"
    carried = motion.carry(before, now, 0.5)
    np.testing.assert_array_equal(carried[:, 32 + edge :], now[:, 32 + edge :])
    np.testing.assert_allclose(carried[:, 3 : 32 - edge], 0.5 * (now + moved)[:, 3 : 32 - edge], rtol=1e-6)


def disc_inputs(frame: int, centre_x: float, motion_x: float) -> FrameInputs:
    """A disc (ID 2, depth 5) of radius 8 at ``centre_x`` that moved ``motion_x`` pixels right since the
    previous frame, over a still background (ID 1, depth 10)."""
    rows, cols = np.mgrid[0:32, 0:64] + 0.5
    disc = (cols - centre_x) ** 2 + (rows - 16) ** 2 < 8**2
    vectors = np.zeros((32, 64, 2), np.float32)
    vectors[disc, 0] = -motion_x
    depth = np.where(disc, 5.0, 10.0).astype(np.float32)[..., None]
    ids = np.where(disc, 2.0, 1.0).astype(np.float32)[..., None]
    return FrameInputs(frame, Window(0, 0, 64, 32), {"Motion": vectors, "Depth": depth, "ObjectID": ids})


def test_paint_beside_an_outline_stays_with_the_outline() -> None:
    # The disc moves 6 pixels right: the background it left was painted beside its outline, and is not now.
    previous, current = disc_inputs(1, 20.0, 0.0), disc_inputs(2, 26.0, 6.0)
    motion = FrameMotion.between(previous, current, VectorConvention()).where_outlines_stay(previous, current, 1.0)
    assert motion.visible[16, 11] and motion.carried[16, 11] == 0.0, "beside the old outline, left behind"
    assert motion.visible[16, 35] and motion.carried[16, 35] == 0.0, "beside the new outline, newly reached"
    assert np.all(motion.carried[16, 22:31] == 1.0), "the disc's own pixels move with its outline"
    assert np.all(motion.carried[:, 45:] == 1.0) and np.all(motion.carried[:, :5] == 1.0), "far from any outline"
    # In model pixels of 2 plate pixels, the paint reaches twice as far: more of the background stops.
    coarse = FrameMotion.between(previous, current, VectorConvention()).where_outlines_stay(previous, current, 2.0)
    assert (coarse.carried < 1.0).sum() > (motion.carried < 1.0).sum()
    assert np.all(coarse.carried[16, 22:31] == 1.0)


def test_line_distance_counts_steps_to_the_nearest_line() -> None:
    lines = np.zeros((5, 9), bool)
    lines[2, 4] = True
    np.testing.assert_array_equal(line_distance(lines, 3)[2], [3, 3, 2, 1, 0, 1, 2, 3, 3])
    np.testing.assert_array_equal(line_distance(lines, 3)[0, 2:7], [2, 2, 2, 2, 2])


def test_plate_changes_between_half_the_tolerance_and_the_tolerance_carry_in_part() -> None:
    visible = np.ones((8, 8), bool)
    visible[:, :2] = False  # changes where the surface was not visible do not count
    moved = np.zeros((8, 8, 3), np.float32)
    current = np.zeros_like(moved)
    current[..., 1] = 0.075  # the worst channel decides
    current[:, :2] = 1.0
    np.testing.assert_allclose(plate_unchanged(moved, current, visible, 0.1)[:, 4:], 0.5, rtol=1e-5)
    np.testing.assert_array_equal(plate_unchanged(moved, current, visible, 2.0), 1.0)


def test_warped_noise_moves_by_whole_latent_cells_and_stays_gaussian() -> None:
    layout = plan(64, 32, "sd15", ResolutionSettings(mode="native"))
    previous, current = shifted_inputs(1, 0.0), shifted_inputs(2, 8.0)  # 8 pixels: one latent cell
    motion = FrameMotion.between(previous, current, VectorConvention())
    shape = (1, 4, layout.working_height // 8, layout.working_width // 8)
    before, fresh = torch.randn(shape, generator=torch.Generator().manual_seed(1)), torch.zeros(shape)
    noise = motion.carry_noise(before, fresh, layout)
    pad = (layout.working_height - 32) // 2 // 8  # native pads rows evenly; the columns need none
    rows = slice(pad, pad + 4)
    torch.testing.assert_close(noise[..., rows, 1:], before[..., rows, :-1])
    assert torch.all(noise[..., rows, 0] == 0), "the column that came from off screen takes fresh noise"
    values = noise[..., rows, 1:]
    assert set(values.flatten().tolist()) <= set(before.flatten().tolist()), "values are moved, never blended"


def test_latents_move_by_fractions_of_a_cell() -> None:
    layout = plan(64, 32, "sd15", ResolutionSettings(mode="native"))
    previous, current = shifted_inputs(1, 0.0), shifted_inputs(2, 4.0)  # 4 pixels: half a latent cell
    motion = FrameMotion.between(previous, current, VectorConvention())
    shape = (2, 4, layout.working_height // 8, layout.working_width // 8)
    before = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    now = torch.zeros(shape)
    pad = (layout.working_height - 32) // 2 // 8
    rows = slice(pad, pad + 4)
    fused = motion.carry_latents(before, now, layout, 0.5)
    halfway = (before[..., rows, :-1] + before[..., rows, 1:]) / 2
    torch.testing.assert_close(fused[..., rows, 1:], 0.5 * halfway)
    torch.testing.assert_close(fused[..., :pad, :], now[..., :pad, :])  # padding rows are not on the plate


def test_latents_do_not_carry_where_the_plate_changed_in_place() -> None:
    layout = plan(64, 32, "sd15", ResolutionSettings(mode="native"))
    previous, current = shifted_inputs(1, 0.0), shifted_inputs(2, 0.0)
    before = np.zeros((32, 64, 3), np.float32)
    now = before.copy()
    now[:, 32:] = 0.5  # a lamp lit the right half
    motion = FrameMotion.between(previous, current, VectorConvention()).where_plate_unchanged(before, now, 0.1)
    shape = (1, 4, layout.working_height // 8, layout.working_width // 8)
    latents_before, latents_now = torch.ones(shape), torch.zeros(shape)
    pad = (layout.working_height - 32) // 2 // 8
    fused = motion.carry_latents(latents_before, latents_now, layout, 0.5)[..., pad : pad + 4, :]
    torch.testing.assert_close(fused[..., :3], torch.full_like(fused[..., :3], 0.5))
    # Cell 3 (pixels 24-31): 30 and 31 see the change within the 5x5 average, so it carries 6/8 of the way.
    torch.testing.assert_close(fused[..., 3], torch.full_like(fused[..., 3], 0.5 * 6 / 8))
    torch.testing.assert_close(fused[..., 4:], torch.zeros_like(fused[..., 4:]))


def test_vector_conventions() -> None:
    vectors = np.zeros((4, 4, 2), np.float32)
    vectors[..., 1] = 1.0  # one pixel (or 1/4 of the height in NDC) of v
    _, up = VectorConvention("pixels", "up").source_positions(vectors)
    _, down = VectorConvention("pixels", "down").source_positions(vectors)
    _, ndc = VectorConvention("ndc", "up").source_positions(vectors * 0.25)
    rows, cols = np.mgrid[0:4, 0:4]
    np.testing.assert_array_equal(up, rows - 1)
    np.testing.assert_array_equal(down, rows + 1)
    np.testing.assert_array_equal(ndc, rows - 1)
    moved, on_screen = warp(np.arange(16, dtype=np.float32).reshape(4, 4, 1), cols.astype(np.float32), up)
    assert not on_screen[0].any() and on_screen[1:].all()
    np.testing.assert_array_equal(moved[1:, :, 0], np.arange(12).reshape(3, 4))


def consistency_job(folder: Path, plates: Path, model: Path, mechanisms: list[str], **settings: object) -> Path:
    job = write_controlnet_job(
        folder, plates, model, consistency={"mechanisms": mechanisms, "keyframe_interval": 2, **settings}
    )
    data = json.loads(job.read_text())
    data["model"]["controlnets"] = []
    data["shots"][0]["frames"] = {"first": FRAMES[0], "last": FRAMES[-1]}
    job.write_text(json.dumps(data))
    return job


@pytest.mark.parametrize(
    "mechanisms",
    [
        ["warped_noise"],
        ["pixel_fusion"],
        ["keyframes"],
        ["latent_fusion"],
        ["cross_frame"],
        ["flow_attention"],
        ["locked_seed", "warped_noise", "pixel_fusion"],
    ],
)
def test_sequential_mechanisms_render_in_order_and_resume_exactly(
    tmp_path: Path, plates: Path, model: Path, mechanisms: list[str]
) -> None:
    job = consistency_job(tmp_path, plates, model, mechanisms)
    status, out, err = invoke("render", str(job), "--frames", "1003", "--progress", "json")
    assert status == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["frames"] == [1001, 1003] and "sequential" in events[0]["note"]
    assert [e["frame"] for e in events if e["event"] == "frame"] == [1001, 1002, 1003]
    status, _, err = invoke("render", str(job), "--no-cache")
    assert status == 0, err
    reference = {f: stylized(tmp_path / f"out/demo.{f}.exr") for f in FRAMES}
    header = read_plate(tmp_path / "out/demo.1002.exr").parts[0].attributes
    assert json.loads(header["stylecomp/parameters"])["consistency"]["mechanisms"] == sorted(mechanisms)

    # A killed run: the last two frames are gone; the rerun continues the chain from 1001-1002 as they are
    # (latent fusion and cross-frame and flow attention render those again in memory: their state exists only so).
    for frame in (1003, 1004):
        (tmp_path / f"out/demo.{frame}.exr").unlink()
    status, out, err = invoke("render", str(job), "--no-cache")
    again = "rendered 4, from cache 0" if RENDER_STATE & set(mechanisms) else "rendered 2, from cache 2"
    assert status == 0 and again in out, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"demo.{f}.exr" for f in FRAMES]
    for frame in FRAMES:
        np.testing.assert_array_equal(stylized(tmp_path / f"out/demo.{frame}.exr"), reference[frame])


def test_mechanisms_change_the_frames_after_the_first(tmp_path: Path, plates: Path, model: Path) -> None:
    outputs = {}
    for mechanisms in (
        ["locked_seed"],
        ["warped_noise"],
        ["pixel_fusion"],
        ["latent_fusion"],
        ["cross_frame"],
        ["flow_attention"],
        ["cross_frame", "flow_attention"],
    ):
        name = "+".join(mechanisms)
        assert invoke("render", str(consistency_job(tmp_path / name, plates, model, mechanisms)))[0] == 0
        outputs[name] = {f: stylized(tmp_path / name / f"out/demo.{f}.exr") for f in FRAMES}
    # These start like the baseline: their first frame has nothing to carry over.
    for name in ("pixel_fusion", "latent_fusion", "cross_frame", "flow_attention", "cross_frame+flow_attention"):
        np.testing.assert_array_equal(outputs[name][1001], outputs["locked_seed"][1001])
    for name in ("warped_noise", "pixel_fusion", "latent_fusion", "cross_frame", "flow_attention"):
        assert np.abs(outputs[name][1003] - outputs["locked_seed"][1003]).max() > 1e-3
    assert np.abs(outputs["cross_frame+flow_attention"][1003] - outputs["cross_frame"][1003]).max() > 1e-3


def test_impossible_mechanisms_are_refused(tmp_path: Path, plates: Path, model: Path) -> None:
    for mechanism in ("cross_frame", "flow_attention"):
        flux = consistency_job(tmp_path / mechanism, plates, model, [mechanism])
        data = json.loads(flux.read_text())
        data["model"]["family"] = "flux"
        flux.write_text(json.dumps(data))
        status, _, err = invoke("render", str(flux))
        assert status == 2 and f"{mechanism} attention works on UNet models" in err
    tiled = consistency_job(tmp_path / "b", plates, model, ["warped_noise"])
    data = json.loads(tiled.read_text())
    data["resolution"] = {"mode": "tiles", "working_size": 64, "tile_overlap": 16}
    tiled.write_text(json.dumps(data))
    status, _, err = invoke("render", str(tiled))
    assert status == 2 and "not tiles" in err


def test_cross_frame_attention_sees_the_anchor_and_previous_frame() -> None:
    features = FrameFeatures()
    first = [torch.full((2, 4, 8), float(step)) for step in range(2)]
    assert [features.exchange("up.attn1", h) for h in first] == [[], []]
    features.finish_frame(is_anchor=True)
    second = [torch.full((2, 4, 8), 10.0 + step) for step in range(2)]
    seen = [features.exchange("up.attn1", h) for h in second]
    assert [len(found) for found in seen] == [1, 1], "the anchor is the previous frame: attended once"
    torch.testing.assert_close(seen[1][0], first[1])
    features.finish_frame(is_anchor=False)
    third = features.exchange("up.attn1", torch.zeros(2, 4, 8))
    torch.testing.assert_close(third[0], first[0])  # anchor, step 0
    torch.testing.assert_close(third[1], second[0])  # previous frame, step 0


# --- what each mechanism does to R: the demo shot through a VAE that keeps the image --------------

FLICKER_FRAMES, FLICKER_SIZE = 8, (256, 144)
FLICKER_MODES = {  # mode: its mechanisms; without locked_seed, a seed per frame
    "none": [],
    "keyframes on per-frame seeds": ["keyframes"],
    **{
        mode: sorted({"locked_seed", *mode.split("+")})
        for mode in (
            "locked_seed",
            "warped_noise",
            "latent_fusion",
            "latent_fusion+pixel_fusion",
            "keyframes",
            "latent_fusion+keyframes",
        )
    },
    "latent_fusion on every step": ["latent_fusion", "locked_seed"],
}
FLICKER_SETTINGS = {"latent_fusion on every step": {"latent_fusion_steps": 1.0}}  # other modes: the defaults


@pytest.fixture(scope="module")
def passthrough(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_model(tmp_path_factory.mktemp("passthrough") / "sd15", "sd15", vae="passthrough")


def test_the_passthrough_vae_keeps_the_image(passthrough: Path) -> None:
    vae = AutoencoderKL.from_pretrained(passthrough / "vae")
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 96), indexing="ij")
    image = torch.stack([0.9 * cols, 0.5 * rows - 0.2, 0.4 * (rows + cols)])[None]  # [-1, 1], as the pipeline's
    with torch.no_grad():
        latents = vae.encode(image).latent_dist.sample() * vae.config.scaling_factor
        decoded = vae.decode(latents / vae.config.scaling_factor).sample
    box = torch.nn.functional.avg_pool2d(image, 8)  # (1, 3, 8, 12)
    contrast = float((latents[:, :3] * box).sum() / (box * box).sum())
    assert contrast > 4 and (latents[:, :3] - contrast * box).abs().max() < 1e-4 * contrast
    # A gradient comes back as it was, but for the few border pixels that the zero padding pulls towards grey.
    assert (decoded - image)[..., 8:-8, 8:-8].abs().max() < 1e-4
    assert (decoded - image).abs().max() > 0.05


@pytest.fixture(scope="module")
def flicker(tmp_path_factory: pytest.TempPathFactory, passthrough: Path) -> dict[str, FlickerReport]:
    """Each mode's flicker report on the demo shot's first 8 frames, rendered as the benchmark does (20 steps at
    strength 0.5, keyframes every 4th frame, fusion 0.5; no ControlNet) with the tiny SD 1.5 whose VAE keeps
    the image: its random UNet paints the noise it cannot remove over a recognisable plate, and R measures
    how a mechanism carries that paint along the vectors. Most modes are ``locked_seed`` plus their mechanisms,
    so each compares with the mode without them; ``none`` and keyframes alone have a seed per frame."""
    root = tmp_path_factory.mktemp("flicker")
    plates = root / "plates"
    write_demo(plates, FLICKER_FRAMES, *FLICKER_SIZE, progress=None)
    pool = PipelinePool("cpu")
    reports = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STYLECOMP_CACHE_DIR", str(root / "cache"))  # the model's file hashes
        for mode, mechanisms in FLICKER_MODES.items():
            job = {
                "shots": [
                    {
                        "name": "demo",
                        "plate": str(plates / "demo.####.exr"),
                        "output": str(root / mode / "demo.####.exr"),
                    }
                ],
                "model": {"family": "sd15", "path": str(passthrough)},
                "prompt": "ink and watercolour",
                "steps": 20,
                "strength": 0.5,
                "seed": {"policy": "per_frame", "value": 1234},
                "consistency": {
                    "mechanisms": mechanisms,
                    "keyframe_interval": 4,
                    "fusion_strength": 0.5,
                    **FLICKER_SETTINGS.get(mode, {}),
                },
            }
            render_job(parse_job(json.dumps(job)), pool=pool)  # no render cache: every frame rendered
            reports[mode] = measure_flicker(root / mode / "demo.####.exr", plates / "demo.####.exr")
    return reports


def test_a_locked_seed_flickers_less_than_a_seed_per_frame(flicker: dict[str, FlickerReport]) -> None:
    assert flicker["locked_seed"].R < 0.5 * flicker["none"].R


def test_warped_noise_flickers_less_than_a_locked_seed(flicker: dict[str, FlickerReport]) -> None:
    # Noise moves by whole latent cells: here only where the surface moves 4 pixels a frame or more (the ball).
    assert flicker["warped_noise"].R < 0.97 * flicker["locked_seed"].R


def test_latent_fusion_flickers_less_than_a_locked_seed(flicker: dict[str, FlickerReport]) -> None:
    fused, locked = flicker["latent_fusion"], flicker["locked_seed"]
    assert fused.R < 0.6 * locked.R and fused.D > 0.8 * locked.D


def test_latent_fusion_on_every_step_flickers_less_than_on_the_first_half(flicker: dict[str, FlickerReport]) -> None:
    # latent_fusion_steps 1 blends the last step too, so what the late steps paint is carried along the vectors:
    # measured R 9.2 against 11.1 (83%), D within 0.3%.
    every, half = flicker["latent_fusion on every step"], flicker["latent_fusion"]
    assert every.R < 0.9 * half.R and every.D > 0.8 * half.D


def test_fusion_follows_light_that_changes_in_place(tmp_path: Path, passthrough: Path) -> None:
    """The sun dims from frame 1003 on. Fusion carries the previous frame along the vectors; where the plate
    itself changed, the plate-change check stops it, so frame 1003 is as dark as it is stylized alone. With the
    check turned off it keeps part of frame 1002's light."""
    plates, dimmed = tmp_path / "plates", tmp_path / "dimmed"
    write_demo(plates, 4, 128, 72, progress=None)
    lighting = Lighting(SUN_DIRECTION, 0.2 * SUN_COLOUR, SKY_AMBIENT)
    write_demo(dimmed, 4, 128, 72, progress=None, scene=dataclasses.replace(DEMO_SCENE, lighting=lighting))
    for frame in (1003, 1004):
        shutil.copy(dimmed / f"demo.{frame}.exr", plates / f"demo.{frame}.exr")
    fused = ["latent_fusion", "locked_seed", "pixel_fusion"]
    runs = {"alone": (["locked_seed"], 0.1), "checked": (fused, 0.1), "unchecked": (fused, 2.0)}
    brightness = {}
    for name, (mechanisms, tolerance) in runs.items():
        output = str(tmp_path / name / "demo.####.exr")
        job = {
            "shots": [{"name": "demo", "plate": str(plates / "demo.####.exr"), "output": output}],
            "model": {"family": "sd15", "path": str(passthrough)},
            "prompt": "ink and watercolour",
            "steps": 20,
            "strength": 0.5,
            "seed": {"value": 1234},
            "consistency": {"mechanisms": mechanisms, "latent_fusion_steps": 1.0, "plate_change_tolerance": tolerance},
        }
        render_job(parse_job(json.dumps(job)), pool=PipelinePool("cpu"))
        brightness[name] = float(stylized(tmp_path / name / "demo.1003.exr")[..., :3].mean())
    lag = brightness["unchecked"] - brightness["alone"]
    assert lag > 0.05, brightness  # measured: alone 0.361, checked 0.363, unchecked 0.536
    assert abs(brightness["checked"] - brightness["alone"]) < 0.1 * lag, brightness


def test_pixel_fusion_flickers_less_once_the_noise_follows_the_surface(flicker: dict[str, FlickerReport]) -> None:
    # On a locked seed alone it flickers more: the UNet leaves the sampler's noise in, fixed to the screen,
    # and pixel fusion feeds the previous frame's copy of it back, moved (see the README).
    assert flicker["latent_fusion+pixel_fusion"].R < 0.98 * flicker["latent_fusion"].R


def test_keyframes_flicker_less_than_stylizing_every_frame_afresh(flicker: dict[str, FlickerReport]) -> None:
    # The frames between keyframes carry the previous one along the vectors and heal lightly; each keyframe is
    # a fresh stylization, so the pair that ends on one jumps as much as any pair of the seed-per-frame shot.
    keyed, fresh = flicker["keyframes on per-frame seeds"], flicker["none"]
    assert keyed.R < 0.5 * fresh.R
    first = keyed.pairs[0].frame - 1
    between = [(a.mse, b.mse) for a, b in zip(keyed.pairs, fresh.pairs, strict=True) if (a.frame - first) % 4]
    keyframe = [(a.mse, b.mse) for a, b in zip(keyed.pairs, fresh.pairs, strict=True) if not (a.frame - first) % 4]
    assert len(between) == 6 and all(a < 0.5 * b for a, b in between)
    assert len(keyframe) == 1 and all(a > 0.5 * b for a, b in keyframe)


def test_latent_fusion_steadies_every_frame_of_a_keyframed_shot(flicker: dict[str, FlickerReport]) -> None:
    # The frames between keyframes heal at half the strength, so fewer steps: fusion pairs steps that end at
    # the same timestep. Pairing them by number blended noisier latents into the healing ones.
    fused, keyframed = flicker["latent_fusion+keyframes"].pairs, flicker["keyframes"].pairs
    assert [p.frame for p in fused] == [p.frame for p in keyframed]
    assert all(a.mse < b.mse for a, b in zip(fused, keyframed, strict=True))


def test_the_best_combination_meets_the_goal(flicker: dict[str, FlickerReport]) -> None:
    """Issue 4: R at least 60% below locked_seed's while D stays at least 80% of locked_seed's."""
    best, locked = flicker["latent_fusion+pixel_fusion"], flicker["locked_seed"]
    assert best.R <= 0.4 * locked.R and best.D >= 0.8 * locked.D


# --- flow_attention: the previous frame's tokens along the vectors ----------------------------------


def pixel_plan(width: int = 64, height: int = 32) -> ResolutionPlan:
    """A native plan for a pixel-space model (f=1) whose UNet downsamples twice: multiples of 4 pixels."""
    return plan(
        width,
        height,
        ModelGeometry("sd15", vae_scale=1, downsamplings=2, sample_size=64),
        ResolutionSettings(mode="native"),
    )


def test_token_flow_moves_tokens_by_the_vectors_at_each_level_and_masks_disocclusions() -> None:
    layout = pixel_plan()
    assert (layout.working_width, layout.working_height, layout.geometry.multiple) == (64, 32, 4)
    previous, current = shifted_inputs(1, 0.0), shifted_inputs(2, 8.0)
    previous.images["Depth"][10:20, 40:50] = 5.0  # something nearer hid this surface: revealed now at 48..57
    flow = TokenFlow(FrameMotion.between(previous, current, VectorConvention()), layout)
    for rows, cols, cell in ((32, 64, 1), (16, 32, 2), (8, 16, 4)):  # levels 0, 1, 2 of the 32x64 latents
        tokens = torch.randn(2, rows * cols, 3, generator=torch.Generator().manual_seed(cell))
        warped, visible = flow.warp(tokens)
        grid, before = warped.reshape(2, rows, cols, 3), tokens.reshape(2, rows, cols, 3)
        shift = 8 // cell
        # grid_sample's normalised coordinates round to a few ulps off the cell centres
        torch.testing.assert_close(grid[:, :, shift:], before[:, :, :-shift], atol=1e-4, rtol=0)
        seen = visible.reshape(rows, cols)
        assert not seen[:, :shift].any(), "sources left of the frame are masked out"
        revealed = seen[10 // cell : 20 // cell, 48 // cell : 58 // cell]
        assert not revealed.any() and seen[:, shift:].sum() == rows * (cols - shift) - revealed.numel()
    with pytest.raises(ValueError, match="no level"):
        flow.warp(torch.zeros(1, 100, 3))


def test_flow_attention_lets_each_token_see_only_its_own_warped_token() -> None:
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4).eval()
    previous, current = shifted_inputs(1, 0.0), shifted_inputs(2, 8.0)
    features = FrameFeatures()
    processor = FlowAttention("up.attn1", features, anchor=False)
    first, second = torch.randn(2, 1, 64 * 32, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        alone = AttnProcessor2_0()(attn, first)
        torch.testing.assert_close(processor(attn, first), alone)  # the first frame: nothing to follow
        features.finish_frame(is_anchor=True)
        features.flow = TokenFlow(FrameMotion.between(previous, current, VectorConvention()), pixel_plan())
        out = processor(attn, second)
        warped, visible = features.flow.warp(first)
        for token in (5, 64 * 7 + 30):  # off-screen source (masked); seen before (one more key)
            keys = torch.cat([second[:, :], warped[:, token : token + 1]], dim=1) if visible[token] else second
            expected = AttnProcessor2_0()(attn, second[:, token : token + 1], encoder_hidden_states=keys)
            torch.testing.assert_close(out[:, token], expected[:, 0])
    assert not visible[5] and visible[64 * 7 + 30]


# --- a pixel-space model (f=1): latent scale, channels and size multiple from the model ----------------


@pytest.fixture(scope="module")
def pixel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_model(tmp_path_factory.mktemp("pixel") / "sd15", "sd15", controlnet=True, vae="pixel")


def test_geometry_comes_from_the_model_and_f8_keeps_the_family_multiple(pixel: Path, model: Path) -> None:
    geometry = model_geometry(pixel, "sd15")
    assert (geometry.vae_scale, geometry.latent_channels, geometry.downsamplings) == (1, 4, 1)
    assert (geometry.multiple, geometry.working_size) == (2, 32), "f x 2^downsamplings; the UNet's sample size"
    tiny = model_geometry(model, "sd15")  # f=8 with one UNet downsampling: still planned as SD 1.5
    assert (tiny.vae_scale, tiny.multiple, tiny.working_size) == (8, 64, 512)
    assert model_geometry(model / "missing.safetensors", "sd15") == ModelGeometry("sd15", sample_size=64)
    four = ModelGeometry("sd15", vae_scale=1, downsamplings=2, sample_size=128)
    layout = plan(130, 66, four, ResolutionSettings())
    assert (layout.mode, layout.working_width, layout.working_height) == ("native", 132, 68)
    assert "sd15 at f=1 (multiple of 4)" in layout.describe()


def test_a_pixel_space_model_renders_every_mechanism_with_a_lineart_controlnet(tmp_path: Path, pixel: Path) -> None:
    plates = tmp_path / "plates"
    write_demo(plates, frames=3, width=36, height=24, progress=None)
    mechanisms = [
        "locked_seed",
        "warped_noise",
        "pixel_fusion",
        "keyframes",
        "latent_fusion",
        "cross_frame",
        "flow_attention",
    ]
    job = write_controlnet_job(tmp_path, plates, pixel, consistency={"mechanisms": mechanisms, "keyframe_interval": 2})
    data = json.loads(job.read_text())
    data["model"]["controlnets"] = [{"path": str(pixel / "controlnet"), "source": "lineart"}]
    data["shots"][0]["frames"] = {"first": 1001, "last": 1003}
    job.write_text(json.dumps(data))
    status, out, err = invoke("render", str(job), "--no-cache")
    assert status == 0 and "rendered 3" in out, err
    for frame in (1001, 1002, 1003):
        image = read_plate(tmp_path / f"out/demo.{frame}.exr")
        assert stylized(tmp_path / f"out/demo.{frame}.exr").shape == (24, 36, 4)
        assert "sd15 at f=1 (multiple of 2)" in image.parts[0].attributes["stylecomp/resolution"]
    first, second = (stylized(tmp_path / f"out/demo.{frame}.exr") for frame in (1001, 1002))
    assert np.isfinite(second).all() and np.abs(second - first).max() > 0
