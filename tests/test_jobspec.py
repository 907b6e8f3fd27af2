"""The job spec: defaults, validation messages that name the field, paths, round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from stylecomp.color import PINNED_CONFIG
from stylecomp.errors import JobError
from stylecomp.jobspec import Job, load_job, parse_job, save_job

MINIMAL = {"shots": [{"name": "sh010", "plate": "plates/sh010.####.exr", "output": "out/sh010.####.exr"}]}


def test_minimal_job_gets_pinned_colour_and_defaults() -> None:
    job = parse_job(json.dumps(MINIMAL))
    assert job.version == 1 and job.color.config == PINNED_CONFIG
    assert job.seed.policy == "fixed" and job.consistency.mechanisms == []
    assert job.model is None and job.candidates.count == 4


def test_full_job_round_trips_through_a_file(tmp_path: Path) -> None:
    data = {
        **copy.deepcopy(MINIMAL),
        "model": {
            "family": "sdxl",
            "path": "models/sdxl.safetensors",
            "loras": [{"path": "loras/ink.safetensors", "weight": 0.8}],
            "controlnets": [{"path": "cn/depth", "source": "depth", "weight": 0.7}],
            "ip_adapter": {"path": "ip/adapter.safetensors", "image": "ref.png", "scale": 0.5},
        },
        "prompt": "ink wash",
        "seed": {"policy": "per_frame", "value": 1234},
        "consistency": {"mechanisms": ["warped_noise", "cross_frame"]},
        "color": {"encoding": "log"},
        "exr": {"pixel_type": "float", "compression": "dwaa:45"},
    }
    data["shots"][0].update(frames={"first": 1001, "last": 1010}, handles=4, aovs={"depth": ["depth.Z"]})
    job = parse_job(json.dumps(data))
    save_job(job, tmp_path / "job.json")
    again = load_job(tmp_path / "job.json")
    assert again.model_dump() == job.model_dump()
    assert again.shots[0].frame_range_with_handles() == (997, 1014)
    assert again.resolve(again.shots[0].plate) == str(tmp_path / "plates/sh010.%04d.exr")


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"color": {"config": "ocio://default"}},
            "color.config: 'ocio://default' changes between OpenColorIO releases",
        ),
        ({"strength": 1.5}, "strength: Input should be less than or equal to 1"),
        ({"model": {"family": "sd3", "path": "m"}}, "model.family: Input should be 'sd15', 'sdxl' or 'flux'"),
        ({"seeds": 3}, "seeds: Extra inputs are not permitted"),
        ({"shots": []}, "shots: List should have at least 1 item"),
        ({"shots": [MINIMAL["shots"][0], MINIMAL["shots"][0]]}, "shots: shot name 'sh010' is used twice"),
        (
            {"shots": [{**MINIMAL["shots"][0], "frames": {"first": 10, "last": 1}}]},
            "shots[0].frames: last (1) is before first (10)",
        ),
        ({"shots": [{**MINIMAL["shots"][0], "output": "out/sh010.exr"}]}, "shots[0]: output needs a frame token"),
        ({"shots": [{**MINIMAL["shots"][0], "aovs": {"albedo": ["R"]}}]}, "shots[0].aovs.albedo"),
        ({"exr": {"compression": "lzma"}}, "exr.compression: unknown EXR compression"),
        (
            {"ideation": {"aspect_ratios": ["16:9", "0:1"]}},
            "ideation.aspect_ratios: aspect ratio '0:1' has a zero side",
        ),
        (
            {
                "shots": [MINIMAL["shots"][0], {**MINIMAL["shots"][0], "name": "sh020"}],
                "ideation": {"output": "stills"},
            },
            "(document): ideation.output needs {shot} when the job has several shots",
        ),
    ],
)
def test_bad_fields_are_named(change: dict, message: str) -> None:
    with pytest.raises(JobError) as info:
        parse_job(json.dumps({**MINIMAL, **change}), "job.json")
    assert any(problem.startswith(message) for problem in info.value.problems), info.value.problems


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="No such file"):
        load_job(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"shots": [}')
    with pytest.raises(JobError, match=r"broken.json: not valid JSON: Expecting value at line 1, column 12"):
        load_job(tmp_path / "broken.json")


def test_schema_is_the_models() -> None:
    schema = Job.model_json_schema()
    assert schema["properties"]["version"]["const"] == 1
    assert "Shot" in schema["$defs"] and schema["additionalProperties"] is False
