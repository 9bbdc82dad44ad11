"""Opening the workspace's SQLite files (gallery, audit log, policy state) the one way they need:
owner-only, write-ahead log, full sync, waiting for other writers rather than failing."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .errors import ConfigError

BUSY_TIMEOUT_MS = 30_000


def connect(path: Path, what: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit). `what` names the file in
    errors, e.g. "gallery"."""
    path = Path(path)
    if not path.exists():
        # Owner-only from the start; SQLite gives its WAL and shm files the same mode.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigError(f"the {what} at {path} cannot use write-ahead logging (journal mode {mode}); "
                              "put the workspace on a local file system.")
        conn.execute("PRAGMA synchronous = FULL")
        # Deleted rows (erased templates, purged records) are overwritten, not left in free pages.
        conn.execute("PRAGMA secure_delete = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"{path} is not a usable {what} database ({exc}).") from None
    return conn
