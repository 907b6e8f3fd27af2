"""Per-object regions: the job spec, the CLI form, the overlap rule."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.diffusion.resolution import model_calls
from stylecomp.diffusion.stylize import StylizeParameters, StylizeStage, _columns, _Frame, _segments, _tile_seed
from stylecomp.errors import JobError
from stylecomp.io.cryptomatte import CryptomatteLayer
from stylecomp.io.plates import Window
from stylecomp.jobspec import MAX_REGIONS, parse_job
from stylecomp.regions.mattes import FrameRegions, _matching, overlap_weights, parse_region

SHOT = {"name": "sh010", "plate": "plates/sh010.####.exr", "output": "out/sh010.####.exr"}


def _job(regions: list[dict], where: str = "shot") -> dict:
    shot = copy.deepcopy(SHOT)
    if where == "shot":
        shot["regions"] = regions
        return {"shots": [shot]}
    return {"shots": [shot], "regions": regions}


def test_every_selector_form_and_override_parses() -> None:
    regions = [
        {
            "name": "car",
            "select": {"cryptomatte": ["car"], "layer": "CryptoObject"},
            "prompt": "cel shading",
            "strength": 0.6,
            "loras": [{"path": "ink.safetensors", "weight": 0.7}],
            "seed": 7,
            "controlnet_weights": {"lineart": 0.5},
            "ip_adapter_image": "ref.png",
            "negative_prompt": "blur",
        },
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
        (
            [{"name": "car", "select": {"cryptomatte": ["car"]}, "strength": 1.5}],
            "shots[0].regions[0].strength: Input should be less than or equal to 1",
        ),
        (
            [{"name": "car", "select": {"cryptomatte": ["car"]}, "strength": -0.1}],
            "shots[0].regions[0].strength: Input should be greater than or equal to 0",
        ),
        ([{"name": "car", "select": {}}], "shots[0].regions[0].select: select needs exactly one of"),
        (
            [{"name": "car", "select": {"cryptomatte": ["car"], "ids": [1]}}],
            (
                "shots[0].regions[0].select: select needs exactly one of cryptomatte, ids, matte, matte_sequence "
                "(got cryptomatte, ids)"
            ),
        ),
        (
            [{"name": "car", "select": {"matte": "mask.A", "layer": "CryptoObject"}}],
            "shots[0].regions[0].select: select.layer goes with cryptomatte",
        ),
        (
            [{"name": "car", "select": {"matte": "mask.A", "channel": "A"}}],
            "shots[0].regions[0].select: select.channel goes with matte_sequence",
        ),
        ([{"name": "car.body", "select": {"matte": "mask.A"}}], "shots[0].regions[0].name: String should match"),
        (
            [{"name": "car", "select": {"matte": "a.A"}}, {"name": "car", "select": {"matte": "b.A"}}],
            "shots[0].regions: region name 'car' is used twice",
        ),
        (
            [{"name": f"r{i}", "select": {"ids": [i]}} for i in range(MAX_REGIONS + 1)],
            f"shots[0].regions: {MAX_REGIONS + 1} regions; at most {MAX_REGIONS} per shot",
        ),
        (
            [{"name": "car", "select": {"cryptomatte": ["car"]}, "controlnet_weights": {"albedo": 1.0}}],
            "shots[0].regions[0].controlnet_weights.albedo",
        ),
        (
            [{"name": "car", "select": {"cryptomatte": ["car"]}, "colour": "red"}],
            "shots[0].regions[0].colour: Extra inputs are not permitted",
        ),
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
    buildings = parse_region(
        "buildings: match=bld*, tower; layer=CryptoObject; invert=true; "
        "loras=ink.safetensors:0.7, wash.safetensors; controlnet_weights=lineart:0.5"
    )
    assert buildings.select.cryptomatte == ["bld*", "tower"] and buildings.select.layer == "CryptoObject"
    assert buildings.invert and [(lora.path, lora.weight) for lora in buildings.loras] == [
        ("ink.safetensors", 0.7),
        ("wash.safetensors", 1.0),
    ]
    assert buildings.controlnet_weights == {"lineart": 0.5}
    assert parse_region("ids_34: ids=3,4").select.ids == [3, 4]
    assert parse_region("hero: matte=mask.A; strength=0").select.matte == "mask.A"
    seq = parse_region("car2: matte_sequence=mattes/car.####.exr; channel=R")
    assert seq.select.matte_sequence == "mattes/car.####.exr" and seq.select.channel == "R"


def test_a_name_that_is_no_identifier_is_the_pattern_and_semicolons_escape() -> None:
    """Cryptomatte names from DCCs (Car.001, a namespace ns:car) select themselves and name the region after
    themselves as the Nuke table does; ``\\;`` keeps a semicolon in a prompt."""
    dotted = parse_region("Car.001: prompt=cel\\; bold ink; strength=0.5")
    assert (dotted.name, dotted.select.cryptomatte, dotted.prompt, dotted.strength) == (
        "Car_001",
        ["Car.001"],
        "cel; bold ink",
        0.5,
    )
    spaced = parse_region("ns:car: strength=0.2")
    assert (spaced.name, spaced.select.cryptomatte, spaced.strength) == ("ns_car", ["ns:car"], 0.2)
    assert (parse_region("bld*:").name, parse_region("bld*:").select.cryptomatte) == ("bld", ["bld*"])
    assert parse_region("2 Street Lamp: strength=0").name == "_2_Street_Lamp"


def test_cryptomatte_patterns_match_case_sensitively_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """fnmatch.filter folds case where os.path.normcase does (Windows); the check uses fnmatchcase, so selection
    must too or a pattern the check refused could select names at render time."""
    monkeypatch.setattr(os.path, "normcase", str.lower)  # as on Windows
    layer = CryptomatteLayer(
        "plate.exr", "abcdef0", "CryptoObject", ("CryptoObject00.R",), {"Car": 1, "car_wheel": 2, "CART": 3}
    )
    assert _matching(layer, ["Car*"]) == ["Car"]
    assert _matching(layer, ["car*"]) == ["car_wheel"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("car prompt=ink", "expected NAME: key=value"),
        ("car: colour=red", "unknown key 'colour'"),
        ("car: promt=ink", "did you mean 'prompt'?"),
        ("car: strength=1.5", "strength: Input should be less than or equal to 1"),
        ("car: strength=lots", "strength: Input should be a valid number"),
        ("car: ids=3; matte=mask.A", "give one selector, not ids and matte"),
        ("car: prompt=a; prompt=b", "'prompt' is given twice"),
        ("car: invert=maybe", "invert='maybe': use true or false"),
        ("car: prompt", "'prompt' is not key=value"),
    ],
)
def test_bad_region_options_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_region(text)


def test_later_regions_win_by_coverage() -> None:
    # Pixels: full overlap, soft edge over a full matte, a Cryptomatte pixel split 0.4/0.6 between two objects,
    # two soft mattes that overlap by more than the pixel, nothing.
    coverage = np.array([[[1.0, 1.0], [1.0, 0.25], [0.4, 0.6], [0.8, 0.6], [0.0, 0.0]]], np.float32)  # (1, 5, 2)
    weights = overlap_weights(coverage)
    assert np.allclose(weights[0], [[0.0, 1.0], [0.75, 0.25], [0.4, 0.6], [0.4, 0.6], [0.0, 0.0]])
    assert np.all(weights.sum(axis=2) <= 1.0 + 1e-7)
    assert weights[0, 2].sum() == pytest.approx(1.0)  # the split pixel leaves the shot's own look nothing


@pytest.mark.parametrize(
    "policy, mechanisms, frame, seeds",
    [
        ("per_frame", [], 1003, [1013, 1008, 1013]),  # the region's seed moves with the frame like the shot's
        ("fixed", [], 1003, [10, 5, 10]),
        ("per_frame", ["locked_seed"], 1003, [10, 5, 10]),
    ],
)
def test_region_seeds_follow_the_seed_policy(policy: str, mechanisms: list[str], frame: int, seeds: list[int]) -> None:
    """Column 0 carries the frame's own seed (the pipeline's draw), so a region without a seed shares its noise and
    a region's seed is compared with the frame's, not the job's value."""
    document = _job([{"name": "car", "select": {"ids": [1]}, "seed": 5}, {"name": "road", "select": {"ids": [2]}}])
    document |= {
        "model": {"family": "sd15", "path": "model"},
        "seed": {"policy": policy, "value": 10},
        "consistency": {"mechanisms": mechanisms},
    }
    job = parse_job(json.dumps(document))
    p = StylizeParameters.for_shot(job, job.shots[0])
    assert [column.seed for column in _columns(p, _segments(p), 1.0, frame)] == seeds


