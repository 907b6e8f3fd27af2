"""`stylecomp ideate` and `stylecomp pick --ideation`: treatment stills from tiny random-weight models.

Real diffusers pipelines loaded from disk, real demo plates guiding them, the real CLI, and a
plugin generator installed through a real entry point.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from stylecomp.diffusion.geometry import ModelGeometry
from stylecomp.diffusion.loading import model_hash
from stylecomp.diffusion.resolution import resize
from stylecomp.errors import Cancelled
from stylecomp.generators.builtin import diffusers
from stylecomp.generators.ideation import candidate_size
from stylecomp.generators.interface import Request, Setup
from stylecomp.io.plates import read_plate
from stylecomp.jobspec import ControlNet, ModelSettings, load_job
from stylecomp.render.candidates import write_thumbnail
from tests.tiny_jobs import invoke

pytestmark = [pytest.mark.usefixtures("private_cache"), pytest.mark.plates(2, width=128, height=72)]
RGBA = ["R", "G", "B", "A"]


def write_job(
    folder: Path,
    plates: Path,
    model: Path | None,
    family: str = "sd15",
    controlnets: bool = False,
    ideation: dict[str, Any] | None = None,
    **settings: Any,
) -> Path:
    """A job for the demo shot; 3 steps; ideation at a long side of 128 unless ``ideation`` says otherwise."""
    job: dict[str, Any] = {
        "shots": [
            {
                "name": "demo",
                "plate": str(plates / "demo.####.exr"),
                "frames": {"first": 1001, "last": 1002},
                "output": "out/demo.####.exr",
            }
        ],
        "prompt": "ink and watercolour",
        "negative_prompt": "blurry",
        "steps": 3,
        "guidance": 3.0,
        "ideation": {"seeds": [1], "aspect_ratios": ["16:9"], "long_side": 128} | (ideation or {}),
    } | settings
    if model is not None:
        nets = [
            {"path": str(model / "controlnet"), "source": "depth"},
            {"path": str(model / "controlnet"), "source": "normals", "weight": 0.5},
        ]
        job["model"] = {"family": family, "path": str(model), "controlnets": nets if controlnets else []}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    return path


def ideate(job: Path, *args: str) -> dict[str, Any]:
    """Run `stylecomp ideate` on the CPU; the manifest it printed last, with its folder under ``"folder"``."""
    status, out, err = invoke("ideate", str(job), "--device", "cpu", *args)
    assert status == 0, err
    path = Path(out.splitlines()[-1])
    return json.loads(path.read_text()) | {"folder": path.parent}


def still(manifest: dict[str, Any], index: int) -> np.ndarray:
    """A candidate's RGBA pixels."""
    return read_plate(manifest["folder"] / manifest["candidates"][index]["exr"]).channels(RGBA)


def header(manifest: dict[str, Any], index: int) -> dict[str, Any]:
    return read_plate(manifest["folder"] / manifest["candidates"][index]["exr"], pixels=False).parts[0].attributes


