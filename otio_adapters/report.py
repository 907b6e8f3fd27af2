"""What a timeline command did, shot by shot: frames, handles and why each was clamped, skipped or
warned, as text for a terminal and as JSON (``--json``) for pipeline tools."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ShotReport:
    """One shot: its clip, cut frames, handles before and after, what happened to it and why."""

    name: str
    clip: str  # the clip as messages name it: ``clip 'x' (track 'V', item 3)``
    frames: tuple[int, int] | None = None  # first and last cut frame (plate frame numbers)
    handles: tuple[int, int] = (0, 0)  # frames before and after the cut
    status: str = "made"  # jobs: made; conform: conformed, unrendered, no animatic, no ideation
    notes: list[str] = field(default_factory=list)  # each clamp, raise, speed effect or problem, with its reason
    subject: str = ""  # what its warnings start with; the clip when empty


@dataclass
class Report:
    """Shots handled, items skipped (counted by kind, singular nouns, and each named), and warnings."""

    shots: list[ShotReport] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_items: list[str] = field(default_factory=list)  # ``gap (track 'V', item 2)``, one per skipped item
    warnings: list[str] = field(default_factory=list)  # every warning line, the shots' notes among them

    def skip(self, kind: str, where: str) -> None:
        """Count one skipped item of ``kind`` and name it."""
        self.skipped[kind] += 1
        self.skipped_items.append(f"{kind} ({where})")

    def note(self, shot: ShotReport, text: str) -> None:
        """A warning about ``shot``: in its notes and among the warnings, naming its clip."""
        shot.notes.append(text)
        self.warnings.append(f"{shot.subject or shot.clip}: {text}")

    def done(self, status: str) -> list[ShotReport]:
        """The shots whose status is ``status``."""
        return [shot for shot in self.shots if shot.status == status]

    def skipped_text(self) -> str:
        """``2 gaps, 1 transition``, or ``nothing`` when nothing was skipped."""
        parts = [f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in self.skipped.items() if n]
        return ", ".join(parts) or "nothing"

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON data: ``shots`` (one object each), ``skipped`` and ``warnings``."""
        return {
            "shots": [{k: v for k, v in asdict(shot).items() if k != "subject"} for shot in self.shots],
            "skipped": {"counts": dict(self.skipped), "items": self.skipped_items},
            "warnings": self.warnings,
        }

    def shot_lines(self) -> list[str]:
        """One line per shot for the terminal: name, status, frames and handles, then its notes indented."""
        lines = []
        for shot in self.shots:
            frames = f"{shot.frames[0]}-{shot.frames[1]}" if shot.frames else "all frames"
            lines.append(f"  {shot.name}: {shot.status}, frames {frames}, handles {shot.handles[0]}+{shot.handles[1]}")
            lines.extend(f"      {note}" for note in shot.notes)
        return lines
