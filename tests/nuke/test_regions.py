"""StyleCompStylize's regions table through the stand-in `nuke`: names offered from the plate's Cryptomatte
manifest (a real EXR's header, as Nuke's Read shows it), rows written into the job as ``regions`` that the
engine's job spec accepts, bad rows refused with one line, and the table surviving a .nk save and load.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nuke  # the stand-in (tests/nuke/standin), top-level as in Nuke
import numpy as np
import OpenImageIO as oiio
import pytest

from stylecomp.comp import blend
from stylecomp.io.cryptomatte import find_layers, matte, select_layer
from stylecomp.io.plates import PROVENANCE_PREFIX, read_plate, write_plate
from stylecomp.jobspec import Shot
from stylecomp.regions.mattes import frame_regions
from stylecomp_nuke import actions, cryptomatte, gizmo, regions
from tests.nuke import nkscript
from tests.nuke.gizmo_eval import evaluate
from tests.nuke.gizmo_eval.windows import Window
from tests.nuke.stylize_node import GIZMOS_FOLDER, calls, job_of, press

standin = nuke.standin
STREET = Path("plates") / "blender_street" / "street.1008.exr"


def _street_plate(node, testdata: Path) -> list:
    """Connect a Read of the Blender street frame, with its header metadata; the engine's own list of its names."""
    path = testdata / STREET
    node.setInput(
        0,
        standin.add_source(
            "ReadStreet", ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"], standin.exr_metadata(str(path))
        ),
    )
    return sorted({name for layer in find_layers(read_plate(path)) for name in layer.names()})


def test_names_come_from_the_plates_cryptomatte_manifest(node, testdata: Path) -> None:
    engine_names = _street_plate(node, testdata)
    assert {"car", "bld0"} <= set(engine_names)
    standin.answers += [engine_names.index("car"), engine_names.index("bld0"), engine_names.index("car"), None]
    for _ in range(4):
        node[regions.knob_name(2, "pick")].execute()
    title, _, offered, _ = standin.choices[0]
    assert offered == engine_names and title == "StyleComp region 2"  # the manifest's names, as the engine reads them
    assert node[regions.knob_name(2, "matte")].value() == "car, bld0"  # added once each; cancel changes nothing
    assert node[regions.knob_name(1, "matte")].value() == "" and standin.messages == []


def test_nuke_reads_the_manifest_with_the_exr_prefix(testdata: Path) -> None:
    metadata = standin.exr_metadata(str(testdata / STREET))
    keys = [key for key in metadata if key.startswith("exr/cryptomatte/")]
    assert keys and all(key.count("/") == 3 for key in keys)  # exr/cryptomatte/<key>/<field>
    found = cryptomatte.layers(metadata)
    assert [layer.name for layer in found] == sorted(layer.name for layer in find_layers(read_plate(testdata / STREET)))


def test_sidecar_manifest_and_the_bare_prefix(tmp_path: Path) -> None:
    """A layer may keep its manifest in a sidecar beside the EXR (``manif_file``); metadata written by other tools
    may lack the ``exr/`` prefix. Both are read, as the Cryptomatte gizmo reads them."""
    (tmp_path / "objects.json").write_text(json.dumps({"lamp post": "0a1b2c3d", "car": "6e3a5a5c"}))
    metadata = {
        "input/filename": str(tmp_path / "shot.1001.exr"),
        "exr/cryptomatte/aaaaaaa/name": "CryptoObject",
        "exr/cryptomatte/aaaaaaa/manif_file": "objects.json",
        "cryptomatte/bbbbbbb/name": "CryptoMaterial",
        "cryptomatte/bbbbbbb/manifest": '{"paint": "01020304"}',
        "exr/cryptomatte/ccccccc/name": "CryptoAsset",
    }  # no manifest: no names
    assert [(layer.name, layer.names) for layer in cryptomatte.layers(metadata)] == [
        ("CryptoAsset", ()),
        ("CryptoMaterial", ("paint",)),
        ("CryptoObject", ("car", "lamp post")),
    ]
    assert cryptomatte.names(metadata) == ["car", "lamp post", "paint"]


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        (
            {"exr/cryptomatte/aaaaaaa/name": "CryptoObject", "exr/cryptomatte/aaaaaaa/manifest": "{car"},
            "the Cryptomatte manifest of layer CryptoObject is not JSON",
        ),
        (
            {
                "exr/cryptomatte/aaaaaaa/name": "CryptoObject",
                "exr/cryptomatte/aaaaaaa/manif_file": "gone.json",
                "input/filename": "/plates/shot.1001.exr",
            },
            "Cannot read the Cryptomatte manifest /plates/gone.json",
        ),
        ({"exr/compression": "zip"}, "has no Cryptomatte manifest"),
    ],
)
def test_names_picker_explains_a_plate_without_usable_names(node, metadata: dict, problem: str) -> None:
    node.setInput(0, standin.add_source("ReadOther", ["rgba.red"], metadata))
    node[regions.knob_name(1, "pick")].execute()
    assert len(standin.messages) == 1 and problem in standin.messages[0]
    assert standin.choices == [] and node[regions.knob_name(1, "matte")].value() == ""