@pytest.mark.parametrize(("family", "size"), [("sd15", (128, 72)), ("sdxl", (128, 72)), ("flux", (128, 80))])
def test_each_family_writes_scene_linear_stills_with_provenance_a_sheet_and_a_manifest(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], family: str, size: tuple[int, int], no_network: None
) -> None:
    job = write_job(tmp_path, plates, tiny[family], family, ideation={"seeds": [1, 2]})
    manifest = ideate(job)
    assert manifest["folder"] == tmp_path / "ideation/demo"
    assert manifest["kind"] == "ideation" and manifest["shot"] == "demo" and manifest["job"] == str(job.resolve())
    # 16:9 at a long side of 128: 72, a multiple of SD's 8; Flux's 16 rounds it to 80.
    assert [
        (c["index"], c["seed"], c["prompt"], c["aspect_ratio"], (c["width"], c["height"]))
        for c in manifest["candidates"]
    ] == [(0, 1, "ink and watercolour", "16:9", size), (1, 2, "ink and watercolour", "16:9", size)]
    encoding = load_job(job).color.model_encoding()
    for index, entry in enumerate(manifest["candidates"]):
        rgba = still(manifest, index)
        assert rgba.shape == (size[1], size[0], 4)
        assert np.all(rgba[..., 3] == 1.0)
        # Scene-linear: the thumbnail (the display-referred image) is what the job's view makes of the EXR.
        write_thumbnail(tmp_path / "check.png", encoding.encode(rgba[..., :3]).image)
        with Image.open(tmp_path / "check.png") as mine, Image.open(manifest["folder"] / entry["thumbnail"]) as thumb:
            assert thumb.width == 320
            difference = np.abs(np.asarray(mine, np.int16) - np.asarray(thumb, np.int16))
        assert difference.max() <= 2, "half-float EXR values re-encode to the thumbnail's 8-bit values"
        assert np.abs(rgba[..., :3] - encoding.encode(rgba[..., :3]).image).max() > 0.1, "not display-referred"
    assert np.abs(still(manifest, 0) - still(manifest, 1)).max() > 0.01, "different seeds differ"

    attributes = header(manifest, 1)
    assert attributes["stylecomp/model"] == str(tiny[family])
    assert attributes["stylecomp/model_hash"] == model_hash(tiny[family])
    assert attributes["stylecomp/generator"] == "diffusers" and attributes["stylecomp/kind"] == "text_to_image"
    assert attributes["stylecomp/seed"] == 2 and attributes["stylecomp/prompt"] == "ink and watercolour"
    assert attributes["stylecomp/shot"] == "demo" and attributes["stylecomp/aspect_ratio"] == "16:9"
    assert attributes["stylecomp/device"] == "cpu float32"
    parameters = json.loads(attributes["stylecomp/parameters"])
    assert parameters | {"family": family} == {
        "family": family,
        "prompt": "ink and watercolour",
        "seed": 2,
        "negative_prompt": "blurry",
        "width": size[0],
        "height": size[1],
        "steps": 3,
        "guidance": 3.0,
    }
    with Image.open(manifest["folder"] / manifest["contact_sheet"]) as sheet:
        assert sheet.width == 2 * 320


def test_same_seed_gives_the_same_pixels_and_aspect_ratios_give_their_sizes(
    tmp_path: Path, plates: Path, tiny: dict[str, Path]
) -> None:
    ideation = {"seeds": [3, 4], "aspect_ratios": ["16:9", "1:1", "3:4"], "long_side": 256}
    job = write_job(tmp_path, plates, tiny["sd15"], ideation=ideation)
    first = ideate(job, "--out", str(tmp_path / "first"))
    again = ideate(job, "--out", str(tmp_path / "again"))
    assert first["folder"] == tmp_path / "first" and again["folder"] == tmp_path / "again"
    sizes = [(c["aspect_ratio"], c["seed"], c["width"], c["height"]) for c in first["candidates"]]
    assert sizes == [
        ("16:9", 3, 256, 144),
        ("16:9", 4, 256, 144),
        ("1:1", 3, 256, 256),
        ("1:1", 4, 256, 256),
        ("3:4", 3, 192, 256),
        ("3:4", 4, 192, 256),
    ]
    for index, (_, _, width, height) in enumerate(sizes):
        assert still(first, index).shape == (height, width, 4)
        np.testing.assert_array_equal(still(first, index), still(again, index))
    assert np.abs(still(first, 2) - still(first, 3)).max() > 0.01, "different seeds differ"


def test_a_stopped_run_leaves_no_manifest_for_the_candidates_it_replaced(
    tmp_path: Path, plates: Path, tiny: dict[str, Path]
) -> None:
    from stylecomp.generators.ideation import ideate as ideate_shot
    from stylecomp.generators.ideation import ideation_generator

    path = write_job(tmp_path, plates, tiny["sd15"])
    first = ideate(path)
    assert (first["folder"] / "manifest.json").is_file()
    job = load_job(path)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        ideate_shot(job, str(path), job.shots[0], generator=ideation_generator(job, job.shots[0], "cpu"), cancel=stop)
    assert not (first["folder"] / "manifest.json").exists(), "pick would copy new pixels under the old prompt"


