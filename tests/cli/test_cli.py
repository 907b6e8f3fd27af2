"""The command line as users run it: inspect, damaged input, job schema/validate, demo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stylecomp.cli import cli
from stylecomp.io.plates import read_plate
from tests.shared_data import TESTDATA

DAMAGED = sorted((TESTDATA / "exr-damaged").glob("*.exr"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``stylecomp`` console script in a real subprocess."""
    script = Path(sys.executable).with_name("stylecomp")
    return subprocess.run([str(script), *args], check=False, capture_output=True, text=True, timeout=300, env=env)


def test_inspect_beachball_json(testdata: Path) -> None:
    result = run("inspect", str(testdata / "plates/beachball/singlepart.####.exr"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == list(range(1, 9)) and report["missing"] == []
    assert report["display_window"] == [0, 0, 2048, 1556]
    assert report["data_window"] == [654, 245, 911, 876]
    layers = {layer["name"]: layer["channels"] for layer in report["layers"]}
    assert layers["forward.left"] == ["forward.left.u", "forward.left.v"]
    assert report["aovs"]["depth"]["channels"] == ["Z"]
    assert report["aovs"]["motion"]["channels"] == ["forward.left.u", "forward.left.v"]
    assert report["nonfinite"]["nan"] == 0 and report["compression"] == "zips"


def test_inspect_reports_missing_frames_and_a_damaged_frame(testdata: Path, tmp_path: Path) -> None:
    for frame in (1, 2, 5):
        shutil.copy(testdata / f"plates/beachball/singlepart.{frame:04d}.exr", tmp_path / f"bb.{frame:04d}.exr")
    shutil.copy(DAMAGED[0], tmp_path / "bb.0006.exr")
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "bb.%04d.exr"), "--json", "--headers-only"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["frames"] == [1, 2, 5] and report["missing"] == [3, 4] and report["damaged"] == [6]
    assert report["errors"][0]["file"].endswith("bb.0006.exr")
    assert result.stderr.startswith(f"error: {tmp_path / 'bb.0006.exr'}: ")


def test_inspect_counts_nan_and_inf(testdata: Path) -> None:
    path = testdata / "exr/TestImages_BrightRingsNanInf.exr"
    result = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["nonfinite"]
    pixels = read_plate(path).parts[0].pixels
    assert counts["nan"] == np.isnan(pixels).sum() > 0
    assert counts["inf"] == np.isinf(pixels).sum() > 0
    text = CliRunner().invoke(cli, ["inspect", str(path)]).stdout
    assert f"{counts['nan']} NaN, {counts['inf']} Inf" in text


@pytest.mark.parametrize("path", DAMAGED, ids=[p.name[:40] for p in DAMAGED])
def test_every_damaged_file_gives_one_line_and_status_2(testdata: Path, path: Path) -> None:
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and len(lines[0]) > len(f"error: {path}: ")


def test_damaged_file_in_a_real_process(testdata: Path) -> None:
    for path in DAMAGED[::20]:
        result = run("inspect", str(path))
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {path}: ")
        assert "Traceback" not in result.stderr


def test_job_schema_and_validate(tmp_path: Path) -> None:
    schema = json.loads(CliRunner().invoke(cli, ["job", "schema"]).stdout)
    assert {"shots", "color", "model", "seed", "consistency", "candidates"} <= set(schema["properties"])
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"shots": [{"name": "sh010", "plate": "p.####.exr", "output": "o.####.exr"}]}))
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "shots": [{"name": "sh010", "plate": "p.####.exr", "output": "o.####.exr", "handles": -2}],
                "steps": "many",
            }
        )
    )
    result = CliRunner().invoke(cli, ["job", "validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert f"{good}: valid" in result.stdout
    assert f"error: {bad}: shots[0].handles: Input should be greater than or equal to 0" in result.stderr
    assert f"error: {bad}: steps: Input should be a valid integer" in result.stderr


def test_demo_command_stylizes_with_the_built_in_model_and_reuses_the_cache(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "STYLECOMP_CACHE_DIR": str(tmp_path / "cache")}
    result = run("demo", "--out", str(out), "--frames", "3", "--size", "160x90", env=env)
    assert result.returncode == 0, result.stderr
    plates = sorted((out / "plates").glob("demo.*.exr"))
    outputs = sorted((out / "stylized").glob("demo.*.exr"))
    assert [p.name for p in plates] == ["demo.1001.exr", "demo.1002.exr", "demo.1003.exr"]
    assert [p.name for p in outputs] == [p.name for p in plates]
    assert CliRunner().invoke(cli, ["job", "validate", str(out / "demo_job.json")]).exit_code == 0
    plate, output = read_plate(plates[-1]), read_plate(outputs[-1])
    stylized = output.channels(["stylized.R", "stylized.G", "stylized.B"])
    assert np.abs(stylized - plate.channels(["R", "G", "B"])).mean() > 0.01
    np.testing.assert_array_equal(output.channel("stylized.A"), plate.channel("A"))
    assert output.parts[0].attributes["stylecomp/frame"] == 1003
    assert json.loads(output.parts[0].attributes["stylecomp/parameters"])["family"] == "sd15"
    from PIL import Image

    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width == 4 * 320 and sheet.height > 2 * 180
    assert "contact sheet" in result.stdout and "3 stylized, 0 from the cache" in result.stdout
    assert "stylecomp's own trained model" in result.stdout
    assert "flicker" in result.stdout and (out / "flicker.png").is_file()
    # The comp keys the stylized globe, crate and ball (ids 2, 3, 5) over the clean ground, sky and lamp.
    comp = read_plate(out / "comp" / "demo.1003.exr").channels(["R", "G", "B"])
    ids = plate.channel("id")
    clean, styled = np.isin(ids, [0, 1, 4]), np.isin(ids, [2, 3, 5])
    np.testing.assert_allclose(comp[clean], plate.channels(["R", "G", "B"])[clean], rtol=1e-3, atol=1e-4)
    assert np.abs(comp[styled] - plate.channels(["R", "G", "B"])[styled]).mean() > 0.01

    again = run("demo", "--out", str(out), "--frames", "3", "--size", "160x90", env=env)
    assert again.returncode == 0, again.stderr
    assert "0 stylized, 3 from the cache" in again.stdout
    np.testing.assert_array_equal(read_plate(outputs[-1]).channels(["stylized.R"]), stylized[..., :1])


def test_bad_size_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["demo", "--size", "big"])
    assert result.exit_code == 2 and result.stderr == "error: --size must look like 960x540, not 'big'\n"


def test_model_make_test_writes_a_loadable_tiny_model(tmp_path: Path) -> None:
    from stylecomp.diffusion.model_files import detect_family

    result = CliRunner().invoke(cli, ["model", "make-test", str(tmp_path / "m"), "--family", "sd15", "--controlnet"])
    assert result.exit_code == 0, result.output
    assert detect_family(tmp_path / "m") == "sd15"
    assert detect_family(tmp_path / "m" / "controlnet") == "sd15"
    bad = CliRunner().invoke(cli, ["model", "make-test", str(tmp_path / "x"), "--family", "sd3"])
    assert bad.exit_code == 2 and "'sd3' is not one of 'sd15', 'sdxl', 'flux'" in bad.stderr
