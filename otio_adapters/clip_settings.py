"""stylecomp settings carried in OTIO metadata under the ``stylecomp`` key.

On a clip: per-shot overrides of the job's settings (``prompt``, ``negative_prompt``, ``seed``,
``model``, ``strength``), and the shot's ``handles`` (``head_handles``, ``tail_handles`` for one
side), ``output`` (a path template, like ``--output``), ``aovs``, ``notes`` and ``regions``
(per-object settings, in a job's shape). ``editorial`` is written by the ``stylecomp_jobs``
adapter, which reads a job as a timeline, to keep where each shot was first cut (``null``
for a shot that was not cut from an edit); without it, the clip's own place is recorded.
On the timeline: any job setting but ``shots`` (``prompt``, ``model``, ``seed``, ...).
Unknown keys and bad values are errors that name the clip and the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import opentimelineio as otio
from pydantic import Field, ValidationError

from stylecomp.errors import TimelineError
from stylecomp.io.aovs import ROLES
from stylecomp.jobspec import Editorial, Region, ShotOverrides

from .clip_place import ClipPlace

KEY = "stylecomp"


class ClipSettings(ShotOverrides):
    """What a clip's ``stylecomp`` metadata may hold: the shot's overrides plus shot fields."""

    handles: int | None = Field(None, ge=0, description="Replaces --handles for this clip")
    head_handles: int | None = Field(None, ge=0, description="Replaces the handles before the cut")
    tail_handles: int | None = Field(None, ge=0, description="Replaces the handles after the cut")
    output: str | None = Field(None, description="Output path template replacing --output for this clip")
    aovs: dict[Literal[ROLES], list[str]] | None = None  # type: ignore[valid-type]  # ROLES is a tuple of literals
    notes: list[str] | None = None
    regions: list[Region] | None = None
    editorial: Editorial | None = None

    def overrides(self) -> ShotOverrides:
        """Just the overrides of the job's settings."""
        return ShotOverrides(**self.model_dump(include=set(ShotOverrides.model_fields)))


def plain(value: Any) -> Any:
    """OTIO metadata (AnyDictionary, AnyVector) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"metadata {KEY}.{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
    )


def clip_settings(place: ClipPlace) -> ClipSettings:
    """The clip's ``stylecomp`` metadata, validated; empty settings when it has none."""
    data = plain(place.clip.metadata.get(KEY, {}))
    if not isinstance(data, dict):
        raise TimelineError(f"{place.describe()}: metadata {KEY} must be a dictionary, not {type(data).__name__}")
    try:
        return ClipSettings.model_validate(data)
    except ValidationError as exc:
        raise TimelineError(f"{place.describe()}: {_problems(exc)}") from None


def timeline_settings(timeline: otio.schema.Timeline) -> dict[str, Any]:
    """The timeline's ``stylecomp`` metadata: job settings other than ``shots``."""
    data = plain(timeline.metadata.get(KEY, {}))
    if not isinstance(data, dict) or "shots" in data:
        raise TimelineError(f"timeline metadata {KEY} must be a dictionary of job settings other than shots")
    return data
