"""The Ray executor on a real local Ray cluster (loopback only, 2 CPUs, no GPU) with a tiny SD 1.5 model.

What a farm engineer relies on: the same job gives the same pixels locally and on Ray, chunks of
a shot spread over actors, progress reads like ``render_job``'s, a bad frame fails alone, and a
sequential shot stays one chunk.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.errors import JobError, ModelError
from stylecomp.farm.chunks import plan_shots
from stylecomp.farm.ray_cluster import RayExecutor, render_with_ray
from stylecomp.io.plates import read_plate
from stylecomp.jobspec import load_job
from stylecomp.render.cache import RenderCache
from stylecomp.render.loop import STYLIZED_CHANNELS, render_job

FRAMES = (1001, 1002, 1003, 1004)
pytestmark = pytest.mark.plates(len(FRAMES), width=96, height=64)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real Ray cluster on loopback with 2 CPUs and no GPU; its workers use a scratch stylecomp cache."""
    saved = dict(os.environ)
    os.environ |= {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "STYLECOMP_CACHE_DIR": str(tmp_path_factory.mktemp("ray-cache")),
    }
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def write_job(folder: Path, plates: Path, model: Path, shot: str = "demo", **settings: object) -> Path:
    """A one-shot job over the four frames with a depth ControlNet; 4 steps at strength 0.5."""
    job = {
        "shots": [
            {
                "name": shot,
                "plate": str(plates / "demo.####.exr"),
                "frames": {"first": FRAMES[0], "last": FRAMES[-1]},
                "output": "out/demo.####.exr",
            }
        ],
        "model": {
            "family": "sd15",
            "path": str(model),
            "controlnets": [{"path": str(model / "controlnet"), "source": "depth"}],
        },
        "prompt": "ink",
        "steps": 4,
        "strength": 0.5,
        "guidance": 3.0,
        "seed": {"policy": "per_frame", "value": 3},
    } | settings
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.json").write_text(json.dumps(job))
    return folder / "job.json"


def stylized(path: Path) -> np.ndarray:
    return read_plate(path).channels(list(STYLIZED_CHANNELS))


