"""Driving a StyleCompStylize node as an artist does: the plugin's folders, the plate's channels, the model presets,
its buttons and cache folder, and what the fake engine (fake_engine.py) was asked to do."""

from __future__ import annotations

import json
from pathlib import Path

import nuke  # the stand-in (tests/nuke/standin), top-level as in Nuke

from stylecomp.jobspec import Job, parse_job
from stylecomp_nuke import actions, gizmo

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_FOLDER = ROOT / "nuke_plugin"
GIZMOS_FOLDER = ROOT / "gizmos"
FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")

PLATE_CHANNELS = [
    "rgba.red",
    "rgba.green",
    "rgba.blue",
    "rgba.alpha",
    "depth.Z",
    "N.red",
    "N.green",
    "N.blue",
    "forward.u",
    "forward.v",
    "backward.u",
    "backward.v",
    "other.id",
]
PRESETS = {
    "toon": {
        "family": "sd15",
        "path": "$FAKE_MODELS/sd15",
        "controlnets": [{"path": "~/models/cn-depth", "source": "depth", "weight": 1.0}],
        "ip_adapter": {"path": "$FAKE_MODELS/ip-adapter"},
    },
    "plain": {"family": "sdxl", "path": "/models/sdxl"},
}


def calls(log: Path) -> list:
    """The fake engine's command lines, oldest first."""
    path = log / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def press(stylize, button: str) -> None:
    """Press a gizmo button (its real PyScript) and wait until the engine run is over."""
    stylize[button].execute()
    nuke.standin.pump(lambda: not actions._RUNNING)


def cache(stylize) -> Path:
    return Path(stylize["cache_dir"].value())


def job_of(stylize) -> tuple[dict, Job]:
    """The job the node wrote, as JSON and as the engine's job spec reads it."""
    text = (cache(stylize) / gizmo.JOB_FILE).read_text(encoding="utf-8")
    return json.loads(text), parse_job(text, "job.json")


def reloads(stylize) -> int:
    return stylize.node(gizmo.READ_STYLIZED)["reload"].value() or 0
