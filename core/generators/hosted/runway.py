"""Runway image-to-video (Gen-4 Turbo, Gen-3 Alpha Turbo) through Runway's developer API.

Follows the Runway API reference (https://docs.dev.runwayml.com/api/), ``X-Runway-Version: 2024-11-06``:
``POST /v1/image_to_video`` with model, promptImage (a list of ``{uri, position: first|last}``, the images
as data URIs), promptText, ratio, duration and seed (0 to 2**32 - 1); ``GET /v1/tasks/{id}`` (status
PENDING, THROTTLED, RUNNING, SUCCEEDED with ``output`` URLs, FAILED with ``failure``, CANCELLED);
``DELETE /v1/tasks/{id}`` cancels a running task. Errors are ``{"error": message}``. With the same seed,
inputs and model Runway documents that results are similar, not identical.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...errors import ModelError
from ..interface import Request, Setup
from .jobs import Frames, HostedGenerator, Service, State, Status, answer_field, answer_object, base64_png, orientation
from .transport import Http

API_VERSION = "2024-11-06"
PROMPT_LIMIT = 1000  # characters of promptText the API takes
_STATES: dict[str, State] = {
    "PENDING": "running",
    "THROTTLED": "running",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "CANCELLED": "failed",
}


class Runway(Service):
    """Runway's developer API."""

    name = "runway"
    reference = f"Runway API reference (X-Runway-Version {API_VERSION})"
    base_url = "https://api.dev.runwayml.com"
    default_model = "gen4_turbo"
    credentials = ("RUNWAYML_API_SECRET",)
    durations = (5, 10)
    takes_seed = True
    takes_last_frame = True
    options: ClassVar[dict[str, Any]] = {
        "ratio": None
    }  # e.g. "1280:720", "720:1280", "960:960"; None = 1280:720 or 720:1280 by aspect

    def headers(self) -> dict[str, str]:
        """Bearer auth and the API version Runway requires on every request."""
        return {"Authorization": f"Bearer {self.keys['RUNWAYML_API_SECRET'].reveal()}", "X-Runway-Version": API_VERSION}

    def parameters(self, request: Request, seconds: int, frames: Frames) -> dict[str, Any]:
        """The body's fields, without the images; a prompt longer than Runway takes is refused, not cut."""
        if len(request.prompt) > PROMPT_LIMIT:
            raise ModelError(
                f"runway takes a prompt of at most {PROMPT_LIMIT} characters; this prompt has {len(request.prompt)}"
            )
        return {
            "model": self.model,
            "promptText": request.prompt,
            "ratio": self.settings["ratio"] or orientation(frames, "1280:720", "720:1280"),
            "duration": seconds,
            "seed": request.seed % 2**32,
            "last_frame": frames.last is not None,
        }

    def submit(self, http: Http, parameters: dict[str, Any], frames: Frames) -> str:
        """POST /v1/image_to_video."""
        images = [{"uri": f"data:image/png;base64,{base64_png(frames.first)}", "position": "first"}]
        if frames.last is not None:
            images.append({"uri": f"data:image/png;base64,{base64_png(frames.last)}", "position": "last"})
        body = {key: value for key, value in parameters.items() if key != "last_frame"} | {"promptImage": images}
        return answer_field(self.name, "submit", http.json("POST", "v1/image_to_video", self.headers(), body), "id")

    def status(self, http: Http, job_id: str) -> Status:
        """GET /v1/tasks/{id}."""
        task = answer_object(self.name, "status", http.json("GET", f"v1/tasks/{job_id}", self.headers()))
        state = str(task.get("status"))
        output = answer_field(self.name, "status", task, "output", 0) if state == "SUCCEEDED" else None
        message = task.get("failure") or ("cancelled" if state == "CANCELLED" else "")
        progress = task.get("progress")  # 0 to 1 while RUNNING
        return Status(
            _STATES.get(state, "running"),
            state,
            output,
            str(message),
            round(progress * 100) if isinstance(progress, (int, float)) else None,
        )

    def cancel(self, http: Http, job_id: str) -> bool:
        """DELETE /v1/tasks/{id}: Runway cancels a running task (and deletes a finished one)."""
        http.json("DELETE", f"v1/tasks/{job_id}", self.headers())
        return True

    @staticmethod
    def error_message(body: Any) -> str | None:
        """Runway's ``{"error": message}``."""
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
        return body if isinstance(body, str) else None

    def not_sent(self, request: Request) -> list[str]:
        """Runway has no negative prompt."""
        return ["negative_prompt"] if request.negative_prompt else []


def load(setup: Setup) -> HostedGenerator:
    """The ``runway`` generator plugin."""
    return HostedGenerator(setup, Runway)
