"""Jobs for a tiny random-weight SD 1.5 on small demo plates, shared by the batch, server and Nuke-plugin tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from stylecomp.cli import cli
from stylecomp.demo.scene import write_demo
from stylecomp.io.plates import read_plate
from stylecomp.render.loop import STYLIZED_CHANNELS

FIRST = 1001


def write_plates(folder: Path, frames: int, size: int = 64) -> Path:
    """``frames`` demo frames from 1001 at size x size: ``folder/demo.####.exr``."""
    write_demo(folder, frames=frames, width=size, height=size, progress=lambda done, total: None)
    return folder


def job_document(plates: Path, model: Path, output: str, frames: int, **settings: Any) -> dict[str, Any]:
    """One shot ``demo`` of ``frames`` frames; no ControlNets; strength 1 so every step runs."""
    return {
        "version": 1,
        "shots": [
            {
                "name": "demo",
                "plate": str(plates / "demo.####.exr"),
                "frames": {"first": FIRST, "last": FIRST + frames - 1},
                "output": output,
            }
        ],
        "model": {"family": "sd15", "path": str(model)},
        "prompt": "ink and watercolour",
        "steps": 4,
        "strength": 1.0,
        "guidance": 3.0,
        "seed": {"policy": "per_frame", "value": 7},
    } | settings


def write_job(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def stylized(path: Path | str) -> np.ndarray:
    """The stylized RGBA pixels of an output."""
    return read_plate(path).channels(list(STYLIZED_CHANNELS))


def cache_key(path: Path | str) -> str:
    return read_plate(path, pixels=False).parts[0].attributes["stylecomp/cache_key"]


def invoke(*args: str) -> tuple[int, str, str]:
    """Run the stylecomp CLI in this process: exit status, stdout, stderr; an unexpected exception is raised."""
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def write_controlnet_job(
    folder: Path,
    plates: Path,
    model: Path,
    family: str = "sd15",
    output: str = "out/demo.####.exr",
    frames: tuple[int, int] = (FIRST, FIRST + 2),
    **settings: object,
) -> Path:
    """``folder/job.json``: shot ``demo`` of ``frames`` (first, last) with the model's depth and normals ControlNets;
    4 steps at strength 0.5 (2 denoising steps)."""
    controlnet = str(model / "controlnet")
    job = {
        "shots": [
            {
                "name": "demo",
                "plate": str(plates / "demo.####.exr"),
                "frames": {"first": frames[0], "last": frames[1]},
                "output": output,
            }
        ],
        "model": {
            "family": family,
            "path": str(model),
            "controlnets": [
                {"path": controlnet, "source": "depth"},
                {"path": controlnet, "source": "normals", "weight": 0.5},
            ],
        },
        "prompt": "ink and watercolour",
        "negative_prompt": "blurry",
        "steps": 4,
        "strength": 0.5,
        "guidance": 3.0,
        "seed": {"policy": "fixed", "value": 7},
    } | settings
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    return path
