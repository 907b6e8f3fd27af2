"""Per-object regions rendered as users run them: the CLI on real plates (Blender's Cycles street shot with
Cryptomatte, the demo plates' ID pass), real EXRs read back, the tiny random SD 1.5 for the plumbing and the
trained built-in model for the looks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.diffusion.testing import make_test_ip_adapter, make_test_lora
from stylecomp.io import cryptomatte
from stylecomp.io.plates import ImagePart, read_plate, write_plate
from stylecomp.jobspec import MAX_REGIONS, Region
from stylecomp.stylemodel import SHIPPED_MODEL
from stylecomp.stylemodel.architecture import save_random_model
from stylecomp.stylemodel.evaluation import EVALUATION_PROMPTS, RECOMMENDED, display_output, held_out_shot, stylize
from tests.tiny_jobs import FIRST, invoke, job_document, stylized, write_job, write_plates

pytestmark = pytest.mark.usefixtures("private_cache")  # no render cache shared with other runs
STREET = Path("plates") / "blender_street" / "street.####.exr"
BEAUTY = [f"ViewLayer.Combined.{c}" for c in "RGBA"]


def street_job(
    testdata: Path,
    tmp_path: Path,
    weights: Path,
    frames: tuple[int, int] = (1007, 1008),
    plate: str | None = None,
    **settings: object,
) -> Path:
    document = {
        "version": 1,
        "shots": [
            {
                "name": "street",
                "plate": plate or str(testdata / STREET),
                "frames": {"first": frames[0], "last": frames[1]},
                "output": "out/street.####.exr",
            }
        ],
        "model": {
            "family": "sd15",
            "path": str(weights),
            "controlnets": [{"path": str(weights / "controlnet"), "source": "lineart", "weight": 0.5}],
        },
        "prompt": "watercolor",
        "steps": 4,
        "strength": 0.6,
        "guidance": 2.0,
        "resolution": {"mode": "downscale", "working_size": 128},
    } | settings
    return write_job(tmp_path / "street.json", document)


def bits(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, np.float32).view(np.uint32)


def test_street_regions_by_cryptomatte_name_through_the_cli(
    testdata: Path, tmp_path: Path, tiny: dict[str, Path]
) -> None:
    """road left alone, the car in its own prompt, strength, seed and line-art weight, along the motion vectors."""
    job = street_job(
        testdata, tmp_path, tiny["sd15"], consistency={"mechanisms": ["warped_noise", "latent_fusion", "cross_frame"]}
    )
    status, _, err = invoke(
        "render",
        str(job),
        "--device",
        "cpu",
        "--no-cache",
        "--region",
        "road: strength=0",
        "--region",
        "car: prompt=cel shading, bold ink; strength=0.9; seed=5; controlnet_weights=lineart:1.5",
    )
    assert status == 0, err
    for frame in (1007, 1008):
        plate = read_plate(testdata / "plates" / "blender_street" / f"street.{frame}.exr")
        output = read_plate(tmp_path / f"out/street.{frame}.exr")
        assert {"regions.road", "regions.car"} <= set(output.channel_names)
        layer = cryptomatte.select_layer(plate)
        road, _ = cryptomatte.matte(plate, layer, ["road"])
        car, _ = cryptomatte.matte(plate, layer, ["car"])
        # Later regions win, subtractive: the road keeps what the car does not cover, its own share where they split.
        assert np.allclose(output.channel("regions.car"), car, atol=1e-6)
        assert np.allclose(output.channel("regions.road"), np.minimum(road, 1.0 - car), atol=1e-6)
        untouched = output.channel("regions.road") >= 1.0
        assert untouched.sum() > 40000
        styled, clean = output.channels([f"stylized.{c}" for c in "RGBA"]), plate.channels(BEAUTY)
        assert np.array_equal(bits(styled[untouched]), bits(clean[untouched]))  # bit for bit, as written
        assert np.abs(styled - clean)[~untouched].mean() > 0.01
        header = output.parts[0].attributes
        regions = json.loads(header["stylecomp/regions"])
        assert [(r["name"], r["resolved"]) for r in regions] == [
            ("road", {"ViewLayer.CryptoObject": ["road"]}),
            ("car", {"ViewLayer.CryptoObject": ["car"]}),
        ]
        parameters = json.loads(header["stylecomp/parameters"])
        assert [r["name"] for r in parameters["regions"]] == ["road", "car"]
        assert parameters["regions"][1]["prompt"] == "cel shading, bold ink"


def test_strength_zero_is_bit_exact_in_a_half_float_plate(tmp_path: Path, tiny: dict[str, Path]) -> None:
    plates = write_plates(tmp_path / "plates", 1)
    document = job_document(
        plates,
        tiny["sd15"],
        str(tmp_path / "out/demo.####.exr"),
        1,
        regions=[{"name": "ground", "select": {"ids": [1]}, "strength": 0.0}],
    )
    status, _, err = invoke("render", str(write_job(tmp_path / "job.json", document)), "--device", "cpu")
    assert status == 0, err
    plate, output = read_plate(plates / f"demo.{FIRST}.exr"), read_plate(tmp_path / f"out/demo.{FIRST}.exr")
    assert output.parts[0].channel_types[0] == "half"
    ground = plate.channel("id") == 1
    assert ground.sum() > 500 and np.array_equal(output.channel("regions.ground"), ground.astype(np.float32))
    styled, clean = stylized(tmp_path / f"out/demo.{FIRST}.exr"), plate.channels(["R", "G", "B", "A"])
    assert np.array_equal(bits(styled[ground]), bits(clean[ground]))
    assert np.abs(styled - clean)[~ground].mean() > 0.01  # strength 1 elsewhere


def test_strength_zero_under_overlapping_soft_mattes_is_bit_exact(tmp_path: Path, tiny: dict[str, Path]) -> None:
    """A full matte with two soft ones over it, all strength 0 (the shot at 0.6): the shot's own column is
    1 - their weights' sum there, a float32 crumb on some pixels, and those pixels must still be the plate."""
    plates = write_plates(tmp_path / "plates", 1)
    plate = read_plate(plates / f"demo.{FIRST}.exr")
    height, width = plate.channel("id").shape
    rng = np.random.default_rng(3)  # soft coverage everywhere: float32 round-off lands on some ground pixels
    soft = rng.uniform(0.0, 1.0, (height, width, 2)).astype(np.float32)
    names = [*plate.channel_names, "soft.A", "soft2.A"]
    pixels = np.concatenate([plate.channels(plate.channel_names), soft], axis=2)
    write_plate(
        plates / f"demo.{FIRST}.exr",
        [ImagePart.create(pixels, names, pixel_type="float", channel_types={"id": "uint"})],
    )
    document = job_document(
        plates,
        tiny["sd15"],
        str(tmp_path / "out/demo.####.exr"),
        1,
        strength=0.6,
        regions=[
            {"name": "ground", "select": {"ids": [1]}, "strength": 0.0},
            {"name": "across", "select": {"matte": "soft.A"}, "strength": 0.0},
            {"name": "down", "select": {"matte": "soft2.A"}, "strength": 0.0},
        ],
    )
    status, _, err = invoke("render", str(write_job(tmp_path / "job.json", document)), "--device", "cpu")
    assert status == 0, err
    output = read_plate(tmp_path / f"out/demo.{FIRST}.exr")
    weights = np.stack([output.channel(f"regions.{name}") for name in ("ground", "across", "down")], axis=2)
    ground = plate.channel("id") == 1
    crumbs = ground & (1.0 - weights.sum(axis=2) > 0.0)  # the shot's own column, not quite 0
    assert ground.sum() > 500 and crumbs.sum() > 0  # the case this test is about does occur
    styled, clean = stylized(tmp_path / f"out/demo.{FIRST}.exr"), read_plate(plates / f"demo.{FIRST}.exr")
    clean_rgba = clean.channels(["R", "G", "B", "A"])
    assert np.array_equal(bits(styled[ground]), bits(clean_rgba[ground]))
    assert np.abs(styled - clean_rgba)[~ground].mean() > 0.01  # the shot's 0.6 where the soft mattes leave room


