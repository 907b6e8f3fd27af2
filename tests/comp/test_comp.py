"""`stylecomp comp`: stylize (or reuse), blend with the clean plate as the job's comp block says, write EXRs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stylecomp.comp.blend import depth_weight, line_overlay, mix
from stylecomp.demo.scene import OBJECT_NAMES
from stylecomp.io.plates import ImagePart, Window, read_plate, write_plate
from tests.tiny_jobs import invoke, stylized, write_controlnet_job

BALL = next(i for i, name in OBJECT_NAMES.items() if name == "ball")


pytestmark = [pytest.mark.usefixtures("private_cache"), pytest.mark.plates(2, width=128, height=72)]


def comp_job(tmp_path: Path, plates: Path, model: Path, **comp: object) -> Path:
    job = write_controlnet_job(tmp_path, plates, model, comp={"output": "comp/{shot}.####.exr", **comp})
    data = json.loads(job.read_text())
    data["shots"][0]["frames"] = {"first": 1001, "last": 1002}
    job.write_text(json.dumps(data))
    return job


def rgba(path: Path) -> np.ndarray:
    return read_plate(path).channels(["R", "G", "B", "A"])


def test_comp_writes_blended_frames_and_reuses_the_stylized_ones(tmp_path: Path, plates: Path, model: Path) -> None:
    job = comp_job(tmp_path, plates, model, mode="mix", amount=0.25)
    status, out, err = invoke("comp", str(job))
    assert status == 0, err
    assert "stylized 2, from cache 0; comped 2, failed 0" in out
    clean = read_plate(plates / "demo.1002.exr").channels(["R", "G", "B", "A"])
    styled = stylized(tmp_path / "out/demo.1002.exr")
    result = rgba(tmp_path / "comp/demo.1002.exr")
    np.testing.assert_allclose(result, mix(clean, styled, 0.25), rtol=1e-3, atol=1e-3)  # half-float output
    header = read_plate(tmp_path / "comp/demo.1002.exr").parts[0].attributes
    assert json.loads(header["stylecomp/comp"])["amount"] == 0.25
    assert (
        header["stylecomp/stylized_cache_key"]
        == read_plate(tmp_path / "out/demo.1002.exr").parts[0].attributes["stylecomp/cache_key"]
    )

    status, out, _ = invoke("comp", str(job))
    assert status == 0 and "stylized 0, from cache 2; comped 2" in out


def test_object_id_weight_puts_the_stylized_look_on_the_ball_only(tmp_path: Path, plates: Path, model: Path) -> None:
    job = comp_job(tmp_path, plates, model, weight="object_ids", object_ids=[BALL])
    assert invoke("comp", str(job), "--frames", "1001")[0] == 0
    plate = read_plate(plates / "demo.1001.exr")
    on_ball = plate.channel("id") == BALL
    assert 50 < on_ball.sum() < on_ball.size // 2
    result, styled = rgba(tmp_path / "comp/demo.1001.exr"), stylized(tmp_path / "out/demo.1001.exr")
    np.testing.assert_array_equal(result[on_ball], styled[on_ball])
    np.testing.assert_array_equal(result[~on_ball], plate.channels(["R", "G", "B", "A"])[~on_ball])


def test_depth_weight_and_id_lines_match_the_blend_ops(tmp_path: Path, plates: Path, model: Path) -> None:
    job = comp_job(
        tmp_path,
        plates,
        model,
        weight="depth",
        depth_near=5.0,
        depth_far=20.0,
        depth_direction="far",
        lines=True,
        line_colour=[1.0, 0.0, 0.0],
        line_opacity=1.0,
    )
    assert invoke("comp", str(job), "--frames", "1001")[0] == 0
    plate = read_plate(plates / "demo.1001.exr")
    clean = plate.channels(["R", "G", "B", "A"])
    expected = mix(clean, stylized(tmp_path / "out/demo.1001.exr"), depth_weight(plate.channel("Z"), 5.0, 20.0, "far"))
    expected = line_overlay(expected, object_id=plate.channel("id"), colour=(1.0, 0.0, 0.0))
    result = rgba(tmp_path / "comp/demo.1001.exr")
    np.testing.assert_allclose(result, expected, rtol=1e-3, atol=1e-3)  # half-float output
    lines = (result[..., 0] == 1.0) & (result[..., 1] == 0.0) & (result[..., 3] == 1.0)
    assert lines.sum() > 20, "ID breaks carry red lines"


def test_a_cropped_data_window_is_kept(tmp_path: Path, plates: Path, model: Path) -> None:
    cropped = tmp_path / "cropped"
    cropped.mkdir()
    window = Window(10, 6, 96, 52)
    for frame in (1001, 1002):
        part = read_plate(plates / f"demo.{frame}.exr").parts[0]
        pixels = part.pixels[window.y : window.y + window.height, window.x : window.x + window.width]
        write_plate(
            cropped / f"demo.{frame}.exr",
            [ImagePart.create(pixels, part.channel_names, window, part.display_window, channel_types={"id": "uint"})],
        )
    job = comp_job(tmp_path, cropped, model, mode="detail_transfer", detail_size=4.0)
    assert invoke("comp", str(job), "--frames", "1001")[0] == 0
    result = read_plate(tmp_path / "comp/demo.1001.exr")
    assert result.data_window == window and result.display_window == Window(0, 0, 128, 72)
    assert np.isfinite(result.channels(["R", "G", "B", "A"])).all()


def test_comp_settings_are_checked(tmp_path: Path, plates: Path, model: Path) -> None:
    job = comp_job(tmp_path, plates, model, weight="matte")
    status, _, err = invoke("comp", str(job))
    assert status == 2 and "comp: weight 'matte' needs matte_channel" in err
