"""Downloaded clips: checked before they are trusted, then decoded and retimed to the shot.

A clip is trusted only when it is the size the server said (the transport checks that), FFmpeg
(through PyAV) opens it, its video stream decodes, and it has as many frames as its container
declares. Hosted services make fixed lengths at their own frame rate (5 s at 24 fps, say);
``retime`` takes, for each frame of the shot's rate, the clip frame on screen at that moment, so the
clip lines up with the edit. Only those frames are converted to float: a 10 s 1080p clip as float32
would be gigabytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ...errors import HostedError


@dataclass(frozen=True)
class Clip:
    """A verified clip on disk: each frame's start time in seconds, the stream's rate and the frame size."""

    path: Path
    times: list[float]
    fps: float
    width: int
    height: int

    @property
    def seconds(self) -> float:
        """How long the clip plays."""
        return self.times[-1] + 1.0 / self.fps


def read_clip(path: str | os.PathLike[str], service: str) -> Clip:
    """Decode a downloaded clip once, refusing one FFmpeg cannot read or whose frame count is not what it declares."""
    times: list[float] = []
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise HostedError(f"{service}: the downloaded file has no video stream", path)
            stream = container.streams.video[0]
            declared, rate = stream.frames, float(stream.average_rate or stream.guessed_rate or 0)
            width, height = stream.codec_context.width, stream.codec_context.height
            if rate <= 0:
                raise HostedError(f"{service}: the downloaded clip declares no frame rate", path)
            for frame in container.decode(stream):
                times.append(float(frame.time) if frame.time is not None else len(times) / rate)
    except av.FFmpegError as exc:
        raise HostedError(
            f"{service}: the downloaded clip is not a readable video ({exc.strerror or exc})", path
        ) from None
    if not times:
        raise HostedError(f"{service}: the downloaded clip has no frames", path)
    if declared and len(times) != declared:
        raise HostedError(
            f"{service}: the downloaded clip decodes to {len(times)} frames, its container declares {declared}", path
        )
    return Clip(Path(path), [time - times[0] for time in times], rate, width, height)


def retime(clip: Clip, frames: int, fps: float, service: str) -> list[np.ndarray]:
    """``frames`` (H, W, 3) [0, 1] frames at ``fps``: for each, the clip frame on screen at that moment."""
    needed = frames / fps
    if needed > clip.seconds + 1e-6:
        raise HostedError(
            f"{service}: the clip lasts {clip.seconds:.3f} s; {frames} frames at {fps:g} fps need {needed:.3f} s",
            clip.path,
        )
    picks = np.searchsorted(np.asarray(clip.times), np.arange(frames) / fps + 1e-9, side="right") - 1
    picks = np.clip(picks, 0, len(clip.times) - 1)
    wanted = set(picks.tolist())
    decoded: dict[int, np.ndarray] = {}
    with av.open(os.fspath(clip.path)) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index in wanted:
                decoded[index] = frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
            if index >= picks[-1]:
                break
    return [decoded[int(index)] for index in picks]