def test_matte_channel_and_matte_sequence_selectors(tmp_path: Path, tiny: dict[str, Path]) -> None:
    """A plate channel (mask.A) and a separate matte sequence (same frame numbers) select soft coverage."""
    plates = write_plates(tmp_path / "plates", 2)
    (tmp_path / "mattes").mkdir()
    for frame in (FIRST, FIRST + 1):
        plate = read_plate(plates / f"demo.{frame}.exr")
        ids = plate.channel("id")
        ramp = np.broadcast_to(np.linspace(0, 1, ids.shape[1], dtype=np.float32), ids.shape)
        write_plate(
            tmp_path / "mattes" / f"ball.{frame}.exr",
            [ImagePart.create((ids == 5).astype(np.float32)[..., None], ["A"])],
        )
        names = [*plate.channel_names, "mask.A"]
        pixels = np.concatenate([plate.channels(plate.channel_names), ramp[..., None]], axis=2)
        write_plate(
            plates / f"demo.{frame}.exr",
            [ImagePart.create(pixels, names, pixel_type="float", channel_types={"id": "uint"})],
        )
    document = job_document(
        plates,
        tiny["sd15"],
        str(tmp_path / "out/demo.####.exr"),
        2,
        regions=[
            {"name": "ramp", "select": {"matte": "mask.A"}, "strength": 0.0},
            {"name": "ball", "select": {"matte_sequence": "mattes/ball.####.exr"}, "prompt": "ink"},
        ],
    )
    status, _, err = invoke("render", str(write_job(tmp_path / "job.json", document)), "--device", "cpu")
    assert status == 0, err
    for frame in (FIRST, FIRST + 1):
        plate, output = read_plate(plates / f"demo.{frame}.exr"), read_plate(tmp_path / f"out/demo.{frame}.exr")
        ball = (plate.channel("id") == 5).astype(np.float32)
        assert ball.sum() > 20
        assert np.array_equal(output.channel("regions.ball"), ball)
        assert np.allclose(output.channel("regions.ramp"), plate.channel("mask.A") * (1.0 - ball), atol=1e-6)
    (tmp_path / "mattes" / f"ball.{FIRST + 1}.exr").unlink()
    status, _, err = invoke(
        "render",
        str(
            write_job(
                tmp_path / "job.json",
                document | {"shots": [document["shots"][0] | {"output": str(tmp_path / "again/demo.####.exr")}]},
            )
        ),
        "--device",
        "cpu",
    )
    assert status == 2 and f"region 'ball': no matte for frame(s) {FIRST + 1}: " in err, err
    assert not (tmp_path / "again").exists()


