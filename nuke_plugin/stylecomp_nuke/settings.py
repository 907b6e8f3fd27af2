"""The plugin's settings file ($STYLECOMP_SETTINGS, else ~/.nuke/stylecomp.json), e.g. the engine's location."""

from __future__ import annotations

import json
import os

from . import atomic
from .errors import StyleCompNukeError


def settings_file() -> str:
    """Where the settings live."""
    return os.environ.get("STYLECOMP_SETTINGS") or os.path.join(os.path.expanduser("~"), ".nuke", "stylecomp.json")


def load() -> dict:
    """The saved settings; empty when there is no settings file yet."""
    path = settings_file()
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StyleCompNukeError(f"Cannot read the StyleComp settings file {path}: {exc}") from None
    if not isinstance(values, dict):
        raise StyleCompNukeError(f"The StyleComp settings file {path} must hold a JSON object.")
    return values


def save(values: dict) -> None:
    """Write the settings file."""
    atomic.write_text(settings_file(), json.dumps(values, indent=2) + "\n")