def _fill(node) -> None:
    """Three rows: the car cel-shaded at 0.6 with a LoRA, the buildings by wildcard following the shot's
    strength, and a name that needs cleaning for a channel; row 2 is left empty on purpose."""
    node["strength"].setValue(0.45)
    node[regions.knob_name(1, "matte")].setValue("car")
    node[regions.knob_name(1, "prompt")].setValue("cel shading, bold ink")
    node[regions.knob_name(1, "strength")].setValue(0.6)
    node[regions.knob_name(1, "lora")].setValue("/loras/cel.safetensors")
    node[regions.knob_name(1, "lora_weight")].setValue(0.8)
    node[regions.knob_name(3, "matte")].setValue(" bld* , bld0 ")
    node[regions.knob_name(3, "prompt")].setValue("ink wash")
    node[regions.knob_name(5, "matte")].setValue("2 Street Lamp")
    node[regions.knob_name(5, "strength")].setValue(0.0)


def test_rows_become_the_shots_regions(node, engine_log: Path) -> None:
    _fill(node)
    press(node, "render_frame")
    data, job = job_of(node)  # validated by the engine's job spec
    shot = job.shots[0]
    assert [region.name for region in shot.regions] == ["car", "bld", "_2_Street_Lamp"]
    car, buildings, lamp = shot.regions
    assert (car.select.cryptomatte, car.prompt, car.strength) == (["car"], "cel shading, bold ink", 0.6)
    assert [(lora.path, lora.weight) for lora in car.loras] == [("/loras/cel.safetensors", 0.8)]
    assert (buildings.select.cryptomatte, buildings.prompt, buildings.strength, buildings.loras) == (
        ["bld*", "bld0"],
        "ink wash",
        0.45,
        None,
    )  # the shot's strength, followed by the row
    assert (lamp.prompt, lamp.strength, lamp.select.layer) == (None, 0.0, None)  # the shot's prompt; plate kept
    assert job.shot_regions(shot) == shot.regions and job.regions == []
    assert data["shots"][0]["regions"][1] == {
        "name": "bld",
        "select": {"cryptomatte": ["bld*", "bld0"]},
        "strength": 0.45,
        "prompt": "ink wash",
    }


def test_an_empty_table_writes_no_regions(node, engine_log: Path) -> None:
    press(node, "render_frame")
    data, job = job_of(node)
    assert "regions" not in data["shots"][0] and job.shots[0].regions == []


def test_same_first_names_get_distinct_region_names(node, engine_log: Path) -> None:
    node[regions.knob_name(1, "matte")].setValue("car")
    node[regions.knob_name(4, "matte")].setValue("car*")
    press(node, "render_frame")
    assert [region.name for region in job_of(node)[1].shots[0].regions] == ["car", "car_4"]


