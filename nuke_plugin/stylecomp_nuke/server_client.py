"""The engine server (``stylecomp serve``), when one is set up and running: where it is, its token, its HTTP API.

The URL comes from the settings file (``server``) or $STYLECOMP_SERVER; the token from the
file the server keeps ($STYLECOMP_CONFIG_DIR, else $XDG_CONFIG_HOME/stylecomp, else
~/.config/stylecomp: ``server-token``; the setting ``server_token_file`` names another). With
no URL, no token file, or no answer, the plugin runs the engine's command line instead.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from . import settings
from .errors import StyleCompNukeError

TIMEOUT = 10.0  # seconds for one request to a running server
PROBE_TIMEOUT = 2.0  # seconds to find out whether a server answers at all
FINISHED = ("done", "failed", "cancelled")


class ServerError(StyleCompNukeError):
    """The server refused a request (``status``, and its ``problems`` with a job) or stopped answering (status 0)."""

    def __init__(self, message: str, status: int = 0, problems: list | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problems = problems or []


@dataclass(frozen=True)
class Server:
    """A running engine server and its token."""

    url: str
    token: str

    def health(self, timeout: float = TIMEOUT) -> dict:
        return self._request("GET", "/health", timeout=timeout)

    def submit(self, job: dict, base_dir: str, shot: str, first: int, last: int, label: str) -> str:
        """Queue frames first..last of one shot of ``job`` (relative paths resolve against ``base_dir``); the job id."""
        body = {"job": job, "base_dir": base_dir, "shots": [shot], "frames": [int(first), int(last)], "label": label}
        return self._request("POST", "/jobs", body)["id"]

    def status(self, job_id: str, since: int) -> dict:
        """The job's status with its events numbered after ``since``."""
        return self._request("GET", f"/jobs/{job_id}?since={int(since)}")

    def cancel(self, job_id: str) -> dict:
        """Ask the server to stop the job between denoising steps (finished frames stay)."""
        return self._request("POST", f"/jobs/{job_id}/cancel")

    def _request(self, method: str, path: str, body: dict | None = None, timeout: float = TIMEOUT) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.loads(answer.read().decode("utf-8"))
        except urllib.error.HTTPError as refused:
            with refused:
                try:
                    detail = json.loads(refused.read().decode("utf-8"))
                except ValueError:
                    detail = {}
            message = detail.get("error") or f"HTTP {refused.code}"
            raise ServerError(
                f"The engine server refused {method} {path}: {message}", refused.code, detail.get("problems")
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"The engine server at {self.url} does not answer: {reason}") from None


def token_path() -> str:
    """Where the server keeps its token (the same rule as the engine's)."""
    configured = settings.load().get("server_token_file")
    if configured:
        return os.path.expanduser(str(configured))
    folder = os.environ.get("STYLECOMP_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config"), "stylecomp"
    )
    return os.path.join(folder, "server-token")


def find() -> Server | None:
    """The engine server, if one is set up and answers; None to use the command line instead.

    A server that answers but refuses the token is an error: the artist should hear about it.
    """
    url = settings.load().get("server") or os.environ.get("STYLECOMP_SERVER")
    if not url:
        return None
    try:
        with open(token_path(), encoding="ascii") as handle:
            token = handle.read().strip()
    except OSError:
        return None  # no server has started on this machine as this user
    server = Server(str(url).rstrip("/"), token)
    try:
        server.health(timeout=PROBE_TIMEOUT)
    except ServerError as exc:
        if exc.status == 401:
            raise StyleCompNukeError(
                f"The engine server at {server.url} refused the token in {token_path()}; "
                "restart `stylecomp serve` as this user or fix the server_token_file setting."
            ) from None
        return None
    return server
