"""The engine server: the render queue over HTTP on this machine, for hosts such as the Nuke plugin.

Standard library only (http.server, json). Every request needs ``Authorization: Bearer
<token>`` (see ``server.access_token``), HEAD and OPTIONS included; bodies and answers are JSON. A
submitted job document is validated with ``parse_job`` like a job file and never executed:
paths are taken literally ($VARS and ~ are not expanded), relative ones resolve against an
explicit ``base_dir`` or are refused, every path must resolve (symlinks and ``..`` followed)
inside one of the server's roots (403 naming the field, never echoing a resolved path), and
``allow_pickle`` is refused. Every request is bounded (``LIMITS``: 400 within milliseconds, before
any plate is listed), handled by a bounded pool of threads with a whole-request deadline; ``/health``
has a lane of its own, so a monitor is answered during a burst of submissions. One
worker renders the queue in order with one pipeline pool, so a model stays loaded between jobs.

    GET  /health                  200 {"status": "ok", "version", "device", "dtype", "pipelines_loaded", "queue"}
    POST /jobs                    {"job": {...}, "base_dir"?, "shots"?, "frames"?, "label"?, "overwrite"?} -> 201
    GET  /jobs                    200 {"jobs": [status without events, ...]} (kept through a crash: see server.store)
    GET  /jobs/<id>[?since=N]     200 a job's status (events numbered after N, else the latest)
    POST /jobs/<id>/cancel        200 the status; 409 when the job has finished already
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .. import __version__
from ..cache_folder import cache_dir
from ..config_folder import config_dir
from ..diffusion.pool import PipelinePool
from ..errors import JobError, StyleCompError
from ..farm.batch import BatchJob, LocalExecutor
from ..io.plates import read_plate
from ..io.sequence import discover
from ..jobspec import Job, Region, parse_job
from ..render.cache import RenderCache
from ..render.output_guard import check_outputs
from .access_token import token_matches
from .queue import RenderQueue
from .store import QueueStore

MAX_BODY = 1 << 20  # bytes; a job document is a few kilobytes
DRAIN_LIMIT = 16 << 20  # a larger body is not read before the 413 is sent
SUBMIT_FIELDS = ("job", "base_dir", "shots", "frames", "label", "overwrite")
# What one submission may ask for; a request over a limit gets a 400 naming the field (documented in the README).
LIMITS = {
    "json_depth": 32,  # nesting of the request body
    "shots": 64,  # shots in a job
    "frames": 10_000,  # frames of one shot (its range with handles, within 'frames'), and frames on disk
    "handles": 1_000,  # handles of a shot
    "candidates": 16,  # candidates.count
    "steps": 150,  # steps, animation.steps
    "prompt": 4_000,  # characters of any prompt
    "working_size": 4_096,  # resolution.working_size, and at most 2x the plate's long side (or 1024)
}
QUEUE_FILE = "server-queue.sqlite3"  # in the cache folder: the accepted jobs, kept through a crash
SERVER_CONFIG = "server.json"  # in the config folder: {"roots": [...]}
WORKERS = 16  # threads answering requests
WAITING = 128  # accepted connections waiting for a worker; one more is answered 503 at once
BACKLOG = 128  # connections the kernel holds until the server accepts them (a burst)
DEFER_ACCEPT = 5  # seconds (Linux): a connection is accepted once its request starts, so it can be routed
HEALTH_LANE = 2  # threads answering /health alone, so a monitor is answered while a burst waits for the workers
HEALTH_WAITING = 8  # /health connections waiting for the lane; more take the workers' way
REQUEST_DEADLINE = 30.0  # seconds a whole request may take once a worker has it (a slow client is cut off)
HEALTH_DEADLINE = 2.0  # seconds a /health request may take in its lane


class HttpError(Exception):
    """A request the server refuses: an HTTP status and a message (and a job's problems, one per field)."""

    def __init__(self, status: HTTPStatus, message: str, problems: list[str] | None = None) -> None:
        message = " ".join(message.split())  # one line, whatever the client sent (a field name with a newline)
        super().__init__(message)
        self.status, self.message = status, message
        self.problems = [" ".join(problem.split()) for problem in problems] if problems else problems


class EngineServer(HTTPServer):
    """The HTTP server with its render queue; ``start`` serves from a thread, ``stop`` shuts everything down.

    ``roots``: the folders requests may read and write in; None serves the user's home and the stylecomp cache
    folder, which only a loopback address may do (``default_roots``).
    """

    request_queue_size = BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        token: str,
        pool: PipelinePool,
        cache: RenderCache | None,
        roots: Sequence[str | os.PathLike[str]] | None = None,
        queue_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if not roots and bind_warning(address[0]) is not None:
            raise StyleCompError(
                f"the engine server will not listen on {address[0]} without --root: name the "
                "folders its clients may read and write"
            )
        self.roots = [os.path.realpath(root) for root in (roots or default_roots())]
        missing = [str(root) for root in roots or () if not os.path.isdir(root)]
        if missing:
            raise StyleCompError(f"--root must be an existing folder: {', '.join(missing)}")
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, _Handler)
        except OSError as exc:
            raise StyleCompError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}") from None
        self.token = token
        self.pool = pool
        self.store = QueueStore(queue_file or cache_dir() / QUEUE_FILE)
        self.queue = RenderQueue(LocalExecutor(pool, cache), self.store)
        self._restore()
        self._workers = ThreadPoolExecutor(WORKERS, "stylecomp-http")
        self._admitted = threading.BoundedSemaphore(WORKERS + WAITING)
        self._health_lane = ThreadPoolExecutor(HEALTH_LANE, "stylecomp-health")
        self._health_admitted = threading.BoundedSemaphore(HEALTH_LANE + HEALTH_WAITING)
        self._deadlines = _Deadlines()
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="stylecomp server", daemon=True
        )

    def _restore(self) -> None:
        """Queue again the jobs that were queued or running when the server last died, validated afresh."""
        for stored in self.store.unfinished():
            try:
                self.queue.restore(stored, parse_submission(stored.body, self.roots))
            except (HttpError, StyleCompError) as exc:
                reason = exc.message if isinstance(exc, HttpError) else str(exc)
                self.store.update(stored.id, "failed", None, time.time(), [f"not resumed after a restart: {reason}"])
                sys.stderr.write(f"stylecomp server: job {stored.id} not resumed: {reason}\n")

    def server_bind(self) -> None:
        if hasattr(socket, "TCP_DEFER_ACCEPT"):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to the workers, or a /health request to its own lane (while that has room).

        Never blocks, so every connection is routed as it comes: at most WORKERS + WAITING are admitted, and one
        more is answered 503 with Retry-After at once.
        """
        if _asks_for_health(request) and self._health_admitted.acquire(blocking=False):
            self._health_lane.submit(self._serve_one, request, client_address, self._health_admitted, HEALTH_DEADLINE)
        elif self._admitted.acquire(blocking=False):
            self._workers.submit(self._serve_one, request, client_address, self._admitted, REQUEST_DEADLINE)
        else:
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_BUSY)
            self.shutdown_request(request)

    def _serve_one(
        self, request: Any, client_address: Any, admitted: threading.BoundedSemaphore, deadline: float
    ) -> None:
        self._deadlines.watch(request, deadline)  # from when it is served: waiting for a worker does not count
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 (socketserver's own policy: report, close, keep serving)
            self.handle_error(request, client_address)
        finally:
            self._deadlines.forget(request)
            self.shutdown_request(request)
            admitted.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke (a client gone, cut at its deadline): one line, not a traceback."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host  # socketserver types it str | bytes
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    def start(self) -> None:
        """Start the render worker and answer requests from a background thread."""
        self.queue.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop the running job mid-step (finished frames stay; it resumes at the next start), keep the queued ones
        queued in the store, and close."""
        self.queue.stop()
        self.shutdown()
        self.server_close()
        self._thread.join()
        self._workers.shutdown(wait=True)
        self._health_lane.shutdown(wait=True)
        self._deadlines.stop()
        self.store.close()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "device": self.pool.device,
            "dtype": str(self.pool.dtype).removeprefix("torch."),
            "pipelines_loaded": self.pool.loads,
            "queue": self.queue.counts(),
        }


