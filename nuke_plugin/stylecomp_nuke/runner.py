"""Engine commands run in a background thread: progress and cancel through nuke.ProgressTask.

The worker thread only touches the ProgressTask; the result is handed to the main thread
with nuke.executeInMainThread, where the caller updates nodes and shows messages.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from dataclasses import dataclass, field

import nuke

from . import progress

POLL_SECONDS = 0.1  # how often the Cancel button is looked at while waiting for output
STOP_SECONDS = 10.0  # how long a cancelled engine gets to finish its current frame file before a kill


@dataclass
class RunResult:
    """What one engine command did."""

    returncode: int | None = None
    cancelled: bool = False
    error: str | None = None  # why the run failed before the engine could say anything
    events: list = field(default_factory=list)
    stderr: str = ""
    last_line: str = ""  # the last stdout line that is not a progress event (candidates: the manifest path)

    def frames(self, status: str) -> list:
        """Frame events with this status (rendered, cached or failed)."""
        return [e for e in self.events if e.get("event") == "frame" and e.get("status") == status]

    def error_lines(self) -> list:
        """The engine's ``error: <where>: <reason>`` lines, else the end of its stderr."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        return errors or lines[-10:]


class BackgroundRun:
    """Work in a daemon thread with a nuke.ProgressTask; ``on_finish(result)`` then runs on the main thread.

    Subclasses implement ``_execute(task) -> RunResult``; ``failure`` names the work in the message
    shown if it raises.
    """

    failure = "The engine run failed"

    def __init__(self, title: str, on_finish) -> None:
        self.title = title
        self.on_finish = on_finish

    def start(self) -> None:
        """Run the work in a daemon thread."""
        threading.Thread(target=self._run, name=f"stylecomp: {self.title}", daemon=True).start()

    def _run(self) -> None:
        try:
            task = nuke.ProgressTask(self.title)
            result = self._execute(task)
            del task  # Nuke closes the progress bar when its task goes away
        except Exception as exc:  # noqa: BLE001 - never leave the node waiting for a result that will not come
            result = RunResult(error=f"{self.failure}: {exc!r}")
        nuke.executeInMainThread(self.on_finish, args=(result,))

    def _execute(self, task) -> RunResult:
        raise NotImplementedError


class EngineRun(BackgroundRun):
    """One engine command: started with start(); ``on_finish(result)`` runs on the main thread."""

    def __init__(self, command: list, title: str, on_finish) -> None:
        super().__init__(title, on_finish)
        self.command = list(command)

    def _execute(self, task) -> RunResult:
        result = RunResult()
        try:
            process = _launch(self.command)
        except OSError as exc:
            result.error = f"Could not start {self.command[0]}: {exc.strerror or exc}"
            return result
        lines: queue.Queue = queue.Queue()
        stderr: list = []
        readers = [
            threading.Thread(target=_forward, args=(process.stdout, lines.put), daemon=True),
            threading.Thread(target=_forward, args=(process.stderr, stderr.append), daemon=True),
        ]
        for reader in readers:
            reader.start()
        task.setMessage("starting the engine")
        while True:
            if not result.cancelled and task.isCancelled():
                result.cancelled = True
                task.setMessage("stopping the engine")
                _stop(process)
            try:
                line = lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if line is None:
                break
            _take(line, result, task)
        for reader in readers:
            reader.join()
        result.returncode = process.wait()
        result.stderr = "".join(line for line in stderr if line is not None)
        return result


def _launch(command: list) -> subprocess.Popen:
    """Start the engine with piped output, in its own process group so a stop reaches its helpers too."""
    env = engine_environment(os.environ)
    options = {"creationflags": subprocess.CREATE_NO_WINDOW} if os.name == "nt" else {"start_new_session": True}
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        env=env,
        **options,
    )


def engine_environment(host: dict) -> dict:
    """The engine's environment: the host's, less Nuke's Python settings.

    Nuke and studio launchers (rez, conda, wrappers) export PYTHONPATH, PYTHONHOME and the like for
    Nuke's own Python; inherited, they make the engine's virtualenv import the wrong packages or
    fail to start. Every PYTHON* variable (and macOS's __PYVENV_LAUNCHER__) is dropped, the user
    site folder is switched off, and output is unbuffered so progress lines arrive as they happen.
    """
    env = {
        name: value
        for name, value in host.items()
        if not name.upper().startswith("PYTHON") and name != "__PYVENV_LAUNCHER__"
    }
    env.update(PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")
    return env


def _forward(stream, put) -> None:
    """Hand every line of ``stream`` to ``put``, then None at the end."""
    with stream:
        for line in stream:
            put(line)
    put(None)


def _take(line: str, result: RunResult, task) -> None:
    """Record one stdout line and show it on the progress bar."""
    event = progress.parse(line)
    if event is None:
        if line.strip():
            result.last_line = line.strip()
        return
    result.events.append(event)
    task.setMessage(progress.describe(event))
    share = progress.percent(event)
    if share is not None:
        task.setProgress(share)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the engine's process group (completed frames stay), then kill it if it does not stop in time."""
    _signal(process, kill=False)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        _signal(process, kill=True)


def _signal(process: subprocess.Popen, kill: bool) -> None:
    """Terminate or kill the engine and, on POSIX, every process in its group."""
    try:
        if os.name != "nt":
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        elif kill:
            process.kill()
        else:
            process.terminate()
    except (ProcessLookupError, PermissionError):
        pass  # already gone
