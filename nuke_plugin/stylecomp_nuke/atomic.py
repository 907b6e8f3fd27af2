"""Files written whole or not at all: a temp file in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating the folder if needed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".stylecomp-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
