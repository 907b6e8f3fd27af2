"""The candidates manifest the engine writes (``stylecomp candidates``): which variants there are."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import StyleCompNukeError


class ManifestError(StyleCompNukeError):
    """A manifest that cannot be read or lacks a field."""


@dataclass(frozen=True)
class Candidate:
    """One variant of a frame; paths are absolute."""

    index: int
    seed: int
    strength: float | None
    prompt: str | None
    exr: str
    thumbnail: str


@dataclass(frozen=True)
class Manifest:
    """The variants of one frame of one shot."""

    path: str
    shot: str
    frame: int
    job: str
    contact_sheet: str | None
    candidates: tuple


def load(path: str) -> Manifest:
    """Read a manifest; its relative paths are relative to its folder."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        folder = os.path.dirname(os.path.abspath(path))
        candidates = tuple(
            Candidate(
                index=int(entry["index"]),
                seed=int(entry["seed"]),
                strength=None if entry.get("strength") is None else float(entry["strength"]),
                prompt=entry.get("prompt"),
                exr=os.path.join(folder, entry["exr"]),
                thumbnail=os.path.join(folder, entry["thumbnail"]),
            )
            for entry in data["candidates"]
        )
        sheet = data.get("contact_sheet")
        return Manifest(
            path=os.path.abspath(path),
            shot=str(data["shot"]),
            frame=int(data["frame"]),
            job=str(data.get("job", "")),
            contact_sheet=os.path.join(folder, sheet) if sheet else None,
            candidates=candidates,
        )
    except (OSError, ValueError) as exc:
        raise ManifestError(f"Cannot read the candidates manifest {path}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ManifestError(f"The candidates manifest {path} has a missing or bad field: {exc}") from None
