"""StyleCompBlend's node graph, evaluated node by node with numpy, matches stylecomp.comp.blend pixel for pixel.

The interpreter (tests/nuke/gizmo_eval) models each native node the gizmo uses; the expected images
come from the engine's blend ops on the same inputs, brought onto their union data window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylecomp.comp import blend
from stylecomp.io import windows
from stylecomp.io.plates import Window as PlateWindow
from stylecomp.regions.mattes import overlap_weights
from tests.nuke import nkscript
from tests.nuke.gizmo_eval import evaluate
from tests.nuke.gizmo_eval.windows import Window
from tests.nuke.stylize_node import GIZMOS_FOLDER

GIZMO = nkscript.parse((GIZMOS_FOLDER / "StyleCompBlend.gizmo").read_text(encoding="utf-8"))
RGBA = ("rgba.red", "rgba.green", "rgba.blue", "rgba.alpha")
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}

# Clean is full frame; the stylized render's data window is offset and smaller, so the union is larger
# than either and parts of each input are outside its data window (transparent black).
CLEAN_WINDOW = PlateWindow(0, 0, 36, 28)
STYLIZED_WINDOW = PlateWindow(-4, 5, 30, 26)
SAME_WINDOW = CLEAN_WINDOW


def _premultiplied(rng: np.random.Generator, window: PlateWindow) -> np.ndarray:
    """Premultiplied RGBA with HDR values, an opaque block, soft edges and fully transparent pixels."""
    alpha = rng.uniform(0.0, 1.0, (window.height, window.width)).astype(np.float32)
    alpha[:4] = 0.0
    alpha[8:16, 6:20] = 1.0
    colour = rng.uniform(0.0, 6.0, (window.height, window.width, 3)).astype(np.float32)
    colour[10, 10] = (15.0, 12.0, 9.0)  # a lamp
    return np.concatenate([colour * alpha[..., None], alpha[..., None]], axis=2)


@pytest.fixture(scope="module")
def scene() -> dict:
    rng = np.random.default_rng(7)
    depth = rng.uniform(0.2, 150.0, (CLEAN_WINDOW.height, CLEAN_WINDOW.width)).astype(np.float32)
    depth[0, :4] = (np.nan, np.inf, -1.0, 0.0)  # background spellings
    depth[1, :2] = (2e9, 1e9)
    depth[2:6, 2:6] = 10.0  # exactly at near
    ids = rng.integers(0, 7, (CLEAN_WINDOW.height, CLEAN_WINDOW.width)).astype(np.float32)
    ids[12:20, 12:24] = 3.0  # an object wider than one pixel
    matte = rng.uniform(-0.5, 1.5, (CLEAN_WINDOW.height, CLEAN_WINDOW.width)).astype(np.float32)
    matte[20, :3] = (np.nan, np.inf, -np.inf)  # a damaged matte: NaN counts as 0 in the engine
    return {
        "clean": _premultiplied(rng, CLEAN_WINDOW),
        "stylized": _premultiplied(rng, STYLIZED_WINDOW),
        "stylized_same": _premultiplied(rng, SAME_WINDOW),
        "depth": depth,
        "ids": ids,
        "matte": matte,
    }


def _channels(image: np.ndarray, **aovs: np.ndarray) -> dict:
    return {**{name: image[..., i] for i, name in enumerate(RGBA)}, **aovs}


def _window(window: PlateWindow) -> Window:
    return Window(window.x, window.y, window.width, window.height)


NUKE_DEFAULT_ROOT = {"colorManagement": "Nuke", "OCIO_config": "nuke-default", "workingSpaceLUT": "linear"}
"""Project Settings > Color of a script on Nuke's own colour management (its working space is linear Rec.709)."""


def run_gizmo(
    scene: dict, knobs: dict, offset: bool = True, root: dict | None = None, stylized_alpha: bool = True
) -> np.ndarray:
    """The gizmo's RGBA over the union window (the Stylized input without alpha if ``stylized_alpha`` is off)."""
    stylized, window = (scene["stylized"], STYLIZED_WINDOW) if offset else (scene["stylized_same"], SAME_WINDOW)
    stylized_channels = _channels(stylized)
    if not stylized_alpha:
        del stylized_channels["rgba.alpha"]
    inputs = {
        "Clean": (
            _channels(scene["clean"], **{"depth.Z": scene["depth"], "other.id": scene["ids"]}),
            _window(CLEAN_WINDOW),
        ),
        "Stylized": (stylized_channels, _window(window)),
        "Mask": ({"rgba.alpha": scene["matte"]}, _window(CLEAN_WINDOW)),
    }
    out, union = evaluate(GIZMO, inputs, knobs, root)
    return np.stack([out.get(name, np.zeros((union.height, union.width), np.float32)) for name in RGBA], axis=-1)


