"""What a timeline command did: the shots it handled, what it left out and why, and warnings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Report:
    """Shots handled, counts of items skipped by kind (singular nouns), and warnings to show."""

    shots: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def skipped_text(self) -> str:
        """``2 gaps, 1 transition``, or ``nothing`` when nothing was skipped."""
        parts = [f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in self.skipped.items() if n]
        return ", ".join(parts) or "nothing"