def _manifest_without(testdata: Path, folder: Path, frame: int, name: str) -> None:
    """A copy of the street frame whose manifest (and ranks) no longer know ``name``."""
    plate = read_plate(testdata / "plates" / "blender_street" / f"street.{frame}.exr")
    part = plate.parts[0]
    layer = cryptomatte.select_layer(plate)
    manifest = {key: f"{value:08x}" for key, value in layer.manifest.items() if key != name}
    part.spec.attribute(f"cryptomatte/{layer.key}/manifest", json.dumps(manifest))
    write_plate(folder / f"street.{frame}.exr", [part])


def test_a_name_missing_on_some_frames_is_a_warning_with_the_frames(
    testdata: Path, tmp_path: Path, tiny: dict[str, Path]
) -> None:
    folder = tmp_path / "plates"
    folder.mkdir()
    _manifest_without(testdata, folder, 1007, "zzz")  # unchanged names
    _manifest_without(testdata, folder, 1008, "car")
    job = street_job(testdata, tmp_path, tiny["sd15"], plate=str(folder / "street.####.exr"))
    status, _, err = invoke("render", str(job), "--device", "cpu", "--region", "car: prompt=ink")
    assert status == 0, err
    assert "warning: street: region 'car': 'car' matches nothing on frame(s) 1008" in err
    assert read_plate(tmp_path / "out/street.1007.exr").channel("regions.car").max() > 0.9
    assert read_plate(tmp_path / "out/street.1008.exr").channel("regions.car").max() == 0.0


