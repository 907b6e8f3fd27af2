"""The machinery every hosted service shares: submit once, record the job, poll, download, verify, resume.

A ``Service`` says how one API is spoken (its submit body, how it reports a job, its error body);
``HostedGenerator`` does the rest, the same for all of them:

1. The request's parameters (never an image's bytes, never a key) and the images' hashes make a
   fingerprint. A job record beside the clip's output (``Request.job_record``) with the same
   fingerprint means this clip was paid for already: its job is polled, or its verified download
   reused, instead of submitting again.
2. Otherwise the job is submitted, and its id is written to the record (atomically) the moment the
   submit returns, before anything else can fail. The record says "submitting" while the submit is
   on its way: a run that dies then, or whose submit goes unanswered, cannot know whether the service
   made a job, and the next run says so before submitting again (a refusal, which makes nothing,
   removes the record). A lock file beside the record keeps two runs from submitting the same clip.
3. Polling starts at ``poll_interval`` seconds and backs off to ``poll_max_interval``; the transport
   obeys Retry-After and retries 429/5xx with a cap. A run stopped while the job runs asks the service
   to cancel where its API can (and forgets the job then); where it cannot, the record stays and the
   next run picks the job up again. Once the service says the job succeeded the record says so, and
   nothing cancels it: the clip is paid for, and a stopped download is fetched by the next run.
4. The clip is streamed to a temp file beside the record, checked (size, container, frame count),
   then renamed; the record notes its hash. A remotely failed job is reported with the service's
   reason and forgotten, so that running again submits anew.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import fcntl
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image

from ...errors import Cancelled, HostedError, ModelError
from ...io.atomic import atomic_target
from ..interface import Generated, Request, Setup
from .clip import Clip, read_clip, retime
from .credentials import Secret, credential
from .transport import Http, Refused, Retry

RECORD_VERSION = 1
CANCEL_TIMEOUT = 10.0  # seconds for the one cancel request a stopped run sends: Ctrl-C must not hang
_LOG = logging.getLogger(__name__)

# Options every hosted generator takes (generator_options), with their defaults.
COMMON_OPTIONS: dict[str, Any] = {
    "base_url": None,  # the service's own endpoint unless set: a proxy, a regional endpoint, a test server
    "model": None,  # the service's default model unless set
    "poll_interval": 5.0,  # seconds before the first status check, growing by half each time
    "poll_max_interval": 30.0,
    "wait": 3600.0,  # seconds to wait for a job before giving up on this run (the job stays recorded)
    "request_timeout": 60.0,
    "retries": 5,  # of 429, 5xx, dropped connections and cut downloads, per request
    "retry_backoff": 2.0,  # seconds before the first retry when the service gives no Retry-After; doubles
    "retry_max_wait": 120.0,  # cap on any one wait, Retry-After included
}


State = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class Status:
    """A remote job's state: running, succeeded (with where to download), or failed (with the service's reason)."""

    state: State
    detail: str  # the service's own state name
    video: str | None = None
    message: str = ""
    percent: int | None = None  # how far the service says it is, where it says


@dataclass(frozen=True)
class Frames:
    """The request's images as 8-bit PNG: the first frame and the optional last one."""

    first: bytes
    last: bytes | None
    width: int
    height: int


class Service:
    """One hosted API. Subclasses fill the class attributes and the request/response methods."""

    name: ClassVar[str]
    reference: ClassVar[str]  # the public document (and API version) this module follows
    base_url: ClassVar[str]
    default_model: ClassVar[str]
    credentials: ClassVar[tuple[str, ...]]  # environment variable names
    durations: ClassVar[tuple[int, ...]]  # clip lengths the service makes, seconds
    takes_seed: ClassVar[bool] = False
    takes_last_frame: ClassVar[bool] = False
    options: ClassVar[dict[str, Any]] = {}  # the service's own options, with defaults

    def __init__(self, model: str, options: Mapping[str, Any], keys: Mapping[str, Secret]) -> None:
        self.model = model
        self.settings = dict(options)
        self.keys = keys

    def headers(self) -> dict[str, str]:
        """Auth (and version) headers for one request."""
        raise NotImplementedError

    def parameters(self, request: Request, seconds: int, frames: Frames) -> dict[str, Any]:
        """What is asked of the service, as recorded and fingerprinted: no image bytes, no key."""
        raise NotImplementedError

    def submit(self, http: Http, parameters: dict[str, Any], frames: Frames) -> str:
        """Start the job; its remote id."""
        raise NotImplementedError

    def status(self, http: Http, job_id: str) -> Status:
        """Where the job is."""
        raise NotImplementedError

    def cancel(self, http: Http, job_id: str) -> bool:
        """Ask the service to stop the job; False where its API has no way to."""
        return False

    def download_headers(self) -> dict[str, str]:
        """Headers for fetching the finished clip (none: most results are signed URLs)."""
        return {}

    @staticmethod
    def error_message(body: Any) -> str | None:
        """The service's message in an error answer: ``{"error": {"message": ...}}`` (OpenAI, Google) or text."""
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return str(body["error"].get("message") or "") or None
        return body if isinstance(body, str) else None

    def not_sent(self, request: Request) -> list[str]:
        """Request fields this service has no parameter for, recorded in provenance."""
        return [] if self.takes_seed else ["seed"]


