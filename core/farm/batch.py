"""Batch rendering: many jobs one after another, with per-shot and overall progress.

What renders a job is a small pluggable piece, an ``Executor``: ``LocalExecutor`` runs
``render_job`` in this process with one pipeline pool (jobs sharing a model load it once); a
Ray or farm executor implements the same ``run``. ``run_batch`` walks the jobs in order, turns
render_job's events into per-shot and overall counts with an ETA (``BatchProgress``), keeps
going past a job that is refused (its model cannot load, its plates are gone) and, with
``resume``, first clears what a killed run left behind (``resume.prepare_resume``).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..diffusion.pool import PipelinePool
from ..errors import StyleCompError
from ..jobspec import Job
from ..render.cache import RenderCache
from ..render.loop import Event, RenderSummary, Report, render_job, shot_frames
from ..render.output_guard import guard_outputs
from ..render.resume import prepare_resume


@dataclass(frozen=True)
class BatchJob:
    """One job of a batch: the document, a label for reports (its file), and the shots and frames to render."""

    label: str
    job: Job
    shots: tuple[str, ...] | None = None
    frames: tuple[int, int] | None = None
    overwrite: bool = False  # replace existing files that stylecomp did not write (see output_guard)


class Executor(Protocol):
    """Renders one job, reporting render_job's events; stops between denoising steps once ``cancel`` is set."""

    def run(self, item: BatchJob, report: Report, cancel: threading.Event) -> RenderSummary: ...


class LocalExecutor:
    """Renders each job in this process with render_job, sharing one pipeline pool and one render cache."""

    def __init__(self, pool: PipelinePool, cache: RenderCache | None) -> None:
        self.pool = pool
        self.cache = cache

    def run(self, item: BatchJob, report: Report, cancel: threading.Event) -> RenderSummary:
        return render_job(
            item.job,
            shots=item.shots,
            frames=item.frames,
            pool=self.pool,
            cache=self.cache,
            report=report,
            cancel=cancel,
            overwrite=item.overwrite,
        )


@dataclass
class ShotCounts:
    """One shot's frames in a batch: how many there are and what became of them."""

    job: str
    shot: str
    total: int
    rendered: int = 0
    cached: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.rendered + self.cached + self.failed

    def as_event(self) -> Event:
        return {
            "event": "shot_end",
            "job": self.job,
            "shot": self.shot,
            "total": self.total,
            "done": self.done,
            "rendered": self.rendered,
            "cached": self.cached,
            "failed": self.failed,
        }


class BatchProgress:
    """Per-shot and overall frame counts over a batch; the ETA comes from the frames rendered so far."""

    def __init__(self, items: Sequence[BatchJob]) -> None:
        self.shots: dict[tuple[str, str], ShotCounts] = {}
        for item in items:
            for name, total in _planned(item):
                self.shots[(item.label, name)] = ShotCounts(item.label, name, total)
        self.finished: set[str] = set()  # jobs that will report nothing more
        self.render_seconds = 0.0
        self.rendered = 0

    @property
    def total(self) -> int:
        return sum(counts.total for counts in self.shots.values())

    @property
    def done(self) -> int:
        return sum(counts.done for counts in self.shots.values())

    def eta(self) -> float | None:
        """Seconds left at the rate frames have rendered so far; None before the first rendered frame."""
        if not self.rendered:
            return None
        left = sum(c.total - c.done for c in self.shots.values() if c.job not in self.finished)
        return round(self.render_seconds / self.rendered * max(left, 0), 1)

    def overall(self) -> Event:
        return {"done": self.done, "total": self.total, "eta": self.eta()}

    def translate(self, label: str, event: Event) -> list[Event]:
        """The batch's events for one of render_job's: tagged with the job, counted, a shot_end after a shot."""
        kind = event["event"]
        if kind == "end":
            return [{"job": label} | event | {"event": "job_end"}]
        counts = self.shots.setdefault((label, event["shot"]), ShotCounts(label, event["shot"], event["total"]))
        counts.total = event["total"]  # the plan could only guess frames that appeared since
        if kind != "frame":
            return [{"job": label} | event]
        setattr(counts, event["status"], getattr(counts, event["status"]) + 1)
        if event["status"] == "rendered":
            self.rendered += 1
            self.render_seconds += float(event.get("seconds", 0.0))
        out = [{"job": label} | event | {"overall": self.overall()}]
        if event["done"] == event["total"]:
            out.append(counts.as_event() | {"overall": self.overall()})
        return out

    def finish(self, label: str) -> list[Event]:
        """A job is over: shot_end events for its shots that started but did not get to their last frame."""
        self.finished.add(label)
        return [
            c.as_event() | {"overall": self.overall()}
            for c in self.shots.values()
            if c.job == label and 0 < c.done < c.total
        ]


