"""The engine server's queue on disk: accepted jobs survive a crash (SQLite, stdlib ``sqlite3``, WAL).

Every accepted submission is written (its request body, as sent) before the client gets its
201, and each change of status after it. After kill -9 and a restart, ``unfinished`` gives the
jobs that were queued or running, in submission order: the server validates each again,
queues it, and resumes the one that was running through the batch resume path
(``resume.prepare_resume``: a killed writer's temp files and unreadable outputs are removed,
whole frames are kept). WAL with ``synchronous=NORMAL`` is durable against a killed process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import StyleCompError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    errors TEXT NOT NULL DEFAULT '[]'
)
"""


@dataclass(frozen=True)
class StoredJob:
    """A job as the store kept it: its id, its submission's body, and how far it got."""

    id: str
    body: dict[str, Any]
    status: str
    submitted: float


class QueueStore:
    """The queue's SQLite file; safe to use from several threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StyleCompError(f"cannot open the server's queue: {exc}", self.path) from None
        self._lock = threading.Lock()

    def add(self, job_id: str, body: dict[str, Any], submitted: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, body, status, submitted) VALUES (?, ?, 'queued', ?)",
                (job_id, json.dumps(body), submitted),
            )

    def update(
        self, job_id: str, status: str, started: float | None, finished: float | None, errors: list[str]
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, started = ?, finished = ?, errors = ? WHERE id = ?",
                (status, started, finished, json.dumps(errors), job_id),
            )

    def unfinished(self) -> list[StoredJob]:
        """Jobs that were queued or running when the server stopped, in submission order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body, status, submitted FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq"
            ).fetchall()
        return [StoredJob(job_id, json.loads(body), status, submitted) for job_id, body, status, submitted in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