def aligned(scene: dict, offset: bool = True) -> tuple:
    """Clean, stylized and the AOV planes on their union window, as the engine's ops take them."""
    stylized, window = (scene["stylized"], STYLIZED_WINDOW) if offset else (scene["stylized_same"], SAME_WINDOW)
    clean, stylized, union = windows.align(scene["clean"], CLEAN_WINDOW, stylized, window)
    planes = {name: windows.reframe(scene[name], CLEAN_WINDOW, union) for name in ("depth", "ids", "matte")}
    return clean, stylized, planes


CASES = {
    "mix": ({"amount": 0.35}, lambda c, s, p: blend.mix(c, s, 0.35)),
    "mix full": ({}, lambda c, s, p: blend.mix(c, s, 1.0)),
    "luminance from clean": ({"mode": "luminance / colour"}, lambda c, s, p: blend.luminance_colour(c, s, "clean")),
    "luminance from stylized": (
        {"mode": "luminance / colour", "luminance_from": "stylized", "amount": 0.6},
        lambda c, s, p: blend.mix(c, blend.luminance_colour(c, s, "stylized"), 0.6),
    ),
    "detail transfer": (
        {"mode": "detail transfer", "detail_size": 6.0},
        lambda c, s, p: blend.detail_transfer(c, s, 6.0),
    ),
    "detail transfer size 0": (
        {"mode": "detail transfer", "detail_size": 0.0},
        lambda c, s, p: blend.detail_transfer(c, s, 0.0),
    ),
    "depth near": (
        {"weight": "depth", "depth_near": 10.0, "depth_far": 90.0},
        lambda c, s, p: blend.mix(c, s, blend.depth_weight(p["depth"], 10.0, 90.0, "near")),
    ),
    "depth far": (
        {"weight": "depth", "depth_near": 10.0, "depth_far": 90.0, "depth_direction": "far"},
        lambda c, s, p: blend.mix(c, s, blend.depth_weight(p["depth"], 10.0, 90.0, "far")),
    ),
    "matte": ({"weight": "matte"}, lambda c, s, p: blend.mix(c, s, blend.matte_mask(p["matte"]))),
    "matte inverted": (
        {"weight": "matte", "matte_invert": True, "amount": 0.5},
        lambda c, s, p: blend.mix(c, s, blend.matte_mask(p["matte"], invert=True) * 0.5),
    ),
    "object IDs": (
        {"weight": "object IDs", "object_ids": "3 5"},
        lambda c, s, p: blend.mix(c, s, blend.id_mask(p["ids"], [3, 5])),
    ),
    "object IDs inverted": (
        {"weight": "object IDs", "object_ids": "3", "ids_invert": True},
        lambda c, s, p: blend.mix(c, s, blend.id_mask(p["ids"], [3], invert=True)),
    ),
    "no object IDs": (
        {"weight": "object IDs", "object_ids": ""},
        lambda c, s, p: blend.mix(c, s, blend.id_mask(p["ids"], [])),
    ),
    "detail by depth": (
        {
            "mode": "detail transfer",
            "detail_size": 4.0,
            "weight": "depth",
            "depth_near": 5.0,
            "depth_far": 60.0,
            "amount": 0.7,
        },
        lambda c, s, p: blend.mix(
            c, blend.detail_transfer(c, s, 4.0), blend.depth_weight(p["depth"], 5.0, 60.0, "near") * 0.7
        ),
    ),
    "ID lines": (
        {"lines": True, "line_colour": (0.2, 0.5, 0.9), "line_opacity": 0.75, "amount": 0.5},
        lambda c, s, p: blend.line_overlay(
            blend.mix(c, s, 0.5), object_id=p["ids"], colour=(0.2, 0.5, 0.9), opacity=0.75
        ),
    ),
}


