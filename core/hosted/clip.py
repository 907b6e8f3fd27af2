"""Downloaded clips: checked before they are trusted, then decoded and retimed to the shot.

A clip is trusted only when it is the size the server said, FFmpeg (through PyAV) opens it, its
video stream decodes, and it has as many frames as its container declares. Hosted services make
fixed lengths at their own frame rate (5 s at 24 fps, say); ``retime`` takes, for each frame of the
shot's rate, the clip frame showing at that moment, so the clip lines up with the edit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np

from ..errors import HostedError


@dataclass(frozen=True)
class Clip:
    """A decoded clip: (H, W, 3) [0, 1] frames, each frame's start time in seconds, and the stream's rate."""

    frames: list[np.ndarray]
    times: list[float]
    fps: float

    @property
    def seconds(self) -> float:
        """How long the clip plays."""
        return self.times[-1] + 1.0 / self.fps if self.times else 0.0


def read_clip(path: str | os.PathLike[str], service: str) -> Clip:
    """Decode a downloaded clip, refusing one FFmpeg cannot read or whose frame count is not what it declares."""
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise HostedError(f"{service}: the downloaded file has no video stream", path)
            stream = container.streams.video[0]
            declared = stream.frames
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            frames, times = [], []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0)
                times.append(float(frame.time) if frame.time is not None else len(times) / rate)
    except av.FFmpegError as exc:
        raise HostedError(f"{service}: the downloaded clip is not a readable video ({exc.strerror or exc})",
                          path) from None
    if not frames or rate <= 0:
        raise HostedError(f"{service}: the downloaded clip has no frames", path)
    if declared and len(frames) != declared:
        raise HostedError(f"{service}: the downloaded clip decodes to {len(frames)} frames, its container "
                          f"declares {declared}", path)
    start = times[0]
    return Clip(frames, [time - start for time in times], rate)


def retime(clip: Clip, frames: int, fps: float) -> list[np.ndarray]:
    """``frames`` frames at ``fps``: for each, the clip frame on screen at that moment (the clip must last)."""
    needed = frames / fps
    if needed > clip.seconds + 1e-6:
        raise HostedError(f"the clip lasts {clip.seconds:.3f} s; {frames} frames at {fps:g} fps need {needed:.3f} s")
    times = np.asarray(clip.times)
    picks = np.searchsorted(times, np.arange(frames) / fps + 1e-9, side="right") - 1
    return [clip.frames[int(index)] for index in np.clip(picks, 0, len(clip.frames) - 1)]