def test_sizes_keep_the_aspect_ratio_within_the_pixel_multiple() -> None:
    multiple = {family: ModelGeometry.published(family).pixel_multiple for family in ("sd15", "sdxl", "flux")}
    assert candidate_size(2.39, 1024, multiple["sdxl"]) == (1024, 432)  # 2.370:1
    assert candidate_size(16 / 9, 512, multiple["sd15"]) == (512, 288)
    assert candidate_size(9 / 16, 1024, multiple["flux"]) == (576, 1024)
    assert candidate_size(100.0, 512, multiple["sd15"]) == (512, 8), "never below one multiple"


def test_a_plate_guides_through_the_controlnets_and_sets_the_size(
    tmp_path: Path, plates: Path, tiny: dict[str, Path]
) -> None:
    guided = ideate(
        write_job(
            tmp_path / "guided",
            plates,
            tiny["sd15"],
            controlnets=True,
            ideation={"seeds": [5], "aspect_ratios": ["1:1", "9:16"]},
        )
    )
    # The plate is 16:9: 128 x 72; the aspect ratios do not multiply the candidates.
    assert [(c["aspect_ratio"], c["width"], c["height"]) for c in guided["candidates"]] == [("16:9", 128, 72)]
    assert guided["guide"]["plate"] == str(plates / "demo.1001.exr") and guided["guide"]["frame"] == 1001
    assert "are not used" in guided["guide"]["note"]
    controlnets = json.loads(header(guided, 0)["stylecomp/controlnets"])
    net = model_hash(tiny["sd15"] / "controlnet")
    assert [(c["source"], c["weight"], c["hash"]) for c in controlnets] == [("depth", 1.0, net), ("normals", 0.5, net)]
    with Image.open(guided["folder"] / guided["contact_sheet"]) as sheet:
        assert sheet.width == 2 * 320, "the guide frame, then the candidate"

    free = ideate(
        write_job(tmp_path / "free", plates, tiny["sd15"], ideation={"seeds": [5], "aspect_ratios": ["16:9"]})
    )
    assert (free["candidates"][0]["width"], free["candidates"][0]["height"]) == (128, 72)
    assert np.abs(still(guided, 0) - still(free, 0)).max() > 0.01, "the ControlNets steer the still"
    later = ideate(
        write_job(
            tmp_path / "later", plates, tiny["sd15"], controlnets=True, ideation={"seeds": [5], "guide_frame": 1002}
        )
    )
    assert later["guide"]["frame"] == 1002
    assert np.abs(still(guided, 0) - still(later, 0)).max() > 1e-4, "another guide frame, another still"


def test_init_strength_starts_from_the_plate(tmp_path: Path, plates: Path) -> None:
    from stylecomp.diffusion.testing import make_test_model

    # A VAE that keeps the image, so what the plate contributes can be seen in the pixels.
    model = make_test_model(tmp_path / "passthrough", "sd15", vae="passthrough")
    text = ideate(write_job(tmp_path / "text", plates, model))
    start = ideate(write_job(tmp_path / "start", plates, model, ideation={"init_strength": 0.25}))
    attributes = header(start, 0)
    assert attributes["stylecomp/kind"] == "image_to_image"
    assert json.loads(attributes["stylecomp/parameters"])["strength"] == 0.25
    assert start["guide"]["frame"] == 1001
    assert (start["candidates"][0]["width"], start["candidates"][0]["height"]) == (128, 72)

    encoding = load_job(tmp_path / "start/job.json").color.model_encoding()
    source = read_plate(plates / "demo.1001.exr").channels(RGBA)
    plate = resize(encoding.encode(source[..., :3], source[..., 3]).image, (72, 128), "bicubic")

    def likeness(manifest: dict[str, Any]) -> float:
        display = encoding.encode(still(manifest, 0)[..., :3]).image
        return float(np.corrcoef(display.ravel(), plate.ravel())[0, 1])

    assert likeness(start) > 0.5 > 0.2 > likeness(text)