def test_region_loras_are_loaded_by_stylize_only() -> None:
    """Callers of for_shot other than StylizeStage (ideation, hosts' UIs) see the shot's model as the job gives it;
    the regions' LoRAs are extra adapters at weight 0 that only the stylize pipeline loads."""
    document = _job([{"name": "car", "select": {"ids": [1]}, "loras": [{"path": "/l/cel.safetensors", "weight": 0.7}]}])
    document |= {"model": {"family": "sd15", "path": "/m", "loras": [{"path": "/l/ink.safetensors", "weight": 0.5}]}}
    job = parse_job(json.dumps(document))
    p = StylizeParameters.for_shot(job, job.shots[0])
    assert [(lora.path, lora.weight) for lora in p.model.loras] == [("/l/ink.safetensors", 0.5)]
    assert [(lora.path, lora.weight) for lora in p.loaded_model().loras] == [
        ("/l/ink.safetensors", 0.5),
        ("/l/cel.safetensors", 0.0),
    ]


def test_each_tile_draws_region_noise_from_its_own_seed(tiny: dict[str, Path]) -> None:
    """Tiles of a frame get seeds derived from the frame's (as the shot's noise does), so a region's noise does not
    repeat from tile to tile; a region without a seed shares each tile's own draw."""
    document = _job([{"name": "car", "select": {"ids": [1]}, "seed": 5}, {"name": "road", "select": {"ids": [2]}}])
    document |= {
        "model": {"family": "sd15", "path": str(tiny["sd15"])},
        "seed": {"policy": "per_frame", "value": 10},
        "resolution": {"mode": "tiles", "working_size": 64, "tile_overlap": 16},
    }
    job = parse_job(json.dumps(document))
    shot = job.shots[0]
    stage = StylizeStage(StylizeParameters.for_shot(job, shot), job.color.model_encoding(), PipelinePool("cpu"))
    frame, image = 1003, np.zeros((100, 150, 3), np.float32)
    calls = model_calls(image, [], stage.geometry(), stage.params.resolution)
    assert len(calls.images) > 1
    weights = np.zeros((100, 150, 2), np.float32)
    weights[:50, :, 0], weights[50:, :, 1] = 1.0, 1.0
    work = _Frame(
        frame,
        Window(0, 0, 150, 100),
        image,
        image[..., 0],
        None,
        None,
        0.6,  # type: ignore[arg-type]  # wrong on purpose: the error is the test
        stage.params.frame_seed(frame),
        calls,
    )
    stage._regional_frame(work, FrameRegions(("car", "road"), weights, (None, None)), 1.0)
    seeds = [[column.seed for column in call.columns] for call in work.regional]
    for tile, (own, car, road) in enumerate(seeds):
        assert own == road == _tile_seed(1013, tile) and car == _tile_seed(1008, tile)
    assert len({car for _, car, _ in seeds}) == len(seeds)
