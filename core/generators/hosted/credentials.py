"""API keys for the hosted services: from environment variables, else from an owner-only keys file.

The file is ``hosted-keys.json`` in stylecomp's config folder (beside the server token), a JSON object
keyed by the same names as the environment variables. Like the server token it must be a plain file
of this user's, and mode 0600: a looser file is refused rather than repaired, since whoever could read
it may already have the keys. Keys are held in ``Secret`` objects whose ``str`` and ``repr`` are masked,
so a key that reaches a log line, an f-string or an exception by accident shows as ``***``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ...config_folder import config_dir
from ...errors import ModelError

KEYS_FILE = "hosted-keys.json"
MASK = "***"


class Secret:
    """A key that does not print: ``reveal()`` gives the value, everything else shows ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one place that sends it (an auth header or a signature)."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK})"


def keys_file() -> Path:
    """Where keys are read from when their environment variable is not set."""
    return config_dir() / KEYS_FILE


def credential(name: str, service: str, path: Path | None = None) -> Secret:
    """Key ``name`` (an environment variable name) for ``service``: the variable, else the keys file's entry."""
    if value := os.environ.get(name, "").strip():
        return Secret(value)
    path = path or keys_file()
    keys = _read_keys(path) if path.exists() else {}
    entry = keys.get(name)
    if not isinstance(entry, str) or not entry.strip():
        raise ModelError(
            f"{service} needs {name}: set that environment variable, or put it in {path} (a JSON object, mode 0600)"
        )
    return Secret(entry.strip())


def _read_keys(path: Path) -> dict[str, object]:
    """The keys file, after making sure it is this user's plain file and nobody else can read it."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise ModelError("the hosted keys file must be a plain file", path)
    if info.st_uid != os.getuid():
        raise ModelError("the hosted keys file belongs to another user", path)
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ModelError(
            f"the hosted keys file is mode {stat.S_IMODE(info.st_mode):04o}; others may have read "
            "the keys: rotate them, then chmod 600 the file",
            path,
        )
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        # The decoder's message quotes no text of the file, but its class and position only: no key leaks.
        raise ModelError(f"the hosted keys file is not valid JSON ({type(exc).__name__})", path) from None
    if not isinstance(keys, dict):
        raise ModelError("the hosted keys file must hold a JSON object of NAME: key", path)
    return keys
