"""The engine server: the render queue over HTTP on this machine, for hosts such as the Nuke plugin.

Standard library only (http.server, json). Every request needs ``Authorization: Bearer
<token>`` (see ``server_token``); bodies and answers are JSON. A submitted job document is
validated with ``parse_job`` like a job file and never executed: relative paths in it resolve
against an explicit ``base_dir`` or are refused, and ``allow_pickle`` is refused. One worker
renders the queue in order with one pipeline pool, so a model stays loaded between jobs.

    GET  /health                  200 {"status": "ok", "version", "device", "dtype", "pipelines_loaded", "queue"}
    POST /jobs                    {"job": {...}, "base_dir"?, "shots"?, "frames"?, "label"?, "overwrite"?} -> 201
    GET  /jobs                    200 {"jobs": [status without events, ...]}
    GET  /jobs/<id>[?since=N]     200 a job's status (events numbered after N, else the latest)
    POST /jobs/<id>/cancel        200 the status; 409 when the job has finished already
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from . import __version__
from .batch import BatchJob, LocalExecutor
from .cache import RenderCache
from .errors import JobError, StyleCompError
from .jobspec import Job, parse_job
from .output_guard import check_outputs
from .pipeline_pool import PipelinePool
from .render_queue import RenderQueue
from .server_token import token_matches

MAX_BODY = 1 << 20  # bytes; a job document is a few kilobytes
DRAIN_LIMIT = 16 << 20  # a larger body is not read before the 413 is sent
SUBMIT_FIELDS = ("job", "base_dir", "shots", "frames", "label", "overwrite")


class HttpError(Exception):
    """A request the server refuses: an HTTP status and a message (and a job's problems, one per field)."""

    def __init__(self, status: HTTPStatus, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems


class EngineServer(ThreadingHTTPServer):
    """The HTTP server with its render queue; ``start`` serves from a thread, ``stop`` shuts everything down."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], token: str, pool: PipelinePool, cache: RenderCache | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, _Handler)
        except OSError as exc:
            raise StyleCompError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}") from None
        self.token = token
        self.pool = pool
        self.queue = RenderQueue(LocalExecutor(pool, cache))
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="stylecomp server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    def start(self) -> None:
        """Start the render worker and answer requests from a background thread."""
        self.queue.start()
        self._thread.start()

    def stop(self) -> None:
        """Cancel the running job between denoising steps (finished frames stay) and the queued ones; close."""
        self.queue.stop()
        self.shutdown()
        self.server_close()
        self._thread.join()

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "device": self.pool.device,
                "dtype": str(self.pool.dtype).removeprefix("torch."), "pipelines_loaded": self.pool.loads,
                "queue": self.queue.counts()}


def bind_warning(host: str) -> str | None:
    """What to tell the user when ``host`` makes the server reachable from other machines; None for loopback."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"the engine server listens on {host}, not only on this machine: anyone who can reach it and has the "
            "token can render with your files and GPU, and HTTP sends the token and jobs unencrypted. Bind "
            "127.0.0.1 (the default) and use an SSH tunnel or an authenticating TLS proxy for remote hosts.")


def parse_submission(body: Any) -> BatchJob:
    """A POST /jobs body as a batch job; HttpError(400) says what is wrong with it."""
    if not isinstance(body, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object: {\"job\": {...}, ...}")
    unknown = sorted(set(body) - set(SUBMIT_FIELDS))
    if unknown:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"unknown field(s) {', '.join(unknown)}; a submission has "
                                                f"{', '.join(SUBMIT_FIELDS)}")
    if not isinstance(body.get("job"), dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'job' must be a job document (a JSON object)")
    base_dir = body.get("base_dir")
    if base_dir is not None and (not isinstance(base_dir, str) or not os.path.isabs(base_dir)
                                 or not os.path.isdir(base_dir)):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'base_dir' must be the absolute path of an existing folder")
    try:
        job = parse_job(json.dumps(body["job"]), "job", base_dir)
    except JobError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the job does not validate: {exc.reason}", exc.problems) from None
    _check_paths(job, base_dir)
    shots = _shots(body.get("shots"), job)
    frames = _frames(body.get("frames"))
    label = body.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > 200):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'label' must be a string of at most 200 characters")
    overwrite = body.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'overwrite' must be true or false")
    problems = check_outputs(job, shots, frames, overwrite=overwrite)
    if problems:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the job's outputs are refused: {problems[0]}", problems)
    return BatchJob(label or ", ".join(shots or [shot.name for shot in job.shots]), job, shots, frames, overwrite)


def _check_paths(job: Job, base_dir: str | None) -> None:
    """Refuse pickle checkpoints, and relative paths when there is no base_dir to resolve them against."""
    if job.model is not None and job.model.allow_pickle:
        raise HttpError(HTTPStatus.BAD_REQUEST, "model.allow_pickle is refused by the server (unpickling runs "
                                                "code); render such a job with `stylecomp render`")
    if not job.color.config.startswith("ocio://") and not os.path.isabs(_expanded(job.color.config)):
        raise HttpError(HTTPStatus.BAD_REQUEST, "color.config must be an ocio:// URI or an absolute path")
    if base_dir is not None:
        return
    relative = [f"{where} ({path})" for where, path in _job_paths(job) if not os.path.isabs(_expanded(path))]
    if relative:
        raise HttpError(HTTPStatus.BAD_REQUEST, "relative paths need 'base_dir' (the folder they are relative to): "
                                                + ", ".join(relative))


def _job_paths(job: Job) -> list[tuple[str, str]]:
    """(field, path) for every path in the job that a render resolves."""
    paths = []
    for i, shot in enumerate(job.shots):
        paths += [(f"shots[{i}].plate", shot.plate), (f"shots[{i}].output", shot.output)]
        if shot.overrides.model:
            paths.append((f"shots[{i}].overrides.model", shot.overrides.model))
    model = job.model
    if model is not None:
        paths.append(("model.path", model.path))
        paths += [(f"model.loras[{i}].path", lora.path) for i, lora in enumerate(model.loras)]
        paths += [(f"model.controlnets[{i}].path", net.path) for i, net in enumerate(model.controlnets)]
        if model.ip_adapter is not None:
            paths += [("model.ip_adapter.path", model.ip_adapter.path), ("model.ip_adapter.image", model.ip_adapter.image)]
            if model.ip_adapter.image_encoder:
                paths.append(("model.ip_adapter.image_encoder", model.ip_adapter.image_encoder))
    return paths


def _expanded(path: str) -> str:
    return os.path.expanduser(os.path.expandvars(path))


def _shots(value: Any, job: Job) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'shots' must be a non-empty list of shot names")
    names = [shot.name for shot in job.shots]
    unknown = [name for name in value if name not in names]
    if unknown:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"no shot named {', '.join(unknown)}; the job's shots are "
                                                f"{', '.join(names)}")
    return tuple(value)


