"""GPU check: full-size random-weight SD1.5 + depth ControlNet and SDXL render one frame each on CUDA.

Catches dtype and device bugs that tiny CPU models cannot: bf16/fp16 weights, tensors left on
the CPU, generators on the wrong device. Skipped without a CUDA device (see conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stylecomp.cli import cli
from stylecomp.demo import write_demo
from stylecomp.plates import read_plate
from stylecomp.render import STYLIZED_CHANNELS
from stylecomp.testmodels import make_full_size_model

pytestmark = pytest.mark.gpu

SIZES = {"sd15": (512, 288), "sdxl": (1024, 576)}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_model_renders_a_frame_on_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    model = make_full_size_model(tmp_path / family, family, controlnet=family == "sd15")
    width, height = SIZES[family]
    write_demo(tmp_path / "plates", frames=1, width=width, height=height, progress=lambda done, total: None)
    controlnets = [{"path": str(model / "controlnet"), "source": "depth"}] if family == "sd15" else []
    job = {
        "shots": [{"name": "gpu", "plate": str(tmp_path / "plates/demo.####.exr"), "output": "out/gpu.####.exr"}],
        "model": {"family": family, "path": str(model), "controlnets": controlnets},
        "prompt": "ink", "steps": 8, "strength": 0.5,
    }
    (tmp_path / "job.json").write_text(json.dumps(job))

    result = CliRunner().invoke(cli, ["render", str(tmp_path / "job.json"), "--device", "cuda", "--no-cache"])
    assert result.exit_code == 0, result.stderr
    output = read_plate(tmp_path / "out/gpu.1001.exr")
    assert output.parts[0].attributes["stylecomp/device"] in ("cuda bfloat16", "cuda float16")
    stylized = output.channels(list(STYLIZED_CHANNELS))
    assert stylized.shape == (height, width, 4) and np.isfinite(stylized).all()