class HostedGenerator:
    """An image-to-video generator backed by a hosted service; loaded once, called for every shot."""

    def __init__(self, setup: Setup, service: type[Service]) -> None:
        """Check the options and find the keys up front, so a bad job fails before anything is sent.

        ``setup.model`` (a local model folder, for the built-in generator) plays no part: the service's model is
        ``generator_options.model``."""
        if setup.kind != "image_to_video":
            raise ModelError(f"the {service.name} generator makes clips (image_to_video), not {setup.kind}")
        known = COMMON_OPTIONS | service.options
        unknown = sorted(set(setup.options) - set(known))
        if unknown:
            raise ModelError(
                f"unknown {service.name} generator_options: {', '.join(unknown)} (it takes {', '.join(sorted(known))})"
            )
        settings = known | dict(setup.options)
        for option in (
            "poll_interval",
            "poll_max_interval",
            "wait",
            "request_timeout",
            "retries",
            "retry_backoff",
            "retry_max_wait",
        ):
            if (
                isinstance(settings[option], bool)
                or not isinstance(settings[option], (int, float))
                or settings[option] < 0
            ):
                raise ModelError(
                    f"{service.name} generator_options.{option} must be a number of at least 0, "
                    f"not {settings[option]!r}"
                )
        self.settings = settings
        keys = {name: credential(name, service.name) for name in service.credentials}
        self.service = service(
            str(settings["model"] or service.default_model), {name: settings[name] for name in service.options}, keys
        )
        self.base_url = str(settings["base_url"] or service.base_url)
        self.retry = Retry(
            timeout=float(settings["request_timeout"]),
            retries=int(settings["retries"]),
            backoff=float(settings["retry_backoff"]),
            max_wait=float(settings["retry_max_wait"]),
        )
        self._secrets = [key.reveal() for key in keys.values()]

    def frame_count(self, frames: int) -> int:
        """Exactly ``frames``: the service's clip is retimed to the shot's rate and cut to length."""
        if frames < 1:
            raise ValueError(f"a clip has at least one frame, not {frames}")
        return frames

    def http(self, cancel: threading.Event) -> Http:
        """A client for this service that masks its keys and stops when ``cancel`` is set."""
        return Http(self.service.name, self.base_url, self.retry, self.service.error_message, self._secrets, cancel)

    def generate(self, request: Request, cancel: threading.Event) -> Generated:
        """The clip for ``request``: from a finished download, a recorded job, or a new job (submitted once)."""
        if cancel.is_set():
            raise Cancelled()
        name = self.service.name
        if request.image is None:
            raise ValueError("an image-to-video request needs image: the first frame")
        if request.last_image is not None and not self.service.takes_last_frame:
            raise ModelError(f"{name} cannot end a clip on a given frame (animation.last_image)")
        seconds = self._seconds(request)
        frames = Frames(
            _png(request.image),
            None if request.last_image is None else _png(request.last_image),
            request.image.shape[1],
            request.image.shape[0],
        )
        parameters = self.service.parameters(request, seconds, frames)
        fingerprint = _fingerprint(name, parameters, frames)
        record = JobRecord(Path(request.job_record) if request.job_record else None)
        http = self.http(cancel)
        with record.submit_lock(name):
            entry = record.load()
            if entry is not None and entry.get("fingerprint") == fingerprint and entry.get("state") == "submitting":
                _LOG.warning(
                    "%s: an earlier run stopped while submitting this clip, before the service answered; "
                    "it may have made (and billed) a job that stylecomp cannot find. Submitting again",
                    name,
                )
                entry = None
            if entry is not None and entry.get("fingerprint") != fingerprint:
                if entry.get("job_id") and entry.get("state") in ("submitted", "succeeded"):
                    _LOG.warning(
                        "%s: the request for this clip changed; %s job %s (%s) is paid for but not "
                        "downloaded, and its record is replaced by a new job",
                        name,
                        entry.get("service", name),
                        entry["job_id"],
                        entry["state"],
                    )
                entry = None
            resumed = entry is not None
            if entry is None:
                entry = {
                    "version": RECORD_VERSION,
                    "service": name,
                    "fingerprint": fingerprint,
                    "base_url": _safe_url(self.base_url),
                    "parameters": parameters,
                    "state": "submitting",
                }
                record.save(entry)  # a run that dies before the answer leaves this, and the next run says so
                try:
                    job_id = self.service.submit(http, parameters, frames)
                except Refused:
                    record.remove()  # the service made nothing
                    raise
                entry |= {"job_id": job_id, "submitted_at": _now(), "state": "submitted"}
                record.save(entry)

        clip_path = record.clip_path()
        if entry.get("state") == "downloaded" and _sha256_file(clip_path) == entry.get("clip_sha256"):
            clip = read_clip(clip_path, name)
        else:
            job_id = str(entry["job_id"])
            paid = entry.get("state") in ("succeeded", "downloaded")
            try:
                # A finished job is asked again too: its download URL may be signed, and expired since.
                status = self._wait(http, job_id, cancel, record, request)
            except Cancelled:
                if not paid:
                    self._cancel(job_id, record)
                raise
            if not paid:
                entry |= {"state": "succeeded", "video": _safe_url(http.url(status.video or ""))}
                record.save(entry)  # from here on the clip is paid for: a stopped run cancels nothing
            clip = self._download(http, status, clip_path)
            entry |= {"state": "downloaded", "downloaded_at": _now(), "clip_sha256": _sha256_file(clip_path)}
            record.save(entry)

        fps = float(request.fps)
        provenance = {
            "generator": name,
            "service": name,
            "service_api": self.service.reference,
            "model": self.service.model,
            "remote_job_id": str(entry["job_id"]),
            "request": json.dumps(entry["parameters"], sort_keys=True),
            "submitted_at": entry["submitted_at"],
            "downloaded_at": entry["downloaded_at"],
            "resumed": resumed,
            "seed_sent": self.service.takes_seed,
            "not_sent": ",".join(self.service.not_sent(request)) or "-",
            "clip_frames": len(clip.times),
            "clip_fps": clip.fps,
            "clip_seconds": round(clip.seconds, 6),
            "frames": request.frames,
            "fps": fps,
            "width": clip.width,
            "height": clip.height,
            "last_frame": request.last_image is not None,
        }
        if self.service.takes_seed:
            provenance["seed"] = int(parameters["seed"])
        return Generated(frames=retime(clip, request.frames, fps, name), provenance=provenance)

    def _seconds(self, request: Request) -> int:
        """The shortest clip length the service makes that covers the request."""
        needed = request.frames / request.fps
        for seconds in sorted(self.service.durations):
            if seconds + 1e-6 >= needed:
                return seconds
        longest = max(self.service.durations)
        raise ModelError(
            f"{self.service.name} makes clips of at most {longest} s; {request.frames} frames at "
            f"{request.fps:g} fps need {needed:.2f} s (set animation.frames lower)"
        )

    def _wait(self, http: Http, job_id: str, cancel: threading.Event, record: JobRecord, request: Request) -> Status:
        """Poll until the job ends, backing off; a remote failure forgets the job and is reported in one line.

        Where the service says how far a job is, that is passed on as progress (step = percent of 100)."""
        interval = float(self.settings["poll_interval"])
        deadline = time.monotonic() + float(self.settings["wait"])
        name = self.service.name
        while True:
            status = self.service.status(http, job_id)
            if status.percent is not None and request.on_step is not None:
                request.on_step(max(0, min(100, status.percent)), 100)
            if status.state == "succeeded":
                if not status.video:
                    raise HostedError(f"{name}: job {job_id} finished without a video")
                return status
            if status.state == "failed":
                record.remove()
                raise HostedError(
                    http.redact(f"{name}: job {job_id} failed ({status.detail}): {status.message or 'no reason given'}")
                )
            if time.monotonic() + interval > deadline:
                where = f"; it is recorded in {record.path}, run again to keep waiting" if record.path else ""
                raise HostedError(
                    f"{name}: job {job_id} is still {status.detail} after {float(self.settings['wait']):g} s{where}"
                )
            if cancel.wait(interval):
                raise Cancelled()
            interval = min(interval * 1.5, float(self.settings["poll_max_interval"]))

    def _cancel(self, job_id: str, record: JobRecord) -> None:
        """Ask the service, once and briefly, to stop a running job; forget the job if it can."""
        retry = Retry(timeout=min(self.retry.timeout, CANCEL_TIMEOUT), retries=0)
        http = Http(
            self.service.name, self.base_url, retry, self.service.error_message, self._secrets, threading.Event()
        )
        try:
            if self.service.cancel(http, job_id):
                record.remove()
        except HostedError:
            pass  # the run stops all the same; the job stays recorded, and the next run picks it up

    def _download(self, http: Http, status: Status, clip_path: Path) -> Clip:
        """Stream the clip to a temp file, check it, then rename it into place.

        The service's auth headers go only to the base URL's own host: a status answer can name any URI."""
        assert status.video is not None
        same_host = _host(http.url(status.video)) == _host(self.base_url)
        headers = self.service.download_headers() if same_host else {}
        with atomic_target(clip_path) as temp:
            with open(temp, "wb") as handle:
                size = http.download(status.video, headers, handle)
            if size == 0:
                raise HostedError(f"{self.service.name}: the downloaded clip is empty")
            clip = read_clip(temp, self.service.name)
        return dataclasses.replace(clip, path=clip_path)