def _frames(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2 or not all(type(v) is int for v in value)
            or value[1] < value[0]):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'frames' must be [first, last], whole numbers, first <= last")
    return value[0], value[1]


class _Handler(BaseHTTPRequestHandler):
    """One request: authorise, route, answer JSON."""

    server: EngineServer
    server_version = f"stylecomp/{__version__}"
    timeout = 30  # seconds a client may take to send its request

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        try:
            authorised = token_matches(_bearer(self.headers.get("Authorization")), self.server.token)
            try:
                body = self._read_body()
            except HttpError:
                if authorised:
                    raise
                body = b""  # the missing token is the answer
            if not authorised:
                raise HttpError(HTTPStatus.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer <token>' "
                                                         "with the token from the server's token file")
            status, answer = self._route(method, body)
        except HttpError as exc:
            status, answer = exc.status, {"error": exc.message}
            if exc.problems:
                answer["problems"] = exc.problems
        self._answer(status, answer)

    def _route(self, method: str, body: bytes) -> tuple[HTTPStatus, Any]:
        path, _, query = self.path.partition("?")
        parts = [part for part in path.split("/") if part]
        queue = self.server.queue
        match method, parts:
            case "GET", ["health"]:
                return HTTPStatus.OK, self.server.health()
            case "GET", ["jobs"]:
                return HTTPStatus.OK, {"jobs": queue.jobs()}
            case "POST", ["jobs"]:
                item = parse_submission(_json(body))
                try:
                    return HTTPStatus.CREATED, queue.submit(item)
                except StyleCompError as exc:
                    raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc)) from None
            case "GET", ["jobs", job_id]:
                return HTTPStatus.OK, _found(queue.status(job_id, _since(query)), job_id)
            case "POST", ["jobs", job_id, "cancel"]:
                try:
                    return HTTPStatus.OK, _found(queue.cancel(job_id), job_id)
                except StyleCompError as exc:
                    raise HttpError(HTTPStatus.CONFLICT, str(exc)) from None
            case _, (["health"] | ["jobs"] | ["jobs", _] | ["jobs", _, "cancel"]):
                raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}; see /health and /jobs")

    def _read_body(self) -> bytes:
        """The request body (Content-Length bytes); a too large one is drained (to a limit) and refused."""
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_text!r}") from None
        if length > MAX_BODY:
            self.close_connection = True
            while 0 < length <= DRAIN_LIMIT:  # read it, so the client is not cut off before the answer
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {MAX_BODY} bytes")
        return self.rfile.read(length)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, unknown method, ...) as JSON too."""
        status = HTTPStatus.METHOD_NOT_ALLOWED if code == HTTPStatus.NOT_IMPLEMENTED else HTTPStatus(code)
        self.close_connection = True
        self._answer(status, {"error": message or status.phrase})

    def _answer(self, status: HTTPStatus, answer: Any) -> None:
        data = json.dumps(answer).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="stylecomp"')
        if status == HTTPStatus.CREATED:
            self.send_header("Location", f"/jobs/{answer['id']}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log submissions, cancels and refusals; status polls would drown them."""
        if self.command != "GET" or int(code) >= 400:
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        sys.stderr.write(f"stylecomp server: {self.address_string()} {format % args}\n")


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {exc}") from None


def _since(query: str) -> int | None:
    values = parse_qs(query).get("since")
    if values is None:
        return None
    if not values[-1].isdigit():
        raise HttpError(HTTPStatus.BAD_REQUEST, "'since' must be an event number (0 or more)")
    return int(values[-1])


def _found(answer: dict[str, Any] | None, job_id: str) -> dict[str, Any]:
    if answer is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"no job {job_id}")
    return answer
