"""The one exception type users see: a problem with their input, named by file."""

from __future__ import annotations

import os


class StyleCompError(Exception):
    """A user-facing error: the CLI prints it as ``error: <where>: <reason>`` and exits 2."""

    def __init__(self, reason: str, where: str | os.PathLike[str] | None = None) -> None:
        self.reason = " ".join(str(reason).split())  # always one line
        self.where = os.fspath(where) if where is not None else None
        super().__init__(f"{self.where}: {self.reason}" if self.where else self.reason)


class Cancelled(StyleCompError):
    """The host asked a stage or generator to stop; whatever the frame had done is thrown away."""

    def __init__(self, where: str | os.PathLike[str] | None = None) -> None:
        super().__init__("cancelled", where)


class PlateError(StyleCompError):
    """An EXR plate or frame sequence that cannot be read or written."""


class ColorError(StyleCompError):
    """An OpenColorIO config, colour space or view that cannot be used."""


class JobError(StyleCompError):
    """A job document that does not validate; ``problems`` lists each bad field."""

    def __init__(
        self, reason: str, where: str | os.PathLike[str] | None = None, problems: list[str] | None = None
    ) -> None:
        super().__init__(reason, where)
        self.problems = [" ".join(str(problem).split()) for problem in problems] if problems else [self.reason]


class TimelineError(StyleCompError):
    """An editorial timeline (OTIO, EDL, ...) that cannot be read, turned into a job, or conformed."""


class ModelError(StyleCompError):
    """A diffusion model, ControlNet or LoRA that cannot be found, trusted or loaded."""


class HostedError(StyleCompError):
    """A hosted video service (Sora, Veo, Kling, Runway, Luma) that refused a job, failed it or sent a bad clip."""
