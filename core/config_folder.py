"""Where stylecomp keeps the user's settings and secrets (the server's token and config, hosted services' keys).

Its own module, like ``cache_folder``, so that the server and the hosted generators find it without importing
each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    """stylecomp's config folder: $STYLECOMP_CONFIG_DIR, else $XDG_CONFIG_HOME/stylecomp, else ~/.config/stylecomp."""
    if override := os.environ.get("STYLECOMP_CONFIG_DIR"):
        return Path(override)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "stylecomp"
