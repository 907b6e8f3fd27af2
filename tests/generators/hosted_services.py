"""A local stand-in for the five hosted video services (Sora, Veo, Kling, Runway, Luma) on 127.0.0.1.

One real ``http.server`` in a thread answers each service's documented request and response shapes
under its own prefix (``/sora/v1``, ``/veo/v1beta``, ``/kling``, ``/runway``, ``/luma/dream-machine/v1``):
auth in the service's header form (Kling's HS256 JWT verified), job states, the service's error bodies.
Knobs make a job slow or held, fail remotely, answer 429/500 or bad input, time out, cut a download
short, slow or broken, or answer a submit or status with malformed JSON. Every request is recorded,
so tests can check what a plugin sent. Clips are real MP4s (PyAV, 8 fps) whose frame index is drawn
as 8 black/white blocks, so a test can tell which frame it is looking at after decoding.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import hmac
import io
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import numpy as np

CLIP_FPS = 8
CLIP_SIZE = (64, 48)
KEYS = {  # distinctive values, so that a scan for them finds any leak
    "OPENAI_API_KEY": "sk-test-SORAKEY-5f1d9c2e7a",
    "GEMINI_API_KEY": "AIzaTEST-VEOKEY-8b3e6d1f0c",
    "KLING_ACCESS_KEY": "ak-test-KLINGACCESS-4c9a2e",
    "KLING_SECRET_KEY": "sk-test-KLINGSECRET-7d2b1f",
    "RUNWAYML_API_SECRET": "key_test-RUNWAYKEY-3a8c5e",
    "LUMAAI_API_KEY": "luma-test-LUMAKEY-9e4d2a6b",
}
SERVICES = ("sora", "veo", "kling", "runway", "luma")
PREFIX = {
    "sora": "/sora/v1",
    "veo": "/veo/v1beta",
    "kling": "/kling",
    "runway": "/runway",
    "luma": "/luma/dream-machine/v1",
}


def make_clip(seconds: float, fps: int = CLIP_FPS) -> bytes:
    """A real MP4 (MPEG-4 part 2 video, 64x48) of ``seconds``: frame i shows i's bits as 8 blocks."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *CLIP_SIZE, "yuv420p"
        for index in range(round(seconds * fps)):
            pixels = np.full((CLIP_SIZE[1], CLIP_SIZE[0], 3), 90, np.uint8)
            for bit in range(8):
                pixels[:24, bit * 8 : (bit + 1) * 8] = 255 if (index >> bit) & 1 else 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def frame_index(image: np.ndarray) -> int:
    """Which clip frame a decoded (H, W, 3) [0, 1] image is (after any scaling to another size)."""
    height, width = image.shape[:2]
    block = width / 8
    return sum(
        1 << bit
        for bit in range(8)
        if image[
            height // 12 : height * 5 // 12, int(bit * block + block / 4) : int((bit + 1) * block - block / 4)
        ].mean()
        > 0.5
    )


def jwt_claims(token: str, secret: str) -> dict[str, Any] | None:
    """The claims of an HS256 JWT whose signature verifies with ``secret``; None otherwise."""
    try:
        header, payload, signature = token.split(".")
    except ValueError:
        return None

    def decode(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, decode(signature)):
        return None
    if json.loads(decode(header)) != {"alg": "HS256", "typ": "JWT"}:
        return None
    return json.loads(decode(payload))


