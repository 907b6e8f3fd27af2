"""Inputs are sacred: no output lands on a file the job reads, nor on a file stylecomp did not write (issue 23, 1).

Real plates, a real tiny model and the real CLI and server: a job whose output is its plate is
refused by `job validate`, `render`, `batch --resume`, `comp`, the server and farm planning, and
the plates stay byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.io.plates import ImagePart, Window, write_plate
from stylecomp.jobspec import Job, load_job
from stylecomp.render.cache import RenderCache
from stylecomp.render.output_guard import check_outputs, written_by_stylecomp
from stylecomp.server.access_token import load_or_create_token, token_file
from stylecomp.server.app import EngineServer
from tests.tiny_jobs import FIRST, invoke, job_document, stylized, write_job, write_plates

FRAMES = 2


@pytest.fixture
def plates(tmp_path: Path) -> Path:
    """Fresh plates in the test's own folder, not the shared module ones: the server's roots (tmp_path) must hold
    them, and the ``..`` spellings of their path name the folder ``plates``."""
    return write_plates(tmp_path / "plates", FRAMES)


@pytest.fixture(autouse=True)
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLECOMP_CONFIG_DIR", str(tmp_path / "config"))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def foreign_exr(path: Path) -> None:
    """An EXR that stylecomp did not write: no stylecomp/ attribute in its header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_plate(
        path,
        [ImagePart.create(np.zeros((4, 4, 3), np.float32), ["R", "G", "B"], Window(0, 0, 4, 4), Window(0, 0, 4, 4))],
    )


def test_validate_refuses_an_output_equal_to_its_plate(tmp_path: Path, plates: Path, model: Path) -> None:
    job = write_job(tmp_path / "job.json", job_document(plates, model, str(plates / "demo.####.exr"), FRAMES))
    status, _, err = invoke("job", "validate", str(job))
    assert status == 2
    assert "shots[0].output" in err and "shots[0].plate" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("spelling", ["printf", "dotdot", "symlink", "padding"])
def test_validate_sees_through_spellings_of_the_plate(tmp_path: Path, plates: Path, model: Path, spelling: str) -> None:
    """``%04d`` for ``####``, ``..``, a symlinked folder, another padding: each still names the plates."""
    if spelling == "symlink":
        (tmp_path / "link").symlink_to(plates)
    output = {
        "printf": str(plates / "demo.%04d.exr"),
        "dotdot": str(plates / ".." / "plates" / "demo.####.exr"),
        "symlink": str(tmp_path / "link" / "demo.####.exr"),
        "padding": str(plates / "demo.#.exr"),
    }[spelling]
    job = write_job(tmp_path / "job.json", job_document(plates, model, output, FRAMES))
    status, _, err = invoke("job", "validate", str(job))
    assert status == 2 and "shots[0].output" in err


def test_validate_refuses_outputs_in_the_model_or_on_the_style_image(tmp_path: Path, plates: Path, model: Path) -> None:
    style = tmp_path / "style.exr"
    foreign_exr(style)
    inside_model = job_document(plates, model, str(model / "out" / "demo.####.exr"), FRAMES)
    problems = check_outputs(_job(tmp_path / "a.json", inside_model))
    assert problems and problems[0].startswith("shots[0].output") and "model.path" in problems[0]
    document = job_document(plates, model, str(tmp_path / "out" / "demo.####.exr"), FRAMES)
    document["shots"].append({"name": "still", "plate": str(plates / "demo.1001.exr"), "output": str(style)})
    document["model"]["ip_adapter"] = {"path": str(tmp_path / "ip.safetensors"), "image": str(style)}
    problems = check_outputs(_job(tmp_path / "b.json", document))
    assert (
        problems == [problems[0]]
        and problems[0].startswith("shots[1].output")
        and "model.ip_adapter.image" in problems[0]
    )


def test_one_shot_may_not_write_over_another_shots_plates(tmp_path: Path, plates: Path, model: Path) -> None:
    document = job_document(plates, model, str(tmp_path / "out" / "a.####.exr"), FRAMES)
    document["shots"].append(
        {"name": "other", "plate": str(tmp_path / "other.####.exr"), "output": str(plates / "demo.####.exr")}
    )
    problems = check_outputs(_job(tmp_path / "job.json", document), disk=False)
    assert len(problems) == 1 and problems[0].startswith("shots[1].output") and "shots[0].plate" in problems[0]


def test_render_of_a_job_writing_over_its_plates_leaves_them_byte_identical(
    tmp_path: Path, plates: Path, model: Path
) -> None:
    before = digests(plates)
    job = write_job(tmp_path / "job.json", job_document(plates, model, str(plates / "demo.####.exr"), FRAMES))
    for command in (
        ["render", str(job)],
        ["comp", str(job)],
        ["batch", "--resume", str(job)],
        ["render", str(job), "--overwrite"],
    ):
        status, _, err = invoke(*command, "--device", "cpu")
        assert status == 2 and "shots[0].output" in err and "Traceback" not in err, (command, err)
    assert digests(plates) == before


