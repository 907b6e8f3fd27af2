"""Rendering jobs on a Ray cluster: one actor per GPU holding loaded pipelines, frame chunks handed out.

``RayExecutor`` (``render_with_ray`` for one call) starts a local Ray cluster (or joins one at
``address``), makes one actor per
GPU (``num_gpus=1``) or, on a cluster without GPUs, one CPU actor per CPU (``num_cpus=1``,
``num_gpus=0``): resources are always declared, and a GPU is never asked of a cluster that has
none (such a request would wait forever). Each actor keeps a ``PipelinePool``, so a model loads
once per actor and serves every chunk and job after it. Chunks come from ``chunks.plan_shots``
and go to actors as they free up, longest work first; each runs ``render_job`` on its frames.

Sequential shots: a shot whose frames each need the previous output is one chunk, so it
renders in order on one actor. The trade-off: such a shot gets one GPU however many there are
(parallelism comes from the other shots, and starting it first bounds the wall time); in
return no frame waits on another actor and the stage keeps its state in memory.

Progress: the actors' events reach the caller's ``report`` as ``render_job`` would send them
(one ``start`` per shot, ``frame`` events counted over the shot, one ``end``); a frame reported
twice (a retried chunk, a sequential chunk walking its earlier frames) counts once. A frame
that fails is reported and the others go on; a chunk that fails as a whole (a bad model, a
worker that died or made no progress for ``stall_timeout`` seconds) fails its unreported
frames. Outputs are written atomically and recognised by their cache key, so a retried chunk
redoes only what is missing. Every wait has a timeout: nothing hangs on an unschedulable actor.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..diffusion.pool import PipelinePool
from ..errors import StyleCompError
from ..io.sequence import FrameSequence
from ..jobspec import Job
from ..render.cache import RenderCache
from ..render.loop import Event, RenderSummary, Report, render_job
from ..render.output_guard import guard_outputs
from .chunks import DEFAULT_CHUNK_SIZE, Chunk, ShotPlan, plan_shots

POLL_SECONDS = 0.2


class RayWorker:
    """A Ray actor's body: a pipeline pool kept across chunks, one chunk at a time, cancellable."""

    def __init__(self, device: str, dtype: torch.dtype | None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from local paths only
        self.pool = PipelinePool(device, dtype)
        self.cancel_event = threading.Event()

    def ready(self) -> str:
        """The device the actor renders on (answering at all means it was placed and started)."""
        return self.pool.device

    def render(
        self, job: Job, chunk: Chunk, cache: RenderCache | None, events: Any, tag: int, overwrite: bool = False
    ) -> RenderSummary:
        """Render one chunk; each event goes to the driver's ``events`` queue as ``(tag, event)``."""
        self.cancel_event = threading.Event()
        return render_job(
            job,
            shots=[chunk.shot],
            frames=(chunk.first, chunk.last),
            pool=self.pool,
            cache=cache,
            report=lambda event: events.put((tag, event)),
            cancel=self.cancel_event,
            overwrite=overwrite,
        )

    def cancel(self) -> None:
        """Stop the running chunk between denoising steps (its finished frames stay)."""
        self.cancel_event.set()


@dataclass
class _ShotProgress:
    """What the driver has reported of one shot: its plan, when it started, the frames seen."""

    plan: ShotPlan
    started: float | None = None
    seen: set[int] = field(default_factory=set)


@dataclass
class _Running:
    """A chunk on an actor: the job it belongs to and when it last showed progress."""

    actor: Any
    job_index: int
    chunk: Chunk
    last_progress: float = field(default_factory=time.monotonic)


class RayExecutor:
    """A Ray session whose actors (and their loaded pipelines) serve every job rendered through it.

    Ray is started (or joined at ``address``) and the actors made at the first render, after the
    job has been checked; ``close`` (or leaving the ``with`` block) stops them, and Ray if this
    executor started it. ``run`` is the batch executor's interface (one ``BatchJob`` at a time).
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        dtype: torch.dtype | None = None,
        cache: RenderCache | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        startup_timeout: float = 300.0,
        stall_timeout: float = 1800.0,
    ) -> None:
        self.address, self.workers, self.dtype, self.cache = address, workers, dtype, cache
        self.chunk_size, self.startup_timeout, self.stall_timeout = chunk_size, startup_timeout, stall_timeout
        self.ray: Any = None
        self.owned = False  # whether this executor started Ray (and so shuts it down)
        self.actors: list[Any] = []
        self.events: Any = None  # the queue the actors put their events in (a Ray actor itself)
        self.tags = 0  # chunks submitted so far: each chunk's events carry its number

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def render(
        self,
        jobs: Sequence[Job],
        *,
        shots: Sequence[str] | None = None,
        frames: tuple[int, int] | None = None,
        report: Report = lambda event: None,
        cancel: threading.Event | None = None,
        overwrite: bool = False,
    ) -> RenderSummary:
        """Render ``jobs`` (``shots``/``frames`` apply to each) as ``render_job`` would, with one ``end`` event;
        outputs are checked first (``output_guard``), before any actor starts."""
        for job in jobs:
            guard_outputs(job, shots, frames, overwrite=overwrite)
        plans = [plan_shots(job, shots=shots, frames=frames, chunk_size=self.chunk_size) for job in jobs]
        started = time.monotonic()
        self._start()
        driver = _Driver(self, jobs, plans, report, cancel or threading.Event(), overwrite)
        summary = driver.run()
        self.actors = [actor for actor in self.actors if all(actor is not lost for lost in driver.lost)]
        summary.seconds = time.monotonic() - started
        report(summary.end_event())
        return summary

    def run(self, item: Any, report: Report, cancel: threading.Event) -> RenderSummary:
        """One batch job (anything with ``job``, ``shots`` and ``frames``), as the batch's executors do."""
        return self.render(
            [item.job],
            shots=item.shots,
            frames=item.frames,
            report=report,
            cancel=cancel,
            overwrite=getattr(item, "overwrite", False),
        )

    def close(self) -> None:
        """Stop the actors, and Ray if this executor started it."""
        if self.ray is None:
            return
        for actor in self.actors:
            self.ray.kill(actor)
        if self.events is not None:
            self.events.shutdown(force=True)
        if self.owned:
            self.ray.shutdown()
        self.ray, self.actors, self.events = None, [], None

    def _start(self) -> None:
        """Connect to Ray and start the event queue and the actors, unless that is done."""
        if self.ray is None:
            self.ray, self.owned = _connect(self.address)
            from ray.util.queue import Queue

            self.events = Queue(actor_options={"num_cpus": 0})
        if not self.actors:
            self.actors = self._start_actors()

    def _start_actors(self) -> list[Any]:
        """One actor per GPU, else one per CPU (at most ``workers``), each started within ``startup_timeout``."""
        ray = self.ray
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        if gpus:
            count, device, options = gpus, "cuda", {"num_gpus": 1, "num_cpus": 1}
        else:
            count, device, options = max(cpus, 1), "cpu", {"num_gpus": 0, "num_cpus": 1}
        count = min(count, self.workers or count)
        remote = ray.remote(RayWorker).options(max_concurrency=2, max_restarts=1, max_task_retries=1, **options)
        actors = [remote.remote(device, self.dtype) for _ in range(count)]
        try:
            ray.get([actor.ready.remote() for actor in actors], timeout=self.startup_timeout)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            for actor in actors:
                ray.kill(actor)
            problem = (
                f"within {self.startup_timeout:g} s"
                if isinstance(exc, ray.exceptions.GetTimeoutError)
                else (f"({_last_line(exc)})")
            )
            raise StyleCompError(
                f"Ray could not start {count} worker(s) with {options} {problem}; the cluster has "
                f"{resources.get('CPU', 0):g} CPU, {gpus} GPU"
            ) from None
        return actors


def render_with_ray(
    jobs: Sequence[Job],
    *,
    address: str | None = None,
    shots: Sequence[str] | None = None,
    frames: tuple[int, int] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int | None = None,
    dtype: torch.dtype | None = None,
    cache: RenderCache | None = None,
    report: Report = lambda event: None,
    cancel: threading.Event | None = None,
    startup_timeout: float = 300.0,
    stall_timeout: float = 1800.0,
) -> RenderSummary:
    """Render ``jobs`` on Ray (a local cluster, or the one at ``address``); ``shots``/``frames`` apply to each job.

    ``workers`` caps the number of actors; ``stall_timeout`` is how long a chunk may go without a
    frame finishing (model loading included) before its actor is stopped. Returns the totals, as
    ``render_job`` does; raises StyleCompError when a job is unusable or no worker can start.
    """
    with RayExecutor(
        address=address,
        workers=workers,
        dtype=dtype,
        cache=cache,
        chunk_size=chunk_size,
        startup_timeout=startup_timeout,
        stall_timeout=stall_timeout,
    ) as executor:
        return executor.render(jobs, shots=shots, frames=frames, report=report, cancel=cancel)


def _connect(address: str | None) -> tuple[Any, bool]:
    """The ``ray`` module, initialised; True when this call started Ray (and so must shut it down)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never report usage anywhere
    if address is None:
        # A local cluster serves this machine only: every Ray process listens on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StyleCompError(f"cannot start or reach a Ray cluster: {exc}", address) from None
    return ray, True


class _Driver:
    """One render: hands chunks to the executor's actors, forwards their events, and keeps the totals."""

    def __init__(
        self,
        executor: RayExecutor,
        jobs: Sequence[Job],
        plans: list[list[ShotPlan]],
        report: Report,
        cancel: threading.Event,
        overwrite: bool,
    ) -> None:
        self.executor, self.ray, self.events = executor, executor.ray, executor.events
        self.jobs, self.report, self.cancel, self.overwrite = jobs, report, cancel, overwrite
        self.shots = {
            (index, plan.shot.name): _ShotProgress(plan) for index, job_plans in enumerate(plans) for plan in job_plans
        }
        # Longest chunks first (sequential shots are one long chunk): the wall time is bounded sooner.
        self.pending = sorted(
            ((index, chunk) for index, job_plans in enumerate(plans) for plan in job_plans for chunk in plan.chunks),
            key=lambda item: -item[1].count,
        )
        self.summary = RenderSummary()
        self.chunks: dict[int, _Running] = {}  # every chunk this render submitted, by its events' tag
        self.running: dict[Any, _Running] = {}  # by result reference
        self.lost: list[Any] = []  # actors that died or were stopped

    def run(self) -> RenderSummary:
        """Render every chunk; ``lost`` then lists the actors that died or were stopped on the way."""
        idle, cancelling = list(self.executor.actors), False
        while self.pending or self.running:
            if self.cancel.is_set() and not cancelling:
                cancelling = self.summary.cancelled = True
                self.pending.clear()
                for running in self.running.values():
                    running.actor.cancel.remote()
            while idle and self.pending:
                self._submit(idle.pop(), *self.pending.pop(0))
            ready = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_SECONDS)[0] if self.running else []
            self._forward()
            for ref in ready:
                running = self.running.pop(ref)
                if self._finish(ref, running):
                    idle.append(running.actor)
            self._stop_stalled()
            if not idle and not self.running and self.pending:
                for job_index, chunk in self.pending:
                    self._fail_chunk(job_index, chunk, "no Ray worker is left to render it")
                self.pending.clear()
        return self.summary

    def _submit(self, actor: Any, job_index: int, chunk: Chunk) -> None:
        tag, self.executor.tags = self.executor.tags, self.executor.tags + 1
        self.chunks[tag] = running = _Running(actor, job_index, chunk)
        self.running[
            actor.render.remote(self.jobs[job_index], chunk, self.executor.cache, self.events, tag, self.overwrite)
        ] = running

    def _forward(self) -> None:
        """Pass the queued events on as render_job's, counted over each shot."""
        count = self.events.qsize()
        for tag, event in self.events.get_nowait_batch(count) if count else []:
            running = self.chunks.get(tag)
            if running is None:
                continue  # late news of an earlier render's stopped chunk
            running.last_progress = time.monotonic()
            if event["event"] == "frame":
                self._frame(running.job_index, running.chunk.shot, event)

    def _frame(self, job_index: int, shot: str, event: Event) -> None:
        progress = self._started(job_index, shot)
        if event["frame"] in progress.seen:
            return
        progress.seen.add(event["frame"])
        done, total = len(progress.seen), len(progress.plan.frames)
        per_frame = (time.monotonic() - progress.started) / done  # type: ignore[operator]  # started is set by the first event
        self.report(event | {"done": done, "total": total, "eta": round(per_frame * (total - done), 1)})
        if event["status"] == "failed":
            self.summary.failed.append((shot, event["frame"], event["error"]))
        elif event["status"] == "cached":
            self.summary.cached += 1
        else:
            self.summary.rendered += 1

    def _started(self, job_index: int, shot: str) -> _ShotProgress:
        """The shot's progress, reporting its ``start`` event the first time it is asked for."""
        progress = self.shots[(job_index, shot)]
        if progress.started is None:
            progress.started = time.monotonic()
            frames = progress.plan.frames
            self.report(
                {
                    "event": "start",
                    "shot": shot,
                    "frames": [frames[0], frames[-1]],
                    "total": len(frames),
                    "stage": progress.plan.stage,
                }
            )
        return progress

    def _finish(self, ref: Any, running: _Running) -> bool:
        """Take a finished chunk's result; False when its actor is gone."""
        ray = self.ray
        try:
            result: RenderSummary = ray.get(ref, timeout=POLL_SECONDS)
        except ray.exceptions.RayTaskError as exc:
            reason = str(exc.cause) if isinstance(exc.cause, StyleCompError) else _last_line(exc)
            self._fail_chunk(running.job_index, running.chunk, reason)
            return True
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            self._fail_chunk(running.job_index, running.chunk, f"the Ray worker stopped: {type(exc).__name__}")
            ray.kill(running.actor)
            self.lost.append(running.actor)
            return False
        self.summary.cancelled |= result.cancelled
        return True

    def _fail_chunk(self, job_index: int, chunk: Chunk, reason: str) -> None:
        """Report every frame of ``chunk`` not reported yet as failed with ``reason``."""
        progress = self.shots[(job_index, chunk.shot)]
        outputs = FrameSequence(self.jobs[job_index].resolve(progress.plan.shot.output))
        for frame in progress.plan.frames:
            if chunk.first <= frame <= chunk.last and frame not in progress.seen:
                self._frame(
                    job_index,
                    chunk.shot,
                    {
                        "event": "frame",
                        "shot": chunk.shot,
                        "frame": frame,
                        "output": outputs.path(frame),
                        "status": "failed",
                        "error": reason,
                        "seconds": 0.0,
                    },
                )

    def _stop_stalled(self) -> None:
        """Kill the actors whose chunk made no progress for ``stall_timeout`` s; their chunks fail."""
        now = time.monotonic()
        for ref, running in list(self.running.items()):
            if now - running.last_progress > self.executor.stall_timeout:
                del self.running[ref]
                self.ray.kill(running.actor, no_restart=True)
                self.lost.append(running.actor)
                self._fail_chunk(
                    running.job_index,
                    running.chunk,
                    f"no progress for {self.executor.stall_timeout:g} s: the Ray worker was stopped",
                )


def _last_line(exc: BaseException) -> str:
    """A Ray error's last line: the exception that ended the remote call (its traceback comes first)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