@dataclass
class Seen:
    """One request the server received."""

    service: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, Any]:
        """A multipart/form-data body: text fields as str, files as bytes."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode() + self.body
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[name] = payload if part.get_filename() else payload.decode()
        return fields


@dataclass
class Job:
    """A job on the stand-in: how far it is, and how it ends."""

    service: str
    id: str
    seconds: float
    polls: int = 0
    cancelled: bool = False


@dataclass
class Services:
    """The stand-in's state and knobs; ``start()`` serves it on 127.0.0.1."""

    running_polls: int = 1  # status answers that say "still running" before a job ends
    hold: bool = False  # jobs stay running until this is cleared
    outcome: str = "succeed"  # or "fail": the job fails remotely
    faults: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)  # (what, code, headers) in order
    bad_input: bool = False  # the submit answers 400 with the service's error body
    echo_auth: bool = False  # error bodies quote the request's auth header (a careless proxy)
    delay: float = 0.0  # seconds before answering a status request
    submit_delay: float = 0.0  # seconds before a submit makes its job and answers
    download_delay: float = 0.0  # seconds before a clip download answers
    answers: dict[str, Any] = field(default_factory=dict)  # "submit"/"status": this JSON instead (the job is made)
    truncate: int = 0  # the next N downloads stop halfway
    corrupt: bool = False  # downloads are not video
    short: bool = False  # downloads are a clip of half the length asked for
    image_dir: Path | None = None  # Luma: where published keyframes are
    seen: list[Seen] = field(default_factory=list)
    submits: Counter[str] = field(default_factory=Counter)
    jobs: dict[str, Job] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._clips: dict[float, bytes] = {}
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Services:
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                state._handle(self, "GET")

            def do_POST(self) -> None:
                state._handle(self, "POST")

            def do_DELETE(self) -> None:
                state._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def base_url(self, service: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{PREFIX[service]}"

    def requests(self, service: str, method: str | None = None, contains: str = "") -> list[Seen]:
        return [
            seen
            for seen in self.seen
            if seen.service == service and (method is None or seen.method == method) and contains in seen.path
        ]

    def clip(self, seconds: float) -> bytes:
        with self._lock:
            if seconds not in self._clips:
                self._clips[seconds] = make_clip(seconds)
            return self._clips[seconds]

    # --- dispatch ----------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?")[0]
        service = next((name for name, prefix in PREFIX.items() if path.startswith(prefix + "/")), "files")
        headers = {key.lower(): value for key, value in handler.headers.items()}
        self.seen.append(Seen(service, method, path, headers, body))
        reply = _Reply(handler)
        if path.startswith("/files/redirect/"):  # Veo's Files API: needs the key, redirects to storage elsewhere
            if headers.get("x-goog-api-key") != KEYS["GEMINI_API_KEY"]:
                return reply.json(403, _error("veo", 403, "The caller does not have permission"))
            storage = f"http://localhost:{self.port}/files/{path.rsplit('/', 1)[1]}?signature=stand-in"
            return reply.raw(302, b"", "text/plain", {"Location": storage})
        if path.startswith("/files/"):
            return self._file(reply, path)
        if path.startswith("/published/"):
            return reply.raw(200, (self.image_dir / path.rsplit("/", 1)[1]).read_bytes(), "image/png")
        route = path[len(PREFIX[service]) :]
        kind = {"POST": "submit", "DELETE": "cancel"}.get(method) or (
            "download" if route.endswith("/content") else "status"
        )
        if self.faults and self.faults[0][0] in (kind, "any"):
            _, code, extra = self.faults.pop(0)
            return reply.json(code, _error(service, code, "slow down" if code == 429 else "internal error"), extra)
        problem = self._auth_problem(service, headers)
        if problem:
            return reply.json(401, _error(service, 401, problem))
        if kind in self.answers:
            reply = _Replaced(handler, self.answers[kind])
        getattr(self, f"_{service}")(reply, method, route, headers, body)

    def _auth_problem(self, service: str, headers: dict[str, str]) -> str | None:
        if service == "veo":
            return None if headers.get("x-goog-api-key") == KEYS["GEMINI_API_KEY"] else "API key not valid"
        auth = headers.get("authorization", "")
        if service == "kling":
            claims = (
                jwt_claims(auth.removeprefix("Bearer "), KEYS["KLING_SECRET_KEY"])
                if auth.startswith("Bearer ")
                else None
            )
            now = time.time()
            if not claims or claims.get("iss") != KEYS["KLING_ACCESS_KEY"] or not claims["nbf"] <= now < claims["exp"]:
                return "Auth failed"
            return None
        key = {"sora": "OPENAI_API_KEY", "runway": "RUNWAYML_API_SECRET", "luma": "LUMAAI_API_KEY"}[service]
        if auth != f"Bearer {KEYS[key]}":
            return "Incorrect API key provided"
        if service == "runway" and headers.get("x-runway-version") != "2024-11-06":
            return "X-Runway-Version header is missing or invalid"
        return None

    def _new_job(self, service: str, seconds: float) -> Job:
        time.sleep(self.submit_delay)
        job = Job(service, f"{service}-{next(self._ids):04d}", seconds)
        self.jobs[job.id] = job
        self.submits[service] += 1
        return job

    def _state(self, job: Job) -> str:
        """running, succeed, fail or cancelled: advances the job by one poll."""
        if self.delay:
            time.sleep(self.delay)
        if job.cancelled:
            return "cancelled"
        if self.hold or job.polls < self.running_polls:
            job.polls += 1
            return "running"
        return self.outcome

    def _bad(self, reply: _Reply, service: str, message: str, headers: dict[str, str]) -> None:
        if self.echo_auth:
            message += f" (request had {headers.get('authorization') or headers.get('x-goog-api-key')})"
        reply.json(400, _error(service, 400, message))

    def _file(self, reply: _Reply, path: str) -> None:
        time.sleep(self.download_delay)
        job = self.jobs[path.rsplit("/", 1)[1].removesuffix(".mp4")]
        clip = self.clip(job.seconds / 2 if self.short else job.seconds)
        data = b"\x00\x00\x00\x18ftypmp42 this is not a video" * 40 if self.corrupt else clip
        if self.truncate:
            self.truncate -= 1
            return reply.cut(data)
        reply.raw(200, data, "video/mp4")

    def _file_url(self, job: Job) -> str:
        return f"http://127.0.0.1:{self.port}/files/{job.id}.mp4?signature=stand-in"

    # --- the services --------------------------------------------------------------------------------

    def _sora(self, reply: _Reply, method: str, route: str, headers: dict[str, str], body: bytes) -> None:
        if method == "POST" and route == "/videos":
            form = Seen("sora", method, route, headers, body).form()
            if self.bad_input or form.get("seconds") not in ("4", "8", "12"):
                return self._bad(reply, "sora", "Invalid value for 'seconds'", headers)
            job = self._new_job("sora", int(form["seconds"]))
            return reply.json(
                200,
                {
                    "id": job.id,
                    "object": "video",
                    "model": form["model"],
                    "status": "queued",
                    "progress": 0,
                    "seconds": form["seconds"],
                    "size": form["size"],
                },
            )
        job = self.jobs[route.split("/")[2]]
        if route.endswith("/content"):
            return reply.raw(200, self.clip(job.seconds), "video/mp4")
        state = self._state(job)
        status = {"running": "in_progress", "succeed": "completed", "fail": "failed"}[state]
        video = {"id": job.id, "object": "video", "status": status, "progress": 100 if state == "succeed" else 50}
        if state == "fail":
            video["error"] = {"code": "moderation_blocked", "message": "The request was blocked by moderation"}
        reply.json(200, video)

    def _veo(self, reply: _Reply, method: str, route: str, headers: dict[str, str], body: bytes) -> None:
        if method == "POST":
            request = json.loads(body)
            model = route.split("/")[2].removesuffix(":predictLongRunning")
            if self.bad_input or request["parameters"].get("durationSeconds") not in (4, 6, 8):
                return self._bad(reply, "veo", "durationSeconds must be one of 4, 6, 8", headers)
            job = self._new_job("veo", request["parameters"]["durationSeconds"])
            return reply.json(200, {"name": f"models/{model}/operations/{job.id}"})
        name = route.lstrip("/")
        job = self.jobs[name.rsplit("/", 1)[1]]
        state = self._state(job)
        if state == "running":
            return reply.json(200, {"name": name, "done": False})
        if state == "fail":
            return reply.json(200, {"name": name, "done": True, "error": {"code": 3, "message": "Prompt blocked"}})
        # The Files API answers a download with a redirect to storage on another host: the key must not follow.
        uri = f"http://127.0.0.1:{self.port}/files/redirect/{job.id}.mp4"
        reply.json(
            200,
            {
                "name": name,
                "done": True,
                "response": {
                    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                    "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]},
                },
            },
        )

    def _kling(self, reply: _Reply, method: str, route: str, headers: dict[str, str], body: bytes) -> None:
        if method == "POST":
            request = json.loads(body)
            if self.bad_input or request.get("duration") not in ("5", "10"):
                return reply.json(
                    400,
                    {
                        "code": 1201,
                        "message": "duration value is invalid"
                        + (f" ({headers['authorization']})" if self.echo_auth else ""),
                        "request_id": "req-1",
                    },
                )
            job = self._new_job("kling", int(request["duration"]))
            return reply.json(
                200,
                {
                    "code": 0,
                    "message": "SUCCEED",
                    "request_id": "req-1",
                    "data": {"task_id": job.id, "task_status": "submitted", "created_at": 1, "updated_at": 1},
                },
            )
        job = self.jobs[route.rsplit("/", 1)[1]]
        state = self._state(job)
        status = {"running": "processing", "succeed": "succeed", "fail": "failed"}[state]
        data: dict[str, Any] = {"task_id": job.id, "task_status": status}
        if state == "succeed":
            data["task_result"] = {"videos": [{"id": "v1", "url": self._file_url(job), "duration": str(job.seconds)}]}
        if state == "fail":
            data["task_status_msg"] = "Failure to pass the risk control system"
        reply.json(200, {"code": 0, "message": "SUCCEED", "request_id": "req-2", "data": data})

    def _runway(self, reply: _Reply, method: str, route: str, headers: dict[str, str], body: bytes) -> None:
        if method == "POST":
            request = json.loads(body)
            if self.bad_input or request.get("duration") not in (5, 10):
                return self._bad(reply, "runway", "Invalid duration", headers)
            job = self._new_job("runway", request["duration"])
            return reply.json(200, {"id": job.id})
        job = self.jobs[route.rsplit("/", 1)[1]]
        if method == "DELETE":
            job.cancelled = True
            return reply.raw(204, b"", "application/json")
        state = self._state(job)
        task: dict[str, Any] = {
            "id": job.id,
            "createdAt": "2026-12-07T12:00:00Z",
            "status": {"running": "RUNNING", "succeed": "SUCCEEDED", "fail": "FAILED", "cancelled": "CANCELLED"}[state],
        }
        if state == "running":
            task["progress"] = round(job.polls / (self.running_polls + 1), 2)
        if state == "succeed":
            task["output"] = [self._file_url(job)]
        if state == "fail":
            task |= {"failure": "Content moderation", "failureCode": "SAFETY.INPUT.IMAGE"}
        reply.json(200, task)

    def _luma(self, reply: _Reply, method: str, route: str, headers: dict[str, str], body: bytes) -> None:
        if method == "POST":
            request = json.loads(body)
            for keyframe in request.get("keyframes", {}).values():  # Luma fetches the keyframes by URL
                name = keyframe["url"].rsplit("/", 1)[1]
                if self.image_dir is None or not (self.image_dir / name).is_file():
                    return self._bad(reply, "luma", f"could not fetch keyframe {keyframe['url']}", headers)
            if self.bad_input or request.get("duration") not in ("5s", "9s"):
                return self._bad(reply, "luma", "duration must be 5s or 9s", headers)
            job = self._new_job("luma", int(request["duration"][:-1]))
            return reply.json(201, {"id": job.id, "state": "queued", "request": request})
        job = self.jobs[route.rsplit("/", 1)[1]]
        if method == "DELETE":
            job.cancelled = True
            return reply.raw(204, b"", "application/json")
        state = self._state(job)
        generation: dict[str, Any] = {
            "id": job.id,
            "state": {"running": "dreaming", "succeed": "completed", "fail": "failed", "cancelled": "failed"}[state],
        }
        if state == "succeed":
            generation["assets"] = {"video": self._file_url(job)}
        if state == "fail":
            generation["failure_reason"] = "400: prompt not allowed"
        reply.json(200, generation)


class _Reply:
    """Writes answers for a handler."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.handler = handler

    def raw(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        handler = self.handler
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def json(self, code: int, document: Any, headers: dict[str, str] | None = None) -> None:
        self.raw(code, json.dumps(document).encode(), "application/json", headers)

    def cut(self, data: bytes) -> None:
        """Promise the whole clip, send half, and drop the connection."""
        handler = self.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp4")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True


class _Replaced(_Reply):
    """Answers with a given JSON value instead of the service's (a malformed answer), after the job is made."""

    def __init__(self, handler: BaseHTTPRequestHandler, answer: Any) -> None:
        super().__init__(handler)
        self.answer = answer

    def json(self, code: int, document: Any, headers: dict[str, str] | None = None) -> None:
        super().json(code, self.answer, headers)


def _error(service: str, code: int, message: str) -> dict[str, Any]:
    """The service's documented error body."""
    if service == "sora":
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    if service == "veo":
        return {"error": {"code": code, "message": message, "status": "INVALID_ARGUMENT"}}
    if service == "kling":
        return {"code": 1000 + code, "message": message, "request_id": "req-err"}
    if service == "runway":
        return {"error": message}
    return {"detail": message}