def test_the_style_image_reaches_the_pixels(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    from stylecomp.diffusion.testing import make_test_ip_adapter

    adapter = make_test_ip_adapter(tmp_path / "ip", tiny["sd15"])
    manifests = {}
    for name, colour in (("warm", (220, 120, 40)), ("cool", (30, 90, 200))):
        Image.new("RGB", (48, 48), colour).save(tmp_path / f"{name}.png")
        job = write_job(tmp_path / name, plates, tiny["sd15"])
        data = json.loads(job.read_text())
        data["model"]["ip_adapter"] = {"path": str(adapter), "image": str(tmp_path / f"{name}.png"), "scale": 0.7}
        job.write_text(json.dumps(data))
        manifests[name] = ideate(job)
    assert np.abs(still(manifests["warm"], 0) - still(manifests["cool"], 0)).max() > 1e-3
    warm, cool = (json.loads(header(manifests[name], 0)["stylecomp/ip_adapter"]) for name in ("warm", "cool"))
    assert warm["hash"] == model_hash(adapter) and warm["scale"] == 0.7
    assert warm["image_hash"] != cool["image_hash"]


def test_the_generator_api_reproduces_cancels_and_names_a_missing_control_image(tiny: dict[str, Path]) -> None:
    model = ModelSettings(
        family="sd15",
        path=str(tiny["sd15"]),
        controlnets=[ControlNet(path=str(tiny["sd15"] / "controlnet"), source="depth")],
    )
    generator = diffusers(Setup("text_to_image", model, device="cpu", dtype="float32"))
    assert generator.frame_count(48) == 1
    depth = np.linspace(0, 1, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3)
    steps: list[tuple[int, int]] = []
    request = Request(
        prompt="ink",
        seed=9,
        width=64,
        height=64,
        steps=3,
        guidance=3.0,
        control={"depth": depth},
        on_step=lambda step, total: steps.append((step, total)),
    )
    first = generator.generate(request, threading.Event())
    again = generator.generate(request, threading.Event())
    total = steps[0][1]  # the scheduler's own count (SD 1.5's PNDM runs one more than asked)
    assert total >= 3 and steps == [(step, total) for step in range(1, total + 1)] * 2
    assert first.frames[0].shape == (64, 64, 3) and first.frames[0].dtype == np.float32
    np.testing.assert_array_equal(first.frames[0], again.frames[0])
    with pytest.raises(Exception, match="ControlNets need depth image"):
        generator.generate(Request(prompt="ink", seed=9, width=64, height=64, steps=3, guidance=3.0), threading.Event())
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        generator.generate(request, cancel)


def test_pick_copies_the_still_records_it_and_makes_its_prompt_the_shots(
    tmp_path: Path, plates: Path, tiny: dict[str, Path]
) -> None:
    job = write_job(tmp_path, plates, tiny["sd15"], ideation={"prompts": ["ink and watercolour", "charcoal"]})
    data = json.loads(job.read_text())
    data["shots"].append(data["shots"][0] | {"name": "other"})
    job.write_text(json.dumps(data))
    status, _, err = invoke("pick", str(job), "--shot", "demo", "--ideation", "--candidate", "0")
    assert status == 2 and "no ideation candidates for shot demo" in err and "stylecomp ideate" in err
    manifest = ideate(job, "--shot", "demo")
    picked = tmp_path / "ideation/demo/picked.exr"

    status, out, err = invoke("pick", str(job), "--shot", "demo", "--ideation", "--candidate", "0")
    assert status == 0, err
    assert load_job(job).shots[0].overrides.prompt is None, "the job's prompt already is the candidate's"
    status, out, err = invoke("pick", str(job), "--shot", "demo", "--ideation", "--candidate", "1")
    assert status == 0, err
    assert str(picked) in out
    assert picked.read_bytes() == (manifest["folder"] / "candidate_01.exr").read_bytes()
    np.testing.assert_array_equal(read_plate(picked).channels(RGBA), still(manifest, 1))
    assert load_job(job).picked_still(load_job(job).shots[0]) == picked
    assert json.loads((manifest["folder"] / "manifest.json").read_text())["picked"] == 1
    shots = load_job(job).shots
    assert shots[0].overrides.prompt == "charcoal" and shots[1].overrides.prompt is None

    manifest_path = str(manifest["folder"] / "manifest.json")
    status, _, err = invoke("pick", str(job), "--shot", "demo", "--ideation", "--candidate", "7")
    assert status == 2 and "no candidate 7; the manifest has 0, 1" in err
    status, _, err = invoke("pick", str(job), "--shot", "other", "--manifest", manifest_path, "--candidate", "1")
    assert status == 2 and "these candidates are for shot 'demo', not 'other'" in err
    status, _, err = invoke("pick", str(job), "--shot", "demo", "--ideation", "--frame", "1001", "--candidate", "1")
    assert status == 2 and "ideation candidates have no frame" in err
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"kind": "ideation", "shot": "demo", "candidates": [{"index": 0, "seed": 1}]}')
    status, _, err = invoke("pick", str(job), "--shot", "demo", "--manifest", str(damaged), "--candidate", "0")
    assert status == 2 and "not an ideation manifest (no 'candidates' list with index, seed, prompt and exr)" in err
    damaged.write_text('{"kind": "ideation", "shot": ')
    status, _, err = invoke("pick", str(job), "--shot", "demo", "--manifest", str(damaged), "--candidate", "0")
    assert status == 2 and f"error: {damaged}: not valid JSON" in err