class JobRecord:
    """The remote job behind one clip, kept in a small JSON file (and its downloaded clip beside it)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is None:  # no place to keep it: the clip goes to a private temp folder, and nothing resumes
            self._temp = tempfile.TemporaryDirectory(prefix="stylecomp-hosted-")
            self._folder = Path(self._temp.name)
        else:
            self._folder = path.parent

    def clip_path(self) -> Path:
        """Where the verified download lives."""
        return self._folder / (self.path.with_suffix(".mp4").name if self.path else "clip.mp4")

    def load(self) -> dict[str, Any] | None:
        """The recorded job, or None (no record, or one that cannot be read: it is replaced)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            entry = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return entry if isinstance(entry, dict) and entry.get("version") == RECORD_VERSION else None

    def save(self, entry: Mapping[str, Any]) -> None:
        """Write the record atomically: a killed run leaves the old record or the new one."""
        if self.path is None:
            return
        with atomic_target(self.path) as temp:
            Path(temp).write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def remove(self) -> None:
        """Forget the job (it failed, or was cancelled remotely)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    @contextmanager
    def submit_lock(self, service: str) -> Iterator[None]:
        """Hold the clip's lock file while deciding whether to submit and submitting: one run at a time.

        An OS lock (flock) is released when its process dies, so a killed run leaves no stale lock; the file stays
        (removing it would let a third run lock a new file while a second holds the old one)."""
        if self.path is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_suffix(".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                shot = self.path.name.removesuffix(".json").removesuffix(".remote-job")
                raise HostedError(f"another run is submitting {shot} to {service} ({lock} is locked)") from None
            yield
        finally:
            os.close(fd)


def _png(image: np.ndarray) -> bytes:
    """An (H, W, 3) [0, 1] frame as 8-bit PNG bytes."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a start or end frame must be an (H, W, 3) image, not {image.shape}")
    pixels = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_resized(png: bytes, width: int, height: int) -> bytes:
    """A PNG scaled and centre-cropped to exactly ``width`` x ``height`` (services that insist on their size)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    scale = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    buffer = io.BytesIO()
    image.crop((left, top, left + width, top + height)).save(buffer, format="PNG")
    return buffer.getvalue()


def base64_png(png: bytes) -> str:
    """PNG bytes as plain base64 text."""
    return base64.b64encode(png).decode("ascii")


def _fingerprint(service: str, parameters: Mapping[str, Any], frames: Frames) -> str:
    """What identifies a paid-for clip: the service, what was asked, and the exact images sent."""
    images = [hashlib.sha256(png).hexdigest() for png in (frames.first, frames.last) if png is not None]
    document = json.dumps({"service": service, "parameters": parameters, "images": images}, sort_keys=True)
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def _sha256_file(path: Path) -> str | None:
    """A file's SHA-256, or None when it is missing."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def _safe_url(url: str) -> str:
    """A base URL without user info, query or fragment: what may be recorded."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _host(url: str) -> tuple[str, int | None]:
    """A URL's host and port, to compare where requests go."""
    parts = urllib.parse.urlsplit(url)
    return (parts.hostname or "", parts.port or {"http": 80, "https": 443}.get(parts.scheme))


def answer_field(service: str, what: str, answer: Any, *path: str | int) -> str:
    """``answer[path[0]][path[1]]...`` as text: a service's id or URI, or one line naming what is missing.

    A malformed answer must not escape as a KeyError (and a submit's leaves its record "submitting")."""
    value = answer
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            value = None
            break
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        field = ".".join(str(key) for key in path)
        raise HostedError(f"{service}: the {what} answer has no {field}")
    return str(value)


def answer_object(service: str, what: str, answer: Any) -> dict[str, Any]:
    """``answer`` if it is a JSON object; else one line saying it is not."""
    if not isinstance(answer, dict):
        raise HostedError(f"{service}: the {what} answer is not a JSON object")
    return answer


def _now() -> str:
    """The time, UTC, ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def orientation(frames: Frames, landscape: str, portrait: str) -> str:
    """``landscape`` or ``portrait``, from the start frame's shape."""
    return landscape if frames.width >= frames.height else portrait
