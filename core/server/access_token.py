"""The engine server's access token: made on first start, kept in the user's config folder, mode 0600.

Whoever can read the file can use the server, so it is created owner-only, its permissions
are repaired when they are looser, and a file owned by someone else is refused. Tokens are
compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from ..config_folder import config_dir
from ..errors import StyleCompError

TOKEN_FILE = "server-token"


def token_file() -> Path:
    """Where the server's token lives."""
    return config_dir() / TOKEN_FILE


def load_or_create_token(path: Path | None = None) -> tuple[str, bool]:
    """The token in ``path`` (default: token_file()), made if there is none; and whether its permissions were
    repaired."""
    path = path or token_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_existing(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        os.fchmod(handle.fileno(), 0o600)  # whatever the umask
        handle.write(token + "\n")
    return token, False


def _read_existing(path: Path) -> tuple[str, bool]:
    """Read a token file, after making sure only its owner (this user) can read it."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise StyleCompError("the server token must be a plain file", path)
    if info.st_uid != os.getuid():
        raise StyleCompError("the server token file belongs to another user; delete it to make a new one", path)
    repaired = stat.S_IMODE(info.st_mode) != 0o600
    if repaired:
        os.chmod(path, 0o600)
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if len(token) < 32:
        raise StyleCompError("the server token file is empty or damaged; delete it to make a new one", path)
    return token, repaired


def token_matches(given: str | None, token: str) -> bool:
    """Whether a request's token is the server's, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))