@pytest.mark.parametrize(
    ("row", "knob", "value", "problem"),
    [
        (2, "prompt", "ink", "Region 2 has a prompt or LoRA but no Cryptomatte names"),
        (6, "lora", "/loras/x.safetensors", "Region 6 has a prompt or LoRA but no Cryptomatte names"),
        (3, "strength", 1.5, "Region 3 (car): strength 1.5 is outside 0-1."),
    ],
)
def test_a_bad_row_is_one_line_and_nothing_runs(
    node, engine_log: Path, row: int, knob: str, value, problem: str
) -> None:
    if knob == "strength":
        node[regions.knob_name(row, "matte")].setValue("car")
    node[regions.knob_name(row, knob)].setValue(value)
    press(node, "render_frame")
    assert len(standin.messages) == 1 and standin.messages[0].startswith(f"StyleComp {node.name()}: {problem}")
    assert "\n" not in standin.messages[0] and node["label"].value().startswith("error: Region")
    assert standin.executed == [] and calls(engine_log) == []  # no plate written, no engine run


def test_the_table_survives_saving_and_opening_the_script(node, tmp_path: Path) -> None:
    _fill(node)
    node["depth_layer"].setValue("depth")  # a link knob: saved on the gizmo, set on its Shuffle when opened
    before = regions.read_regions(node)
    name = node.name()
    script = tmp_path / "shots" / "sh010_comp_v002.nk"
    script.parent.mkdir(exist_ok=True)
    nuke.scriptSave(str(script))
    text = script.read_text(encoding="utf-8")
    assert 'region1_prompt "cel shading, bold ink"' in text
    assert "region3_strength" not in text and "region2_matte" not in text  # defaults are not written, as in Nuke

    nuke.scriptClear()
    assert nuke.toNode(name) is None
    nuke.scriptOpen(str(script))
    opened = nuke.toNode(name)
    assert regions.read_regions(opened) == before
    assert opened.node("DepthLayer")["in"].value() == "depth"
    assert nuke.root()["first_frame"].value() == 1001 and opened["prompt"].value() == "ink and watercolour"
    opened["strength"].setValue(0.7)  # an untouched row still follows the shot's strength after loading
    assert [region["strength"] for region in regions.read_regions(opened)] == [0.6, 0.7, 0.0]


def test_the_tables_regions_blend_per_region_on_the_street_plate(node, engine_log: Path, testdata: Path) -> None:
    """From the table to the comp: the job the table writes, the engine's region weights for it on the Blender
    street frame (what it writes as regions.<name>), and StyleCompBlend's amount per region on those channels."""
    path = testdata / STREET
    _street_plate(node, testdata)
    node[regions.knob_name(1, "matte")].setValue("bld*")
    node[regions.knob_name(2, "matte")].setValue("car")  # a later row: wins where the car covers a building
    node[regions.knob_name(2, "prompt")].setValue("cel shading")
    press(node, "render_frame")
    job = job_of(node)[1]
    shot = Shot(**{**job.shots[0].model_dump(), "plate": str(path), "frames": None})
    plate = read_plate(path)
    window = plate.data_window
    found = frame_regions(job, shot, job.shot_regions(shot), plate, 1008, window)
    assert found.channels() == ["regions.bld", "regions.car"]
    bld, car = found.weights[..., 0], found.weights[..., 1]
    assert ((car > 0.01) & (car < 0.99)).sum() > 50 and (bld == 1).sum() > 1000  # soft car edges, whole buildings

    clean = plate.channels([f"ViewLayer.Combined.{c}" for c in "RGBA"])
    styled = np.concatenate([clean[..., [2, 0, 1]] * 1.4 + 0.03, clean[..., 3:]], axis=2).astype(np.float32)
    rgba = ("rgba.red", "rgba.green", "rgba.blue", "rgba.alpha")
    box = Window(window.x, window.y, window.width, window.height)
    inputs = {
        "Clean": ({name: clean[..., i] for i, name in enumerate(rgba)}, box),
        "Stylized": (
            {
                **{name: styled[..., i] for i, name in enumerate(rgba)},
                **dict(zip(found.channels(), (bld, car), strict=True)),
            },
            box,
        ),
    }
    gizmo = nkscript.parse((GIZMOS_FOLDER / "StyleCompBlend.gizmo").read_text(encoding="utf-8"))
    knobs = {
        "use_regions": True,
        "amount": 0.0,
        "region1_channel": "regions.car",
        "region1_amount": 1.0,
        "region2_channel": "regions.bld",
        "region2_amount": 0.5,
    }
    out, _ = evaluate(gizmo, inputs, knobs)
    got = np.stack([out[name] for name in rgba], axis=-1)
    np.testing.assert_allclose(got, blend.mix(clean, styled, car * 1.0 + bld * 0.5), rtol=1e-5, atol=1e-5)
    untouched = (car == 0) & (bld == 0)  # the road and sky: amount 0
    assert untouched.sum() > 1000 and np.array_equal(got[untouched], clean[untouched])
    assert not np.allclose(got[car == 1], clean[car == 1], atol=1e-3)


