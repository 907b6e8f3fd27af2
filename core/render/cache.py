"""The render cache: finished frames stored under a hash of everything their pixels depend on.

A key covers the inputs' pixels, the parameters, the models' content hashes, the seed, the
device kind and dtype, and the stylecomp version (see ``StylizeStage.cache_key``). Every
output EXR carries its key in its header (``stylecomp/cache_key``), so a rerun recognises a
current output without reading pixels, and a render into another folder takes the frame from
the cache instead of running the model again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..cache_folder import cache_dir
from ..errors import StyleCompError
from ..io.atomic import atomic_target
from ..io.plates import PROVENANCE_PREFIX, read_plate

KEY_ATTRIBUTE = PROVENANCE_PREFIX + "cache_key"


def key_of(path: str | os.PathLike[str]) -> str | None:
    """The cache key in an EXR's header; None if the file is missing, unreadable or has none."""
    if not os.path.isfile(path):
        return None
    try:
        plate = read_plate(path, pixels=False)
    except StyleCompError:
        return None
    value = plate.parts[0].attributes.get(KEY_ATTRIBUTE)
    return value if isinstance(value, str) else None


class RenderCache:
    """Frames by cache key under ``root`` (default: ``<stylecomp cache>/renders``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "renders"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.exr"

    def lookup(self, key: str) -> Path | None:
        """The cached frame for ``key``, if there is one whose header says so."""
        path = self.path(key)
        return path if key_of(path) == key else None

    def store(self, key: str, rendered: str | os.PathLike[str]) -> None:
        """Keep a rendered frame (a hard link where possible, else a copy); a full disk only costs the cache."""
        try:
            _link_or_copy(rendered, self.path(key))
        except OSError:
            pass

    def restore(self, key: str, output: str | os.PathLike[str]) -> bool:
        """Put the cached frame for ``key`` at ``output`` (atomically); False when there is none."""
        cached = self.lookup(key)
        if cached is None:
            return False
        _link_or_copy(cached, output)
        return True


def _link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """``target`` becomes ``source``'s content, all at once: hard link (same file system) or copy, then rename."""
    with atomic_target(target) as temp:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
