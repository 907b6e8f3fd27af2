"""The engine server stays inside its roots and bounds every request (issue 23, 2, 3, 5, 7 and 8).

Real servers on 127.0.0.1 over real HTTP and raw sockets; real plates and a tiny real model.
"""

from __future__ import annotations

import json
import os
import socket
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

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.errors import StyleCompError
from stylecomp.render.cache import RenderCache
from stylecomp.server import app as server_module
from stylecomp.server.access_token import load_or_create_token, token_file
from stylecomp.server.app import LIMITS, EngineServer, default_roots
from tests.tiny_jobs import job_document, write_plates


@pytest.fixture(autouse=True)
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STYLECOMP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLECOMP_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def server(root: Path, model: Path) -> Iterator[EngineServer]:
    """A server confined to ``root`` and the model's folder."""
    engine = EngineServer(
        ("127.0.0.1", 0), load_or_create_token()[0], PipelinePool("cpu"), RenderCache(), roots=[root, model.parent]
    )
    engine.start()
    yield engine
    engine.stop()


def call(url: str, method: str, path: str, body: Any = None, token: bool = True) -> tuple[int, Any, float]:
    """One request: status, JSON answer (None for a bodiless one) and seconds taken."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token_file().read_text().strip()}"} if token else {}
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            text = answer.read()
            return answer.status, json.loads(text) if text else None, time.monotonic() - started
    except urllib.error.HTTPError as refused:
        with refused:
            text = refused.read()
            return refused.code, json.loads(text) if text else None, time.monotonic() - started


def test_paths_outside_the_roots_are_refused_naming_the_field(
    server: EngineServer, root: Path, model: Path, tmp_path: Path
) -> None:
    plates = write_plates(root / "plates", 1)
    inside = job_document(plates, model, str(root / "out" / "demo.####.exr"), 1)
    (root / "escape").symlink_to(tmp_path)  # a symlink inside the root that leads out of it
    keys = str(Path.home() / ".ssh" / "authorized_keys")  # a file outside the roots a token holder must not write
    cases = {
        "shots[0].output": inside
        | {"shots": [inside["shots"][0] | {"plate": str(plates / "demo.1001.exr"), "frames": None, "output": keys}]},
        "shots[0].plate": inside | {"shots": [inside["shots"][0] | {"plate": "/etc/passwd", "frames": None}]},
        "model.path": inside | {"model": {"family": "sd15", "path": "/usr/lib"}},
        "shots[0].output ": inside | {"shots": [inside["shots"][0] | {"output": str(root / "escape" / "x.####.exr")}]},
        "shots[0].plate ": inside | {"shots": [inside["shots"][0] | {"plate": str(root / ".." / "p.####.exr")}]},
        "shots[0].regions[0].select.matte_sequence": inside
        | {
            "shots": [
                inside["shots"][0]
                | {"regions": [{"name": "car", "select": {"matte_sequence": "/etc/mattes.####.exr"}}]}
            ]
        },
        "regions[1].loras[0].path": inside
        | {
            "regions": [
                {"name": "a", "select": {"ids": [1]}},
                {"name": "b", "select": {"ids": [2]}, "loras": [{"path": str(tmp_path / "ink.safetensors")}]},
            ]
        },
        "regions[0].ip_adapter_image": inside
        | {"regions": [{"name": "a", "select": {"ids": [1]}, "ip_adapter_image": str(root / "escape" / "ref.png")}]},
    }
    for field, document in cases.items():
        status, answer, _ = call(server.url, "POST", "/jobs", {"job": document})
        assert status == 403 and answer["problems"] == [f"{field.strip()}: outside the server's roots"], answer
        assert str(tmp_path) not in json.dumps(answer), "no resolved path the client did not send"
    status, answer, _ = call(server.url, "POST", "/jobs", {"job": inside, "base_dir": "/"})
    assert status == 403 and answer["problems"] == ["base_dir: outside the server's roots"]
    assert call(server.url, "GET", "/jobs")[1] == {"jobs": []}


def test_request_paths_are_never_variable_expanded(
    server: EngineServer, root: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STYLECOMP_TEST_SECRET", "hunter2-value")
    plates = write_plates(root / "plates", 1)
    for spelling in ("$STYLECOMP_TEST_SECRET", "${STYLECOMP_TEST_SECRET}", "~"):
        document = job_document(plates, model, f"{root}/{spelling}/demo.####.exr", 1)
        document["shots"][0]["plate"] = f"/x/{spelling}/p.####.exr"
        status, answer, _ = call(server.url, "POST", "/jobs", {"job": document})
        text = json.dumps(answer)
        assert status == 403 and "hunter2-value" not in text and str(Path.home()) not in text, answer
        status, answer, _ = call(
            server.url,
            "POST",
            "/jobs",
            {"job": document | {"shots": [document["shots"][0] | {"plate": f"{spelling}/p.####.exr"}]}},
        )
        assert status == 400 and "hunter2-value" not in json.dumps(answer), "relative: needs base_dir, not $HOME"


def test_no_root_means_loopback_only_serving_home_and_the_cache(tmp_path: Path) -> None:
    token = load_or_create_token()[0]
    with pytest.raises(StyleCompError, match="without --root"):
        EngineServer(("0.0.0.0", 0), token, PipelinePool("cpu"), None)
    with pytest.raises(StyleCompError, match="existing folder"):
        EngineServer(("127.0.0.1", 0), token, PipelinePool("cpu"), None, roots=[tmp_path / "nope"])
    engine = EngineServer(("127.0.0.1", 0), token, PipelinePool("cpu"), None)
    try:
        assert engine.roots == [os.path.realpath(Path.home()), os.path.realpath(tmp_path / "cache")]
        assert default_roots() == [str(Path.home()), str(tmp_path / "cache")]
    finally:
        engine.server_close()


def test_requests_over_the_limits_get_400_within_milliseconds(server: EngineServer, root: Path, model: Path) -> None:
    plates = write_plates(root / "plates", 2)
    good = job_document(plates, model, str(root / "out" / "demo.####.exr"), 2)
    shot = good["shots"][0]

    def nested(depth: int) -> bytes:
        return ('{"job": ' + "[" * depth + "]" * depth + "}").encode()

    cases: list[tuple[Any, str]] = [
        ({"job": good | {"shots": [shot | {"frames": {"first": 1, "last": 1_000_000_000}}]}}, "shots[0].frames"),
        ({"job": good, "frames": [1, 1_000_000_000]}, "frames: 1000000000 frames"),
        ({"job": good | {"shots": [shot | {"handles": 10**9}]}}, "shots[0].handles"),
        ({"job": good | {"candidates": {"count": 64}}}, "candidates.count"),
        ({"job": good | {"steps": 500}}, "steps"),
        ({"job": good | {"prompt": "x" * (LIMITS["prompt"] + 1)}}, "prompt"),
        ({"job": good | {"resolution": {"working_size": 8192}}}, "resolution.working_size"),
        ({"job": good | {"resolution": {"working_size": 4096}}}, "resolution.working_size: 4096 for a 64x64"),
        (nested(LIMITS["json_depth"] + 1), "nested more than"),
        (nested(200_000), "nested more than"),
    ]
    for body, field in cases:
        status, answer, seconds = call(server.url, "POST", "/jobs", body)
        assert status == 400 and field in json.dumps(answer), (field, answer)
        assert seconds < 0.5, (field, seconds)
    status, health, seconds = call(server.url, "GET", "/health")
    assert status == 200 and health["queue"]["jobs"] == 0 and seconds < 0.5


def test_head_and_options_need_the_token(server: EngineServer) -> None:
    for method in ("HEAD", "OPTIONS"):
        for path in ("/health", "/jobs", "/nowhere"):
            assert call(server.url, method, path, token=False)[0] == 401, (method, path)
    assert call(server.url, "HEAD", "/health")[:2] == (200, None)
    status, answer, _ = call(server.url, "OPTIONS", "/jobs")
    assert status == 200 and answer == {"allow": ["GET", "HEAD", "POST", "OPTIONS"]}


def test_a_burst_of_submissions_is_all_accepted(server: EngineServer, root: Path, model: Path) -> None:
    """50 clients submit at once: each gets its 201 (the backlog holds the burst; none is reset)."""
    plates = write_plates(root / "plates", 1)
    document = job_document(plates, model, str(root / "out" / "demo.####.exr"), 1, steps=1)
    answers: list[int | str] = []

    def submit() -> None:
        try:
            answers.append(call(server.url, "POST", "/jobs", {"job": document})[0])
        except OSError as exc:
            answers.append(type(exc).__name__)

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [201] * 50
    assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_health_is_answered_while_every_worker_is_busy(server: EngineServer) -> None:
    """A monitor's /health has its own lane: with every request worker held by a stalled client (and more waiting
    for one), it is still answered at once, not after the stalled requests' 30 s deadline."""
    host, port = server.server_address[:2]
    stalled = [socket.create_connection((host, port), timeout=10) for _ in range(server_module.WORKERS + 4)]
    try:
        for connection in stalled:
            connection.sendall(b"POST /jobs HTTP/1.1\r\n")  # and nothing more: a worker waits on each
        time.sleep(0.5)
        for method in ("GET", "HEAD") * 5:
            status, answer, seconds = call(server.url, method, "/health")
            assert status == 200 and seconds < 2, (method, status, seconds)
            assert method == "HEAD" or answer["status"] == "ok"
    finally:
        for connection in stalled:
            connection.close()


