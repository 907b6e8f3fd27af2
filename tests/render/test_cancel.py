"""Cancel is prompt: a cancelled render ends mid-step, within 2 s, and leaves no partial file (issue 23, 4).

A real tiny SD 1.5 on a plate large enough that one denoising step takes seconds on the CPU;
the cancel comes while the UNet is inside a step (seen through torch's own module hook).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.io.plates import ImagePart, Window, write_plate
from stylecomp.jobspec import parse_job
from stylecomp.render.loop import render_job

SIZE = 512  # one step of the tiny UNet here takes seconds on 2 CPU cores


def test_cancel_mid_step_ends_the_render_within_two_seconds(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    rgba = np.random.default_rng(0).random((SIZE, SIZE, 4), dtype=np.float32)
    rgba[..., 3] = 1.0
    window = Window(0, 0, SIZE, SIZE)
    write_plate(tmp_path / "plate.exr", [ImagePart.create(rgba, ["R", "G", "B", "A"], window, window)])
    out = tmp_path / "out"
    job = parse_job(
        json.dumps(
            {
                "version": 1,
                "shots": [{"name": "big", "plate": str(tmp_path / "plate.exr"), "output": str(out / "big.exr")}],
                "model": {"family": "sd15", "path": str(model)},
                "steps": 50,
                "strength": 1.0,
                "resolution": {"mode": "native"},
            }
        )
    )
    cancel, inside_step = threading.Event(), threading.Event()

    def watch(module: torch.nn.Module, _args: Any) -> None:
        if type(module).__name__ == "UNet2DConditionModel":
            inside_step.set()

    hook = torch.nn.modules.module.register_module_forward_pre_hook(watch)
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(summary=render_job(job, pool=PipelinePool("cpu"), cancel=cancel, cache=None))
    )
    try:
        thread.start()
        assert inside_step.wait(300), "the UNet never ran"
        time.sleep(0.3)  # well inside the step
        cancelled_at = time.monotonic()
        cancel.set()
        thread.join(60)
        latency = time.monotonic() - cancelled_at
    finally:
        hook.remove()
    assert not thread.is_alive() and result["summary"].cancelled
    assert latency < 2.0, f"the render took {latency:.1f} s to stop"
    assert not out.exists() or list(out.iterdir()) == [], "no partial or temp file"