@pytest.mark.parametrize("offset", [False, True], ids=["same window", "different data windows"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gizmo_matches_engine_blend(scene: dict, case: str, offset: bool) -> None:
    knobs, expected = CASES[case]
    clean, stylized, planes = aligned(scene, offset)
    want = expected(clean, stylized, planes)
    got = run_gizmo(scene, knobs, offset)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOLERANCE)


def test_cases_are_not_trivial(scene: dict) -> None:
    """Every case but the empty ID list changes the clean render; weighted ones keep it somewhere too."""
    clean, stylized, planes = aligned(scene)
    for name, (_, expected) in CASES.items():
        result = expected(clean, stylized, planes)
        changed = ~np.isclose(result, clean, atol=1e-4)
        assert changed.any() == (name != "no object IDs"), name
        if name not in (
            "mix full",
            "luminance from clean",
            "detail transfer",
            "detail transfer size 0",
            "no object IDs",
        ):
            assert (~changed).any(), name
    assert (blend.id_mask(planes["ids"], [3, 5]) == 1).sum() > 20
    assert np.isclose(clean[..., 3], 0).any() and np.isclose(clean[..., 3], 1).any()


def test_amount_zero_gives_the_clean_render(scene: dict) -> None:
    clean, _, _ = aligned(scene)
    got = run_gizmo(scene, {"mode": "detail transfer", "detail_size": 3.0, "amount": 0.0})
    np.testing.assert_array_equal(got, clean)


def test_cryptomatte_recipe_matches_the_headless_comp(testdata: Path) -> None:
    """The README's recipe on the Blender shot: a Cryptomatte node's matte (its alpha) into Mask, weight matte;
    its layer's rank-0 ID (CryptoObject00.red) shuffled into other.id for the ID lines. The gizmo must give what
    `stylecomp comp` gives with weight cryptomatte and lines."""
    import json
    import struct

    from stylecomp.io.plates import ImagePart, Plate, read_plate
    from stylecomp.jobspec import parse_job
    from stylecomp.render.headless_comp import blend_frame
    from stylecomp.render.loop import STYLIZED_CHANNELS

    path = testdata / "plates" / "blender_street" / "street.1008.exr"
    plate = read_plate(path)
    clean = plate.channels([f"ViewLayer.Combined.{c}" for c in "RGBA"])
    styled = np.concatenate([clean[..., [1, 2, 0]] * 1.5 + 0.05, clean[..., 3:]], axis=2).astype(np.float32)
    window = plate.data_window

    # What Nuke's Cryptomatte node writes to its Matte Output (alpha): per rank, the coverage where the rank's ID
    # is one of the Matte List's, summed; the IDs are the manifest's hex values as float32 bits.
    manifest = json.loads(plate.parts[0].attributes["cryptomatte/542cafa/manifest"])
    listed = np.float32(
        [
            struct.unpack("<f", bytes.fromhex(manifest[name])[::-1])[0]
            for name in ("car", "bld0", "bld1", "bld2", "bld3")
        ]
    )
    ranks = plate.channels([f"ViewLayer.CryptoObject{level:02d}.{c}" for level in range(3) for c in "rgba"])
    matte = sum(np.where(np.isin(ranks[..., 2 * r], listed), ranks[..., 2 * r + 1], 0.0) for r in range(6))
    inputs = {
        "Clean": (_channels(clean, **{"other.id": ranks[..., 0]}), _window(window)),
        "Stylized": (_channels(styled), _window(window)),
        "Mask": ({"rgba.alpha": matte.astype(np.float32)}, _window(window)),
    }
    knobs = {"weight": "matte", "amount": 0.9, "lines": True, "line_colour": (1.0, 0.0, 0.0), "line_opacity": 0.5}
    out, union = evaluate(GIZMO, inputs, knobs)
    got = np.stack([out[name] for name in RGBA], axis=-1)

    job = parse_job(
        json.dumps(
            {
                "shots": [{"name": "street", "plate": str(path), "output": "out.exr"}],
                "comp": {
                    "weight": "cryptomatte",
                    "mattes": ["car", "bld*"],
                    "amount": 0.9,
                    "lines": True,
                    "line_colour": [1.0, 0.0, 0.0],
                    "line_opacity": 0.5,
                },
            }
        )
    )
    stylized = Plate(
        "stylized",
        [ImagePart.create(styled, list(STYLIZED_CHANNELS), window, plate.display_window, pixel_type="float")],
    )
    want, _, engine_window = blend_frame(plate, stylized, job.shots[0], job.comp)
    assert engine_window == window and (union.width, union.height) == (window.width, window.height)
    np.testing.assert_allclose(got, want, **TOLERANCE)
    assert ((matte > 0.01) & (matte < 0.99)).sum() > 50, "soft Cryptomatte edges reach the blend"
    assert not np.allclose(want, clean, atol=1e-3) and np.isclose(want, clean, atol=1e-6).all(axis=2).any()


# ---------------------------------------------------------------------------------------------
# The script's working space picks the luminance weights, in the gizmo and the engine alike.

WORKING_SPACES = [  # (OCIO_config, workingSpaceLUT, the gizmo's luminance weights knob, the weights that apply)
    ("aces_1.2", "ACES - ACEScg", "working space", "ACEScg"),
    ("cg-config-v1.0.0_aces-v1.3_ocio-v2.1", "ACEScg", "working space", "ACEScg"),
    ("aces_1.2", "scene_linear", "working space", "ACEScg"),  # the role, in an ACES config
    ("nuke-default", "linear", "working space", "Rec.709"),
    ("nuke-default", "scene_linear", "working space", "Rec.709"),
    ("aces_1.2", "ACES - ACES2065-1", "working space", "Rec.709"),  # AP0 has no weights here: pick one
    ("nuke-default", "linear", "ACEScg", "ACEScg"),  # an explicit choice wins
    ("aces_1.2", "ACES - ACEScg", "Rec.709", "Rec.709"),
]


@pytest.mark.parametrize(
    ("config", "space", "knob", "weights"), WORKING_SPACES, ids=[f"{w[0]}-{w[1]}-{w[2]}" for w in WORKING_SPACES]
)
def test_luminance_weights_follow_the_working_space(
    scene: dict, config: str, space: str, knob: str, weights: str
) -> None:
    if knob == "working space":
        assert blend.luminance_weights_for(space, config) == weights  # the engine's rule is the gizmo's
    root = {"colorManagement": "OCIO", "OCIO_config": config, "workingSpaceLUT": space}
    clean, stylized, _ = aligned(scene)
    got = run_gizmo(scene, {"mode": "luminance / colour", "luminance_weights": knob}, root=root)
    np.testing.assert_allclose(got, blend.luminance_colour(clean, stylized, "clean", weights), **TOLERANCE)
    other = "Rec.709" if weights == "ACEScg" else "ACEScg"
    assert not np.allclose(got, blend.luminance_colour(clean, stylized, "clean", other), atol=1e-3)


def test_nuke_default_colour_management_gives_rec709(scene: dict) -> None:
    """A script on Nuke's own colour management (nuke-default, working space linear) gets Rec.709 weights."""
    clean, stylized, _ = aligned(scene)
    got = run_gizmo(scene, {"mode": "luminance / colour", "luminance_from": "stylized"}, root=NUKE_DEFAULT_ROOT)
    np.testing.assert_allclose(got, blend.luminance_colour(clean, stylized, "stylized", "Rec.709"), **TOLERANCE)


# ---------------------------------------------------------------------------------------------
# Keymix as Nuke's (the NDK's Keymix.cpp): mask * mix clamped, NaN selects A, only A's channels change.

KEYMIX_SCRIPT = """version 14.0 v5
Gizmo {
 inputs 3
}
 Input {
  inputs 0
  name M
  number 2
 }
 Input {
  inputs 0
  name A
  number 1
 }
 Input {
  inputs 0
  name B
 }
 Keymix {
  inputs 3
  channels rgba
  mix 0.5
  name K
 }
 Output {
  name Output1
 }
end_group
"""


def test_keymix_model_follows_the_ndk() -> None:
    keymix = nkscript.parse(KEYMIX_SCRIPT)
    window = Window(0, 0, 5, 1)
    mask = np.float32([[0.0, 0.5, 2.0, np.nan, -1.0]])
    a = {"rgba.red": np.full((1, 5), 10.0, np.float32), "rgba.green": np.full((1, 5), 10.0, np.float32)}
    b = {name: np.full((1, 5), 2.0, np.float32) for name in RGBA}
    out, _ = evaluate(keymix, {"A": (a, window), "B": (b, window), "M": ({"rgba.alpha": mask}, window)})
    # mask * mix = 0, 0.25, 1 (2 * 0.5: clamped after the product, not before), NaN (selects A), -0.5 (B)
    np.testing.assert_array_equal(out["rgba.red"], [[2.0, 4.0, 10.0, 10.0, 2.0]])
    np.testing.assert_array_equal(out["rgba.green"], out["rgba.red"])
    for absent in ("rgba.blue", "rgba.alpha"):  # channels A does not have keep B's values
        np.testing.assert_array_equal(out[absent], b[absent])


def test_stylized_without_alpha_keeps_the_clean_alpha(scene: dict) -> None:
    """Keymix changes only the channels A has: a Stylized input with RGB only keeps the clean alpha, which is
    the engine's mix with the clean alpha given to the stylized render."""
    clean, stylized, _ = aligned(scene, offset=False)
    got = run_gizmo(scene, {"amount": 0.6}, offset=False, stylized_alpha=False)
    with_clean_alpha = np.concatenate([stylized[..., :3], clean[..., 3:]], axis=2)
    np.testing.assert_allclose(got, blend.mix(clean, with_clean_alpha, 0.6), **TOLERANCE)
    np.testing.assert_array_equal(got[..., 3], clean[..., 3])


def test_damaged_matte_pixels_keep_the_clean_render(scene: dict) -> None:
    """NaN in the matte would select A (stylized) in Keymix; the gizmo's weight turns it into 0 as the engine does."""
    clean, _, _ = aligned(scene, offset=False)
    got = run_gizmo(scene, {"weight": "matte"}, offset=False)
    np.testing.assert_array_equal(got[20, 0], clean[20, 0])
    assert np.isfinite(got).all()


@pytest.mark.parametrize(
    ("root", "weights"), [(NUKE_DEFAULT_ROOT, "Rec.709"), (None, "ACEScg")], ids=["nuke-default", "aces"]
)
def test_headless_comp_luminance_weights_match_the_gizmo(testdata: Path, root: dict | None, weights: str) -> None:
    """`stylecomp comp` with ``luminance_weights`` set as the script's working space implies gives the gizmo's image."""
    import json

    from stylecomp.io.plates import ImagePart, Plate, read_plate
    from stylecomp.jobspec import parse_job
    from stylecomp.render.headless_comp import blend_frame
    from stylecomp.render.loop import STYLIZED_CHANNELS

    path = testdata / "plates" / "blender_street" / "street.1008.exr"
    plate = read_plate(path)
    clean = plate.channels([f"ViewLayer.Combined.{c}" for c in "RGBA"])
    styled = np.concatenate([clean[..., [2, 0, 1]] * 1.3 + 0.02, clean[..., 3:]], axis=2).astype(np.float32)
    window = plate.data_window
    inputs = {"Clean": (_channels(clean), _window(window)), "Stylized": (_channels(styled), _window(window))}
    out, _ = evaluate(GIZMO, inputs, {"mode": "luminance / colour", "luminance_from": "stylized"}, root)
    got = np.stack([out[name] for name in RGBA], axis=-1)

    job = parse_job(
        json.dumps(
            {
                "shots": [{"name": "street", "plate": str(path), "output": "out.exr"}],
                "comp": {"mode": "luminance_colour", "luminance_from": "stylized", "luminance_weights": weights},
            }
        )
    )
    stylized = Plate(
        "stylized",
        [ImagePart.create(styled, list(STYLIZED_CHANNELS), window, plate.display_window, pixel_type="float")],
    )
    want, _, _ = blend_frame(plate, stylized, job.shots[0], job.comp)
    np.testing.assert_allclose(got, want, **TOLERANCE)


def test_interpreter_refuses_a_temporary_named_t(scene: dict) -> None:
    """In Nuke ``t`` is the frame, so the old DepthWeight (temporary ``t``) is ambiguous; the interpreter says so."""
    old = (
        (GIZMOS_FOLDER / "StyleCompBlend.gizmo")
        .read_text(encoding="utf-8")
        .replace("temp_name0 ramp", "temp_name0 t")
        .replace("ramp", "t")
    )
    inputs = {
        "Clean": (_channels(scene["clean"], **{"depth.Z": scene["depth"]}), _window(CLEAN_WINDOW)),
        "Stylized": (_channels(scene["stylized_same"]), _window(SAME_WINDOW)),
    }
    with pytest.raises(ValueError, match="temporary 't'"):
        evaluate(nkscript.parse(old), inputs, {"weight": "depth"})


# ---------------------------------------------------------------------------------------------
# A blend amount per region, from the regions.<name> channels a regions job writes into the stylized EXR.


@pytest.mark.parametrize("offset", [False, True], ids=["same window", "different data windows"])
def test_amount_per_region_from_the_regions_channels(scene: dict, offset: bool) -> None:
    stylized, window = (scene["stylized"], STYLIZED_WINDOW) if offset else (scene["stylized_same"], SAME_WINDOW)
    rng = np.random.default_rng(11)
    coverages = [rng.uniform(0.0, 1.0, (window.height, window.width)).astype(np.float32) for _ in range(3)]
    for coverage, rows in zip(
        coverages, (slice(0, 6), slice(4, 14), slice(12, 20)), strict=True
    ):  # overlapping, hard edges
        coverage[: rows.start] = 0.0
        coverage[rows.stop :] = 0.0
    coverages[1][6:10] = 1.0
    weights = overlap_weights(np.stack(coverages, axis=2))  # the engine's rule: later regions win
    car, bld, sky = (weights[..., i] for i in range(3))
    inputs = {
        "Clean": (_channels(scene["clean"]), _window(CLEAN_WINDOW)),
        "Stylized": (
            _channels(stylized, **{"regions.car": car, "regions.bld": bld, "regions.sky": sky}),
            _window(window),
        ),
        "Mask": ({"rgba.alpha": scene["matte"]}, _window(CLEAN_WINDOW)),
    }
    knobs = {
        "use_regions": True,
        "weight": "matte",
        "amount": 0.3,  # rows 1, 2 and 6 (any row takes any region)
        "region1_channel": "regions.car",
        "region1_amount": 0.9,
        "region2_channel": "regions.bld",
        "region2_amount": 0.0,
        "region6_channel": "regions.sky",
        "region6_amount": 0.5,
    }
    out, union = evaluate(GIZMO, inputs, knobs)
    got = np.stack([out[name] for name in RGBA], axis=-1)

    clean, aligned_stylized, planes = aligned(scene, offset)
    union_window = PlateWindow(union.x, union.y, union.width, union.height)
    car, bld, sky = (windows.reframe(weight, window, union_window) for weight in (car, bld, sky))
    amount = 0.9 * car + 0.0 * bld + 0.5 * sky + 0.3 * (1 - car - bld - sky)
    want = blend.mix(clean, aligned_stylized, blend.matte_mask(planes["matte"]) * amount)
    np.testing.assert_allclose(got, want, **TOLERANCE)
    # The amounts matter: the region with amount 0 keeps the clean render where it alone covers the pixel.
    alone = (bld == 1) & (blend.matte_mask(planes["matte"]) > 0)
    assert alone.sum() > 10
    np.testing.assert_allclose(got[alone], clean[alone], **TOLERANCE)
    plain = run_gizmo(scene, {"weight": "matte", "amount": 0.3}, offset)
    assert not np.allclose(got, plain, atol=1e-3)


def test_regions_on_without_rows_is_the_plain_amount(scene: dict) -> None:
    """Amount per region with no channel picked (or a Stylized input without regions) blends by amount alone."""
    np.testing.assert_allclose(
        run_gizmo(
            scene, {"use_regions": True, "amount": 0.4, "weight": "depth", "depth_near": 10.0, "depth_far": 90.0}
        ),
        run_gizmo(scene, {"amount": 0.4, "weight": "depth", "depth_near": 10.0, "depth_far": 90.0}),
        **TOLERANCE,
    )


def test_stylize_gizmo_passes_the_regions_layer_on(scene: dict) -> None:
    """StyleCompStylize's output: the stylized RGBA (mixed with the plate), the plate's own layers, and the
    stylized EXR's regions layer, so StyleCompBlend downstream finds regions.<name>. The internal Read's image is
    the EXR's channels as Nuke names them (stylized.red ..., regions.car)."""
    stylize = nkscript.parse((GIZMOS_FOLDER / "StyleCompStylize.gizmo").read_text(encoding="utf-8"))
    clean, styled = scene["clean"], scene["stylized_same"]
    car = np.clip(scene["matte"], 0.0, 1.0)
    read = {
        **{f"stylized.{c}": styled[..., i] for i, c in enumerate(("red", "green", "blue", "alpha"))},
        "regions.car": car,
        "regions.bld": 1 - car,
    }
    inputs = {
        "Plate": (_channels(clean, **{"depth.Z": scene["depth"]}), _window(CLEAN_WINDOW)),
        "ReadStylized": (read, _window(SAME_WINDOW)),
    }
    out, _ = evaluate(stylize, inputs, {"mix_amount": 0.25})
    got = np.stack([out[name] for name in RGBA], axis=-1)
    np.testing.assert_allclose(got, clean * 0.75 + styled * 0.25, **TOLERANCE)
    np.testing.assert_array_equal(out["regions.car"], car)
    np.testing.assert_array_equal(out["regions.bld"], 1 - car)
    np.testing.assert_array_equal(out["depth.Z"], scene["depth"])  # the plate's layers stay
