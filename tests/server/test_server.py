"""The engine server over real HTTP on loopback: the token, the API, the queue, the shared pipeline pool.

Most tests run the server in this process (port 0); one runs `stylecomp serve` as a real
subprocess and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from stylecomp.cli import cli
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.io.plates import read_plate
from stylecomp.render.cache import RenderCache
from stylecomp.server.access_token import load_or_create_token, token_file
from stylecomp.server.app import MAX_BODY, EngineServer, bind_warning
from tests.tiny_jobs import FIRST, job_document, stylized, write_job

FRAMES = 6
pytestmark = pytest.mark.plates(FRAMES)
ENGINE = Path(sys.executable).with_name("stylecomp")


@pytest.fixture(autouse=True)
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own render cache and config folder (where the token lives)."""
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLECOMP_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    """A server whose root is this run's temp folder (plates, model and outputs are all in it)."""
    token, _ = load_or_create_token()
    engine = EngineServer(
        ("127.0.0.1", 0), token, PipelinePool("cpu"), RenderCache(), roots=[tmp_path_factory.getbasetemp()]
    )
    engine.start()
    yield engine
    engine.stop()


def call(url: str, method: str, path: str, body: Any = None, token: str | None = "file") -> tuple[int, Any]:
    """One request; ``token="file"`` sends the token file's token, None sends none."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token_file().read_text().strip() if token == 'file' else token}"
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.load(refused)


def submit(url: str, document: dict[str, Any], **fields: Any) -> str:
    status, answer = call(url, "POST", "/jobs", {"job": document} | fields)
    assert status == 201, answer
    assert answer["status"] == "queued"
    return answer["id"]


def wait(url: str, job_id: str, until: Any, timeout: float = 120.0) -> dict[str, Any]:
    """Poll a job's status until ``until(status)``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, answer = call(url, "GET", f"/jobs/{job_id}")
        assert status == 200, answer
        if until(answer):
            return answer
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there: {answer}")


def finished(answer: dict[str, Any]) -> bool:
    return answer["status"] in ("done", "failed", "cancelled")


def test_every_request_needs_the_token_which_only_its_owner_reads(server: EngineServer) -> None:
    path = token_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for token in (None, "wrong", path.read_text().strip()[:-1]):
        status, answer = call(server.url, "GET", "/health", token=token)
        assert status == 401 and "token" in answer["error"]
    status, answer = call(server.url, "POST", "/jobs", {"job": {}}, token="wrong")
    assert status == 401
    status, answer = call(server.url, "GET", "/health")
    assert status == 200 and answer["status"] == "ok" and answer["pipelines_loaded"] == 0

    path.chmod(0o644)
    token, repaired = load_or_create_token()
    assert repaired and stat.S_IMODE(path.stat().st_mode) == 0o600 and token == server.token
    assert load_or_create_token() == (token, False)
    assert bind_warning("127.0.0.1") is None and bind_warning("::1") is None and bind_warning("localhost") is None
    assert "not only on this machine" in bind_warning("0.0.0.0")  # type: ignore[operator]  # a warning for this address


def test_malformed_requests_are_refused_with_a_message(server: EngineServer, plates: Path, model: Path) -> None:
    good = job_document(plates, model, "/tmp/never/demo.####.exr", 1)
    relative = job_document(plates, model, "out/demo.####.exr", 1)
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/jobs", b"{not json", 400, "not valid JSON"),
        ("POST", "/jobs", [1, 2], 400, "JSON object"),
        ("POST", "/jobs", {"job": good, "priority": 1}, 400, "unknown field(s) priority"),
        ("POST", "/jobs", {"jobs": good}, 400, "unknown field(s) jobs"),
        ("POST", "/jobs", {"job": good | {"colour": {}}}, 400, "colour: Extra inputs are not permitted"),
        ("POST", "/jobs", {"job": relative}, 400, "shots[0].output (out/demo.####.exr)"),
        ("POST", "/jobs", {"job": relative, "base_dir": "relative/folder"}, 400, "base_dir"),
        ("POST", "/jobs", {"job": good | {"model": good["model"] | {"allow_pickle": True}}}, 400, "allow_pickle"),
        ("POST", "/jobs", {"job": good, "shots": ["sh999"]}, 400, "no shot named sh999"),
        ("POST", "/jobs", {"job": good, "frames": [1002, 1001]}, 400, "'frames'"),
        ("POST", "/jobs", b" " * (MAX_BODY + 1), 413, "over"),
        ("GET", "/jobs/0123456789ab", None, 404, "no job"),
        ("POST", "/jobs/0123456789ab/cancel", None, 404, "no job"),
        ("GET", "/jobs/0123456789ab?since=x", None, 400, "since"),
        ("DELETE", "/jobs", None, 405, "not allowed"),
        ("GET", "/admin", None, 404, "no such endpoint"),
    ]
    for method, path, body, expected, message in cases:
        status, answer = call(server.url, method, path, body)
        assert (status, message in answer["error"]) == (expected, True), (method, path, answer)
    status, answer = call(server.url, "POST", "/jobs", {"job": good | {"steps": 0}})
    assert status == 400 and answer["problems"] == ["steps: Input should be greater than or equal to 1"]
    assert call(server.url, "GET", "/jobs")[1] == {"jobs": []}, "nothing was queued"


