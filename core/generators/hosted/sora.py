"""OpenAI Sora (``sora-2``, ``sora-2-pro``) through the Videos API.

Follows the OpenAI API reference, Videos (https://platform.openai.com/docs/api-reference/videos) and the
"Video generation with Sora" guide, API v1 as published for sora-2 (2025-10-06 and 2025-12-08 snapshots):
``POST /v1/videos`` (multipart: model, prompt, seconds, size, input_reference), ``GET /v1/videos/{id}``
(status queued, in_progress, completed, failed), ``GET /v1/videos/{id}/content`` for the MP4. The input
reference must be exactly ``size``, so the start frame is scaled and centre-cropped to it. There is no
seed and no last frame, and no way to cancel a running job (DELETE removes a finished video only).
OpenAI's guide announces that the Videos API and the sora-2 models shut down on 2026-09-24.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..interface import Request, Setup
from .jobs import Frames, HostedGenerator, Service, State, Status, answer_field, answer_object, orientation, png_resized
from .transport import Http, Multipart

_STATES: dict[str, State] = {
    "queued": "running",
    "in_progress": "running",
    "completed": "succeeded",
    "failed": "failed",
}


class Sora(Service):
    """OpenAI's Videos API."""

    name = "sora"
    reference = "OpenAI API reference: Videos (v1, sora-2 2025-12-08)"
    base_url = "https://api.openai.com/v1"
    default_model = "sora-2"
    credentials = ("OPENAI_API_KEY",)
    durations = (4, 8, 12)
    options: ClassVar[dict[str, Any]] = {
        "size": None
    }  # "1280x720" or "720x1280" (sora-2-pro also 1792x1024, 1024x1792); None = by aspect

    def headers(self) -> dict[str, str]:
        """Bearer auth with the API key."""
        return {"Authorization": f"Bearer {self.keys['OPENAI_API_KEY'].reveal()}"}

    def parameters(self, request: Request, seconds: int, frames: Frames) -> dict[str, Any]:
        """The form fields (the image goes as input_reference)."""
        size = self.settings["size"] or orientation(frames, "1280x720", "720x1280")
        return {"model": self.model, "prompt": request.prompt, "seconds": str(seconds), "size": size}

    def submit(self, http: Http, parameters: dict[str, Any], frames: Frames) -> str:
        """POST /videos with the start frame at the clip's size."""
        width, height = (int(side) for side in parameters["size"].split("x"))
        image = png_resized(frames.first, width, height)
        body = Multipart(parameters, (("input_reference", "start.png", "image/png", image),))
        return answer_field(self.name, "submit", http.json("POST", "videos", self.headers(), body), "id")

    def status(self, http: Http, job_id: str) -> Status:
        """GET /videos/{id}; a completed video is fetched from /content."""
        video = answer_object(self.name, "status", http.json("GET", f"videos/{job_id}", self.headers()))
        state = str(video.get("status"))
        error = video.get("error") or {}
        content = f"videos/{job_id}/content" if state == "completed" else None
        message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        progress = video.get("progress")
        return Status(
            _STATES.get(state, "running"),
            state,
            content,
            message,
            int(progress) if isinstance(progress, (int, float)) else None,
        )

    def download_headers(self) -> dict[str, str]:
        """The content endpoint needs the key too."""
        return self.headers()

    def not_sent(self, request: Request) -> list[str]:
        """No seed and no negative prompt in the Videos API."""
        return ["seed"] + (["negative_prompt"] if request.negative_prompt else [])


def load(setup: Setup) -> HostedGenerator:
    """The ``sora`` generator plugin."""
    return HostedGenerator(setup, Sora)