def test_a_plate_written_by_nuke_keeps_its_cryptomatte_regions(testdata: Path, tmp_path: Path) -> None:
    """Nuke names Blender's layer ``ViewLayer.CryptoObject`` ``ViewLayer_CryptoObject`` (no dots in its layer
    names), so the plate the gizmo's Write gives the engine has its rank channels under that name while the header
    keeps Blender's: the engine still finds the layer, and the car's matte is the same."""
    source = testdata / STREET
    buffer = oiio.ImageBuf(str(source))
    names = list(buffer.spec().channelnames)
    renamed = [name.replace("ViewLayer.CryptoObject", "ViewLayer_CryptoObject") for name in names]
    assert renamed != names
    written = oiio.ImageBufAlgo.channels(buffer, tuple(range(len(names))), newchannelnames=tuple(renamed))
    path = tmp_path / "plate.1008.exr"
    assert written.write(str(path)), written.geterror()

    original, as_nuke = read_plate(source), read_plate(path)
    layer = select_layer(as_nuke)
    assert layer.name == "ViewLayer.CryptoObject" and layer.channels[0].startswith("ViewLayer_CryptoObject00.")
    np.testing.assert_array_equal(
        matte(as_nuke, layer, ["car", "bld*"])[0], matte(original, select_layer(original), ["car", "bld*"])[0]
    )


@pytest.fixture
def real_engine(
    node, model: Path, testdata: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path
):
    """The node on the Blender street frame with the real engine (its command line) and a tiny random-weight
    SD 1.5 preset; the stand-in's Write hands the engine the real frame (as a script that reads the EXR and writes
    it again would)."""
    presets = tmp_path / "real_presets.json"
    presets.write_text(json.dumps({"tiny": {"family": "sd15", "path": str(model)}}), encoding="utf-8")
    monkeypatch.setenv("STYLECOMP_PRESETS", str(presets))
    monkeypatch.setenv("STYLECOMP_ENGINE", str(Path(sys.executable).parent / "stylecomp"))
    source = testdata / STREET
    standin.rendered = lambda write, frame: source.read_bytes()
    _street_plate(node, testdata)
    node["model_preset"].setValue("tiny")
    node["steps"].setValue(2)
    node["guidance"].setValue(1.0)
    standin.frame = 1008
    return node


def _render_with_the_engine(node) -> None:
    node["render_frame"].execute()
    standin.pump(lambda: not actions._RUNNING, timeout=300)