def bind_warning(host: str) -> str | None:
    """What to tell the user when ``host`` makes the server reachable from other machines; None for loopback."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"the engine server listens on {host}, not only on this machine: anyone who can reach it and has the "
        "token can render with your files and GPU, and HTTP sends the token and jobs unencrypted. Bind "
        "127.0.0.1 (the default) and use an SSH tunnel or an authenticating TLS proxy for remote hosts."
    )


def configured_roots() -> list[str]:
    """Roots from the config folder's ``server.json`` (``{"roots": ["/shows", ...]}``); [] when there is none."""
    path = config_dir() / SERVER_CONFIG
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StyleCompError(f"cannot read: {exc}", path) from None
    roots = settings.get("roots", []) if isinstance(settings, dict) else None
    if not isinstance(roots, list) or not all(isinstance(root, str) and os.path.isabs(root) for root in roots):
        raise StyleCompError("'roots' must be a list of absolute folder paths", path)
    return roots


def default_roots() -> list[str]:
    """What a loopback server without --root serves: the user's home and the stylecomp cache folder."""
    return [str(Path.home()), str(cache_dir())]


class _Deadlines:
    """The whole-request deadline: a connection still open at its deadline is shut down, which ends its reads."""

    def __init__(self) -> None:
        self._open: dict[Any, float] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._reap, name="stylecomp request deadlines", daemon=True).start()

    def watch(self, connection: Any, seconds: float) -> None:
        with self._lock:
            self._open[connection] = time.monotonic() + seconds

    def forget(self, connection: Any) -> None:
        with self._lock:
            self._open.pop(connection, None)

    def stop(self) -> None:
        self._stopped.set()

    def _reap(self) -> None:
        while not self._stopped.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [connection for connection, deadline in self._open.items() if deadline <= now]
                for connection in late:
                    del self._open[connection]
            for connection in late:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


