"""`stylecomp farm openjd`: OpenJD job templates checked by openjd-model and run by the real `openjd run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from openjd.model import StepParameterSpaceIterator

from stylecomp.cli import cli
from stylecomp.farm.openjd import instantiate
from stylecomp.io.plates import read_plate
from stylecomp.render.loop import STYLIZED_CHANNELS

pytestmark = pytest.mark.plates(3, width=64, height=48)

BIN = Path(sys.executable).parent


def write_job(
    folder: Path,
    plates: Path,
    model: Path,
    shots: tuple[str, ...] = ("sh010",),
    mechanisms: tuple[str, ...] = ("locked_seed",),
) -> Path:
    """A job whose shots each cover frames 1001-1003, with these consistency mechanisms."""
    job = {
        "shots": [
            {
                "name": name,
                "plate": str(plates / "demo.####.exr"),
                "frames": {"first": 1001, "last": 1003},
                "output": f"out/{name}/{name}.####.exr",
            }
            for name in shots
        ],
        "model": {"family": "sd15", "path": str(model)},
        "prompt": "ink",
        "steps": 2,
        "strength": 0.5,
        "guidance": 3.0,
        "consistency": {"mechanisms": list(mechanisms)},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.json").write_text(json.dumps(job))
    return folder / "job.json"


def farm_openjd(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["farm", "openjd", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def tasks(job: object, step: int) -> list[tuple[int, int]]:
    space = StepParameterSpaceIterator(space=job.steps[step].parameterSpace)  # type: ignore[attr-defined]  # openjd-model types it loosely
    return [(int(task["ChunkStart"].value), int(task["ChunkEnd"].value)) for task in space]


def test_the_template_validates_and_expands_to_one_task_per_chunk(tmp_path: Path, plates: Path, model: Path) -> None:
    job_path = write_job(tmp_path, plates, model, ("sh010", "sh020"))
    status, out, err = farm_openjd(str(job_path), "-o", str(tmp_path / "job.template.yaml"), "--chunk-size", "2")
    assert status == 0, err
    assert "2 step(s), 4 task(s), GPU workers" in out

    template = yaml.safe_load((tmp_path / "job.template.yaml").read_text())
    assert template["specificationVersion"] == "jobtemplate-2023-09"
    assert {p["name"]: p.get("default") for p in template["parameterDefinitions"]} == {
        "JobFile": "job.json",
        "Stylecomp": "stylecomp",
        "Device": "cuda",
    }
    job = instantiate(template, tmp_path, {})
    assert [step.name for step in job.steps] == ["sh010", "sh020"]
    assert tasks(job, 0) == tasks(job, 1) == [(1001, 1002), (1003, 1003)]
    amounts = {a.name: a.min for a in job.steps[0].hostRequirements.amounts}  # type: ignore[union-attr]  # the template sets them
    assert amounts == {"amount.worker.gpu": 1, "amount.worker.gpu.memory": 8192, "amount.worker.memory": 16384}
    assert {name: value.value for name, value in (job.parameters or {}).items()} == {
        "JobFile": str(job_path),
        "Stylecomp": "stylecomp",
        "Device": "cuda",
    }
    action = job.steps[0].script.actions.onRun
    assert [action.command, *(action.args or [])] == [
        "{{Param.Stylecomp}}",
        "render",
        "{{Param.JobFile}}",
        "--shot",
        "sh010",
        "--frames",
        "{{Task.Param.ChunkStart}}-{{Task.Param.ChunkEnd}}",
        "--progress",
        "json",
        "--device",
        "{{Param.Device}}",
    ]


def test_a_sequential_shot_is_one_task(tmp_path: Path, plates: Path, model: Path) -> None:
    job_path = write_job(tmp_path, plates, model, mechanisms=("warped_noise",))
    assert farm_openjd(str(job_path), "-o", str(tmp_path / "t.yaml"), "--chunk-size", "1")[0] == 0
    job = instantiate(yaml.safe_load((tmp_path / "t.yaml").read_text()), tmp_path, {})
    assert tasks(job, 0) == [(1001, 1003)]
    assert "in order" in (job.steps[0].description or "")


def test_no_gpu_and_a_job_outside_the_template_folder(tmp_path: Path, plates: Path, model: Path) -> None:
    job_path = write_job(tmp_path / "jobs", plates, model)
    (tmp_path / "templates").mkdir()
    target = tmp_path / "templates/t.yaml"
    assert farm_openjd(str(job_path), "-o", str(target), "--no-gpu")[0] == 0
    template = yaml.safe_load(target.read_text())
    job_file = template["parameterDefinitions"][0]
    assert job_file["name"] == "JobFile" and "default" not in job_file, "OpenJD defaults may not leave the folder"
    assert [a["name"] for a in template["steps"][0]["hostRequirements"]["amounts"]] == ["amount.worker.memory"]
    job = instantiate(template, target.parent, {"JobFile": str(job_path)})
    assert tasks(job, 0) == [(1001, 1003)]


def test_an_invalid_template_is_refused_and_not_written(tmp_path: Path, plates: Path, model: Path) -> None:
    job_path = write_job(tmp_path, plates, model, ("s" * 70,))  # OpenJD step names: 64 characters at most
    status, _, err = farm_openjd(str(job_path), "-o", str(tmp_path / "t.yaml"))
    assert status == 2 and err.startswith("error: the OpenJD template is not valid:"), err
    assert not (tmp_path / "t.yaml").exists()


def test_openjd_run_renders_the_frames(tmp_path: Path, plates: Path, model: Path) -> None:
    job_path = write_job(tmp_path, plates, model)
    template = tmp_path / "job.template.yaml"
    assert farm_openjd(str(job_path), "-o", str(template), "--no-gpu", "--chunk-size", "2")[0] == 0

    env = os.environ | {"STYLECOMP_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run(
        [BIN / "openjd", "run", template, "--step", "sh010", "-p", f"Stylecomp={BIN / 'stylecomp'}"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Chunks run: 2" in run.stdout and '"status": "rendered"' in run.stdout
    for frame in (1001, 1002, 1003):
        output = read_plate(tmp_path / f"out/sh010/sh010.{frame}.exr")
        assert output.channel_names == list(STYLIZED_CHANNELS)
        assert np.isfinite(output.channels(list(STYLIZED_CHANNELS))).all()
        assert output.parts[0].attributes["stylecomp/frame"] == frame
