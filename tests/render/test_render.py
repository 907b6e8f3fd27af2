"""`stylecomp render`, `candidates` and `pick` on the demo shot with tiny random-weight models.

Real EXR plates, real diffusers pipelines loaded from disk, the real CLI: what a user runs.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from stylecomp.diffusion.loading import model_hash
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.io.plates import read_plate
from stylecomp.jobspec import load_job
from stylecomp.render.cache import RenderCache
from stylecomp.render.loop import STYLIZED_CHANNELS, render_job
from tests.tiny_jobs import invoke, stylized, write_controlnet_job

FRAMES = (1001, 1002, 1003)
TESTDATA_DAMAGED = "exr-damaged"


pytestmark = [pytest.mark.usefixtures("private_cache"), pytest.mark.plates(len(FRAMES), width=128, height=72)]


@pytest.mark.parametrize("family", ["sd15", "sdxl", "flux"])
def test_render_is_reproducible_and_the_cache_is_reused(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], family: str, no_network: None
) -> None:
    first = write_controlnet_job(tmp_path / "a", plates, tiny[family], family)
    again = write_controlnet_job(tmp_path / "b", plates, tiny[family], family)
    third = write_controlnet_job(tmp_path / "c", plates, tiny[family], family)

    status, out, err = invoke("render", str(first))
    assert status == 0, err
    assert "rendered 3, from cache 0, failed 0" in out
    status, out, err = invoke("render", str(again), "--no-cache")
    assert status == 0 and "rendered 3, from cache 0" in out, err
    for frame in FRAMES:
        a, b = stylized(tmp_path / f"a/out/demo.{frame}.exr"), stylized(tmp_path / f"b/out/demo.{frame}.exr")
        np.testing.assert_array_equal(a, b)

    status, out, err = invoke("render", str(third))
    assert status == 0 and "rendered 0, from cache 3, failed 0" in out, err
    assert err.count("cached") == 3
    for frame in FRAMES:
        np.testing.assert_array_equal(
            stylized(tmp_path / f"c/out/demo.{frame}.exr"), stylized(tmp_path / f"a/out/demo.{frame}.exr")
        )


def test_output_layer_windows_alpha_and_provenance(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    job = write_controlnet_job(tmp_path, plates, tiny["sd15"])
    assert invoke("render", str(job), "--frames", "1002")[0] == 0
    assert not (tmp_path / "out/demo.1001.exr").exists(), "--frames limits the render"
    plate = read_plate(plates / "demo.1002.exr")
    output = read_plate(tmp_path / "out/demo.1002.exr")
    assert output.channel_names == list(STYLIZED_CHANNELS)
    assert output.data_window == plate.data_window and output.display_window == plate.display_window
    np.testing.assert_array_equal(output.channel("stylized.A"), plate.channel("A"))
    rgb = output.channels(["stylized.R", "stylized.G", "stylized.B"])
    assert np.isfinite(rgb).all()
    assert np.abs(rgb - plate.channels(["R", "G", "B"])).mean() > 0.01, "strength 0.5 must change the frame"

    header = output.parts[0].attributes
    parameters = json.loads(header["stylecomp/parameters"])
    assert header["stylecomp/model_hash"] == model_hash(tiny["sd15"])
    assert header["stylecomp/seed"] == 7 and header["stylecomp/frame"] == 1002
    assert parameters["prompt"] == "ink and watercolour" and parameters["strength"] == 0.5
    assert parameters["steps"] == 4 and parameters["guidance"] == 3.0
    controlnets = json.loads(header["stylecomp/controlnets"])
    assert [(c["source"], c["weight"]) for c in controlnets] == [("depth", 1.0), ("normals", 0.5)]
    assert controlnets[0]["hash"] == model_hash(tiny["sd15"] / "controlnet")
    assert header["stylecomp/version"] and len(header["stylecomp/cache_key"]) == 64


def test_a_frame_does_not_depend_on_the_other_frames(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    whole = write_controlnet_job(tmp_path / "whole", plates, tiny["sd15"])
    alone = write_controlnet_job(tmp_path / "alone", plates, tiny["sd15"])
    assert invoke("render", str(whole), "--no-cache")[0] == 0
    assert invoke("render", str(alone), "--no-cache", "--frames", "1003")[0] == 0
    np.testing.assert_array_equal(
        stylized(tmp_path / "alone/out/demo.1003.exr"), stylized(tmp_path / "whole/out/demo.1003.exr")
    )


def test_seed_policy_per_frame_offsets_by_frame_number(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    job = write_controlnet_job(tmp_path, plates, tiny["sd15"], seed={"policy": "per_frame", "value": 100})
    assert invoke("render", str(job), "--frames", "1001-1002")[0] == 0
    seeds = [read_plate(tmp_path / f"out/demo.{f}.exr").parts[0].attributes["stylecomp/seed"] for f in (1001, 1002)]
    assert seeds == [1101, 1102]


def test_strength_zero_returns_the_plate(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    job = write_controlnet_job(tmp_path, plates, tiny["sd15"], strength=0.0)
    assert invoke("render", str(job), "--frames", "1001")[0] == 0
    plate = read_plate(plates / "demo.1001.exr")
    np.testing.assert_array_equal(stylized(tmp_path / "out/demo.1001.exr"), plate.channels(["R", "G", "B", "A"]))


def test_a_damaged_frame_fails_alone_and_the_others_are_kept(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], testdata: Path
) -> None:
    local = tmp_path / "plates"
    shutil.copytree(plates, local)
    damaged = sorted((testdata / TESTDATA_DAMAGED).glob("*.exr"))[0]
    shutil.copyfile(damaged, local / "demo.1002.exr")
    job = write_controlnet_job(tmp_path, local, tiny["sd15"])
    status, out, err = invoke("render", str(job))
    assert status == 1
    assert "rendered 2, from cache 0, failed 1" in out
    assert f"error: demo 1002: {local / 'demo.1002.exr'}:" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo.1001.exr", "demo.1003.exr"]


def test_missing_frame_and_missing_aov_are_named(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    local = tmp_path / "plates"
    shutil.copytree(plates, local)
    (local / "demo.1003.exr").unlink()
    job = write_controlnet_job(tmp_path, local, tiny["sd15"])
    status, out, err = invoke("render", str(job), "--frames", "1002-1003")
    assert status == 1 and f"{local / 'demo.1003.exr'}: frame missing on disk" in err
    assert "rendered 1, from cache 0, failed 1" in out

    mapped = write_controlnet_job(tmp_path / "mapped", plates, tiny["sd15"])
    data = json.loads(mapped.read_text())
    data["shots"][0]["aovs"] = {"depth": ["nothing.Z"]}
    mapped.write_text(json.dumps(data))
    status, _, err = invoke("render", str(mapped), "--frames", "1001")
    assert status != 0 and "nothing.Z" in err


def test_progress_json_events(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    job = write_controlnet_job(tmp_path, plates, tiny["sd15"])
    status, out, _ = invoke("render", str(job), "--frames", "1001-1002", "--progress", "json")
    assert status == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["start", "frame", "frame", "end"]
    assert events[0] == {"event": "start", "shot": "demo", "frames": [1001, 1002], "total": 2, "stage": "stylize"}
    assert [(e["frame"], e["done"], e["status"]) for e in events[1:3]] == [(1001, 1, "rendered"), (1002, 2, "rendered")]
    assert events[1]["output"] == str(tmp_path / "out/demo.1001.exr") and events[2]["eta"] == 0
    assert events[3] | {"seconds": 0} == {
        "event": "end",
        "rendered": 2,
        "cached": 0,
        "failed": 0,
        "cancelled": False,
        "seconds": 0,
    }


def test_cancel_keeps_finished_frames_and_leaves_no_temp_files(
    tmp_path: Path, plates: Path, tiny: dict[str, Path]
) -> None:
    job = load_job(write_controlnet_job(tmp_path, plates, tiny["sd15"]))
    cancel = threading.Event()

    def stop_after_first(event: dict[str, object]) -> None:
        if event["event"] == "frame":
            cancel.set()

    summary = render_job(job, pool=PipelinePool("cpu"), cache=None, report=stop_after_first, cancel=cancel)
    assert summary.cancelled and summary.rendered == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo.1001.exr"]


def test_pickle_model_is_refused_before_anything_loads(tmp_path: Path, plates: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not even a pickle")
    job = write_controlnet_job(tmp_path, plates, checkpoint)
    data = json.loads(job.read_text())
    data["model"]["controlnets"] = []
    job.write_text(json.dumps(data))
    status, _, err = invoke("render", str(job))
    assert status == 2
    assert f"error: {checkpoint}: this is a pickle checkpoint" in err and "allow_pickle" in err


def test_tiles_mode_renders_reproducibly(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    resolution = {"mode": "tiles", "working_size": 64, "tile_overlap": 32}
    job = write_controlnet_job(tmp_path, plates, tiny["sd15"], resolution=resolution)
    other = write_controlnet_job(tmp_path / "again", plates, tiny["sd15"], resolution=resolution)
    assert invoke("render", str(job), "--frames", "1001")[0] == 0
    assert invoke("render", str(other), "--frames", "1001", "--no-cache")[0] == 0
    output = read_plate(tmp_path / "out/demo.1001.exr")
    assert "tiles" in output.parts[0].attributes["stylecomp/resolution"]
    np.testing.assert_array_equal(
        stylized(tmp_path / "out/demo.1001.exr"), stylized(tmp_path / "again/out/demo.1001.exr")
    )


def test_candidates_contact_sheet_manifest_and_pick(tmp_path: Path, plates: Path, tiny: dict[str, Path]) -> None:
    job = write_controlnet_job(tmp_path, plates, tiny["sd15"])
    status, out, err = invoke("candidates", str(job), "--frame", "1002", "--count", "3")
    assert status == 0, err
    manifest_path = Path(out.splitlines()[-1])
    assert manifest_path == tmp_path / "out/candidates/demo.1002/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["shot"] == "demo" and manifest["frame"] == 1002
    assert [(c["index"], c["seed"]) for c in manifest["candidates"]] == [(0, 7), (1, 8), (2, 9)]
    folder = manifest_path.parent
    images = [stylized(folder / c["exr"]) for c in manifest["candidates"]]
    assert np.abs(images[0] - images[1]).max() > 0.01, "candidates differ"
    from PIL import Image

    with Image.open(folder / manifest["contact_sheet"]) as sheet:
        assert sheet.width == 4 * 320  # the plate plus three candidates
    with Image.open(folder / manifest["candidates"][1]["thumbnail"]) as thumb:
        assert thumb.width == 320

    status, out, err = invoke("pick", str(job), "--candidate", "1")
    assert status == 0, err
    assert load_job(job).shots[0].overrides.seed == 8
    assert invoke("render", str(job), "--frames", "1002", "--no-cache")[0] == 0
    np.testing.assert_array_equal(stylized(tmp_path / "out/demo.1002.exr"), images[1])

    status, _, err = invoke("pick", str(job), "--candidate", "5")
    assert status == 2 and "no candidate 5; the manifest has 0, 1, 2" in err


def test_cache_lookup_checks_the_header(tmp_path: Path, plates: Path) -> None:
    cache = RenderCache(tmp_path / "renders")
    cache.store("ab" * 32, plates / "demo.1001.exr")  # a file without a cache key is never served
    assert cache.lookup("ab" * 32) is None
    assert not cache.restore("ab" * 32, tmp_path / "restored.exr")


def test_lora_and_style_reference_reach_the_frames_and_the_cache_key(
    tmp_path: Path, plates: Path, tiny: dict[str, Path]
) -> None:
    from PIL import Image

    from stylecomp.diffusion.testing import make_test_ip_adapter, make_test_lora

    model = tiny["sd15"]
    lora = make_test_lora(tmp_path / "ink.safetensors", model)
    adapter = make_test_ip_adapter(tmp_path / "ip", model)
    for name, colour in (("warm.png", (220, 120, 40)), ("cool.png", (30, 90, 200))):
        Image.new("RGB", (48, 48), colour).save(tmp_path / name)

    def job_with(folder: str, image: str) -> Path:
        job = write_controlnet_job(tmp_path / folder, plates, model)
        data = json.loads(job.read_text())
        data["model"]["controlnets"] = []
        data["model"]["loras"] = [{"path": str(lora), "weight": 0.8}]
        data["model"]["ip_adapter"] = {"path": str(adapter), "image": str(tmp_path / image), "scale": 0.7}
        job.write_text(json.dumps(data))
        return job

    assert invoke("render", str(job_with("warm", "warm.png")), "--frames", "1001")[0] == 0
    assert invoke("render", str(job_with("cool", "cool.png")), "--frames", "1001")[0] == 0
    warm, cool = (read_plate(tmp_path / f"{name}/out/demo.1001.exr") for name in ("warm", "cool"))
    assert np.abs(warm.channels(list(STYLIZED_CHANNELS)) - cool.channels(list(STYLIZED_CHANNELS))).max() > 1e-3
    header, other = warm.parts[0].attributes, cool.parts[0].attributes
    assert header["stylecomp/cache_key"] != other["stylecomp/cache_key"], "the style image is part of the key"
    loras = json.loads(header["stylecomp/loras"])
    assert loras == [{"path": str(lora), "weight": 0.8, "hash": model_hash(lora)}]
    reference = json.loads(header["stylecomp/ip_adapter"])
    assert reference["image"] == str(tmp_path / "warm.png") and reference["scale"] == 0.7
    assert reference["hash"] == model_hash(adapter)
