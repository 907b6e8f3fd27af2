"""Per-object regions: the job spec, the CLI form, the overlap rule."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from stylecomp.errors import JobError
from stylecomp.jobspec import MAX_REGIONS, parse_job
from stylecomp.regions.mattes import overlap_weights, parse_region

SHOT = {"name": "sh010", "plate": "plates/sh010.####.exr", "output": "out/sh010.####.exr"}


def _job(regions: list[dict], where: str = "shot") -> dict:
    shot = copy.deepcopy(SHOT)
    if where == "shot":
        shot["regions"] = regions
        return {"shots": [shot]}
    return {"shots": [shot], "regions": regions}


def test_every_selector_form_and_override_parses() -> None:
    regions = [
        {"name": "car", "select": {"cryptomatte": ["car"], "layer": "CryptoObject"}, "prompt": "cel shading",
         "strength": 0.6, "loras": [{"path": "ink.safetensors", "weight": 0.7}], "seed": 7,
         "controlnet_weights": {"lineart": 0.5}, "ip_adapter_image": "ref.png", "negative_prompt": "blur"},
        {"name": "buildings", "select": {"cryptomatte": ["bld*"]}, "invert": True},
        {"name": "ids", "select": {"ids": [3, 4]}, "strength": 0.0},
        {"name": "mask", "select": {"matte": "mask.A"}},
        {"name": "seq", "select": {"matte_sequence": "mattes/car.####.exr", "channel": "A"}},
    ]
    job = parse_job(json.dumps(_job(regions)))
    car, buildings, ids, mask, seq = job.shot_regions(job.shots[0])
    assert car.select.cryptomatte == ["car"] and car.select.layer == "CryptoObject" and car.loras[0].weight == 0.7
    assert car.controlnet_weights == {"lineart": 0.5} and car.seed == 7
    assert buildings.invert and buildings.prompt is None and buildings.strength is None
    assert ids.select.ids == [3, 4] and ids.strength == 0.0
    assert mask.select.matte == "mask.A" and seq.select.channel == "A"
    again = parse_job(job.dumps())
    assert again.model_dump() == job.model_dump()


def test_job_regions_apply_to_shots_without_their_own() -> None:
    data = _job([{"name": "car", "select": {"cryptomatte": ["car"]}}], where="job")
    data["shots"].append({**SHOT, "name": "sh020", "regions": [{"name": "sky", "select": {"matte": "sky.A"}}]})
    job = parse_job(json.dumps(data))
    assert [r.name for r in job.shot_regions(job.shots[0])] == ["car"]
    assert [r.name for r in job.shot_regions(job.shots[1])] == ["sky"]


@pytest.mark.parametrize(
    "regions, message",
    [
        ([{"name": "car", "select": {"cryptomatte": ["car"]}, "strength": 1.5}],
         "shots[0].regions[0].strength: Input should be less than or equal to 1"),
        ([{"name": "car", "select": {"cryptomatte": ["car"]}, "strength": -0.1}],
         "shots[0].regions[0].strength: Input should be greater than or equal to 0"),
        ([{"name": "car", "select": {}}], "shots[0].regions[0].select: select needs exactly one of"),
        ([{"name": "car", "select": {"cryptomatte": ["car"], "ids": [1]}}],
         "shots[0].regions[0].select: select needs exactly one of cryptomatte, ids, matte, matte_sequence "
         "(got cryptomatte, ids)"),
        ([{"name": "car", "select": {"matte": "mask.A", "layer": "CryptoObject"}}],
         "shots[0].regions[0].select: select.layer goes with cryptomatte"),
        ([{"name": "car", "select": {"matte": "mask.A", "channel": "A"}}],
         "shots[0].regions[0].select: select.channel goes with matte_sequence"),
        ([{"name": "car.body", "select": {"matte": "mask.A"}}], "shots[0].regions[0].name: String should match"),
        ([{"name": "car", "select": {"matte": "a.A"}}, {"name": "car", "select": {"matte": "b.A"}}],
         "shots[0].regions: region name 'car' is used twice"),
        ([{"name": f"r{i}", "select": {"ids": [i]}} for i in range(MAX_REGIONS + 1)],
         f"shots[0].regions: {MAX_REGIONS + 1} regions; at most {MAX_REGIONS} per shot"),
        ([{"name": "car", "select": {"cryptomatte": ["car"]}, "controlnet_weights": {"albedo": 1.0}}],
         "shots[0].regions[0].controlnet_weights.albedo"),
        ([{"name": "car", "select": {"cryptomatte": ["car"]}, "colour": "red"}],
         "shots[0].regions[0].colour: Extra inputs are not permitted"),
    ],
)
def test_bad_regions_are_named(regions: list[dict], message: str) -> None:
    with pytest.raises(JobError) as info:
        parse_job(json.dumps(_job(regions)), "job.json")
    assert any(problem.startswith(message) for problem in info.value.problems), info.value.problems


def test_job_level_region_limit_is_named() -> None:
    regions = [{"name": f"r{i}", "select": {"ids": [i]}} for i in range(MAX_REGIONS + 1)]
    with pytest.raises(JobError, match=f"regions: {MAX_REGIONS + 1} regions; at most {MAX_REGIONS} per shot"):
        parse_job(json.dumps(_job(regions, where="job")), "job.json")


# --- the CLI form and the overlap rule ---------------------------------------------------------------------


def test_region_option_reads_as_written() -> None:
    car = parse_region("car: prompt=cel shading, bold ink; strength=0.6; seed=3")
    assert car.name == "car" and car.select.cryptomatte == ["car"] and car.prompt == "cel shading, bold ink"
    assert car.strength == 0.6 and car.seed == 3
    buildings = parse_region("buildings: match=bld*, tower; layer=CryptoObject; invert=true; "
                             "loras=ink.safetensors:0.7, wash.safetensors; controlnet_weights=lineart:0.5")
    assert buildings.select.cryptomatte == ["bld*", "tower"] and buildings.select.layer == "CryptoObject"
    assert buildings.invert and [(lora.path, lora.weight) for lora in buildings.loras] == [
        ("ink.safetensors", 0.7), ("wash.safetensors", 1.0)]
    assert buildings.controlnet_weights == {"lineart": 0.5}
    assert parse_region("ids_34: ids=3,4").select.ids == [3, 4]
    assert parse_region("hero: matte=mask.A; strength=0").select.matte == "mask.A"
    seq = parse_region("car2: matte_sequence=mattes/car.####.exr; channel=R")
    assert seq.select.matte_sequence == "mattes/car.####.exr" and seq.select.channel == "R"


@pytest.mark.parametrize("text, message", [
    ("car prompt=ink", "expected NAME: key=value"),
    ("car: colour=red", "unknown key 'colour'"),
    ("car: promt=ink", "did you mean 'prompt'?"),
    ("car: strength=1.5", "strength: Input should be less than or equal to 1"),
    ("car: strength=lots", "strength: Input should be a valid number"),
    ("car: ids=3; matte=mask.A", "give one selector, not ids and matte"),
    ("car: prompt=a; prompt=b", "'prompt' is given twice"),
    ("car: invert=maybe", "invert='maybe': use true or false"),
    ("car.body: prompt=a", "name: String should match pattern"),
    ("car: prompt", "'prompt' is not key=value"),
])
def test_bad_region_options_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_region(text)


def test_later_regions_win_by_coverage() -> None:
    coverage = np.array([[[1.0, 1.0], [1.0, 0.25], [0.5, 0.5], [0.0, 0.0]]], np.float32)  # (1, 4, 2)
    weights = overlap_weights(coverage)
    assert np.allclose(weights[0], [[0.0, 1.0], [0.75, 0.25], [0.25, 0.5], [0.0, 0.0]])
    assert np.all(weights.sum(axis=2) <= 1.0)
