"""Atomic file writes: write to a temp file in the same folder, then rename over the target.

A killed job therefore leaves either the previous file or the complete new one, never a
half-written frame. The temp name keeps the target's extension so that writers which pick a
format from the extension (OpenImageIO) still work.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temp path beside ``path``; on success rename it to ``path``, else delete it."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(name)
    temp = os.path.join(folder, f".{stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{ext}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
