"""Hosted video services (Sora, Veo, Kling, Runway, Luma) as generators, against a local stand-in on 127.0.0.1.

The stand-in (tests/hosted_services.py) speaks each service's documented shapes; these tests check what the
plugins send, that a job is paid for once (resume, re-run, a killed run), retries and their cap, one-line
errors with the service's message, cancel, verified downloads, and that no key reaches any artefact.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from stylecomp.color import ModelEncoding
from stylecomp.errors import Cancelled, HostedError, ModelError
from stylecomp.generators.hosted.credentials import Secret, credential
from stylecomp.generators.interface import Request, Setup, load_generator
from stylecomp.io.plates import read_plate
from tests.generators.hosted_services import KEYS, SERVICES, Services, frame_index, jwt_claims
from tests.tiny_jobs import FIRST, invoke, job_document, stylized, write_job, write_plates

FRAMES = 5
pytestmark = pytest.mark.plates(FRAMES)
FAST = {"poll_interval": 0.01, "poll_max_interval": 0.05, "retry_backoff": 0.01, "request_timeout": 10}


@pytest.fixture(autouse=True)
def local_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse every connection that is not to this machine: no test may reach a real service."""
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1"):
            raise OSError(f"network access attempted: {address}")
        connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The stand-in's keys in the environment; a private config folder (no real keys file is read)."""
    monkeypatch.setenv("STYLECOMP_CONFIG_DIR", str(tmp_path / "config"))
    for proxy in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # the stand-in is reached directly
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    return KEYS


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    stand_in = Services(image_dir=tmp_path / "published").start()
    yield stand_in
    stand_in.stop()


def options(services: Services, service: str, **changes: Any) -> dict[str, Any]:
    """generator_options pointing ``service`` at the stand-in, with fast polling."""
    base = {"base_url": services.base_url(service)} | FAST
    if service == "luma":
        base |= {"image_dir": str(services.image_dir), "image_url": f"http://127.0.0.1:{services.port}/published"}
    return base | changes


def generator(services: Services, service: str, **changes: Any) -> Any:
    return load_generator(service, Setup("image_to_video", None, options(services, service, **changes)))


def start_image(width: int = 64, height: int = 48, shift: float = 0.0) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)
    image = np.stack(
        [
            np.tile(ramp, (height, 1)),
            np.full((height, width), 0.3 + shift, np.float32),
            np.tile(ramp[::-1], (height, 1)),
        ],
        axis=2,
    )
    return np.clip(image, 0, 1)


def request(folder: Path, **changes: Any) -> Request:
    fields: dict[str, Any] = {
        "prompt": "ink and watercolour street",
        "negative_prompt": "blurry",
        "seed": 7,
        "width": 64,
        "height": 48,
        "steps": 1,
        "guidance": 1.0,
        "image": start_image(),
        "frames": 5,
        "fps": 24.0,
        "job_record": str(folder / "clip" / "demo.remote-job.json"),
    }
    return Request(**(fields | changes))


def record(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "clip" / "demo.remote-job.json").read_text())


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def eight_bit(image: np.ndarray) -> np.ndarray:
    return (image * 255 + 0.5).astype(np.uint8)


EXPECTED_START = eight_bit(start_image())


# --- a clip from each service ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_a_clip_is_submitted_once_verified_and_retimed_to_the_shot(
    services: Services, tmp_path: Path, service: str
) -> None:
    result = generator(services, service).generate(request(tmp_path), threading.Event())

    assert services.submits[service] == 1
    assert len(result.frames) == 5 and result.frames[0].shape == (48, 64, 3)
    # The stand-in's clips run at 8 fps: at the shot's 24 fps each clip frame is held for three.
    assert [frame_index(frame) for frame in result.frames] == [0, 0, 0, 1, 1]
    provenance = result.provenance
    job_id = next(iter(services.jobs))
    assert provenance["service"] == service and provenance["remote_job_id"].endswith(job_id)
    assert provenance["clip_fps"] == 8 and provenance["fps"] == 24.0 and provenance["resumed"] is False
    assert "ink and watercolour street" in json.loads(provenance["request"]).values()
    assert provenance["seed_sent"] == (service in ("veo", "runway"))
    assert ("seed" in provenance) == (service in ("veo", "runway"))
    entry = record(tmp_path)
    assert entry["state"] == "downloaded" and entry["job_id"] == provenance["remote_job_id"]
    assert (tmp_path / "clip" / "demo.remote-job.mp4").is_file()
    assert sorted(p.name for p in (tmp_path / "clip").iterdir()) == [
        "demo.remote-job.json",
        "demo.remote-job.lock",
        "demo.remote-job.mp4",
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_a_rerun_reuses_the_paid_clip_and_a_changed_request_pays_again(
    services: Services, tmp_path: Path, service: str
) -> None:
    plugin = generator(services, service)
    first = plugin.generate(request(tmp_path), threading.Event())
    asked = len(services.seen)
    again = plugin.generate(request(tmp_path), threading.Event())
    assert len(services.seen) == asked, "a verified download is reused without asking the service"
    assert (
        again.provenance["resumed"] is True and again.provenance["remote_job_id"] == first.provenance["remote_job_id"]
    )
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, again.frames, strict=True))
    recut = plugin.generate(request(tmp_path, frames=12), threading.Event())
    assert len(recut.frames) == 12 and frame_index(recut.frames[-1]) == 3, "a re-cut of the same length is free"
    assert services.submits[service] == 1

    plugin.generate(request(tmp_path, prompt="pencil sketch street"), threading.Event())
    plugin.generate(request(tmp_path, image=start_image(shift=0.2)), threading.Event())
    assert services.submits[service] == 3