PLUGIN = '''
import numpy as np
from stylecomp.generators.interface import Generated

SETUPS = []


class Painter:
    """Paints a gradient whose colour follows the seed."""

    def __init__(self, setup):
        self.setup = setup

    def generate(self, request, cancel):
        y, x = np.mgrid[0:request.height, 0:request.width].astype(np.float32)
        tint = np.random.default_rng(request.seed).random(3).astype(np.float32)
        image = np.stack([x / request.width, y / request.height, np.full_like(x, 0.5)], axis=2) * tint
        return Generated([image], {"generator": "acme painter", "palette": self.setup.options["palette"]})

    def frame_count(self, frames):
        return 1


def load(setup):
    SETUPS.append(setup)
    return Painter(setup)
'''


def test_a_plugin_generator_installed_by_entry_point_is_used_and_an_unknown_one_is_named(
    tmp_path: Path, plates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "acme_ideas-1.0.dist-info").mkdir(parents=True)
    (site / "acme_ideas-1.0.dist-info/METADATA").write_text("Metadata-Version: 2.1\nName: acme-ideas\nVersion: 1.0\n")
    (site / "acme_ideas-1.0.dist-info/entry_points.txt").write_text("[stylecomp.generators]\nacme = acme_ideas:load\n")
    (site / "acme_ideas.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))

    job = write_job(
        tmp_path / "job",
        plates,
        None,
        ideation={
            "generator": "acme",
            "generator_options": {"palette": "pastel"},
            "seeds": [1, 2],
            "aspect_ratios": ["2:1"],
        },
    )
    manifest = ideate(job)
    import acme_ideas

    assert [(s.kind, s.model, dict(s.options), s.device) for s in acme_ideas.SETUPS] == [
        ("text_to_image", None, {"palette": "pastel"}, "cpu")
    ]
    assert manifest["generator"] == "acme"
    assert [(c["width"], c["height"]) for c in manifest["candidates"]] == [(128, 64)] * 2
    request = Request(prompt="ink and watercolour", seed=2, width=128, height=64, steps=3, guidance=3.0)
    painted = acme_ideas.Painter(acme_ideas.SETUPS[0]).generate(request, threading.Event()).frames[0]
    encoding = load_job(job).color.model_encoding()
    np.testing.assert_allclose(still(manifest, 1)[..., :3], encoding.to_scene_linear(painted), rtol=2e-3, atol=1e-4)
    attributes = header(manifest, 1)
    assert attributes["stylecomp/generator"] == "acme painter" and attributes["stylecomp/palette"] == "pastel"
    assert attributes["stylecomp/seed"] == 2 and attributes["stylecomp/stage"] == "ideation"

    data = json.loads(job.read_text())
    data["ideation"]["generator"] = "nope"
    job.write_text(json.dumps(data))
    status, _, err = invoke("ideate", str(job), "--device", "cpu")
    assert status == 2
    installed = err.split("no generator 'nope' is installed (installed: ")[1].split(")")[0].split(", ")
    assert {"acme", "diffusers"} <= set(installed)