def test_a_connection_beyond_the_waiting_room_gets_503_at_once(
    root: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "WAITING", 2)
    engine = EngineServer(("127.0.0.1", 0), load_or_create_token()[0], PipelinePool("cpu"), None, roots=[root])
    engine.start()
    host, port = engine.server_address[:2]
    stalled = [socket.create_connection((host, port), timeout=10) for _ in range(server_module.WORKERS + 2)]
    try:
        for connection in stalled:
            connection.sendall(b"GET /jobs HTTP/1.1\r\n")
        time.sleep(0.5)
        status, answer, seconds = call(engine.url, "GET", "/jobs")
        assert status == 503 and "busy" in answer["error"] and seconds < 2, (status, seconds)
        assert call(engine.url, "GET", "/health")[0] == 200  # the monitor still gets its answer
    finally:
        for connection in stalled:
            connection.close()
        engine.stop()


def test_stalled_health_requests_cannot_hold_the_health_lane(server: EngineServer) -> None:
    """Clients without the token that start a /health request and stop are cut off at HEALTH_DEADLINE, not 30 s."""
    host, port = server.server_address[:2]
    stalled = [socket.create_connection((host, port), timeout=10) for _ in range(server_module.HEALTH_LANE)]
    try:
        for connection in stalled:
            connection.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        status, _, seconds = call(server.url, "GET", "/health")
        assert status == 200 and seconds < server_module.HEALTH_DEADLINE + 1.5, seconds
        for connection in stalled:  # the server closed them at their deadline
            connection.settimeout(5)
            assert connection.recv(1) == b"" and time.monotonic() - started < server_module.HEALTH_DEADLINE + 1.5
    finally:
        for connection in stalled:
            connection.close()


