"""Cryptomatte: hashes, the manifest, coverage mattes by name and the dominant-object ID map, on Blender's real plates.

The expected values come from the file itself (the manifest's hex IDs, the IndexOB pass Blender
wrote beside the Cryptomatte) and from a decode written out here from the specification, never
from the module under test.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from stylecomp.color import ModelEncoding
from stylecomp.comp.blend import line_overlay, mix
from stylecomp.errors import PlateError
from stylecomp.io import cryptomatte
from stylecomp.io.aovs import object_ids
from stylecomp.io.conditioning import line_art
from stylecomp.io.plates import ImagePart, read_plate, write_plate
from stylecomp.jobspec import parse_job
from stylecomp.render.headless_comp import write_comp_frame
from stylecomp.render.loop import STYLIZED_CHANNELS, frame_inputs
from stylecomp.stage import Clip
from stylecomp.temporal.flicker import read_plate_frame
from tests.tiny_jobs import invoke

SHOT = Path("plates") / "blender_street"
LAYER = "ViewLayer.CryptoObject"
RANKS = [f"{LAYER}{level:02d}.{c}" for level in range(3) for c in "rgba"]
NAMES = ["bld0", "bld1", "bld2", "bld3", "car", "pole", "road", "streetlamp"]


def frame_path(testdata: Path, frame: int) -> Path:
    return testdata / SHOT / f"street.{frame}.exr"


def spec_matte(path: Path, names: list[str]) -> np.ndarray:
    """A matte as the specification (and Nuke's Cryptomatte node) computes it: the coverage of every rank whose ID
    equals one of the names' manifest IDs, summed."""
    plate = read_plate(path)
    manifest = json.loads(plate.parts[0].attributes["cryptomatte/542cafa/manifest"])
    wanted = [struct.unpack("<f", int(manifest[name], 16).to_bytes(4, "little"))[0] for name in names]
    values = plate.channels(RANKS)
    total = np.zeros(values.shape[:2], np.float32)
    for rank in range(6):
        total += np.where(np.isin(values[..., 2 * rank], np.float32(wanted)), values[..., 2 * rank + 1], 0.0)
    return total


def interior(plane: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds one value of ``plane`` (away from every edge)."""
    height, width = plane.shape
    padded = np.pad(plane, 1, mode="edge")
    same = np.ones(plane.shape, bool)
    for dy in range(3):
        for dx in range(3):
            same &= padded[dy : dy + height, dx : dx + width] == plane
    return same


# ---------------------------------------------------------------------------------------------
# Hashing.


def test_murmurhash3_matches_the_reference_vectors() -> None:
    # Published MurmurHash3_x86_32 test vectors (SMHasher's verification strings).
    assert cryptomatte.murmurhash3_32(b"") == 0
    assert cryptomatte.murmurhash3_32(b"", seed=1) == 0x514E28B7
    assert cryptomatte.murmurhash3_32(b"", seed=0xFFFFFFFF) == 0x81F16F39
    assert cryptomatte.murmurhash3_32(b"\0\0\0\0") == 0x2362F9DE
    assert cryptomatte.murmurhash3_32("hello") == 0x248BFA47
    assert cryptomatte.murmurhash3_32("The quick brown fox jumps over the lazy dog") == 0x2E4FF723


def test_ids_never_are_denormal_nan_or_inf() -> None:
    hashes = {name: cryptomatte.murmurhash3_32(name) for name in (f"object{i}" for i in range(3000))}
    edge = [name for name, bits in hashes.items() if (bits >> 23) & 0xFF in (0, 255)]
    assert edge, "some names hash onto exponent 0 or 255"
    for name in edge:
        bits = cryptomatte.name_id(name)
        assert bits == hashes[name] ^ (1 << 23)
        value = np.float32(cryptomatte.id_float(bits))
        assert np.isfinite(value) and abs(value) >= np.finfo(np.float32).tiny
    plain = next(name for name in hashes if name not in edge)
    assert cryptomatte.name_id(plain) == hashes[plain]


def test_blender_manifest_hashes_and_key_match_ours(testdata: Path) -> None:
    plate = read_plate(frame_path(testdata, 1001), pixels=False)
    [layer] = cryptomatte.find_layers(plate)
    assert (layer.name, layer.key, layer.problem) == (LAYER, "542cafa", None)
    assert cryptomatte.layer_key(layer.name) == layer.key
    assert layer.channels == tuple(RANKS) and layer.ranks == 6
    manifest = json.loads(plate.parts[0].attributes["cryptomatte/542cafa/manifest"])
    assert layer.names() == NAMES == sorted(manifest)
    for name, hex_id in manifest.items():
        assert f"{cryptomatte.name_id(name):08x}" == hex_id, name


# ---------------------------------------------------------------------------------------------
# Decoding the ranks.


def test_dominant_object_agrees_with_blenders_index_pass(testdata: Path) -> None:
    agree = total = off_edges = 0
    pairs: set[tuple[str, float]] = set()
    for frame in range(1001, 1017):
        plate = read_plate(frame_path(testdata, frame))
        layer = cryptomatte.select_layer(plate)
        ids, window = cryptomatte.dominant_ids(plate, layer)
        assert window == plate.data_window and ids.dtype == np.float32 and np.isfinite(ids).all()
        index = plate.channel("ViewLayer.IndexOB.X")
        by_bits = {bits: name for name, bits in layer.manifest.items()}
        named = np.vectorize(lambda bits, by_bits=by_bits: by_bits.get(int(bits), ""))(ids.view(np.uint32))
        # each object's index: the index Blender wrote on most of its pixels
        lookup = {name: np.bincount(index[named == name].astype(int)).argmax() for name in set(named.ravel()) - {""}}
        lookup[""] = 0
        pairs |= {(name, float(value)) for name, value in lookup.items()}
        mapped = np.vectorize(lookup.get)(named)
        agree += int((mapped == index).sum())
        total += index.size
        off_edges += int(((mapped != index) & interior(index)).sum())
    assert agree / total > 0.99  # measured 0.9949: the rest are anti-aliased edges
    assert off_edges < 0.0002 * total  # measured 198 of 2 073 600 pixels
    names = {name for name, _ in pairs}
    assert names == {"", *NAMES} and len(pairs) == len(names), "one index per object, one object per index"
    assert len({value for _, value in pairs}) == len(pairs)


def test_rank_coverage_sums_to_one_on_objects_and_zero_on_the_sky(testdata: Path) -> None:
    for frame in (1001, 1008, 1016):
        plate = read_plate(frame_path(testdata, frame))
        bits, coverage, _ = cryptomatte.read_ranks(plate, cryptomatte.select_layer(plate))
        total = coverage.sum(axis=2)
        index = plate.channel("ViewLayer.IndexOB.X")
        solid = interior(index) & (index > 0)
        assert total.max() <= 1.0 + 1e-5
        assert np.mean(np.abs(total[solid] - 1.0) < 1e-3) > 0.999  # measured: all but 3-27 of 109 000-118 000
        sky = interior(index) & (index == 0)
        # a few hold a sample or two of a thin object Blender's index pass missed (measured: 99.89% are 0)
        assert sky.sum() > 1000 and np.mean(total[sky] == 0.0) > 0.995
        assert (np.diff(coverage, axis=2) <= 0).all(), "ranks are sorted by coverage"
        assert ((coverage == 0) <= (bits == 0)).all()


def test_mattes_by_name_and_wildcard_are_soft_and_match_the_specification(testdata: Path) -> None:
    path = frame_path(testdata, 1008)
    plate = read_plate(path)
    layer = cryptomatte.select_layer(plate, "CryptoObject")
    assert layer.resolve(["bld*", "car", "bld1"]) == ["bld0", "bld1", "bld2", "bld3", "car"]
    buildings, window = cryptomatte.matte(plate, layer, ["bld*"])
    assert window == plate.data_window
    np.testing.assert_allclose(buildings, spec_matte(path, ["bld0", "bld1", "bld2", "bld3"]), atol=1e-6)
    each = sum(cryptomatte.matte(plate, layer, [name])[0] for name in ("bld0", "bld1", "bld2", "bld3"))
    np.testing.assert_allclose(buildings, each, atol=1e-6)
    car = cryptomatte.matte(plate, layer, ["car"])[0]
    index = plate.channel("ViewLayer.IndexOB.X")
    assert np.mean(car[interior(index) & (index == 3)] == 1.0) > 0.99 and (index == 3).sum() > 200
    soft = (car > 0.01) & (car < 0.99)
    assert soft.sum() > 20, "anti-aliased edges keep partial coverage"
    everything = cryptomatte.matte(plate, layer, ["*"])[0]
    np.testing.assert_allclose(everything, np.clip(spec_matte(path, NAMES), 0, 1), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Bad input: one line, and what can still be decoded is.


def damaged_copy(testdata: Path, tmp_path: Path, **header: str | None) -> Path:
    """Frame 1008 with header attributes replaced (None erases one)."""
    plate = read_plate(frame_path(testdata, 1008))
    part = plate.parts[0]
    for name, value in header.items():
        key = f"cryptomatte/542cafa/{name}"
        if value is None:
            part.spec.erase_attribute(key)
        else:
            part.spec.attribute(key, value)
    path = tmp_path / "street.1008.exr"
    write_plate(path, [part])
    return path


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        ({"manifest": None}, "no manifest in the header"),
        ({"manifest": '{"car": "882071ea", '}, "its manifest is not JSON"),
        ({"manifest": '["car"]'}, "is not a JSON object"),
        ({"manifest": '{"car": "zz"}'}, "not 8 hex digits, for car"),
        ({"manifest": None, "manif_file": "missing.json"}, "cannot read its manifest file"),
        ({"hash": "md5"}, "unsupported hash 'md5'"),
    ],
)
def test_a_bad_manifest_is_one_line_and_ids_still_decode(
    testdata: Path, tmp_path: Path, header: dict, complaint: str
) -> None:
    path = damaged_copy(testdata, tmp_path, **header)
    plate = read_plate(path)
    [layer] = cryptomatte.find_layers(plate)
    with pytest.raises(PlateError) as error:
        cryptomatte.matte(plate, layer, ["car"])
    message = str(error.value)
    assert complaint in message and "\n" not in message and str(path) in message
    ids, _ = cryptomatte.dominant_ids(plate, layer)
    assert (ids.view(np.uint32) == 0x882071EA).sum() > 200, "the car's ID needs no manifest"


def test_a_sidecar_manifest_is_read(testdata: Path, tmp_path: Path) -> None:
    source = read_plate(frame_path(testdata, 1008), pixels=False).parts[0].attributes
    (tmp_path / "street_manifest.json").write_text(source["cryptomatte/542cafa/manifest"])
    path = damaged_copy(testdata, tmp_path, manifest=None, manif_file="street_manifest.json")
    plate = read_plate(path)
    layer = cryptomatte.select_layer(plate)
    assert layer.names() == NAMES
    np.testing.assert_array_equal(
        cryptomatte.matte(plate, layer, ["car"])[0], spec_matte(frame_path(testdata, 1008), ["car"])
    )


def test_unknown_names_and_half_float_ids_are_refused(testdata: Path, tmp_path: Path) -> None:
    plate = read_plate(frame_path(testdata, 1008))
    layer = cryptomatte.select_layer(plate)
    with pytest.raises(
        PlateError,
        match=r"no object matching 'truck'; names: bld0, bld1, bld2, bld3, car, pole, "
        r"road, streetlamp$",
    ):
        cryptomatte.matte(plate, layer, ["car", "truck"])
    with pytest.raises(
        PlateError,
        match=r"no Cryptomatte layer 'CryptoMaterial' in the file \(layers: "
        r"ViewLayer.CryptoObject\)",
    ):
        cryptomatte.select_layer(plate, "CryptoMaterial")
    half = tmp_path / "half.exr"
    write_plate(half, plate.parts, pixel_type="half")
    with pytest.raises(PlateError, match="Cryptomatte IDs need 32-bit float channels"):
        cryptomatte.dominant_ids(read_plate(half), layer)


# ---------------------------------------------------------------------------------------------
# The ID consumers and the comp.


def test_id_consumers_take_the_cryptomatte_unless_the_job_maps_an_id_pass(testdata: Path, tmp_path: Path) -> None:
    path = frame_path(testdata, 1008)
    plate = read_plate(path)
    expected, _ = cryptomatte.dominant_ids(plate, cryptomatte.select_layer(plate))
    ids, window = object_ids(plate)
    assert window == plate.data_window
    np.testing.assert_array_equal(ids.view(np.uint32), expected.view(np.uint32))
    mapped, _ = object_ids(plate, {"object_id": ["ViewLayer.IndexOB.X"]})
    np.testing.assert_array_equal(mapped, plate.channel("ViewLayer.IndexOB.X"))
    # flicker's disocclusion test reads the same plane
    frame = read_plate_frame(str(path), 1008, plate.display_window, ModelEncoding())
    np.testing.assert_array_equal(frame.ids.view(np.uint32), expected.view(np.uint32))
    # the line-art ControlNet and the consistency mechanisms get it as their ObjectID clip
    _, shot = blender_job(testdata, tmp_path)
    inputs, _ = frame_inputs(plate, 1008, shot, [Clip("ObjectID", 1, optional=True)])
    np.testing.assert_array_equal(inputs.get("ObjectID")[..., 0].view(np.uint32), expected.view(np.uint32))
    lines = line_art(object_id=inputs.get("ObjectID")[..., 0])[..., 0]
    assert lines[interior(expected)].max() == 0 and lines.sum() > 500


def blender_job(testdata: Path, tmp_path: Path, **comp: object) -> tuple:
    """A job for the Blender shot whose comp block is ``comp``, and its shot."""
    job = parse_job(
        json.dumps(
            {
                "shots": [
                    {
                        "name": "street",
                        "plate": str(testdata / SHOT / "street.####.exr"),
                        "frames": {"first": 1008, "last": 1008},
                        "output": str(tmp_path / "out/street.####.exr"),
                    }
                ],
                "prompt": "watercolor",
                "comp": {"output": str(tmp_path / "comp/{shot}.####.exr"), **comp},
            }
        )
    )
    return job, job.shots[0]


def write_stylized(tmp_path: Path, plate_path: Path) -> tuple[Path, np.ndarray]:
    """A stand-in stylized frame (the plate's colours swapped and brightened) as stylecomp's output layer."""
    plate = read_plate(plate_path)
    clean = plate.channels(
        ["ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B", "ViewLayer.Combined.A"]
    )
    styled = np.concatenate([clean[..., [2, 0, 1]] * 2.0 + 0.1, clean[..., 3:]], axis=2).astype(np.float32)
    path = tmp_path / "stylized.1008.exr"
    write_plate(
        path,
        [
            ImagePart.create(
                styled, list(STYLIZED_CHANNELS), plate.data_window, plate.display_window, pixel_type="float"
            )
        ],
    )
    return path, styled


def test_comp_mattes_the_blender_shot_by_cryptomatte_name(testdata: Path, tmp_path: Path) -> None:
    plate_path = frame_path(testdata, 1008)
    job, shot = blender_job(
        testdata,
        tmp_path,
        weight="cryptomatte",
        mattes=["car", "bld*"],
        amount=0.8,
        lines=True,
        line_colour=[1.0, 0.0, 0.0],
    )
    stylized_path, styled = write_stylized(tmp_path, plate_path)
    output = tmp_path / "comp/street.1008.exr"
    write_comp_frame(job, shot, str(plate_path), str(stylized_path), str(output), 1008)
    result = read_plate(output).channels(["R", "G", "B", "A"])

    plate = read_plate(plate_path)
    clean = plate.channels(
        ["ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B", "ViewLayer.Combined.A"]
    )
    weight = spec_matte(plate_path, ["car", "bld0", "bld1", "bld2", "bld3"]) * 0.8
    expected = mix(clean, styled, weight)
    expected = line_overlay(
        expected, object_id=cryptomatte.dominant_ids(plate, cryptomatte.select_layer(plate))[0], colour=(1.0, 0.0, 0.0)
    )
    np.testing.assert_allclose(result, expected, rtol=2e-3, atol=2e-3)  # half-float output

    lines = (result[..., 0] == 1.0) & (result[..., 1] == 0.0)
    inside = interior(weight) & ~lines
    on_car = inside & (spec_matte(plate_path, ["car"]) == 1.0)
    on_road = inside & (spec_matte(plate_path, ["road"]) == 1.0)
    assert on_car.sum() > 100 and on_road.sum() > 1000
    np.testing.assert_allclose(result[on_car], (0.2 * clean + 0.8 * styled)[on_car], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(result[on_road], clean[on_road], rtol=2e-3, atol=2e-3)
    edge = (weight > 0.05) & (weight < 0.75)
    assert edge.sum() > 50 and not np.allclose(result[edge], clean[edge], atol=1e-3), "soft edges blend partly"
    assert lines.sum() > 200, "lines follow the Cryptomatte objects"


def test_comp_with_an_unknown_name_stops_before_anything_renders(testdata: Path, tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "shots": [
                    {
                        "name": "street",
                        "plate": str(testdata / SHOT / "street.####.exr"),
                        "frames": {"first": 1001, "last": 1002},
                        "output": "out/street.####.exr",
                    }
                ],
                "model": {"family": "sd15", "path": str(tmp_path / "no-model-needed")},
                "prompt": "watercolor",
                "comp": {"weight": "cryptomatte", "mattes": ["car", "truck*"]},
            }
        )
    )
    status, _, err = invoke("comp", str(job))
    assert status == 2
    assert (
        err.strip().endswith(
            "has no object matching 'truck*'; names: bld0, bld1, bld2, bld3, car, pole, road, streetlamp"
        )
        and err.count("\n") == 1
    ), err
    assert not list(tmp_path.glob("**/*.exr")), "nothing rendered"
    job.write_text(job.read_text().replace('"mattes": ["car", "truck*"]', '"mattes": []'))
    status, _, err = invoke("comp", str(job))
    assert status == 2 and "weight 'cryptomatte' needs mattes" in err


def test_inspect_lists_the_cryptomatte_layer_and_its_names(testdata: Path) -> None:
    pattern = str(testdata / SHOT / "street.####.exr")
    status, out, err = invoke("inspect", pattern, "--headers-only")
    assert status == 0, err
    assert (
        f"  Cryptomatte  {LAYER} (key 542cafa, 6 ranks): bld0, bld1, bld2, bld3, car, pole, road, streetlamp"
        in out.splitlines()
    )
    status, out, err = invoke("inspect", pattern, "--headers-only", "--json")
    assert status == 0, err
    [layer] = json.loads(out)["cryptomatte"]
    assert layer["name"] == LAYER and layer["key"] == "542cafa" and layer["ranks"] == 6
    assert layer["names"] == NAMES and layer["channels"] == RANKS and layer["problem"] is None