def test_the_gizmo_renders_per_object_looks_with_the_engine(real_engine, testdata: Path) -> None:
    """Render Frame on the Blender street frame: the road at strength 0 comes back as the plate bit for bit, the
    car region's weight comes back as regions.car, and the header records the regions with the Cryptomatte names
    they resolved to."""
    node, source = real_engine, testdata / STREET
    node["strength"].setValue(0.8)
    node[regions.knob_name(1, "matte")].setValue("road")
    node[regions.knob_name(1, "strength")].setValue(0.0)
    node[regions.knob_name(2, "matte")].setValue("car")
    node[regions.knob_name(2, "prompt")].setValue("cel shading, bold ink")
    _render_with_the_engine(node)
    assert node["label"].value() == "1 rendered, 0 cached", standin.messages

    plate, out = read_plate(source), read_plate(Path(node["cache_dir"].value()) / "stylized" / "stylized.1008.exr")
    job = job_of(node)[1]
    shot = Shot(**{**job.shots[0].model_dump(), "plate": str(source), "frames": None})
    want = frame_regions(job, shot, job.shot_regions(shot), plate, 1008, plate.data_window)
    got = out.channels(["regions.road", "regions.car"])
    np.testing.assert_allclose(got, want.weights, atol=1e-6)
    road = want.weights[..., 0] == 1.0
    assert road.sum() > 10000
    stylized = out.channels(["stylized.R", "stylized.G", "stylized.B"])
    clean = plate.channels([f"ViewLayer.Combined.{c}" for c in "RGB"])
    assert np.array_equal(stylized[road], clean[road])  # strength 0: the plate, bit for bit
    car = want.weights[..., 1] == 1.0
    assert car.sum() > 100 and not np.allclose(stylized[car], clean[car], atol=1e-3)  # the car is restyled
    recorded = json.loads(out.parts[0].attributes[PROVENANCE_PREFIX + "regions"])
    assert [(entry["name"], entry["resolved"]) for entry in recorded] == [
        ("road", {"ViewLayer.CryptoObject": ["road"]}),
        ("car", {"ViewLayer.CryptoObject": ["car"]}),
    ]


def test_a_name_the_manifest_lacks_is_the_engines_one_line_with_the_nearest_names(real_engine) -> None:
    node = real_engine
    node[regions.knob_name(1, "matte")].setValue("cars")
    _render_with_the_engine(node)
    assert node["tile_color"].value() == gizmo.ERROR_COLOUR
    assert node["label"].value() == "error: The engine refused the job or its input."
    assert "region 'cars': no Cryptomatte name matches 'cars' on any frame; nearest names: car" in standin.messages[-1]
    assert list((Path(node["cache_dir"].value()) / "stylized").glob("*.exr")) == []  # nothing rendered


def test_a_sidecar_manifest_reaches_the_engine(real_engine, testdata: Path, tmp_path: Path) -> None:
    """A render whose manifest is a sidecar beside its EXRs (``manif_file``): Names... reads it beside the Read's
    file, and the engine, which reads the plate the gizmo wrote into its cache folder, finds it there too."""
    node, render = real_engine, tmp_path / "render"
    render.mkdir()
    plate = read_plate(testdata / STREET)
    part, layer = plate.parts[0], select_layer(plate)
    sidecar = json.dumps({name: f"{bits:08x}" for name, bits in layer.manifest.items()})
    (render / "objects.json").write_text(sidecar, encoding="utf-8")
    part.spec.erase_attribute(f"cryptomatte/{layer.key}/manifest")
    part.spec.attribute(f"cryptomatte/{layer.key}/manif_file", "objects.json")
    path = render / "street.1008.exr"
    write_plate(path, [part])
    standin.rendered = lambda write, frame: path.read_bytes()
    node.setInput(
        0,
        standin.add_source(
            "ReadSidecar", ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"], standin.exr_metadata(str(path))
        ),
    )
    assert "car" in cryptomatte.names(node.input(0).metadata())
    node[regions.knob_name(1, "matte")].setValue("car")
    node[regions.knob_name(1, "prompt")].setValue("cel shading, bold ink")
    _render_with_the_engine(node)
    assert node["label"].value() == "1 rendered, 0 cached", standin.messages
    cache_dir = Path(node["cache_dir"].value())
    assert (cache_dir / "inputs" / "objects.json").read_text(encoding="utf-8") == sidecar
    out = read_plate(cache_dir / "stylized" / "stylized.1008.exr")
    np.testing.assert_allclose(out.channel("regions.car"), matte(plate, layer, ["car"])[0], atol=1e-6)
