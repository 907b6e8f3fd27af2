"""The engine server's queue: submitted jobs rendered one at a time, in order, by one worker thread.

The worker hands each job to a batch executor (``batch.LocalExecutor`` with the server's one
pipeline pool, so pipelines stay loaded between jobs) and records what happened: status
(queued, running, done, failed, cancelled), frame counts, the latest events and the errors.
Readers get snapshots taken under the queue's lock, so status requests never wait on a frame.
"""

from __future__ import annotations

import collections
import secrets
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..errors import StyleCompError
from ..farm.batch import BatchJob, BatchProgress, Executor
from ..render.loop import Event
from ..render.resume import prepare_resume
from .store import QueueStore, StoredJob

FINISHED = ("done", "failed", "cancelled")
EVENTS_KEPT = 1000  # per job; clients page through them with ``since``
RECENT_EVENTS = 20  # events in a status without ``since``
JOBS_KEPT = 200  # finished jobs remembered; older ones are forgotten first


@dataclass
class QueuedJob:
    """One submitted job and what has become of it."""

    id: str
    item: BatchJob
    progress: BatchProgress
    status: str = "queued"
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    events: collections.deque[Event] = field(default_factory=lambda: collections.deque(maxlen=EVENTS_KEPT))
    sequence: int = 0  # number of the latest event
    errors: list[str] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    resume: bool = False  # it was running when the server died: resume it (whole frames kept, leftovers cleared)
    interrupted: bool = False  # the server is stopping: the store keeps it unfinished, so the next start resumes it

    def snapshot(self, since: int | None = None) -> dict[str, Any]:
        """The job as JSON values; events after number ``since``, else the latest few."""
        progress = self.progress
        counts = {
            "done": progress.done,
            "total": progress.total,
            "eta": progress.eta(),
            **{
                kind: sum(getattr(c, kind) for c in progress.shots.values())
                for kind in ("rendered", "cached", "failed")
            },
        }
        events = (
            [e for e in self.events if e["seq"] > since] if since is not None else list(self.events)[-RECENT_EVENTS:]
        )
        return {
            "id": self.id,
            "label": self.item.label,
            "status": self.status,
            "cancel_requested": self.cancel.is_set() and self.status not in FINISHED,
            "submitted": self.submitted,
            "started": self.started,
            "finished": self.finished,
            "shots": list(self.item.shots or [shot.name for shot in self.item.job.shots]),
            "frames": list(self.item.frames) if self.item.frames else None,
            "progress": counts,
            "events": events,
            "last_event": self.sequence,
            "errors": list(self.errors),
        }


