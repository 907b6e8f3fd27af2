"""End to end on a real renderer's shot (issue 17, 8): Blender Cycles' blender_street through the CLI as a user runs it.

inspect reports every AOV; render stylizes it with a tiny random-weight SD 1.5 whose ControlNets take the normals
and the line art (world-space normals turned to camera space, Cryptomatte objects for the lines); flicker measures
the result along Cycles' own vectors; comp keys the stylized car over the clean street by Cryptomatte name. The
pixels of each step are checked in their own tests (test_normal_space, test_cryptomatte, test_metrics); this one
checks that they hold together on one job.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stylecomp.io import cryptomatte
from stylecomp.io.plates import read_plate
from tests.tiny_jobs import invoke

SHOT = Path("plates") / "blender_street" / "street.####.exr"
FRAMES = (1007, 1009)  # the car is in view
BEAUTY = ["ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B"]


@pytest.fixture
def job(testdata: Path, tmp_path: Path, tiny: dict[str, Path]) -> Path:
    model = tiny["sd15"]
    document = {
        "version": 1,
        "shots": [
            {
                "name": "street",
                "plate": str(testdata / SHOT),
                "frames": {"first": FRAMES[0], "last": FRAMES[1]},
                "output": "stylized/street.####.exr",
            }
        ],
        "model": {
            "family": "sd15",
            "path": str(model),
            "controlnets": [
                {"path": str(model / "controlnet"), "source": "normals", "weight": 1.0},
                {"path": str(model / "controlnet"), "source": "lineart", "weight": 0.5},
            ],
        },
        "prompt": "watercolor",
        "steps": 2,
        "strength": 0.5,
        "guidance": 1.0,
        "resolution": {"mode": "downscale", "working_size": 128},
        "consistency": {"mechanisms": ["warped_noise", "latent_fusion"]},
        "comp": {"output": "comp/street.####.exr", "weight": "cryptomatte", "mattes": ["car"]},
    }
    path = tmp_path / "street.json"
    path.write_text(json.dumps(document))
    return path


def test_inspect_render_flicker_and_comp_by_cryptomatte_name(job: Path, testdata: Path, tmp_path: Path) -> None:
    status, out, err = invoke("inspect", str(testdata / SHOT), "--json")
    assert status == 0, err
    report = json.loads(out)
    assert set(report["aovs"]) == {"beauty", "depth", "normals", "motion", "object_id"}
    assert report["normals"]["space"] == "world" and "depth" in report["normals"]["rotation_source"]
    assert report["vectors"]["convention"] == "backward-pixels-yup"
    assert report["cryptomatte"][0]["names"] == ["bld0", "bld1", "bld2", "bld3", "car", "pole", "road", "streetlamp"]

    status, out, err = invoke("render", str(job), "--device", "cpu")
    assert status == 0, err
    frames = range(FRAMES[0], FRAMES[1] + 1)
    outputs = [tmp_path / f"stylized/street.{frame}.exr" for frame in frames]
    assert all(path.is_file() for path in outputs)
    assert read_plate(outputs[0]).channels(["stylized.R"]).shape == (270, 480, 1)

    status, out, err = invoke(
        "flicker", str(tmp_path / "stylized/street.####.exr"), "--plate", str(testdata / SHOT), "--json"
    )
    assert status == 0, err
    flicker = json.loads(out)
    assert flicker["vectors"]["convention"] == "backward-pixels-yup" and np.isfinite(flicker["R"]) and flicker["D"] > 0

    status, out, err = invoke("comp", str(job))
    assert status == 0, err
    for frame, stylized_path in zip(frames, outputs, strict=True):
        plate = read_plate(testdata / SHOT.parent / f"street.{frame}.exr")
        comp = read_plate(tmp_path / f"comp/street.{frame}.exr").channels(["R", "G", "B"])
        car = cryptomatte.matte(plate, cryptomatte.select_layer(plate), ["car"])[0]
        clean, styled = (
            plate.channels(BEAUTY),
            read_plate(stylized_path).channels(["stylized.R", "stylized.G", "stylized.B"]),
        )
        off_car, on_car = car == 0.0, car == 1.0
        assert on_car.sum() > 100
        np.testing.assert_allclose(comp[off_car], clean[off_car], rtol=2e-3, atol=2e-3)  # the street stays clean
        np.testing.assert_allclose(comp[on_car], styled[on_car], rtol=2e-3, atol=2e-3)  # the car is stylized