def test_a_manifest_name_never_on_screen_covers_no_pixel(testdata: Path, tmp_path: Path, tiny: dict[str, Path]) -> None:
    """A name the manifest lists but no pixel's ranks hold is refused like any selector that covers nothing."""
    folder = tmp_path / "plates"
    folder.mkdir()
    for frame in (1007, 1008):
        plate = read_plate(testdata / "plates" / "blender_street" / f"street.{frame}.exr")
        part, layer = plate.parts[0], cryptomatte.select_layer(plate)
        manifest = {key: f"{value:08x}" for key, value in layer.manifest.items()} | {"ghost": "3f7a1c21"}
        part.spec.attribute(f"cryptomatte/{layer.key}/manifest", json.dumps(manifest))
        write_plate(folder / f"street.{frame}.exr", [part])
    job = street_job(testdata, tmp_path, tiny["sd15"], plate=str(folder / "street.####.exr"))
    status, _, err = invoke("render", str(job), "--device", "cpu", "--region", "ghost: prompt=ink")
    assert status == 2, err
    assert (
        'error: street: region \'ghost\': select {"cryptomatte": ["ghost"]} covers no pixel on any frame (1007-1008)'
    ) in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "regions, message",
    [
        (
            ["carr: prompt=ink"],
            "error: street: region 'carr': no Cryptomatte name matches 'carr' on any frame; nearest names: car",
        ),
        (["car: match=truck*"], "no Cryptomatte name matches 'truck*' on any frame"),
        (["car: ids=4000"], "region 'car': select {\"ids\": [4000]} covers no pixel on any frame (1007-1008)"),
        (["car: matte=mask.A"], "region 'car': no channel 'mask.A'"),
        (["car: layer=CryptoMaterial"], "region 'car': the plate has no Cryptomatte layer 'CryptoMaterial'"),
        (
            ["car: controlnet_weights=depth:0.5"],
            "regions.car: controlnet_weights names depth, but the model has no such ControlNet (its sources: lineart)",
        ),
        (["car: ip_adapter_image=ref.png"], "regions.car: ip_adapter_image per region needs the model's ip_adapter"),
        (
            ["car: strength=1.5"],
            "Invalid value for '--region': 'car: strength=1.5': strength: Input should be less than or equal to 1",
        ),
        (
            [f"r{i}: ids=1" for i in range(MAX_REGIONS + 1)],
            f"--region: {MAX_REGIONS + 1} regions; at most {MAX_REGIONS} per shot",
        ),
    ],
)
def test_bad_regions_are_one_line_and_nothing_is_written(
    testdata: Path, tmp_path: Path, tiny: dict[str, Path], regions: list[str], message: str
) -> None:
    job = street_job(testdata, tmp_path, tiny["sd15"])
    arguments = [item for text in regions for item in ("--region", text)]
    status, _, err = invoke("render", str(job), "--device", "cpu", *arguments)
    assert status == 2 and message in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:") or "Error:" in line]) == 1, err
    assert not (tmp_path / "out").exists()


