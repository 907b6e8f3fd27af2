"""Luma Dream Machine (Ray 2) through Luma's generations API.

Follows the Luma AI API reference (https://docs.lumalabs.ai/reference), Dream Machine API v1:
``POST /dream-machine/v1/generations`` with prompt, model ``ray-2``, aspect_ratio, resolution, duration
("5s" or "9s") and ``keyframes.frame0`` / ``frame1`` as ``{"type": "image", "url": ...}``;
``GET /dream-machine/v1/generations/{id}`` (state queued, dreaming, completed with ``assets.video``,
failed with ``failure_reason``); ``DELETE`` on the same path removes a generation. Errors are
``{"detail": message}``. Luma takes keyframes only as URLs it can fetch, so the plugin writes each one
(named by its content hash) into ``image_dir`` and sends ``image_url`` + name: a folder that a web server
or bucket the studio owns publishes. Luma takes no seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ...errors import ModelError
from ...io.atomic import atomic_target
from ..interface import Request, Setup
from .credentials import Secret
from .jobs import Frames, HostedGenerator, Service, State, Status, answer_field, answer_object, orientation
from .transport import Http

_STATES: dict[str, State] = {"queued": "running", "dreaming": "running", "completed": "succeeded", "failed": "failed"}


class Luma(Service):
    """Luma AI's Dream Machine API."""

    name = "luma"
    reference = "Luma AI API reference: Dream Machine generations (v1)"
    base_url = "https://api.lumalabs.ai/dream-machine/v1"
    default_model = "ray-2"
    credentials = ("LUMAAI_API_KEY",)
    durations = (5, 9)
    takes_last_frame = True
    # image_dir: a folder published at image_url (both needed); aspect_ratio None = 16:9 or 9:16 by aspect
    options: ClassVar[dict[str, Any]] = {
        "image_dir": None,
        "image_url": None,
        "aspect_ratio": None,
        "resolution": "720p",
    }

    def __init__(self, model: str, options: Mapping[str, Any], keys: Mapping[str, Secret]) -> None:
        """Refuse a setup without the published keyframe folder: Luma takes keyframes by URL only."""
        super().__init__(model, options, keys)
        if not self.settings["image_dir"] or not self.settings["image_url"]:
            raise ModelError(
                "luma takes keyframes by URL only: set generator_options.image_dir (a folder that is "
                "published) and image_url (the URL it is published at)"
            )

    def headers(self) -> dict[str, str]:
        """Bearer auth with the API key."""
        return {"Authorization": f"Bearer {self.keys['LUMAAI_API_KEY'].reveal()}"}

    def parameters(self, request: Request, seconds: int, frames: Frames) -> dict[str, Any]:
        """The body, with keyframe URLs (content-hashed names: they identify the images)."""
        keyframes = {"frame0": {"type": "image", "url": self._url(frames.first)}}
        if frames.last is not None:
            keyframes["frame1"] = {"type": "image", "url": self._url(frames.last)}
        return {
            "prompt": request.prompt,
            "model": self.model,
            "aspect_ratio": self.settings["aspect_ratio"] or orientation(frames, "16:9", "9:16"),
            "resolution": self.settings["resolution"],
            "duration": f"{seconds}s",
            "loop": False,
            "keyframes": keyframes,
        }

    def submit(self, http: Http, parameters: dict[str, Any], frames: Frames) -> str:
        """Publish the keyframes, then POST /generations."""
        for png in (frames.first, frames.last):
            if png is not None:
                self._publish(png)
        return answer_field(self.name, "submit", http.json("POST", "generations", self.headers(), parameters), "id")

    def status(self, http: Http, job_id: str) -> Status:
        """GET /generations/{id}."""
        generation = answer_object(self.name, "status", http.json("GET", f"generations/{job_id}", self.headers()))
        state = str(generation.get("state"))
        video = answer_field(self.name, "status", generation, "assets", "video") if state == "completed" else None
        return Status(_STATES.get(state, "running"), state, video, str(generation.get("failure_reason") or ""))

    def cancel(self, http: Http, job_id: str) -> bool:
        """DELETE /generations/{id}: the API's only way to stop one."""
        http.json("DELETE", f"generations/{job_id}", self.headers())
        return True

    @staticmethod
    def error_message(body: Any) -> str | None:
        """Luma's ``{"detail": message}`` (FastAPI validation errors: a list of problems)."""
        if isinstance(body, dict) and body.get("detail"):
            detail = body["detail"]
            if isinstance(detail, list):
                return "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
            return str(detail)
        return body if isinstance(body, str) else None

    def not_sent(self, request: Request) -> list[str]:
        """Luma has no seed and no negative prompt."""
        return ["seed"] + (["negative_prompt"] if request.negative_prompt else [])

    def _name(self, png: bytes) -> str:
        return f"stylecomp-{hashlib.sha256(png).hexdigest()[:32]}.png"

    def _url(self, png: bytes) -> str:
        return f"{str(self.settings['image_url']).rstrip('/')}/{self._name(png)}"

    def _publish(self, png: bytes) -> None:
        """Write a keyframe into the published folder (atomically: Luma may fetch it at once)."""
        path = Path(str(self.settings["image_dir"])).expanduser() / self._name(png)
        if not path.is_file():
            with atomic_target(path) as temp:
                Path(temp).write_bytes(png)


def load(setup: Setup) -> HostedGenerator:
    """The ``luma`` generator plugin."""
    return HostedGenerator(setup, Luma)