def test_ray_renders_the_same_pixels_as_the_local_render(
    ray_cluster: None, tmp_path: Path, plates: Path, model: Path
) -> None:
    local, distributed = write_job(tmp_path / "local", plates, model), write_job(tmp_path / "ray", plates, model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray CPU worker (num_cpus=1) runs: CPU kernels' sums depend on the thread count
    try:
        assert render_job(load_job(local), pool=PipelinePool("cpu")).rendered == 4
    finally:
        torch.set_num_threads(threads)

    events: list[dict[str, object]] = []
    summary = render_with_ray([load_job(distributed)], chunk_size=2, report=events.append)

    assert (summary.rendered, summary.cached, summary.failed, summary.cancelled) == (4, 0, [], False)
    for frame in FRAMES:
        np.testing.assert_array_equal(
            stylized(tmp_path / f"ray/out/demo.{frame}.exr"), stylized(tmp_path / f"local/out/demo.{frame}.exr")
        )
    starts = [e for e in events if e["event"] == "start"]
    frames = [e for e in events if e["event"] == "frame"]
    assert starts == [{"event": "start", "shot": "demo", "frames": [1001, 1004], "total": 4, "stage": "stylize"}]
    assert sorted(e["frame"] for e in frames) == list(FRAMES)  # type: ignore[type-var]  # frame events carry ints
    assert [e["done"] for e in frames] == [1, 2, 3, 4] and {e["total"] for e in frames} == {4}
    assert {e["status"] for e in frames} == {"rendered"}
    assert all(e["output"] == str(tmp_path / f"ray/out/demo.{e['frame']}.exr") for e in frames)
    assert events[-1]["event"] == "end" and events[-1]["rendered"] == 4 and events[-1]["failed"] == 0


def test_a_damaged_frame_fails_alone_a_broken_model_fails_its_shot_and_a_rerun_uses_the_cache(
    ray_cluster: None, tmp_path: Path, plates: Path, model: Path
) -> None:
    damaged, broken = tmp_path / "plates", tmp_path / "broken"
    shutil.copytree(plates, damaged)
    (damaged / "demo.1002.exr").write_bytes(b"not an EXR")
    shutil.copytree(model, broken)
    (broken / "unet/diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)  # passes checks, cannot load
    good_job = write_job(tmp_path / "good", damaged, model)
    jobs = [load_job(good_job), load_job(write_job(tmp_path / "bad", plates, broken, shot="broken"))]
    cache = RenderCache(tmp_path / "renders")

    events: list[dict[str, object]] = []
    with RayExecutor(chunk_size=2, cache=cache) as executor:
        summary = executor.render(jobs, report=events.append)
        again = executor.render([load_job(good_job)])  # the same actors: a load failure is no worker death
        assert len(executor.actors) == 2

    assert summary.rendered == 3
    assert sorted((shot, frame) for shot, frame, _ in summary.failed) == [("broken", f) for f in FRAMES] + [
        ("demo", 1002)
    ]
    reasons = {(shot, frame): reason for shot, frame, reason in summary.failed}
    assert "demo.1002.exr" in reasons[("demo", 1002)] and "broken" in reasons[("broken", 1001)]
    assert sorted(p.name for p in (tmp_path / "good/out").glob("*.exr")) == [
        "demo.1001.exr",
        "demo.1003.exr",
        "demo.1004.exr",
    ]
    for shot in ("demo", "broken"):
        frames = [e for e in events if e["event"] == "frame" and e["shot"] == shot]
        assert [e["done"] for e in frames] == [1, 2, 3, 4] and {e["total"] for e in frames} == {4}
    failed = [e for e in events if e.get("status") == "failed" and e["shot"] == "demo"]
    assert len(failed) == 1 and failed[0]["frame"] == 1002 and failed[0]["error"] == reasons[("demo", 1002)]
    assert [e["event"] for e in events].count("end") == 1 and events[-1]["failed"] == 5
    assert (again.rendered, again.cached, len(again.failed)) == (0, 3, 1)


def test_a_chunk_without_progress_has_its_worker_stopped_instead_of_hanging(
    ray_cluster: None, tmp_path: Path, plates: Path, model: Path
) -> None:
    # 500 denoising steps: a frame takes far longer than the 2 s allowed between progress events.
    job = write_job(tmp_path, plates, model, steps=500, strength=1.0)
    with RayExecutor(chunk_size=2, stall_timeout=2.0) as executor:
        summary = executor.render([load_job(job)])
        assert executor.actors == [], f"stopped workers are dropped: {summary}"
    assert summary.rendered == 0 and sorted(frame for _, frame, _ in summary.failed) == list(FRAMES)
    assert {reason for _, _, reason in summary.failed} == {"no progress for 2 s: the Ray worker was stopped"}


def test_a_missing_model_stops_before_any_worker_starts(tmp_path: Path, plates: Path) -> None:
    with pytest.raises(ModelError, match="no-such-model"):
        render_with_ray([load_job(write_job(tmp_path, plates, tmp_path / "no-such-model"))])


def test_chunks_split_independent_shots_and_keep_a_sequential_shot_whole(
    tmp_path: Path, plates: Path, model: Path
) -> None:
    independent = plan_shots(load_job(write_job(tmp_path / "a", plates, model)), chunk_size=3)
    assert [(c.first, c.last, c.count) for c in independent[0].chunks] == [(1001, 1003, 3), (1004, 1004, 1)]
    assert not independent[0].sequential

    sequential_job = load_job(write_job(tmp_path / "b", plates, model, consistency={"mechanisms": ["warped_noise"]}))
    sequential = plan_shots(sequential_job, chunk_size=2)
    assert sequential[0].sequential and [(c.first, c.last) for c in sequential[0].chunks] == [(1001, 1004)]
    tail = plan_shots(sequential_job, frames=(1003, 1003))[0]  # rendered from the shot's first frame
    assert tail.frames == (1001, 1002, 1003) and [(c.first, c.last) for c in tail.chunks] == [(1001, 1003)]

    assert [
        (c.first, c.last)
        for c in plan_shots(load_job(write_job(tmp_path / "c", plates, model)), frames=(1002, 1003), chunk_size=5)[
            0
        ].chunks
    ] == [(1002, 1003)]
    with pytest.raises(JobError, match="no shot named nope"):
        plan_shots(load_job(write_job(tmp_path / "d", plates, model)), shots=["nope"])


def test_batch_command_runs_on_ray(
    ray_cluster: None, tmp_path: Path, plates: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from stylecomp.cli import cli

    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    job = write_job(tmp_path / "cli", plates, model)
    result = CliRunner().invoke(cli, ["batch", str(job), "--executor", "ray", "--chunk-size", "2", "--no-cache"])
    assert result.exit_code == 0, result.stderr
    assert "rendered 4, from cache 0, failed 0" in result.stdout
    assert all(np.isfinite(stylized(tmp_path / f"cli/out/demo.{frame}.exr")).all() for frame in FRAMES)