_BUSY_ANSWER = json.dumps({"error": f"the server is busy ({WORKERS + WAITING} requests in hand); retry"}).encode()
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_BUSY_ANSWER)).encode() + b"\r\n\r\n" + _BUSY_ANSWER
)


def _asks_for_health(connection: socket.socket) -> bool:
    """Whether the request line already received starts ``GET /health`` or ``HEAD /health`` (peeked: nothing is
    consumed, and nothing is waited for; without MSG_DONTWAIT, as on Windows, there is no separate lane)."""
    if not hasattr(socket, "MSG_DONTWAIT"):
        return False
    try:
        start = connection.recv(13, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    return re.match(rb"(GET|HEAD) /health[ ?]", start) is not None


def parse_submission(body: Any, roots: Sequence[str] | None = None) -> BatchJob:
    """A POST /jobs body as a batch job; HttpError(400) says what is wrong with it, HttpError(403) names a path
    outside ``roots`` (real paths of folders; None: no confinement)."""
    if not isinstance(body, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object: {"job": {...}, ...}')
    unknown = sorted(set(body) - set(SUBMIT_FIELDS))
    if unknown:
        raise HttpError(
            HTTPStatus.BAD_REQUEST,
            f"unknown field(s) {', '.join(unknown)}; a submission has {', '.join(SUBMIT_FIELDS)}",
        )
    if not isinstance(body.get("job"), dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'job' must be a job document (a JSON object)")
    base_dir = body.get("base_dir")
    if base_dir is not None and (
        not isinstance(base_dir, str) or not os.path.isabs(base_dir) or not os.path.isdir(base_dir)
    ):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'base_dir' must be the absolute path of an existing folder")
    try:
        job = parse_job(json.dumps(body["job"]), "job", base_dir, expand=False)
    except JobError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the job does not validate: {exc.reason}", exc.problems) from None
    shots = _shots(body.get("shots"), job)
    frames = _frames(body.get("frames"))
    _check_bounds(job, shots, frames)
    _check_paths(job, base_dir)
    if roots is not None:
        _check_roots(job, base_dir, roots)
    label = body.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > 200):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'label' must be a string of at most 200 characters")
    overwrite = body.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'overwrite' must be true or false")
    _check_plates(job, shots, frames)
    problems = check_outputs(job, shots, frames, overwrite=overwrite)
    if problems:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the job's outputs are refused: {problems[0]}", problems)
    return BatchJob(label or ", ".join(shots or [shot.name for shot in job.shots]), job, shots, frames, overwrite)


def _check_bounds(job: Job, shots: tuple[str, ...] | None, frames: tuple[int, int] | None) -> None:
    """Refuse what would take unbounded memory or time (LIMITS), from the document alone: no file is looked at."""
    over = []
    if len(job.shots) > LIMITS["shots"]:
        over.append(f"shots: {len(job.shots)} shots, over {LIMITS['shots']}")
    for i, shot in enumerate(job.shots):
        if shots and shot.name not in shots:
            continue
        if max(shot.handle_frames()) > LIMITS["handles"]:
            over.append(f"shots[{i}].handles: {max(shot.handle_frames())}, over {LIMITS['handles']}")
        span = shot.frame_range_with_handles()
        if span is not None and frames is not None:
            span = (max(span[0], frames[0]), min(span[1], frames[1]))
        if span is not None and span[1] - span[0] + 1 > LIMITS["frames"]:
            over.append(
                f"shots[{i}].frames: {span[1] - span[0] + 1} frames, over {LIMITS['frames']} a submission "
                "may render (split the shot with 'frames')"
            )
        for name, prompt in (("prompt", shot.overrides.prompt), ("negative_prompt", shot.overrides.negative_prompt)):
            if prompt and len(prompt) > LIMITS["prompt"]:
                over.append(f"shots[{i}].overrides.{name}: over {LIMITS['prompt']} characters")
    if frames is not None and frames[1] - frames[0] + 1 > LIMITS["frames"]:  # plates are listed within it
        over.insert(0, f"frames: {frames[1] - frames[0] + 1} frames, over {LIMITS['frames']}")
    if job.candidates.count > LIMITS["candidates"]:
        over.append(f"candidates.count: {job.candidates.count}, over {LIMITS['candidates']}")
    for name, steps in (("steps", job.steps), ("animation.steps", job.animation.steps)):
        if steps > LIMITS["steps"]:
            over.append(f"{name}: {steps}, over {LIMITS['steps']}")
    prompts = [("prompt", job.prompt), ("negative_prompt", job.negative_prompt)]
    prompts += [(f"candidates.prompts[{i}]", p) for i, p in enumerate(job.candidates.prompts)]
    over += [f"{name}: over {LIMITS['prompt']} characters" for name, p in prompts if len(p) > LIMITS["prompt"]]
    size = job.resolution.working_size
    if size is not None and size > LIMITS["working_size"]:
        over.append(f"resolution.working_size: {size}, over {LIMITS['working_size']}")
    if over:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the job is over the server's limits: {over[0]}", over)


def _check_plates(job: Job, shots: tuple[str, ...] | None, frames: tuple[int, int] | None) -> None:
    """Frames on disk (a shot without a range renders them all) and the working size against the plate's size."""
    size = job.resolution.working_size
    for i, shot in enumerate(job.shots):
        if shots and shot.name not in shots:
            continue
        try:
            found = discover(job.resolve(shot.plate), frames)
        except StyleCompError:
            continue  # the render reports missing plates frame by frame
        if len(found.frames) + len(found.missing) > LIMITS["frames"]:
            raise HttpError(
                HTTPStatus.BAD_REQUEST,
                f"shots[{i}].plate: {len(found.frames)} frames on disk, over "
                f"{LIMITS['frames']} a submission may render; give 'frames'",
            )
        if size is None:
            continue
        first = found.path(found.frames[0]) if found.frames else found.pattern
        try:
            window = read_plate(first, pixels=False).display_window
        except StyleCompError:
            continue
        allowed = max(2 * max(window.width, window.height), 1024)
        if size > allowed:
            raise HttpError(
                HTTPStatus.BAD_REQUEST,
                f"resolution.working_size: {size} for a {window.width}x"
                f"{window.height} plate (shots[{i}].plate); at most {allowed}",
            )


def _check_paths(job: Job, base_dir: str | None) -> None:
    """Refuse pickle checkpoints, and relative paths when there is no base_dir to resolve them against."""
    if job.model is not None and job.model.allow_pickle:
        raise HttpError(
            HTTPStatus.BAD_REQUEST,
            "model.allow_pickle is refused by the server (unpickling runs "
            "code); render such a job with `stylecomp render`",
        )
    if not job.color.config.startswith("ocio://") and not os.path.isabs(job.color.config):
        raise HttpError(HTTPStatus.BAD_REQUEST, "color.config must be an ocio:// URI or an absolute path")
    if base_dir is not None:
        return
    relative = [f"{where} ({path})" for where, path in _job_paths(job) if not os.path.isabs(path)]
    if relative:
        raise HttpError(
            HTTPStatus.BAD_REQUEST,
            "relative paths need 'base_dir' (the folder they are relative to): " + ", ".join(relative),
        )


def _check_roots(job: Job, base_dir: str | None, roots: Sequence[str]) -> None:
    """Every path a render of the job reads or writes (the server renders, never comps), resolved (symlinks,
    ``..``), must be inside a root: else 403 naming
    the fields (the paths are not echoed: their resolved form may say what the client may not know)."""
    paths = [("base_dir", base_dir)] if base_dir is not None else []
    paths += [(where, job.resolve(path)) for where, path in _job_paths(job)]
    if not job.color.config.startswith("ocio://"):
        paths.append(("color.config", job.color.config))
    outside = [where for where, path in paths if not _inside(os.path.realpath(path), roots)]
    if outside:
        raise HttpError(
            HTTPStatus.FORBIDDEN,
            f"outside the server's roots: {', '.join(outside)}; start the server "
            "with --root for the folders these are in",
            [f"{where}: outside the server's roots" for where in outside],
        )


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _job_paths(job: Job) -> list[tuple[str, str]]:
    """(field, path) for every path in the job that a render resolves."""
    paths = []
    for i, shot in enumerate(job.shots):
        paths += [(f"shots[{i}].plate", shot.plate), (f"shots[{i}].output", shot.output)]
        if shot.overrides.model:
            paths.append((f"shots[{i}].overrides.model", shot.overrides.model))
        paths += _region_paths(f"shots[{i}].regions", shot.regions)
    paths += _region_paths("regions", job.regions)
    model = job.model
    if model is not None:
        paths.append(("model.path", model.path))
        paths += [(f"model.loras[{i}].path", lora.path) for i, lora in enumerate(model.loras)]
        paths += [(f"model.controlnets[{i}].path", net.path) for i, net in enumerate(model.controlnets)]
        if model.ip_adapter is not None:
            paths += [
                ("model.ip_adapter.path", model.ip_adapter.path),
                ("model.ip_adapter.image", model.ip_adapter.image),
            ]
            paths.append(
                (
                    "model.ip_adapter.image_encoder",
                    model.ip_adapter.image_encoder
                    or os.path.join(os.path.dirname(model.ip_adapter.path), "image_encoder"),
                )
            )
    return paths


def _region_paths(where: str, regions: Sequence[Region]) -> list[tuple[str, str]]:
    """(field, path) for the files regions read: matte sequences, LoRAs, style images."""
    paths = []
    for i, region in enumerate(regions):
        if region.select.matte_sequence is not None:
            paths.append((f"{where}[{i}].select.matte_sequence", region.select.matte_sequence))
        paths += [(f"{where}[{i}].loras[{j}].path", lora.path) for j, lora in enumerate(region.loras or [])]
        if region.ip_adapter_image is not None:
            paths.append((f"{where}[{i}].ip_adapter_image", region.ip_adapter_image))
    return paths


def _shots(value: Any, job: Job) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
        raise HttpError(HTTPStatus.BAD_REQUEST, "'shots' must be a non-empty list of shot names")
    names = [shot.name for shot in job.shots]
    unknown = [name for name in value if name not in names]
    if unknown:
        raise HttpError(
            HTTPStatus.BAD_REQUEST, f"no shot named {', '.join(unknown)}; the job's shots are {', '.join(names)}"
        )
    return tuple(value)


def _frames(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(type(v) is int for v in value) or value[1] < value[0]:
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

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

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
                raise HttpError(
                    HTTPStatus.UNAUTHORIZED,
                    "missing or wrong token: send 'Authorization: Bearer <token>' "
                    "with the token from the server's token file",
                )
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
        if method == "OPTIONS" and _allowed(parts):
            return HTTPStatus.OK, {"allow": _allowed(parts)}
        if method == "HEAD":
            method = "GET"  # answered without its body
        match method, parts:
            case "GET", ["health"]:
                return HTTPStatus.OK, self.server.health()
            case "GET", ["jobs"]:
                return HTTPStatus.OK, {"jobs": queue.jobs()}
            case "POST", ["jobs"]:
                submission = _json(body)
                item = parse_submission(submission, self.server.roots)
                try:
                    return HTTPStatus.CREATED, queue.submit(item, submission)
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

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"stylecomp server: {self.address_string()} {format % args}\n")


def _allowed(parts: list[str]) -> list[str]:
    """The methods an endpoint answers; [] for no endpoint."""
    match parts:
        case ["health"] | ["jobs", _]:
            return ["GET", "HEAD", "OPTIONS"]
        case ["jobs"]:
            return ["GET", "HEAD", "POST", "OPTIONS"]
        case ["jobs", _, "cancel"]:
            return ["POST", "OPTIONS"]
    return []


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _json(body: bytes) -> Any:
    """The body as JSON, nested at most LIMITS['json_depth'] deep."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        value = None  # deeper than Python's recursion limit: far over the limit below
    else:
        if _depth(value) <= LIMITS["json_depth"]:
            return value
    raise HttpError(HTTPStatus.BAD_REQUEST, f"the body is nested more than {LIMITS['json_depth']} deep")


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest


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
