"""Google Veo through the Gemini API (``predictLongRunning``).

Follows the Gemini API guide "Generate videos with Veo" (https://ai.google.dev/gemini-api/docs/video) and
its REST reference, v1beta, Veo 3.1 (``veo-3.1-generate-preview``): ``POST models/{model}:predictLongRunning``
with ``instances[0].image`` and ``instances[0].lastFrame`` as ``{bytesBase64Encoded, mimeType}`` and
``parameters`` (aspectRatio, resolution, durationSeconds 4/6/8, negativePrompt, seed), authenticated by the
``x-goog-api-key`` header. It returns an operation; ``GET {operation name}`` until ``done``, then the video
is at ``response.generateVideoResponse.generatedSamples[0].video.uri`` (fetched with the key; a redirect to
storage drops it). Veo takes a seed (uint32); a hosted model can change under the same name, so the same
seed is not promised to give the same clip. The Gemini API documents no cancel for video operations.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..interface import Request, Setup
from .jobs import Frames, HostedGenerator, Service, Status, answer_field, answer_object, base64_png, orientation
from .transport import Http


class Veo(Service):
    """The Gemini API's Veo models."""

    name = "veo"
    reference = "Gemini API: Generate videos with Veo (v1beta, Veo 3.1)"
    base_url = "https://generativelanguage.googleapis.com/v1beta"
    default_model = "veo-3.1-generate-preview"
    credentials = ("GEMINI_API_KEY",)
    durations = (4, 6, 8)
    takes_seed = True
    takes_last_frame = True
    options: ClassVar[dict[str, Any]] = {
        "aspect_ratio": None,
        "resolution": "720p",
    }  # aspect_ratio "16:9" or "9:16"; None = by aspect

    def headers(self) -> dict[str, str]:
        """The Gemini API key header."""
        return {"x-goog-api-key": self.keys["GEMINI_API_KEY"].reveal()}

    def parameters(self, request: Request, seconds: int, frames: Frames) -> dict[str, Any]:
        """The prompt and the ``parameters`` object (images go in the instance)."""
        parameters: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt,
            "aspectRatio": self.settings["aspect_ratio"] or orientation(frames, "16:9", "9:16"),
            "resolution": self.settings["resolution"],
            "durationSeconds": seconds,
            "seed": request.seed % 2**32,  # uint32
            "lastFrame": frames.last is not None,
        }
        if request.negative_prompt:
            parameters["negativePrompt"] = request.negative_prompt
        return parameters

    def submit(self, http: Http, parameters: dict[str, Any], frames: Frames) -> str:
        """POST models/{model}:predictLongRunning; the operation's name is the job id."""
        instance: dict[str, Any] = {
            "prompt": parameters["prompt"],
            "image": {"bytesBase64Encoded": base64_png(frames.first), "mimeType": "image/png"},
        }
        if frames.last is not None:
            instance["lastFrame"] = {"bytesBase64Encoded": base64_png(frames.last), "mimeType": "image/png"}
        settings = {key: value for key, value in parameters.items() if key not in ("model", "prompt", "lastFrame")}
        body = {"instances": [instance], "parameters": settings}
        answer = http.json("POST", f"models/{self.model}:predictLongRunning", self.headers(), body)
        return answer_field(self.name, "submit", answer, "name")

    def status(self, http: Http, job_id: str) -> Status:
        """GET the operation; ``done`` with a sample, an error, or samples filtered out by safety."""
        operation = answer_object(self.name, "status", http.json("GET", job_id, self.headers()))
        if not operation.get("done"):
            return Status("running", "running")
        if error := operation.get("error"):
            message = error.get("message", error) if isinstance(error, dict) else error
            return Status("failed", "error", message=str(message))
        response = operation.get("response")
        response = response.get("generateVideoResponse") if isinstance(response, dict) else None
        response = response if isinstance(response, dict) else {}
        samples = response.get("generatedSamples") or []
        if not samples:
            reasons = response.get("raiMediaFilteredReasons") or ["no video in the response"]
            return Status("failed", "filtered", message="; ".join(map(str, reasons)))
        uri = answer_field(
            self.name, "status", operation, "response", "generateVideoResponse", "generatedSamples", 0, "video", "uri"
        )
        return Status("succeeded", "done", uri)

    def download_headers(self) -> dict[str, str]:
        """The file download takes the key as well."""
        return self.headers()

    def not_sent(self, request: Request) -> list[str]:
        """Veo takes everything stylecomp asks for."""
        return []


def load(setup: Setup) -> HostedGenerator:
    """The ``veo`` generator plugin."""
    return HostedGenerator(setup, Veo)