@dataclass
class BatchSummary:
    """What a batch did: frame counts, failed frames (job, shot, frame, reason) and refused jobs (job, reason)."""

    rendered: int = 0
    cached: int = 0
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        """As for `stylecomp render`: 2 a job was refused, 1 frames failed or the run stopped, else 0."""
        return 2 if self.refused else 1 if self.failed or self.cancelled else 0


def run_batch(
    items: Sequence[BatchJob],
    executor: Executor,
    *,
    resume: bool = False,
    report: Report = lambda event: None,
    cancel: threading.Event | None = None,
) -> BatchSummary:
    """Render the jobs in order through ``executor``; ``resume`` first clears each job's leftovers of a killed run."""
    cancel = cancel or threading.Event()
    progress = BatchProgress(items)
    summary = BatchSummary()
    started = time.monotonic()
    report({"event": "batch", "jobs": [item.label for item in items], "total": progress.total})
    for item in items:
        if cancel.is_set():
            summary.cancelled = True
            break
        try:
            guard_outputs(item.job, item.shots, item.frames, overwrite=item.overwrite)  # before resume deletes
            if resume:
                kept = prepare_resume(item.job, item.shots, item.frames)
                report(
                    {
                        "event": "resume",
                        "job": item.label,
                        "complete": kept.complete,
                        "removed_temp": kept.removed_temp,
                        "removed_damaged": kept.removed_damaged,
                    }
                )
            result = executor.run(item, functools.partial(_forward, progress, item.label, report=report), cancel)
        except StyleCompError as exc:
            summary.refused.append((item.label, str(exc)))
            report({"event": "job_failed", "job": item.label, "error": str(exc)})
        else:
            summary.rendered += result.rendered
            summary.cached += result.cached
            summary.failed += [(item.label, shot, frame, reason) for shot, frame, reason in result.failed]
            summary.cancelled = summary.cancelled or result.cancelled
        for event in progress.finish(item.label):
            report(event)
    summary.seconds = time.monotonic() - started
    report(
        {
            "event": "end",
            "jobs": len(items),
            "rendered": summary.rendered,
            "cached": summary.cached,
            "failed": len(summary.failed),
            "refused": len(summary.refused),
            "cancelled": summary.cancelled,
            "seconds": round(summary.seconds, 3),
            "overall": progress.overall(),
        }
    )
    return summary


def _forward(progress: BatchProgress, label: str, event: Event, *, report: Report) -> None:
    for translated in progress.translate(label, event):
        report(translated)


def _planned(item: BatchJob) -> list[tuple[str, int]]:
    """(shot, frame count) for the job's shots before it runs; a shot whose plates cannot be listed counts 0."""
    planned = []
    for shot in item.job.shots:
        if item.shots and shot.name not in item.shots:
            continue
        try:
            planned.append((shot.name, len(shot_frames(item.job, shot, item.frames)[1])))
        except StyleCompError:
            planned.append((shot.name, 0))  # render_job reports why when the job runs
    return planned