@pytest.mark.parametrize("service", SERVICES)
def test_a_run_that_gives_up_waiting_resumes_the_same_job(services: Services, tmp_path: Path, service: str) -> None:
    services.hold = True
    with pytest.raises(HostedError, match=r"still .* run again to keep waiting"):
        generator(services, service, wait=0.1).generate(request(tmp_path), threading.Event())
    assert record(tmp_path)["state"] == "submitted"
    services.hold = False
    result = generator(services, service).generate(request(tmp_path), threading.Event())
    assert services.submits[service] == 1
    assert result.provenance["resumed"] is True and len(result.frames) == 5


# --- what each plugin sends -------------------------------------------------------------------------------


def test_sora_sends_a_multipart_form_with_the_start_frame_at_the_clip_size(services: Services, tmp_path: Path) -> None:
    generator(services, "sora").generate(request(tmp_path), threading.Event())
    submit = services.requests("sora", "POST")[0]
    assert submit.path == "/sora/v1/videos" and submit.headers["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
    form = submit.form()
    assert {key: form[key] for key in ("model", "prompt", "seconds", "size")} == {
        "model": "sora-2",
        "prompt": "ink and watercolour street",
        "seconds": "4",
        "size": "1280x720",
    }
    assert png_pixels(form["input_reference"]).shape == (720, 1280, 3), "input_reference must match size"
    assert "seed" not in form and "negative_prompt" not in form
    assert services.requests("sora", "GET", "/content"), "the clip comes from /videos/{id}/content"


def test_veo_sends_both_frames_base64_and_the_seed_with_its_key_header(services: Services, tmp_path: Path) -> None:
    end = start_image(shift=0.5)
    result = generator(services, "veo").generate(request(tmp_path, last_image=end), threading.Event())
    submit = services.requests("veo", "POST")[0]
    assert submit.path == "/veo/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
    assert submit.headers["x-goog-api-key"] == KEYS["GEMINI_API_KEY"] and "authorization" not in submit.headers
    body = submit.json()
    instance = body["instances"][0]
    assert instance["prompt"] == "ink and watercolour street" and instance["image"]["mimeType"] == "image/png"
    assert np.array_equal(png_pixels(base64.b64decode(instance["image"]["bytesBase64Encoded"])), EXPECTED_START)
    assert np.array_equal(png_pixels(base64.b64decode(instance["lastFrame"]["bytesBase64Encoded"])), eight_bit(end))
    assert body["parameters"] == {
        "aspectRatio": "16:9",
        "resolution": "720p",
        "durationSeconds": 4,
        "seed": 7,
        "negativePrompt": "blurry",
    }
    assert result.provenance["seed"] == 7 and result.provenance["last_frame"] is True
    # The download is redirected to storage on another host: the key goes to the API host only.
    fetches = [seen for seen in services.seen if seen.path.startswith("/files/")]
    assert [("x-goog-api-key" in seen.headers) for seen in fetches] == [True, False]


def test_kling_signs_each_request_with_an_hs256_jwt_of_the_access_key(services: Services, tmp_path: Path) -> None:
    before = time.time()
    generator(services, "kling").generate(request(tmp_path, last_image=start_image(shift=0.4)), threading.Event())
    submit = services.requests("kling", "POST")[0]
    assert submit.path == "/kling/v1/videos/image2video"
    token = submit.headers["authorization"].removeprefix("Bearer ")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    claims = jwt_claims(token, KEYS["KLING_SECRET_KEY"])
    assert claims is not None, "the signature verifies with the secret key"
    assert claims["iss"] == KEYS["KLING_ACCESS_KEY"] and set(claims) == {"iss", "exp", "nbf"}
    assert before - 6 <= claims["nbf"] <= time.time() and claims["exp"] - claims["nbf"] == 1805
    assert jwt_claims(token, "another secret") is None
    body = submit.json()
    assert body["model_name"] == "kling-v2-1" and body["duration"] == "5" and body["mode"] == "pro"
    assert np.array_equal(png_pixels(base64.b64decode(body["image"])), EXPECTED_START), "plain base64, no data: URI"
    assert "image_tail" in body and "seed" not in body and body["negative_prompt"] == "blurry"
    polls = services.requests("kling", "GET")
    assert polls and polls[0].path.startswith("/kling/v1/videos/image2video/")


def test_runway_sends_first_and_last_prompt_images_with_its_version_header(services: Services, tmp_path: Path) -> None:
    generator(services, "runway").generate(
        request(tmp_path, last_image=start_image(shift=0.4), seed=2**40 + 5), threading.Event()
    )
    submit = services.requests("runway", "POST")[0]
    assert submit.path == "/runway/v1/image_to_video"
    assert submit.headers["x-runway-version"] == "2024-11-06"
    assert submit.headers["authorization"] == f"Bearer {KEYS['RUNWAYML_API_SECRET']}"
    body = submit.json()
    assert [image["position"] for image in body["promptImage"]] == ["first", "last"]
    uri = body["promptImage"][0]["uri"]
    assert uri.startswith("data:image/png;base64,")
    assert np.array_equal(png_pixels(base64.b64decode(uri.split(",", 1)[1])), EXPECTED_START)
    assert body["model"] == "gen4_turbo" and body["ratio"] == "1280:720" and body["duration"] == 5
    assert body["seed"] == 5, "the seed is taken into Runway's 0 .. 2**32 - 1"


def test_luma_publishes_the_keyframes_and_sends_their_urls(services: Services, tmp_path: Path) -> None:
    generator(services, "luma").generate(
        request(tmp_path, last_image=start_image(shift=0.4), frames=120), threading.Event()
    )
    submit = services.requests("luma", "POST")[0]
    assert submit.path == "/luma/dream-machine/v1/generations"
    assert submit.headers["authorization"] == f"Bearer {KEYS['LUMAAI_API_KEY']}"
    body = submit.json()
    assert body["model"] == "ray-2" and body["duration"] == "5s" and body["aspect_ratio"] == "16:9"
    frame0 = body["keyframes"]["frame0"]
    assert frame0["type"] == "image" and frame0["url"].startswith(f"http://127.0.0.1:{services.port}/published/")
    published = services.image_dir / frame0["url"].rsplit("/", 1)[1]
    assert np.array_equal(png_pixels(published.read_bytes()), EXPECTED_START)
    assert body["keyframes"]["frame1"]["type"] == "image"


def test_the_clip_length_is_the_shortest_the_service_makes_that_covers_the_shot(
    services: Services, tmp_path: Path
) -> None:
    result = generator(services, "kling").generate(request(tmp_path, frames=150), threading.Event())
    assert services.requests("kling", "POST")[0].json()["duration"] == "10"  # 150 frames at 24 fps: 6.25 s
    assert len(result.frames) == 150 and frame_index(result.frames[-1]) == 49  # 149 / 24 s at 8 fps
    with pytest.raises(ModelError, match=re.escape("at most 10 s; 300 frames at 24 fps need 12.50 s")):
        generator(services, "kling").generate(request(tmp_path, frames=300), threading.Event())


# --- retries, errors, cancel, timeouts --------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_429_and_500_are_retried(services: Services, tmp_path: Path, service: str) -> None:
    services.faults = [("submit", 429, {"Retry-After": "0"}), ("status", 500, {}), ("status", 503, {})]
    result = generator(services, service).generate(request(tmp_path), threading.Event())
    assert len(result.frames) == 5 and not services.faults
    assert services.submits[service] == 1, "a refused submit made no job"


def test_retry_after_is_obeyed_and_retries_stop_at_the_cap(services: Services, tmp_path: Path) -> None:
    services.faults = [("status", 429, {"Retry-After": "1"})]
    tick = time.monotonic()
    generator(services, "runway", retry_backoff=0.01).generate(request(tmp_path), threading.Event())
    assert time.monotonic() - tick >= 1.0, "waited what Retry-After asked, not the 0.01 s backoff"

    services.faults = [("status", 503, {})] * 3
    with pytest.raises(HostedError) as caught:
        generator(services, "runway", retries=2).generate(request(tmp_path / "capped"), threading.Event())
    assert str(caught.value) == "runway: HTTP 503 from GET /runway/v1/tasks/runway-0002 after 3 tries: internal error"
    assert not services.faults


@pytest.mark.parametrize("service", SERVICES)
def test_bad_input_is_one_line_with_the_services_own_message(services: Services, tmp_path: Path, service: str) -> None:
    services.bad_input = services.echo_auth = True  # and the error body quotes the credentials back
    with pytest.raises(HostedError) as caught:
        generator(services, service).generate(request(tmp_path), threading.Event())
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{service}: HTTP 400 from POST ")
    assert {
        "sora": "Invalid value for 'seconds'",
        "veo": "durationSeconds must be one of 4, 6, 8",
        "kling": "duration value is invalid",
        "runway": "Invalid duration",
        "luma": "duration must be 5s or 9s",
    }[service] in message
    assert "***" in message and not any(key in message for key in KEYS.values())
    assert not (tmp_path / "clip" / "demo.remote-job.json").exists(), "a refused job is not recorded"


@pytest.mark.parametrize("service", SERVICES)
def test_a_job_that_fails_remotely_is_reported_and_forgotten(services: Services, tmp_path: Path, service: str) -> None:
    services.outcome = "fail"
    with pytest.raises(HostedError) as caught:
        generator(services, service).generate(request(tmp_path), threading.Event())
    reason = {
        "sora": "blocked by moderation",
        "veo": "Prompt blocked",
        "kling": "risk control system",
        "runway": "Content moderation",
        "luma": "prompt not allowed",
    }[service]
    assert f"{service}: job " in str(caught.value) and reason in str(caught.value)
    assert not (tmp_path / "clip" / "demo.remote-job.json").exists()
    services.outcome = "succeed"
    generator(services, service).generate(request(tmp_path), threading.Event())
    assert services.submits[service] == 2, "running again submits anew"


def _cancel_while_running(services: Services, plugin: Any, folder: Path, service: str) -> None:
    services.hold = True
    cancel = threading.Event()

    def cancel_after_first_poll() -> None:
        while not services.requests(service, "GET"):
            time.sleep(0.005)
        cancel.set()

    threading.Thread(target=cancel_after_first_poll, daemon=True).start()
    with pytest.raises(Cancelled):
        plugin.generate(request(folder), cancel)


@pytest.mark.parametrize("service", ["runway", "luma"])
def test_cancel_asks_the_service_to_stop_where_its_api_can(services: Services, tmp_path: Path, service: str) -> None:
    _cancel_while_running(services, generator(services, service), tmp_path, service)
    deletes = services.requests(service, "DELETE")
    assert len(deletes) == 1 and deletes[0].path.endswith(next(iter(services.jobs)))
    assert not (tmp_path / "clip" / "demo.remote-job.json").exists(), "a cancelled job is forgotten"


@pytest.mark.parametrize("service", ["sora", "veo", "kling"])
def test_where_a_service_cannot_cancel_the_next_run_takes_the_job_up(
    services: Services, tmp_path: Path, service: str
) -> None:
    _cancel_while_running(services, generator(services, service), tmp_path, service)
    assert not services.requests(service, "DELETE")
    assert record(tmp_path)["state"] == "submitted"
    services.hold = False
    generator(services, service).generate(request(tmp_path), threading.Event())
    assert services.submits[service] == 1


def test_a_slow_job_is_polled_with_backoff_up_to_the_cap(services: Services, tmp_path: Path) -> None:
    services.running_polls = 6
    generator(services, "luma", poll_interval=0.02, poll_max_interval=0.06).generate(
        request(tmp_path), threading.Event()
    )
    polls = [seen.at for seen in services.requests("luma", "GET", "/generations/")]
    assert len(polls) == 7
    gaps = np.diff(polls)
    # Waits of 0.02, 0.03, 0.045, then 0.06 (the cap): growing, and never far past the cap.
    assert gaps[0] < gaps[2] and gaps[0] >= 0.02 and all(gap < 0.06 + 0.05 for gap in gaps)


@pytest.mark.parametrize("service", ["sora", "runway"])
def test_where_the_service_says_how_far_a_job_is_that_is_progress(
    services: Services, tmp_path: Path, service: str
) -> None:
    services.running_polls = 3
    steps: list[tuple[int, int]] = []
    generator(services, service).generate(
        request(tmp_path, on_step=lambda *step: steps.append(step)), threading.Event()
    )
    assert steps == {"sora": [(50, 100)] * 3 + [(100, 100)], "runway": [(25, 100), (50, 100), (75, 100)]}[service]


def test_every_request_has_a_timeout(services: Services, tmp_path: Path) -> None:
    services.delay = 1.0
    tick = time.monotonic()
    with pytest.raises(HostedError, match=r"kling: GET /kling/v1/videos/image2video/kling-0001 failed after 1 tries"):
        generator(services, "kling", request_timeout=0.2, retries=0).generate(request(tmp_path), threading.Event())
    assert time.monotonic() - tick < 0.9


def test_a_run_that_dies_while_submitting_is_owned_up_to_by_the_next(
    services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    services.submit_delay = 0.6  # the service makes the job, but only after the client gave up on the answer
    with pytest.raises(
        HostedError,
        match=re.escape(
            "runway: POST /runway/v1/image_to_video got no answer (timed out); the "
            "service may have made the job, so it is not sent again"
        ),
    ):
        generator(services, "runway", request_timeout=0.2).generate(request(tmp_path), threading.Event())
    assert record(tmp_path)["state"] == "submitting" and "job_id" not in record(tmp_path)
    time.sleep(0.6)
    services.submit_delay = 0.0
    generator(services, "runway").generate(request(tmp_path), threading.Event())
    assert "an earlier run stopped while submitting this clip" in caplog.text
    assert services.submits["runway"] == 2, "the unanswered submit made a job stylecomp could not know of"


@pytest.mark.parametrize("fault", ["timeout", 500, 502, 504])
def test_a_submit_that_may_have_made_a_job_is_not_sent_again(
    services: Services, tmp_path: Path, fault: str | int
) -> None:
    """The service may have made (and billed) the job before the answer was lost: a retry would pay again."""
    if fault == "timeout":
        services.submit_delay = 0.5
    else:
        services.faults = [("submit", int(fault), {})]
    with pytest.raises(HostedError) as caught:
        generator(services, "runway", request_timeout=0.2).generate(request(tmp_path), threading.Event())
    time.sleep(0.5 if fault == "timeout" else 0)
    assert len(services.requests("runway", "POST")) == 1 and "\n" not in str(caught.value)
    assert str(caught.value).endswith("the service may have made the job, so it is not sent again")
    assert services.submits["runway"] == (1 if fault == "timeout" else 0)
    assert record(tmp_path)["state"] == "submitting", "the next run warns that a job may exist"


def test_a_submit_is_retried_only_when_the_service_says_it_made_nothing(services: Services, tmp_path: Path) -> None:
    services.faults = [("submit", 503, {"Retry-After": "0"}), ("submit", 429, {})]
    generator(services, "runway").generate(request(tmp_path / "a"), threading.Event())
    assert len(services.requests("runway", "POST")) == 3 and services.submits["runway"] == 1

    services.faults = [("submit", 409, {})]
    with pytest.raises(HostedError, match="runway: HTTP 409 from POST /runway/v1/image_to_video: internal error"):
        generator(services, "runway").generate(request(tmp_path / "b"), threading.Event())
    assert len(services.requests("runway", "POST")) == 4, "a conflict is not retried"
    assert not (tmp_path / "b" / "clip" / "demo.remote-job.json").exists(), "a refusal made nothing"


def test_a_retry_after_longer_than_the_cap_stops_saying_how_long(services: Services, tmp_path: Path) -> None:
    services.faults = [("status", 429, {"Retry-After": "300"})]
    tick = time.monotonic()
    with pytest.raises(HostedError) as caught:
        generator(services, "runway", retry_max_wait=1).generate(request(tmp_path), threading.Event())
    assert str(caught.value) == (
        "runway: HTTP 429 from GET /runway/v1/tasks/runway-0001: the service asks to wait "
        "300 s before trying again, longer than retry_max_wait (1 s)"
    )
    assert time.monotonic() - tick < 5 and record(tmp_path)["state"] == "submitted"

    services.faults = [("submit", 503, {"Retry-After": "300"})]
    with pytest.raises(HostedError, match=r"HTTP 503 from POST .* asks to wait 300 s"):
        generator(services, "runway", retry_max_wait=1).generate(request(tmp_path / "b"), threading.Event())
    assert not (tmp_path / "b" / "clip" / "demo.remote-job.json").exists(), "a turned-away submit made nothing"


@pytest.mark.parametrize("service", ["runway", "luma"])
def test_a_run_stopped_while_a_finished_clip_downloads_keeps_the_paid_job(
    services: Services, tmp_path: Path, service: str
) -> None:
    services.download_delay = 0.3
    cancel = threading.Event()

    def cancel_when_the_download_starts() -> None:
        while not [seen for seen in services.seen if seen.path.startswith("/files/")]:
            time.sleep(0.005)
        cancel.set()

    threading.Thread(target=cancel_when_the_download_starts, daemon=True).start()
    with pytest.raises(Cancelled):
        generator(services, service).generate(request(tmp_path), cancel)
    assert not services.requests(service, "DELETE"), "a finished generation is not deleted"
    entry = record(tmp_path)
    assert entry["state"] == "succeeded" and entry["video"].endswith(".mp4") and "signature" not in entry["video"]

    services.download_delay = 0.0
    result = generator(services, service).generate(request(tmp_path), threading.Event())
    assert len(result.frames) == 5 and result.provenance["resumed"] is True
    assert services.submits[service] == 1


def test_a_stopped_run_asks_to_cancel_once_without_retries(services: Services, tmp_path: Path) -> None:
    services.faults = [("cancel", 503, {"Retry-After": "0"})]
    _cancel_while_running(services, generator(services, "runway"), tmp_path, "runway")
    assert len(services.requests("runway", "DELETE")) == 1
    assert record(tmp_path)["state"] == "submitted", "an unanswered cancel keeps the job for the next run"


def test_two_runs_of_one_shot_submit_once(services: Services, tmp_path: Path) -> None:
    services.submit_delay = 0.5
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(generator(services, "runway").generate(request(tmp_path), threading.Event()))
    )
    first.start()
    while not services.requests("runway", "POST"):
        time.sleep(0.005)
    with pytest.raises(HostedError) as caught:
        generator(services, "runway").generate(request(tmp_path), threading.Event())
    assert str(caught.value).startswith("another run is submitting demo to runway (")
    first.join(timeout=30)
    assert len(results) == 1 and services.submits["runway"] == 1


def test_a_changed_request_names_the_paid_job_it_replaces(
    services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    services.hold = True
    with pytest.raises(HostedError, match="still"):
        generator(services, "runway", wait=0.05).generate(request(tmp_path), threading.Event())
    services.hold = False
    generator(services, "runway").generate(request(tmp_path, prompt="pencil sketch street"), threading.Event())
    assert (
        "the request for this clip changed; runway job runway-0001 (submitted) is paid for but not downloaded"
        in caplog.text
    )
    assert services.submits["runway"] == 2


def test_the_key_goes_only_to_the_base_urls_host(services: Services, tmp_path: Path) -> None:
    # The API at localhost names a video on 127.0.0.1: another host, so no key goes with the download.
    plugin = generator(services, "veo", base_url=services.base_url("veo", host="localhost"))
    with pytest.raises(HostedError, match=re.escape("veo: HTTP 403 from GET /files/redirect/veo-0001.mp4")):
        plugin.generate(request(tmp_path), threading.Event())
    fetches = [seen for seen in services.seen if seen.path.startswith("/files/")]
    assert fetches and not any("x-goog-api-key" in seen.headers for seen in fetches)


@pytest.mark.parametrize(
    ("service", "answer", "field"),
    [
        ("sora", {"object": "video"}, "id"),
        ("veo", {"done": False}, "name"),
        ("runway", {"id": None}, "id"),
        ("luma", ["not", "an", "object"], "id"),
        ("kling", {"code": 0, "data": {"task_status": "submitted"}}, "task_id"),
    ],
)
def test_a_malformed_submit_answer_is_one_line_and_owned_up_to(
    services: Services, tmp_path: Path, service: str, answer: Any, field: str
) -> None:
    services.answers["submit"] = answer
    with pytest.raises(HostedError) as caught:
        generator(services, service).generate(request(tmp_path), threading.Event())
    assert str(caught.value) == f"{service}: the submit answer has no {field}"
    assert record(tmp_path)["state"] == "submitting", "a job may have been made: the next run says so"


@pytest.mark.parametrize(
    ("service", "answer", "message"),
    [
        ("sora", None, "sora: the status answer is not a JSON object"),
        (
            "veo",
            {"done": True, "response": {"generateVideoResponse": {"generatedSamples": [{"video": {}}]}}},
            "veo: the status answer has no response.generateVideoResponse.generatedSamples.0.video.uri",
        ),
        ("veo", {"done": True, "error": "quota exhausted"}, r"veo: job .* failed \(error\): quota exhausted"),
        ("runway", {"status": "SUCCEEDED", "output": []}, "runway: the status answer has no output.0"),
    ],
)
def test_a_malformed_status_answer_is_one_line(
    services: Services, tmp_path: Path, service: str, answer: Any, message: str
) -> None:
    services.answers["status"] = answer
    with pytest.raises(HostedError, match=f"^{message}$"):
        generator(services, service).generate(request(tmp_path), threading.Event())


def test_runway_refuses_a_prompt_longer_than_it_takes(services: Services, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"^runway takes a prompt of at most 1000 characters; this prompt has 1001$"):
        generator(services, "runway").generate(request(tmp_path, prompt="x" * 1001), threading.Event())
    assert not services.seen and not (tmp_path / "clip").exists()
    generator(services, "runway").generate(request(tmp_path, prompt="x" * 1000), threading.Event())
    assert services.requests("runway", "POST")[0].json()["promptText"] == "x" * 1000


# --- downloads ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["kling", "runway", "luma", "veo"])
def test_a_cut_download_is_fetched_again_and_never_kept_half(services: Services, tmp_path: Path, service: str) -> None:
    services.truncate = 1
    result = generator(services, service).generate(request(tmp_path), threading.Event())
    assert len(result.frames) == 5 and services.truncate == 0

    services.truncate = 10
    with pytest.raises(HostedError, match=r"failed after 2 tries: the download stopped at \d+ of \d+ bytes"):
        generator(services, service, retries=1).generate(request(tmp_path / "cut"), threading.Event())
    assert sorted(p.name for p in (tmp_path / "cut" / "clip").iterdir()) == [
        "demo.remote-job.json",
        "demo.remote-job.lock",
    ]
    assert record(tmp_path / "cut")["state"] == "succeeded", "the job is kept: the next run downloads again"


def test_a_download_that_is_not_a_video_is_refused(services: Services, tmp_path: Path) -> None:
    services.corrupt = True
    with pytest.raises(HostedError, match="kling: the downloaded clip is not a readable video"):
        generator(services, "kling").generate(request(tmp_path), threading.Event())
    assert sorted(p.name for p in (tmp_path / "clip").iterdir()) == ["demo.remote-job.json", "demo.remote-job.lock"]


def test_a_clip_shorter_than_the_shot_is_refused(services: Services, tmp_path: Path) -> None:
    services.short = True
    with pytest.raises(HostedError, match=r"runway: the clip lasts 2.500 s; 100 frames at 24 fps need 4.167 s"):
        generator(services, "runway").generate(request(tmp_path, frames=100), threading.Event())


def test_a_kept_download_that_changed_on_disk_is_fetched_again(services: Services, tmp_path: Path) -> None:
    plugin = generator(services, "runway")
    plugin.generate(request(tmp_path), threading.Event())
    clip = tmp_path / "clip" / "demo.remote-job.mp4"
    clip.write_bytes(clip.read_bytes()[:100])
    result = plugin.generate(request(tmp_path), threading.Event())
    assert len(result.frames) == 5 and services.submits["runway"] == 1
    assert len([seen for seen in services.seen if seen.path.startswith("/files/")]) == 2


# --- options and credentials --------------------------------------------------------------------------------


def test_bad_options_and_missing_settings_are_refused_before_anything_is_sent(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelError, match=r"unknown kling generator_options: colour .*it takes base_url"):
        generator(services, "kling", colour="red")
    with pytest.raises(
        ModelError, match=re.escape("kling generator_options.poll_interval must be a number of at least 0, not 'fast'")
    ):
        generator(services, "kling", poll_interval="fast")
    with pytest.raises(ModelError, match="luma takes keyframes by URL only"):
        load_generator("luma", Setup("image_to_video", None, {"base_url": services.base_url("luma")}))
    with pytest.raises(ModelError, match="sora cannot end a clip on a given frame"):
        generator(services, "sora").generate(request(tmp_path, last_image=start_image()), threading.Event())
    with pytest.raises(ModelError, match=re.escape("makes clips (image_to_video), not text_to_image")):
        load_generator("veo", Setup("text_to_image", None, {}))
    monkeypatch.delenv("KLING_SECRET_KEY")
    with pytest.raises(ModelError, match="kling needs KLING_SECRET_KEY: set that environment variable, or put it in"):
        generator(services, "kling")
    assert not services.seen


def test_animate_without_a_key_stops_before_any_work_with_one_line(
    services: Services, tmp_path: Path, plates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LUMAAI_API_KEY")
    job = animate_job(tmp_path, plates, tmp_path / "no-model", services, "luma")
    status, _, err = invoke("animate", str(job), "--generator", "luma")
    assert status == 2 and not services.seen and not (tmp_path / "out").exists()
    assert err.strip().splitlines() == [
        (
            "error: luma needs LUMAAI_API_KEY: set that environment variable, or put it "
            f"in {tmp_path / 'config' / 'hosted-keys.json'} (a JSON object, mode 0600)"
        )
    ]


def test_keys_come_from_the_environment_else_an_owner_only_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNWAYML_API_SECRET")
    keys_file = tmp_path / "config" / "hosted-keys.json"
    keys_file.parent.mkdir()
    keys_file.write_text(json.dumps({"RUNWAYML_API_SECRET": "from-the-file-1234"}))
    keys_file.chmod(0o600)
    secret = credential("RUNWAYML_API_SECRET", "runway")
    assert secret.reveal() == "from-the-file-1234"
    assert str(secret) == "***" and repr(secret) == "Secret(***)" and "1234" not in f"{secret} {secret!r}"
    monkeypatch.setenv("RUNWAYML_API_SECRET", "from-the-env-5678")
    assert credential("RUNWAYML_API_SECRET", "runway").reveal() == "from-the-env-5678"

    monkeypatch.delenv("RUNWAYML_API_SECRET")
    keys_file.chmod(0o644)
    with pytest.raises(ModelError) as caught:
        credential("RUNWAYML_API_SECRET", "runway")
    assert str(caught.value) == (
        f"{keys_file}: the hosted keys file is mode 0644; others may have read the keys: "
        "rotate them, then chmod 600 the file"
    )
    keys_file.chmod(0o600)
    keys_file.write_text('{"RUNWAYML_API_SECRET": "from-the-file-1234",')
    with pytest.raises(ModelError, match="not valid JSON") as caught:
        credential("RUNWAYML_API_SECRET", "runway")
    assert "1234" not in str(caught.value)
    assert isinstance(Secret("x"), Secret)


# --- the real path: stylecomp animate JOB --generator kling -------------------------------------------------


def animate_job(
    folder: Path, plates: Path, image_model: Path, services: Services, service: str, **animation: Any
) -> Path:
    settings = {"generator_options": options(services, service), "long_side": 64} | animation
    document = job_document(plates, image_model, str(folder / "out/demo.####.exr"), FRAMES, animation=settings)
    return write_job(folder / "job.json", document)


def test_animate_with_kling_turns_a_stylized_keyframe_into_conformed_animatic_exrs(
    services: Services,
    tmp_path: Path,
    plates: Path,
    tiny: dict[str, Path],
    private_cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    job = animate_job(tmp_path, plates, tiny["sd15"], services, "kling")
    status, out, err = invoke("animate", str(job), "--generator", "kling", "--progress", "json")
    assert status == 0, err

    keyframe = tmp_path / f"out/demo.{FIRST}.exr"
    assert keyframe.is_file(), "the keyframe is stylized first, by the local model"
    submitted = base64.b64decode(services.requests("kling", "POST")[0].json()["image"])
    sent = png_pixels(submitted).astype(np.float32) / 255
    encoding = ModelEncoding()
    rgba = stylized(keyframe)
    assert np.abs(encoding.encode(rgba[..., :3], rgba[..., 3]).image - sent).max() <= 1 / 255 + 1e-6, (
        "the stylized keyframe, in the model's encoding, is what Kling was sent"
    )

    frames = sorted((tmp_path / "animatic/demo").glob("demo.*.exr"))
    assert [f.name for f in frames] == [f"demo.{FIRST + i}.exr" for i in range(FRAMES)]
    previews = sorted((tmp_path / "animatic/demo/preview").glob("demo.*.png"))
    for exr, png, index in zip(frames, previews, [0, 0, 0, 1, 1], strict=True):
        pixels = read_plate(exr).channels(["R", "G", "B", "A"])
        preview = np.asarray(Image.open(png), np.float32) / 255
        assert np.all(pixels[..., 3] == 1.0) and frame_index(preview) == index
        assert np.abs(encoding.encode(pixels[..., :3]).image - preview).max() < 3 / 255, "scene-linear EXR"
    header = read_plate(frames[0], pixels=False).parts[0].attributes
    assert header["stylecomp/service"] == "kling" and header["stylecomp/model"] == "kling-v2-1"
    assert header["stylecomp/remote_job_id"] == "kling-0001" and header["stylecomp/start_kind"] == "stylized"
    assert header["stylecomp/service_api"] == "Kling AI API: Image to Video (v1)"
    assert json.loads(header["stylecomp/request"])["duration"] == "5" and header["stylecomp/submitted_at"]
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [e["frame"] for e in events if e.get("event") == "frame" and e.get("stage") != "render"][-5:] == [
        FIRST + i for i in range(FRAMES)
    ]

    # Running again pays nothing: the recorded job's verified clip is reused.
    assert invoke("animate", str(job), "--generator", "kling")[0] == 0
    assert services.submits["kling"] == 1

    assert not leaks(services, tmp_path, out + err + caplog.text)


def leaks(services: Services, folder: Path, said: str) -> list[tuple[str, str]]:
    """Keys, and tokens made from them, found in what a run said or in any file under ``folder`` (EXR headers too)."""
    secrets = [*KEYS.values(), *[seen.headers["authorization"].split()[1] for seen in services.requests("kling")]]
    texts = {"output": said}
    for path in folder.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
        if path.suffix == ".exr":
            texts[f"{path} header"] = json.dumps(read_plate(path, pixels=False).parts[0].attributes, default=str)
    assert len(texts) > 15, "the run wrote what the scan expects to look at"
    return [(where, secret) for where, text in texts.items() for secret in secrets if secret in text]


@pytest.mark.parametrize("service", ["sora", "veo", "runway", "luma"])
def test_animate_with_each_other_service_leaves_no_key_anywhere(
    services: Services,
    tmp_path: Path,
    plates: Path,
    tiny: dict[str, Path],
    private_cache: Path,
    caplog: pytest.LogCaptureFixture,
    service: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    job = animate_job(tmp_path, plates, tiny["sd15"], services, service)
    status, out, err = invoke("animate", str(job), "--generator", service, "--progress", "json")
    assert status == 0, err
    frames = sorted((tmp_path / "animatic/demo").glob("demo.*.exr"))
    assert len(frames) == FRAMES and services.submits[service] == 1
    header = read_plate(frames[-1], pixels=False).parts[0].attributes
    assert header["stylecomp/service"] == service and header["stylecomp/remote_job_id"].endswith(f"{service}-0001")
    assert not leaks(services, tmp_path, out + err + caplog.text)


def test_a_run_killed_between_submit_and_download_resumes_without_a_second_submit(
    services: Services, tmp_path: Path
) -> None:
    start = tmp_path / "start.png"
    Image.fromarray(eight_bit(start_image())).save(start)
    plates_dir = write_plates(tmp_path / "plates", FRAMES)
    job = write_job(
        tmp_path / "job.json",
        job_document(
            plates_dir,
            tmp_path / "no-model",
            str(tmp_path / "out/demo.####.exr"),
            FRAMES,
            animation={
                "generator": "kling",
                "generator_options": options(services, "kling"),
                "source": "image",
                "image": str(start),
            },
        ),
    )
    services.hold = True
    command = [sys.executable, "-c", "from stylecomp.cli import main; main()", "animate", str(job)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    record_file = tmp_path / "animatic/demo/demo.remote-job.json"
    deadline = time.monotonic() + 120
    while not (services.requests("kling", "GET") and record_file.is_file()):
        assert process.poll() is None and time.monotonic() < deadline, (
            process.stderr.read().decode() if process.poll() is not None else "no submit"
        )
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    out, err = process.communicate(timeout=30)
    assert services.submits["kling"] == 1 and json.loads(record_file.read_text())["job_id"] == "kling-0001"
    assert not list((tmp_path / "animatic/demo").glob("*.exr"))

    services.hold = False
    status, _, err2 = invoke("animate", str(job))
    assert status == 0, err2
    assert services.submits["kling"] == 1, "the resumed run polled the recorded job"
    assert len(list((tmp_path / "animatic/demo").glob("demo.*.exr"))) == FRAMES
    header = read_plate(tmp_path / f"animatic/demo/demo.{FIRST}.exr", pixels=False).parts[0].attributes
    assert header["stylecomp/resumed"] == 1 and header["stylecomp/remote_job_id"] == "kling-0001"
    assert not any(key.encode() in out + err for key in KEYS.values())
