"""Bad inputs give one line naming the file or field, never a traceback or a silent wrong output (issue 23, 6-8).

Real files throughout: EXRs written with OpenImageIO, a tiny model built from the diffusers
classes, pickles written with torch.save, and the stylecomp CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stylecomp.diffusion.loading import model_hash
from stylecomp.errors import ModelError
from stylecomp.io.plates import ImagePart, Window, write_plate
from tests.tiny_jobs import FIRST, invoke, job_document, stylized, write_job, write_plates


@pytest.fixture(autouse=True)
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_nan_and_inf_in_the_plates_alpha_never_reach_stylized_alpha(tmp_path: Path, model: Path) -> None:
    rgba = np.full((64, 64, 4), 0.5, np.float32)
    rgba[:8, :, 3] = np.nan
    rgba[8:16, :, 3] = np.inf
    rgba[16:24, :, 3] = -np.inf
    window = Window(0, 0, 64, 64)
    write_plate(
        tmp_path / "plate.exr", [ImagePart.create(rgba, ["R", "G", "B", "A"], window, window, pixel_type="float")]
    )
    document = job_document(tmp_path, model, str(tmp_path / "out.exr"), 1)
    document["shots"][0] |= {"plate": str(tmp_path / "plate.exr"), "frames": None}
    status, _, err = invoke("render", str(write_job(tmp_path / "job.json", document)), "--device", "cpu")
    assert status == 0, err
    alpha = stylized(tmp_path / "out.exr")[..., 3]
    assert np.isfinite(alpha).all()
    assert (alpha[:8] == 0).all() and (alpha[8:16] == 1).all() and (alpha[16:24] == 0).all()
    assert (alpha[24:] == 0.5).all(), "finite alpha is kept as it was"


def test_a_job_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_bytes(b'{"version": 1, "prompt": "caf\xe9"}')
    status, _, err = invoke("job", "validate", str(job))
    assert status == 2 and "UTF-8" in one_line(err) and str(job) in err


def test_a_deeply_nested_job_file_is_one_line(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    status, _, err = invoke("job", "validate", str(job))
    assert status == 2 and "nested too deeply" in one_line(err)


class _NotAllowed:
    """An object torch's weights-only unpickler refuses to build."""


@pytest.mark.parametrize("content", ["foreign object", "truncated zip"])
def test_a_pickle_that_fails_to_unpickle_with_allow_pickle_is_one_line(
    tmp_path: Path, model: Path, content: str
) -> None:
    checkpoint = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"weight": _NotAllowed()}}, checkpoint)
    if content == "truncated zip":
        checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    plates = write_plates(tmp_path / "plates", 1)
    document = job_document(plates, model, str(tmp_path / "out" / "demo.####.exr"), 1)
    document["model"] |= {"path": str(checkpoint), "allow_pickle": True}
    status, _, err = invoke("render", str(write_job(tmp_path / "job.json", document)), "--device", "cpu")
    assert status == 2 and "cannot read the checkpoint" in one_line(err) and str(checkpoint) in err


