"""Fixtures of the Nuke tests: the fake engine installed as ``stylecomp`` and a StyleCompStylize node to drive."""

from __future__ import annotations

import json
import runpy
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import nuke  # the stand-in (tests/nuke/standin), top-level as in Nuke
import pytest

from stylecomp_nuke import actions, gizmo
from tests.nuke.stylize_node import FAKE_ENGINE, PLATE_CHANNELS, PLUGIN_FOLDER, PRESETS


@pytest.fixture
def engine_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake engine on STYLECOMP_ENGINE, its log folder, and presets/settings isolated in tmp_path."""
    log = tmp_path / "engine-log"
    log.mkdir()
    engine = tmp_path / "bin" / "stylecomp"
    engine.parent.mkdir()
    engine.write_text(f"#!{sys.executable}\n" + FAKE_ENGINE.read_text(encoding="utf-8"), encoding="utf-8")
    engine.chmod(engine.stat().st_mode | stat.S_IXUSR)
    presets_file = tmp_path / "presets.json"
    presets_file.write_text(json.dumps(PRESETS), encoding="utf-8")
    monkeypatch.setenv("STYLECOMP_ENGINE", str(engine))
    monkeypatch.setenv("STYLECOMP_PRESETS", str(presets_file))
    monkeypatch.setenv("STYLECOMP_SETTINGS", str(tmp_path / "settings.json"))
    monkeypatch.setenv("FAKE_ENGINE_LOG", str(log))
    monkeypatch.setenv("FAKE_MODELS", "/models")
    monkeypatch.delenv("STYLECOMP_GIZMOS", raising=False)
    return log


@pytest.fixture
def node(engine_log: Path, tmp_path: Path) -> Iterator[nuke.Node]:
    """A StyleCompStylize node from the real gizmo file, its Plate connected, in a saved script."""
    nuke.standin.reset()
    runpy.run_path(str(PLUGIN_FOLDER / "init.py"))
    nuke.root()["name"].setValue(str(tmp_path / "shots" / "sh010_comp_v001.nk"))
    nuke.root()["first_frame"].setValue(1001)  # a script set up for the plate (a new one says 1-100)
    nuke.root()["last_frame"].setValue(1010)
    stylize = nuke.createNode(gizmo.STYLIZE_CLASS)
    stylize.setInput(0, nuke.standin.add_source("ReadPlate", PLATE_CHANNELS))
    stylize["prompt"].setValue("ink and watercolour")
    stylize["model_preset"].setValue("toon")
    stylize["lock_seed"].setValue(True)
    stylize["seed"].setValue(1234)
    yield stylize
    nuke.standin.pump(lambda: not actions._RUNNING, timeout=15)  # never leave a run behind
