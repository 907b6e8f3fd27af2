"""Regions from an edit: a clip's ``metadata["stylecomp"]["regions"]`` (the job's shape) becomes its shot's
regions in `stylecomp timeline jobs`, the timeline's becomes the job's, bad region metadata is one line naming
the clip, and the ``stylecomp_jobs`` adapter carries regions through a job -> timeline -> job round trip."""

from __future__ import annotations

from pathlib import Path

import opentimelineio as otio
import pytest

from stylecomp.jobspec import MAX_REGIONS, load_job
from tests.otio.timelines import PLATES, RT, TR, jobs, make_job, save_otio

CAR = {
    "name": "car",
    "select": {"cryptomatte": ["car"]},
    "prompt": "cel shading, bold ink",
    "strength": 0.6,
    "loras": [{"path": "loras/cel.safetensors", "weight": 0.8}],
    "seed": 12,
}
BUILDINGS = {
    "name": "bld",
    "select": {"cryptomatte": ["bld*"], "layer": "CryptoObject"},
    "prompt": "ink wash",
    "controlnet_weights": {"lineart": 0.5},
}
SKY = {"name": "sky", "select": {"matte": "mask.A"}, "invert": True, "strength": 0.0}
PROPS = {"name": "props", "select": {"ids": [3, 4]}, "negative_prompt": "blur"}
PEOPLE = {
    "name": "people",
    "select": {"matte_sequence": "mattes/people.####.exr", "channel": "R"},
    "ip_adapter_image": "refs/faces.png",
}


def _clip(name: str, regions: list | None = None) -> otio.schema.Clip:
    metadata = {"stylecomp": {"regions": regions}} if regions is not None else {}
    return otio.schema.Clip(name, otio.schema.MissingReference(), TR(RT(0, 24), RT(5, 24)), metadata=metadata)


def test_clip_regions_become_the_shots_regions(tmp_path: Path) -> None:
    clips = [_clip("sh010", [CAR, BUILDINGS, SKY, PROPS, PEOPLE]), _clip("sh020")]
    path = save_otio(
        tmp_path,
        "cut",
        [otio.schema.Track("V", clips)],
        stylecomp={"regions": [{"name": "road", "select": {"cryptomatte": ["road"]}, "strength": 0.0}]},
    )
    job = make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing")
    first, second = job.shots
    assert [region.model_dump(exclude_defaults=True) for region in first.regions] == [
        CAR,
        BUILDINGS,
        SKY,
        PROPS,
        PEOPLE,
    ]
    assert second.regions == [] and [region.name for region in job.regions] == ["road"]
    assert [r.name for r in job.shot_regions(first)] == ["car", "bld", "sky", "props", "people"]
    assert [r.name for r in job.shot_regions(second)] == ["road"]  # the timeline's regions, for clips without any
    assert load_job(tmp_path / "job.json").model_dump() == job.model_dump()  # written as the job spec reads it


TOO_MANY = [{"name": f"r{i}", "select": {"ids": [i]}} for i in range(MAX_REGIONS + 1)]


@pytest.mark.parametrize(
    "regions, message",
    [
        (
            [{"name": "car body", "select": {"cryptomatte": ["car"]}}],
            "metadata stylecomp.regions.0.name: String should match pattern",
        ),
        (
            [{"name": "car", "select": {"cryptomatte": ["car"], "ids": [3]}}],
            "metadata stylecomp.regions.0.select: select needs exactly one of cryptomatte, ids, matte, matte_sequence",
        ),
        (
            [{"name": "car", "select": {"cryptomatte": ["car"]}, "strength": 1.5}],
            "metadata stylecomp.regions.0.strength: Input should be less than or equal to 1",
        ),
        (
            [CAR, {"name": "bld", "select": {"ids": [2]}, "promt": "typo"}],
            "metadata stylecomp.regions.1.promt: Extra inputs are not permitted",
        ),
        ({"name": "car"}, "metadata stylecomp.regions: Input should be a valid list"),
        ([CAR, {**BUILDINGS, "name": "car"}], "regions: region name 'car' is used twice"),
        (TOO_MANY, f"regions: {MAX_REGIONS + 1} regions; at most {MAX_REGIONS} per shot"),
    ],
)
def test_bad_region_metadata_is_one_line_naming_the_clip(tmp_path: Path, regions: object, message: str) -> None:
    path = save_otio(tmp_path, "cut", [otio.schema.Track("V", [_clip("ok"), _clip("sh020", regions)])])
    result = jobs(str(path), "--plates", PLATES, "--allow-missing", "-o", str(tmp_path / "j.json"))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "clip 'sh020' (track 'V', item 1)" in result.stderr and message in result.stderr, result.stderr
    assert not (tmp_path / "j.json").exists()  # nothing written


def test_regions_round_trip_through_the_jobs_adapter(tmp_path: Path) -> None:
    clips = [_clip("sh010", [CAR, SKY]), _clip("sh020")]
    path = save_otio(tmp_path, "cut", [otio.schema.Track("V", clips)])
    job = make_job(path, tmp_path / "job.json", "--plates", PLATES, "--allow-missing")
    otio.plugins.ActiveManifest(force_reload=True)
    timeline = otio.adapters.read_from_file(str(tmp_path / "job.json"), adapter_name="stylecomp_jobs")
    first, second = timeline.find_clips()
    assert [region["name"] for region in first.metadata["stylecomp"]["regions"]] == ["car", "sky"]
    assert "regions" not in second.metadata["stylecomp"]
    otio.adapters.write_to_file(
        timeline, str(tmp_path / "again.json"), adapter_name="stylecomp_jobs", allow_missing=True
    )
    assert load_job(tmp_path / "again.json").model_dump() == job.model_dump()