def test_a_model_component_outside_the_model_is_refused_before_hashing(tmp_path: Path, model: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.bin").write_bytes(b"not the model's")
    index = json.loads((copy / "model_index.json").read_text())
    index["../outside"] = ["diffusers", "UNet2DConditionModel"]
    (copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="not a folder inside the model"):
        model_hash(copy)


def test_a_read_only_output_folder_stops_the_render_before_any_frame(tmp_path: Path, model: Path) -> None:
    plates = write_plates(tmp_path / "plates", 2)
    document = job_document(plates, model, "/proc/stylecomp-never/demo.####.exr", 2)
    status, out, err = invoke("render", str(write_job(tmp_path / "job.json", document)), "--device", "cpu")
    assert status == 2 and one_line(err).startswith("error: shots[0].output: cannot write to the folder")
    assert "rendered" not in out


def test_a_resolution_change_mid_sequence_is_warned_about(tmp_path: Path, model: Path) -> None:
    plates = write_plates(tmp_path / "plates", 2)
    smaller = write_plates(tmp_path / "smaller", 2, size=48)
    shutil.copyfile(smaller / f"demo.{FIRST + 1}.exr", plates / f"demo.{FIRST + 1}.exr")
    document = job_document(plates, model, str(tmp_path / "out" / "demo.####.exr"), 2)
    status, _, err = invoke("render", str(write_job(tmp_path / "job.json", document)), "--device", "cpu")
    assert status == 0, err
    assert f"warning: demo {FIRST + 1}: resolution changes mid-sequence: 48x48, the shot's first frame is 64x64" in err


def test_braces_in_the_job_files_name_make_a_valid_openjd_template(tmp_path: Path, model: Path) -> None:
    plates = write_plates(tmp_path / "plates", 2)
    job = write_job(tmp_path / "shot {{x}}.json", job_document(plates, model, "out/demo.####.exr", 2))
    status, _, err = invoke("farm", "openjd", str(job), "-o", str(tmp_path / "template.yaml"))
    assert status == 0, err
    assert "stylecomp shot ((x)).json" in (tmp_path / "template.yaml").read_text()


# Every shared damaged file at the real CLI. One process imports stylecomp once and forks a child per file, whose
# descriptors 1 and 2 are files: what the OpenEXR library writes there itself is caught as a terminal would see it.
CLI_PER_FILE = r"""
import json, os, sys
from stylecomp.cli import main
results = []
for path in sys.argv[2:]:
    for args in (["inspect", path], ["inspect", "--json", path]):
        out, err = (os.path.join(sys.argv[1], name) for name in ("out", "err"))
        pid = os.fork()
        if pid == 0:
            for fd, name in ((1, out), (2, err)):
                os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["stylecomp", *args]
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        status = os.waitpid(pid, 0)[1]
        with open(out, errors="replace") as o, open(err, errors="replace") as e:
            results.append({"args": args, "exit": os.waitstatus_to_exitcode(status), "stdout": o.read(),
                            "stderr": e.read()})
print(json.dumps(results))
"""


def _run_cli_per_file(folder: Path, paths: list[Path]) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", CLI_PER_FILE, str(folder), *map(str, paths)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_every_shared_damaged_file_is_one_error_line_at_the_cli(testdata: Path, tmp_path: Path) -> None:
    damaged = sorted((testdata / "exr-damaged").glob("*.exr"))
    assert len(damaged) >= 80
    failures = []
    for result in _run_cli_per_file(tmp_path, damaged):
        stdout, stderr = str(result["stdout"]), str(result["stderr"])
        lines = stderr.splitlines()
        ok = result["exit"] == 2 and len(lines) == 1 and lines[0].startswith(f"error: {result['args'][-1]}: ")
        if stdout.strip():
            try:
                json.loads(stdout)
            except json.JSONDecodeError:
                ok = False
        if not ok:
            failures.append(result)
    assert not failures, failures[:3]


def test_damaged_frames_in_a_sequence_keep_json_valid_and_are_not_present(testdata: Path, tmp_path: Path) -> None:
    """Two damaged frames (one that makes the OpenEXR library print on both descriptors) among good ones."""
    street = testdata / "plates" / "blender_street"
    for frame in (1001, 1002, 1003, 1006):
        shutil.copy(street / f"street.{frame}.exr", tmp_path / f"s.{frame}.exr")
    shutil.copy(next((testdata / "exr-damaged").glob("poc-4d912f49*.exr")), tmp_path / "s.1004.exr")
    shutil.copy(testdata / "exr-damaged" / "NULL_pointer.exr", tmp_path / "s.1005.exr")
    pattern = str(tmp_path / "s.####.exr")
    as_json, text = _run_cli_per_file(tmp_path / "..", [Path(pattern)])
    assert as_json["args"][1] == "--json" or text["args"][1] == "--json"
    as_json, text = (as_json, text) if as_json["args"][1] == "--json" else (text, as_json)
    report = json.loads(str(as_json["stdout"]))
    assert report["frames"] == [1001, 1002, 1003, 1006] and report["damaged"] == [1004, 1005]
    assert report["missing"] == []
    for result in (as_json, text):
        lines = str(result["stderr"]).splitlines()
        assert result["exit"] == 2 and len(lines) == 2, result
        assert lines[0].startswith(f"error: {tmp_path / 's.1004.exr'}: ") and lines[1].startswith(
            f"error: {tmp_path / 's.1005.exr'}: "
        )
    assert "  damaged      1004-1005 (2 frames)" in str(text["stdout"])
    assert "  frames       1001-1003, 1006 (4 frames)" in str(text["stdout"])


THREADED_READS = r"""
import os, sys, threading
from stylecomp.errors import PlateError
from stylecomp.io.plates import read_plate
def read():
    for _ in range(10):
        try:
            read_plate(sys.argv[1])
        except PlateError:
            pass
threads = [threading.Thread(target=read) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
os.write(1, b"stdout works\n")
os.write(2, b"stderr works\n")
"""


def test_concurrent_damaged_reads_print_nothing_and_leave_the_terminal_working(testdata: Path) -> None:
    damaged = next((testdata / "exr-damaged").glob("poc-4d912f49*.exr"))
    done = subprocess.run(
        [sys.executable, "-c", THREADED_READS, str(damaged)], check=False, capture_output=True, text=True, timeout=300
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "stdout works\n", "stderr works\n")