def test_controlnet_weights_per_region_on_flux_are_refused(
    testdata: Path, tmp_path: Path, tiny: dict[str, Path]
) -> None:
    job = street_job(
        testdata,
        tmp_path,
        tiny["flux"],
        model={
            "family": "flux",
            "path": str(tiny["flux"]),
            "controlnets": [{"path": str(tiny["flux"] / "controlnet"), "source": "lineart", "weight": 0.5}],
        },
    )
    status, _, err = invoke("render", str(job), "--device", "cpu", "--region", "car: controlnet_weights=lineart:1")
    assert status == 2 and "controlnet_weights per region work on SD 1.5 and SDXL, not on Flux yet" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "setting",
    [
        "lora",
        "controlnet",
        "style",
        "prompt",
        "prompt_passes",
        "sdxl_prompt",
        "sdxl_prompt_passes",
        "flux_prompt",
        "flux_prompt_passes",
    ],
)
def test_a_region_over_every_pixel_renders_as_the_shot_with_its_settings(
    tmp_path: Path, tiny: dict[str, Path], setting: str
) -> None:
    """The regional machinery (LoRA-set passes, per-pixel ControlNet scales, masked cross-attention, Flux's masked
    joint attention, prompt passes with their own pooled embeddings) gives what the plain pipeline gives when one
    region covers the whole frame."""
    family = setting.split("_")[0] if setting.startswith(("sdxl", "flux")) else "sd15"
    model = tiny[family]
    plates = write_plates(tmp_path / "plates", 1)
    everything = {"ids": [4000]}  # nothing, inverted
    controlnets = [{"path": str(model / "controlnet"), "source": "edges", "weight": 1.0}] if family != "flux" else []
    base: dict = {"model": {"family": family, "path": str(model), "controlnets": controlnets}}
    if setting == "lora":
        lora = make_test_lora(tmp_path / "lora.safetensors", model, seed=3)  # UNet and text-encoder layers
        plain = {"model": {**base["model"], "loras": [{"path": str(lora), "weight": 0.8}]}}
        region = {"loras": [{"path": str(lora), "weight": 0.8}]}
    elif setting == "style":  # the shot's style image is the dark one; the region's (and the plain shot's) bright
        adapter = str(make_test_ip_adapter(tmp_path / "ip", model, seed=3))
        for name, value in (("dark", 20), ("bright", 230)):
            Image.new("RGB", (32, 32), (value, value // 2, 255 - value)).save(tmp_path / f"{name}.png")
        base["model"]["ip_adapter"] = {"path": adapter, "image": str(tmp_path / "dark.png"), "scale": 1.0}
        plain = {
            "model": {
                **base["model"],
                "ip_adapter": {**base["model"]["ip_adapter"], "image": str(tmp_path / "bright.png")},
            }
        }
        region = {"ip_adapter_image": str(tmp_path / "bright.png")}
    elif setting == "controlnet":
        plain = {"model": {**base["model"], "controlnets": [{**controlnets[0], "weight": 0.3}]}}
        region = {"controlnet_weights": {"edges": 0.3}}
    else:
        if setting.endswith("passes"):
            base["region_prompts"] = "passes"
        plain = base | {"prompt": "cel shading, bold ink"}
        region = {"prompt": "cel shading, bold ink"}
    outputs = []
    for name, settings in (
        ("plain", plain),
        ("region", base | {"regions": [{"name": "all", "select": everything, "invert": True} | region]}),
    ):
        document = job_document(plates, model, str(tmp_path / f"{name}/demo.####.exr"), 1, strength=0.7) | settings
        status, _, err = invoke("render", str(write_job(tmp_path / f"{name}.json", document)), "--device", "cpu")
        assert status == 0, err
        outputs.append(stylized(tmp_path / f"{name}/demo.{FIRST}.exr"))
    recorded = read_plate(tmp_path / f"region/demo.{FIRST}.exr").parts[0].attributes["stylecomp/parameters"]
    parameters = json.loads(recorded)
    assert str(tmp_path) not in recorded  # provenance holds no machine paths; hashes name the files
    assert parameters["loras"] == []  # the shot's own LoRAs only, not the regions' weight-0 adapters
    if setting == "lora":
        assert parameters["regions"][0]["loras"] == [{"weight": 0.8}]
    if setting == "style":
        assert len(parameters["regions"][0]["ip_adapter_image"]["sha256"]) == 64
    reference = job_document(plates, model, str(tmp_path / "reference/demo.####.exr"), 1, strength=0.7) | base
    assert invoke("render", str(write_job(tmp_path / "reference.json", reference)), "--device", "cpu")[0] == 0
    without = stylized(tmp_path / f"reference/demo.{FIRST}.exr")
    change = np.abs(outputs[0] - without).mean()
    assert change > 1e-3  # the setting changes the picture ...
    assert np.abs(outputs[1] - outputs[0]).mean() < 0.05 * change  # ... and the region the same (half floats)


# --- the trained model: each region takes its own look ----------------------------------------------------

# Measured with the shipped weights on held-out scene 2 (scene 0, not run here to keep the test short: 0.24-0.63
# and 0.46-0.64); random weights: 0.85-1.60 and -0.008-0.014.
MAX_OWN_SHARE = 0.9  # each region's error to its own look over that to the other look: measured 0.20-0.23
MIN_SWAP_GAIN = 0.15  # error to its own look, own prompt against the swapped prompt: measured 0.75-0.85


@pytest.fixture(scope="module")
def looks_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {"shipped": SHIPPED_MODEL, "random": save_random_model(tmp_path_factory.mktemp("random-model"))}


@pytest.mark.parametrize("weights", ["shipped", "random"])
def test_two_regions_take_their_own_looks(weights: str, looks_models: dict[str, Path], tmp_path: Path) -> None:
    """The ground as watercolor and every other object cel shaded in one render (region_prompts passes; the
    sky untouched): in each region the output is nearer its own look than the other, and nearer than with the
    prompts swapped. Passes with the trained weights, fails with random ones (held-out scene 2)."""
    pool = PipelinePool("cpu")
    checks = []
    for index in (2,):
        shot = held_out_shot(index, tmp_path / f"scene{index}")
        frame = shot.plates.frames[0]
        ids = read_plate(shot.plates.path(frame)).channel("id")
        objects = sorted(int(i) for i in np.unique(ids) if i > 1)
        looks = {"ground": ("watercolor", ids == 1, [1]), "objects": ("cel", ids > 1, objects)}
        outputs = {}
        for order in ("own", "swapped"):
            regions = [
                Region(
                    name=name,
                    select={"ids": selected},
                    prompt=EVALUATION_PROMPTS[
                        look if order == "own" else ("cel" if look == "watercolor" else "watercolor")
                    ],
                    strength=RECOMMENDED.strength,
                )
                for name, (look, _, selected) in looks.items()
            ]
            sequence = stylize(
                shot,
                "",
                tmp_path / f"{order}{index}",
                replace(RECOMMENDED, strength=0.0),
                model=looks_models[weights],
                pool=pool,
                regions=regions,
                region_prompts="passes",
            )
            outputs[order] = display_output(sequence, frame)
        for look, mask, _ in looks.values():
            other = "cel" if look == "watercolor" else "watercolor"

            def error(
                image: np.ndarray,
                target: str,
                mask: np.ndarray = mask,
                truth: dict[str, dict[int, np.ndarray]] = shot.looks,
                frame: int = frame,
            ) -> float:
                return float(np.abs(image[mask] - truth[target][frame][mask]).mean())

            checks.append(
                (
                    error(outputs["own"], look) / error(outputs["own"], other),
                    1.0 - error(outputs["own"], look) / error(outputs["swapped"], look),
                )
            )
    passed = all(share <= MAX_OWN_SHARE and gain >= MIN_SWAP_GAIN for share, gain in checks)
    assert passed == (weights == "shipped"), checks


def test_changing_a_regions_prompt_strength_or_matte_misses_the_render_cache(
    tmp_path: Path, tiny: dict[str, Path]
) -> None:
    """The render cache reuses a frame only when nothing its pixels depend on changed: a region's prompt, its
    strength and its matte are such things; the same job again is a hit."""
    plates = write_plates(tmp_path / "plates", 1)
    region = {"name": "ball", "select": {"ids": [5]}, "prompt": "ink", "strength": 0.8}
    changes = {
        "same": region,
        "prompt": region | {"prompt": "cel shading"},
        "strength": region | {"strength": 0.4},
        "matte": region | {"select": {"ids": [5, 4]}},
    }
    for number, (change, settings) in enumerate([("first", region), *changes.items()]):
        document = job_document(
            plates, tiny["sd15"], str(tmp_path / f"out{number}/demo.####.exr"), 1, regions=[settings]
        )
        status, out, err = invoke("render", str(write_job(tmp_path / f"{number}.json", document)), "--device", "cpu")
        assert status == 0, err
        hit = "rendered 0, from cache 1" in out
        assert hit == (change == "same"), (change, out)


def test_candidates_keep_the_regions(tmp_path: Path, tiny: dict[str, Path]) -> None:
    """Every candidate of a frame is rendered with the shot's regions: the strength-0 ground stays the plate."""
    plates = write_plates(tmp_path / "plates", 1)
    document = job_document(
        plates,
        tiny["sd15"],
        str(tmp_path / "out/demo.####.exr"),
        1,
        regions=[{"name": "ground", "select": {"ids": [1]}, "strength": 0.0}],
    )
    job = write_job(tmp_path / "job.json", document)
    status, _, err = invoke("candidates", str(job), "--count", "2", "--out", str(tmp_path / "cands"), "--device", "cpu")
    assert status == 0, err
    plate = read_plate(plates / f"demo.{FIRST}.exr")
    ground = plate.channel("id") == 1
    for index in range(2):
        styled = stylized(tmp_path / "cands" / f"candidate_{index:02d}.exr")
        assert np.array_equal(bits(styled[ground]), bits(plate.channels(["R", "G", "B", "A"])[ground]))
        assert np.abs(styled - plate.channels(["R", "G", "B", "A"]))[~ground].mean() > 0.01


@pytest.mark.parametrize("mechanisms", [["keyframes"], ["pixel_fusion", "warped_noise", "flow_attention"]])
def test_regions_with_consistency_mechanisms_keep_the_untouched_pixels(
    tmp_path: Path, tiny: dict[str, Path], mechanisms: list[str]
) -> None:
    """Mechanisms that carry the previous output along the vectors still leave strength-0 pixels as the plate,
    and a region stylizes on every frame even where the shot's own strength is 0 (keyframes heal regions too)."""
    plates = write_plates(tmp_path / "plates", 3)
    document = job_document(
        plates,
        tiny["sd15"],
        str(tmp_path / "out/demo.####.exr"),
        3,
        strength=0.0,
        consistency={"mechanisms": mechanisms, "keyframe_interval": 2},
        regions=[{"name": "objects", "select": {"ids": [0, 1]}, "invert": True, "strength": 0.8}],
    )
    status, _, err = invoke("render", str(write_job(tmp_path / "job.json", document)), "--device", "cpu")
    assert status == 0, err
    for frame in range(FIRST, FIRST + 3):
        plate = read_plate(plates / f"demo.{frame}.exr")
        objects = plate.channel("id") > 1
        styled, clean = stylized(tmp_path / f"out/demo.{frame}.exr"), plate.channels(["R", "G", "B", "A"])
        assert np.array_equal(bits(styled[~objects]), bits(clean[~objects]))
        assert np.abs(styled - clean)[objects].mean() > 0.005, frame
