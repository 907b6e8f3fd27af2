"""Kling image-to-video, with the API's HS256 JSON Web Token made from the access and secret keys.

Follows Kling AI's API documentation (https://app.klingai.com/global/dev/document-api), "Image to Video",
API v1: ``POST /v1/videos/image2video`` with model_name, image and image_tail (plain base64), prompt,
negative_prompt, mode (std/pro), duration "5" or "10"; ``GET /v1/videos/image2video/{task_id}`` until
``task_status`` is ``succeed`` (or ``failed``, with ``task_status_msg``); the clip is at
``task_result.videos[0].url``. Every answer is ``{code, message, request_id, data}``, code 0 meaning
success. Auth is ``Authorization: Bearer <JWT>``, the token signed with the secret key (HS256) over
``{"iss": access key, "exp": now + 30 min, "nbf": now - 5 s}``; stdlib hmac, a new token per request.
Kling takes no seed and has no cancel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, ClassVar

from ..interface import Request, Setup
from .jobs import Frames, HostedGenerator, Service, State, Status, answer_field, base64_png
from .transport import Http, Refused

_STATES: dict[str, State] = {
    "submitted": "running",
    "processing": "running",
    "succeed": "succeeded",
    "failed": "failed",
}
TOKEN_SECONDS = 1800


def jwt_hs256(claims: dict[str, Any], secret: str) -> str:
    """A compact JWS (JSON Web Token) of ``claims`` signed with HMAC-SHA256 (RFC 7519, RFC 7515)."""

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = segment(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = segment(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode("utf-8"), f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}.{segment(signature)}"


class Kling(Service):
    """Kling AI's image-to-video API."""

    name = "kling"
    reference = "Kling AI API: Image to Video (v1)"
    base_url = "https://api-singapore.klingai.com"
    default_model = "kling-v2-1"
    credentials = ("KLING_ACCESS_KEY", "KLING_SECRET_KEY")
    durations = (5, 10)
    takes_last_frame = True
    options: ClassVar[dict[str, Any]] = {
        "mode": "pro",
        "cfg_scale": None,
    }  # mode "std" or "pro" (image_tail needs pro); cfg_scale 0-1

    def headers(self) -> dict[str, str]:
        """A fresh JWT for each request."""
        now = int(time.time())
        claims = {"iss": self.keys["KLING_ACCESS_KEY"].reveal(), "exp": now + TOKEN_SECONDS, "nbf": now - 5}
        return {"Authorization": f"Bearer {jwt_hs256(claims, self.keys['KLING_SECRET_KEY'].reveal())}"}

    def parameters(self, request: Request, seconds: int, frames: Frames) -> dict[str, Any]:
        """The body's fields, without the images."""
        parameters: dict[str, Any] = {
            "model_name": self.model,
            "prompt": request.prompt,
            "mode": self.settings["mode"],
            "duration": str(seconds),
            "image_tail": frames.last is not None,
        }
        if request.negative_prompt:
            parameters["negative_prompt"] = request.negative_prompt
        if self.settings["cfg_scale"] is not None:
            parameters["cfg_scale"] = float(self.settings["cfg_scale"])
        return parameters

    def submit(self, http: Http, parameters: dict[str, Any], frames: Frames) -> str:
        """POST /v1/videos/image2video."""
        body = {key: value for key, value in parameters.items() if key != "image_tail"}
        body["image"] = base64_png(frames.first)
        if frames.last is not None:
            body["image_tail"] = base64_png(frames.last)
        answer = _data(http, http.json("POST", "v1/videos/image2video", self.headers(), body))
        return answer_field(self.name, "submit", answer, "task_id")

    def status(self, http: Http, job_id: str) -> Status:
        """GET /v1/videos/image2video/{task_id}."""
        task = _data(http, http.json("GET", f"v1/videos/image2video/{job_id}", self.headers()))
        state = str(task.get("task_status"))
        video = (
            answer_field(self.name, "status", task, "task_result", "videos", 0, "url") if state == "succeed" else None
        )
        return Status(_STATES.get(state, "running"), state, video, str(task.get("task_status_msg") or ""))

    @staticmethod
    def error_message(body: Any) -> str | None:
        """Kling's ``{"code", "message", "request_id"}``."""
        if isinstance(body, dict) and body.get("message"):
            return f"{body['message']} (code {body.get('code')})"
        return body if isinstance(body, str) else None


def _data(http: Http, answer: Any) -> dict[str, Any]:
    """``data`` of a Kling answer; a non-zero code is an error even with HTTP 200."""
    if not isinstance(answer, dict) or answer.get("code") != 0 or not isinstance(answer.get("data"), dict):
        raise Refused(http.redact(f"kling: the request was refused: {Kling.error_message(answer) or 'no message'}"))
    return answer["data"]


def load(setup: Setup) -> HostedGenerator:
    """The ``kling`` generator plugin."""
    return HostedGenerator(setup, Kling)