def test_jobs_queue_share_the_loaded_model_and_match_render(
    server: EngineServer, tmp_path: Path, plates: Path, model: Path
) -> None:
    first = job_document(plates, model, str(tmp_path / "a" / "demo.####.exr"), 2)
    second = job_document(plates, model, "b/demo.####.exr", 2, prompt="chalk")
    ids = [submit(server.url, first, label="first"), submit(server.url, second, base_dir=str(tmp_path))]
    answers = [wait(server.url, job_id, finished) for job_id in ids]
    assert [a["status"] for a in answers] == ["done", "done"]
    assert answers[0]["started"] <= answers[0]["finished"] <= answers[1]["started"], "one job at a time, in order"
    assert answers[1]["progress"] | {"eta": 0} == {
        "done": 2,
        "total": 2,
        "eta": 0,
        "rendered": 2,
        "cached": 0,
        "failed": 0,
    }
    assert [e["event"] for e in answers[1]["events"]][-3:] == ["shot_end", "job_end", "finished"]
    status, health = call(server.url, "GET", "/health")
    assert status == 200 and health["pipelines_loaded"] == 1, "the second job did not load the model again"
    listed = call(server.url, "GET", "/jobs")[1]["jobs"]
    assert [(j["id"], j["label"], j["status"]) for j in listed] == [(ids[0], "first", "done"), (ids[1], "demo", "done")]
    since = call(server.url, "GET", f"/jobs/{ids[1]}?since=2")[1]["events"]
    assert since[0]["seq"] == 3 and since[-1]["event"] == "finished"

    for folder, document in (("a", first), ("b", second)):
        job = write_job(
            tmp_path / "cli" / folder / "job.json",
            document | {"shots": [document["shots"][0] | {"output": "out/demo.####.exr"}]},
        )
        result = CliRunner().invoke(cli, ["render", str(job), "--no-cache", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        for frame in (FIRST, FIRST + 1):
            np.testing.assert_array_equal(
                stylized(tmp_path / folder / f"demo.{frame}.exr"), stylized(job.parent / "out" / f"demo.{frame}.exr")
            )


def test_status_burst_while_rendering_and_cancel(
    server: EngineServer, tmp_path: Path, plates: Path, model: Path
) -> None:
    out = tmp_path / "out"
    running = submit(server.url, job_document(plates, model, str(out / "demo.####.exr"), FRAMES, steps=40))
    queued = submit(server.url, job_document(plates, model, str(tmp_path / "never" / "demo.####.exr"), 1))
    wait(server.url, running, lambda answer: answer["status"] == "running")

    answers: list[tuple[int, str]] = []

    def poll() -> None:
        for i in range(25):
            status, answer = call(server.url, "GET", f"/jobs/{running}" if i % 2 else "/health")
            answers.append((status, answer.get("status", "")))

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 200 and {status for status, _ in answers} == {200}
    assert "running" in {state for _, state in answers}, "the burst came while the job rendered"

    status, answer = call(server.url, "POST", f"/jobs/{queued}/cancel")
    assert status == 200 and answer["status"] == "cancelled", "a queued job is cancelled at once"
    wait(server.url, running, lambda answer: answer["progress"]["done"] >= 1)
    status, answer = call(server.url, "POST", f"/jobs/{running}/cancel")
    assert status == 200 and answer["cancel_requested"]
    answer = wait(server.url, running, finished)
    assert answer["status"] == "cancelled" and 1 <= answer["progress"]["rendered"] < FRAMES
    kept = sorted(out.iterdir())
    assert len(kept) == answer["progress"]["rendered"] and all(p.name.startswith("demo.") for p in kept)
    for path in kept:
        read_plate(path)  # whole
    assert call(server.url, "POST", f"/jobs/{running}/cancel")[0] == 409
    assert not (tmp_path / "never").exists()


def test_serve_prints_where_and_stops_on_sigterm_keeping_finished_frames(
    tmp_path: Path, plates: Path, model: Path
) -> None:
    process = subprocess.Popen(
        [str(ENGINE), "serve", "--port", "0", "--device", "cpu", "--root", str(tmp_path.parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().split()[4]  # type: ignore[union-attr]  # stdout=PIPE
        assert process.stdout.readline().startswith(f"token file: {token_file()} ")  # type: ignore[union-attr]  # stdout=PIPE
        assert url.startswith("http://127.0.0.1:") and stat.S_IMODE(token_file().stat().st_mode) == 0o600
        out = tmp_path / "out"
        job_id = submit(url, job_document(plates, model, str(out / "demo.####.exr"), FRAMES, steps=20))
        wait(url, job_id, lambda answer: answer["progress"]["done"] >= 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        _, err = process.communicate()
    assert "stopping" in err and "stopped" in err
    kept = sorted(out.iterdir())
    assert 1 <= len(kept) < FRAMES and all(p.name.startswith("demo.") for p in kept), "no temp files"
    for path in kept:
        read_plate(path)