def test_a_file_stylecomp_did_not_write_is_replaced_only_with_overwrite(
    tmp_path: Path, plates: Path, model: Path
) -> None:
    out = tmp_path / "out"
    theirs = out / f"demo.{FIRST + 1}.exr"
    foreign_exr(theirs)
    before = theirs.read_bytes()
    job = write_job(tmp_path / "job.json", job_document(plates, model, str(out / "demo.####.exr"), FRAMES))
    status, _, err = invoke("render", str(job), "--device", "cpu")
    assert status == 2 and "--overwrite" in err and str(theirs) in err
    assert theirs.read_bytes() == before and not (out / f"demo.{FIRST}.exr").exists(), "refused before any frame"
    assert invoke("job", "validate", str(job))[0] == 2 and invoke("job", "validate", str(job), "--overwrite")[0] == 0
    status, _, err = invoke("render", str(job), "--device", "cpu", "--overwrite")
    assert status == 0, err
    assert written_by_stylecomp(theirs) and stylized(theirs).shape[2] == 4
    assert invoke("render", str(job), "--device", "cpu")[0] == 0, "its own outputs are rendered over freely"


def test_resume_never_deletes_a_damaged_file_it_did_not_write(tmp_path: Path, plates: Path, model: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    theirs = out / f"demo.{FIRST}.exr"
    theirs.write_bytes(b"not an EXR at all")
    job = write_job(tmp_path / "job.json", job_document(plates, model, str(out / "demo.####.exr"), FRAMES))
    status, _, err = invoke("batch", "--resume", str(job), "--device", "cpu")
    assert status == 2 and "shots[0].output" in err
    assert theirs.read_bytes() == b"not an EXR at all"


def test_farm_planning_refuses_an_output_equal_to_its_plate(tmp_path: Path, plates: Path, model: Path) -> None:
    job = write_job(tmp_path / "job.json", job_document(plates, model, str(plates / "demo.####.exr"), FRAMES))
    status, _, err = invoke("farm", "openjd", str(job), "-o", str(tmp_path / "t.yaml"))
    assert status == 2 and "shots[0].output" in err and not (tmp_path / "t.yaml").exists()


def test_server_refuses_a_submission_writing_over_its_plates(tmp_path: Path, plates: Path, model: Path) -> None:
    token, _ = load_or_create_token()
    engine = EngineServer(("127.0.0.1", 0), token, PipelinePool("cpu"), RenderCache(), roots=[tmp_path, model.parent])
    engine.start()
    try:
        before = digests(plates)
        document = job_document(plates, model, str(plates / "demo.####.exr"), FRAMES)
        status, answer = call(engine.url, "POST", "/jobs", {"job": document})
        assert status == 400 and answer["problems"][0].startswith("shots[0].output")
        status, answer = call(engine.url, "POST", "/jobs", {"job": document, "overwrite": True})
        assert status == 400, "overwrite never covers the job's own inputs"
        assert call(engine.url, "GET", "/jobs")[1]["jobs"] == [] and digests(plates) == before
    finally:
        engine.stop()


def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request with the token file's token: status and JSON answer."""
    request = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token_file().read_text().strip()}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.load(refused)


def _job(path: Path, document: dict[str, Any]) -> Job:
    path.write_text(json.dumps(document), encoding="utf-8")
    return load_job(path)


def test_outputs_may_not_write_over_a_regions_mattes_or_style_image(tmp_path: Path, plates: Path, model: Path) -> None:
    style = tmp_path / "style.exr"
    foreign_exr(style)
    document = job_document(plates, model, str(tmp_path / "mattes" / "car.####.exr"), FRAMES)
    document["regions"] = [{"name": "car", "select": {"matte_sequence": str(tmp_path / "mattes" / "car.####.exr")}}]
    problems = check_outputs(_job(tmp_path / "a.json", document), disk=False)
    assert len(problems) == 1 and problems[0].startswith("shots[0].output")
    assert "regions[0].select.matte_sequence" in problems[0]
    document = job_document(plates, model, str(tmp_path / "out" / "demo.####.exr"), FRAMES)
    document["shots"].append(
        {
            "name": "still",
            "plate": str(plates / "demo.1001.exr"),
            "output": str(style),
            "regions": [{"name": "a", "select": {"ids": [1]}, "ip_adapter_image": str(style)}],
        }
    )
    problems = check_outputs(_job(tmp_path / "b.json", document))
    assert len(problems) == 1 and "shots[1].regions[0].ip_adapter_image" in problems[0]
