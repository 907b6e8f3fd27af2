"""GPU check: full-size random-weight SD1.5 + depth ControlNet and SDXL render one frame each on CUDA.

Catches dtype and device bugs that tiny CPU models cannot: bf16/fp16 weights, tensors left on
the CPU, generators on the wrong device. Then the fidelity check of the ``performance`` settings:
frames rendered four to a call, compiled, channels-last, with SDXL's VAE in bf16 agree with an
eager render (one frame per call, none of those) to a relative L2 below 1e-2 in the model's
space. Skipped without a CUDA device (see conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stylecomp.cli import cli
from stylecomp.demo.scene import write_demo
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.diffusion.testing import make_full_size_model
from stylecomp.io.plates import read_plate
from stylecomp.jobspec import ColorSettings, parse_job
from stylecomp.render.loop import STYLIZED_CHANNELS, render_job

pytestmark = pytest.mark.gpu

SIZES = {"sd15": (512, 288), "sdxl": (1024, 576)}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_model_renders_a_frame_on_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str) -> None:
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    model = make_full_size_model(tmp_path / family, family, controlnet=family == "sd15")
    width, height = SIZES[family]
    write_demo(tmp_path / "plates", frames=1, width=width, height=height, progress=lambda done, total: None)
    controlnets = [{"path": str(model / "controlnet"), "source": "depth"}] if family == "sd15" else []
    job = {
        "shots": [{"name": "gpu", "plate": str(tmp_path / "plates/demo.####.exr"), "output": "out/gpu.####.exr"}],
        "model": {"family": family, "path": str(model), "controlnets": controlnets},
        "prompt": "ink",
        "steps": 8,
        "strength": 0.5,
    }
    (tmp_path / "job.json").write_text(json.dumps(job))

    result = CliRunner().invoke(cli, ["render", str(tmp_path / "job.json"), "--device", "cuda", "--no-cache"])
    assert result.exit_code == 0, result.stderr
    output = read_plate(tmp_path / "out/gpu.1001.exr")
    assert output.parts[0].attributes["stylecomp/device"] in ("cuda bfloat16", "cuda float16")
    stylized = output.channels(list(STYLIZED_CHANNELS))
    assert stylized.shape == (height, width, 4) and np.isfinite(stylized).all()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_optimized_render_agrees_with_eager_on_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    """The fidelity check: the same 4 frames, seeds and bf16 weights, optimized against eager (a cold compile
    takes minutes)."""
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    model = make_full_size_model(tmp_path / family, family, controlnet=family == "sd15")
    width, height = SIZES[family]
    write_demo(tmp_path / "plates", frames=4, width=width, height=height, progress=lambda done, total: None)
    controlnets = [{"path": str(model / "controlnet"), "source": "depth"}] if family == "sd15" else []
    encoding = ColorSettings().model_encoding()
    frames = {}
    for name, performance in (
        ("eager", {"batch_frames": 1, "prefetch": 0, "compile": False, "channels_last": False, "vae_bfloat16": False}),
        ("optimized", {"batch_frames": 4, "compile": True}),
    ):
        job = parse_job(
            json.dumps(
                {
                    "shots": [
                        {
                            "name": "gpu",
                            "plate": str(tmp_path / "plates/demo.####.exr"),
                            "output": str(tmp_path / name / "gpu.####.exr"),
                        }
                    ],
                    "model": {"family": family, "path": str(model), "controlnets": controlnets},
                    "prompt": "ink",
                    "steps": 20,
                    "strength": 0.5,
                    "seed": {"policy": "per_frame", "value": 3},
                    "exr": {"pixel_type": "float"},
                    "performance": performance,
                }
            )
        )
        summary = render_job(job, pool=PipelinePool("cuda"), cache=None)
        assert summary.rendered == 4 and not summary.failed
        frames[name] = []
        for frame in range(1001, 1005):
            rgba = read_plate(tmp_path / name / f"gpu.{frame}.exr").channels(list(STYLIZED_CHANNELS))
            frames[name].append(encoding.encode(rgba[..., :3], rgba[..., 3]).image)
    for eager, optimized in zip(frames["eager"], frames["optimized"], strict=True):
        assert np.linalg.norm(optimized - eager) / np.linalg.norm(eager) < 1e-2