class RenderQueue:
    """Jobs rendered in submission order by one worker thread through ``executor``."""

    def __init__(self, executor: Executor, store: QueueStore | None = None) -> None:
        self.executor = executor
        self.store = store
        self._jobs: dict[str, QueuedJob] = {}
        self._waiting: collections.deque[QueuedJob] = collections.deque()
        self._lock = threading.Condition()
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="stylecomp render queue", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def submit(self, item: BatchJob, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a job (kept in the store, as ``body``, before this returns); its snapshot (with its id)."""
        progress = BatchProgress([item])  # lists the plates: outside the lock
        with self._lock:
            if self._stopping:
                raise StyleCompError("the server is shutting down")
            queued = QueuedJob(secrets.token_hex(6), item, progress)
            if self.store is not None:
                self.store.add(queued.id, body or {}, queued.submitted)
            self._jobs[queued.id] = queued
            self._waiting.append(queued)
            self._forget_old()
            self._lock.notify()
            return queued.snapshot()

    def restore(self, stored: StoredJob, item: BatchJob) -> None:
        """Queue a job the store kept from before a restart (call before ``start``); a running one resumes."""
        progress = BatchProgress([item])
        with self._lock:
            queued = QueuedJob(stored.id, item, progress, submitted=stored.submitted, resume=stored.status == "running")
            self._jobs[queued.id] = queued
            self._waiting.append(queued)

    def status(self, job_id: str, since: int | None = None) -> dict[str, Any] | None:
        """A job's snapshot; None for an unknown id."""
        with self._lock:
            queued = self._jobs.get(job_id)
            return queued.snapshot(since) if queued else None

    def jobs(self) -> list[dict[str, Any]]:
        """Every remembered job's snapshot without events, oldest first."""
        with self._lock:
            return [queued.snapshot() | {"events": []} for queued in self._jobs.values()]

    def counts(self) -> dict[str, Any]:
        """How many jobs wait, and which one runs."""
        with self._lock:
            running = next((q.id for q in self._jobs.values() if q.status == "running"), None)
            return {"queued": len(self._waiting), "running": running, "jobs": len(self._jobs)}

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a job: a queued one at once, a running one mid-step (within 2 s). None for an unknown id."""
        with self._lock:
            queued = self._jobs.get(job_id)
            if queued is None:
                return None
            if queued.status in FINISHED:
                raise StyleCompError(f"job {job_id} is already {queued.status}")
            queued.cancel.set()
            queued.interrupted = False  # the user's cancel wins over a shutdown's
            if queued.status == "queued":
                self._waiting.remove(queued)
                self._finish(queued, "cancelled")
            return queued.snapshot()

    def stop(self, timeout: float | None = None) -> None:
        """Stop for a shutdown: the running job ends mid-step (finished frames stay), then wait for the worker.

        Accepted work survives a graceful stop as it survives a crash: queued jobs stay queued in the store and
        the running one stays running there, so the next start queues them again and resumes it.
        """
        with self._lock:
            self._stopping = True
            for queued in self._jobs.values():
                if queued.status == "running" and not queued.cancel.is_set():
                    queued.interrupted = True
                    queued.cancel.set()
            self._lock.notify()
        if self._worker.is_alive():
            self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                queued = self._waiting.popleft()
                queued.status, queued.started = "running", time.time()
                self._save(queued)
            self._run(queued)

    def _run(self, queued: QueuedJob) -> None:
        try:
            if queued.resume:
                prepare_resume(queued.item.job, queued.item.shots, queued.item.frames)
            summary = self.executor.run(queued.item, lambda event: self._record(queued, event), queued.cancel)
        except StyleCompError as exc:
            errors, status = [str(exc)], "failed"
        except Exception as exc:  # noqa: BLE001 - a bug must not take the worker down with it
            traceback.print_exc(file=sys.stderr)
            errors, status = [f"internal error: {exc!r}"], "failed"
        else:
            errors = [f"{shot} {frame}: {reason}" for shot, frame, reason in summary.failed]
            status = "cancelled" if summary.cancelled else "failed" if summary.failed else "done"
        with self._lock:
            queued.errors += errors
            if queued.interrupted and status == "cancelled":
                queued.status = "interrupted"  # not saved: the store keeps it running, to resume at the next start
                self._append(
                    queued, [{"event": "interrupted", "reason": "the server stopped; resumes at its next start"}]
                )
                return
            self._finish(queued, status)

    def _record(self, queued: QueuedJob, event: Event) -> None:
        """Keep one of render_job's events, as the batch's events (counted, tagged with the job)."""
        with self._lock:
            self._append(queued, queued.progress.translate(queued.item.label, event))

    @staticmethod
    def _append(queued: QueuedJob, events: list[Event]) -> None:
        """Number and keep events (the lock is held)."""
        for event in events:
            queued.sequence += 1
            queued.events.append(event | {"seq": queued.sequence})

    def _finish(self, queued: QueuedJob, status: str) -> None:
        """Mark a job finished, with shot_end events for its unfinished shots and a last ``finished`` event."""
        queued.status, queued.finished = status, time.time()
        closing = queued.progress.finish(queued.item.label)
        closing.append({"event": "finished", "status": status, "errors": list(queued.errors)})
        self._append(queued, closing)
        self._save(queued)

    def _save(self, queued: QueuedJob) -> None:
        """Keep the job's status in the store (the lock is held)."""
        if self.store is not None:
            self.store.update(queued.id, queued.status, queued.started, queued.finished, queued.errors)

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond JOBS_KEPT (the lock is held)."""
        finished = [q.id for q in self._jobs.values() if q.status in FINISHED]
        for job_id in finished[: max(0, len(finished) - JOBS_KEPT)]:
            del self._jobs[job_id]
