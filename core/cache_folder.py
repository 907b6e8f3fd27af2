"""Where stylecomp keeps what it caches (rendered frames, model file hashes, compiled code).

Its own module, without torch, so that the render cache and the server can find the folder without loading
the diffusion stack.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """stylecomp's cache folder: $STYLECOMP_CACHE_DIR, else $XDG_CACHE_HOME/stylecomp, else ~/.cache/stylecomp."""
    if override := os.environ.get("STYLECOMP_CACHE_DIR"):
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stylecomp"
