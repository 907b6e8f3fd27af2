"""A render on the engine server, run like an engine command: a background thread, nuke.ProgressTask, a result.

The thread submits the job, polls its status (taking only the events it has not seen),
moves the progress bar, asks the server to cancel when Cancel is pressed, and hands a
runner.RunResult to the main thread with nuke.executeInMainThread, as runner.EngineRun does.
"""

from __future__ import annotations

import os
import time

from . import progress
from .runner import BackgroundRun, RunResult
from .server_client import FINISHED, Server, ServerError

POLL_SECONDS = 0.25  # between status requests
SHOWN_EVENTS = ("start", "frame")  # the events the progress bar and the result take


class ServerRun(BackgroundRun):
    """Frames first..last of one shot on the server; ``on_finish(result)`` runs on the main thread."""

    failure = "The engine server run failed"

    def __init__(
        self, server: Server, job: dict, base_dir: str, shot: str, first: int, last: int, title: str, on_finish
    ) -> None:
        super().__init__(title, on_finish)
        self.server = server
        self.job, self.base_dir, self.shot, self.first, self.last = job, base_dir, shot, first, last

    def _execute(self, task) -> RunResult:
        result = RunResult()
        task.setMessage("submitting to the engine server")
        try:
            job_id = self.server.submit(self.job, self.base_dir, self.shot, self.first, self.last, self.title)
        except ServerError as exc:
            if exc.status == 403:  # the server's roots leave out this node's folder or its model
                result.error = (
                    f"{exc} Start the engine server with --root for the folders this node uses, e.g. "
                    f"`stylecomp serve --root {os.path.dirname(self.base_dir)}` (and the model's folder)."
                )
                return result
            if exc.status != 400:
                result.error = str(exc)
                return result
            result.returncode = 2  # the job was refused: shown like the command line's `error:` lines
            result.stderr = "\n".join(f"error: {problem}" for problem in exc.problems or [str(exc)])
            return result
        seen = 0
        while True:
            if not result.cancelled and task.isCancelled():
                result.cancelled = True
                task.setMessage("stopping the engine server's job")
                try:
                    self.server.cancel(job_id)
                except ServerError as exc:
                    if exc.status != 409:  # 409: it had finished meanwhile
                        raise
            try:
                status = self.server.status(job_id, seen)
            except ServerError as exc:
                result.error = f"Lost the engine server while it rendered: {exc}"
                return result
            for event in status["events"]:
                seen = event["seq"]
                if event.get("event") in SHOWN_EVENTS:
                    _take(event, result, task)
            if status["status"] in FINISHED:
                return _finish(result, status)
            time.sleep(POLL_SECONDS)


def _take(event: dict, result: RunResult, task) -> None:
    """Record one event and show it on the progress bar."""
    result.events.append(event)
    task.setMessage(progress.describe(event))
    share = progress.percent(event)
    if share is not None:
        task.setProgress(share)


def _finish(result: RunResult, status: dict) -> RunResult:
    """The command line's exit status for the job's end: 0 done, 1 frames failed or cancelled, 2 refused."""
    if status["status"] == "cancelled":
        result.cancelled, result.returncode = True, 1
    elif status["status"] == "done":
        result.returncode = 0
    elif status["progress"]["failed"]:
        result.returncode = 1
    else:
        result.returncode = 2
        result.stderr = "\n".join(f"error: {error}" for error in status["errors"])
    return result