def _start_server(root: Path, model: Path) -> tuple[subprocess.Popen[str], str]:
    """A real `stylecomp serve` on a free port, allowed ``root`` and the model's folder; the process and its URL."""
    command = [str(Path(sys.executable).with_name("stylecomp")), "serve", "--port", "0", "--device", "cpu"]
    command += ["--no-cache", "--root", str(root), "--root", str(model.parent)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return process, process.stdout.readline().split()[4]  # type: ignore[union-attr]  # stdout=PIPE


def test_a_slow_client_is_cut_off_at_the_whole_request_deadline(
    server: EngineServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "REQUEST_DEADLINE", 1.0)
    host, port = server.server_address[:2]
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as trickle:
        trickle.sendall(b"GET /jobs HTTP/1.1\r\n")
        closed = False
        while time.monotonic() - started < 8:
            try:
                trickle.sendall(b"X-Slow: 1\r\n")  # each read well within any per-read timeout
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            trickle.settimeout(0.01)
            try:
                if trickle.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
    assert closed and time.monotonic() - started < 3, "the request was ended at its deadline"
    assert call(server.url, "GET", "/health")[0] == 200


def test_accepted_jobs_survive_kill_9_and_the_running_one_resumes(tmp_path: Path, root: Path, model: Path) -> None:
    """kill -9 mid-render, restart: GET /jobs shows the jobs again, the running one resumes keeping its whole frames,
    the queued ones run, and every frame matches a clean render of the same job (to a half-float step)."""
    import signal

    from stylecomp.jobspec import parse_job
    from stylecomp.render.loop import render_job
    from tests.tiny_jobs import FIRST, stylized

    plates = write_plates(root / "plates", 4)
    documents = [job_document(plates, model, str(root / f"out{i}" / "demo.####.exr"), 4, steps=8) for i in range(3)]
    process, url = _start_server(root, model)
    try:
        ids = [call(url, "POST", "/jobs", {"job": document})[1]["id"] for document in documents]
        while call(url, "GET", f"/jobs/{ids[0]}")[1]["progress"]["done"] < 1:
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        process, url = _start_server(root, model)
        listed = {job["id"]: job["status"] for job in call(url, "GET", "/jobs")[1]["jobs"]}
        assert set(listed) == set(ids) and listed[ids[2]] == "queued"
        deadline = time.monotonic() + 600
        while any(call(url, "GET", f"/jobs/{i}")[1]["status"] != "done" for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        process.kill()
        process.wait(30)
    clean = parse_job(
        json.dumps(
            documents[0] | {"shots": [documents[0]["shots"][0] | {"output": str(tmp_path / "clean" / "demo.####.exr")}]}
        )
    )
    render_job(clean, pool=PipelinePool("cpu"), cache=None)
    for i in range(3):
        names = sorted(p.name for p in (root / f"out{i}").iterdir())
        assert names == [f"demo.{FIRST + k}.exr" for k in range(4)], "no temp file left"
        for k in range(4):
            frame = stylized(root / f"out{i}" / f"demo.{FIRST + k}.exr")
            # Equal up to one half-float step: CPU kernels in another process may round a value differently.
            for other in (root / "out1" / f"demo.{FIRST + k}.exr", tmp_path / "clean" / f"demo.{FIRST + k}.exr"):
                np.testing.assert_allclose(frame, stylized(other), rtol=0, atol=1e-2)


def test_sigterm_keeps_accepted_work_for_the_next_start(root: Path, model: Path) -> None:
    """A graceful stop (SIGTERM) is no loss either: the queued jobs stay queued, the running one resumes."""
    import signal

    plates = write_plates(root / "plates", 4)
    documents = [job_document(plates, model, str(root / f"out{i}" / "demo.####.exr"), 4, steps=8) for i in range(3)]
    process, url = _start_server(root, model)
    try:
        ids = [call(url, "POST", "/jobs", {"job": document})[1]["id"] for document in documents]
        deadline = time.monotonic() + 300
        while call(url, "GET", f"/jobs/{ids[0]}")[1]["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        process, url = _start_server(root, model)
        listed = {job["id"]: job["status"] for job in call(url, "GET", "/jobs")[1]["jobs"]}
        assert set(listed) == set(ids) and listed[ids[0]] in ("queued", "running"), listed  # resumed at once
        assert listed[ids[1]] == listed[ids[2]] == "queued", "not cancelled by the stop"
    finally:
        process.kill()
        process.wait(30)
