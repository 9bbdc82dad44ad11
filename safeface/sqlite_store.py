"""Opening the workspace's SQLite files (gallery, audit log, policy state) the one way they need:
owner-only, write-ahead log, full sync, waiting for other writers rather than failing."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .errors import ConfigError, IntegrityError, ReplacedFile

BUSY_TIMEOUT_MS = 30_000


def connect(path: Path, what: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit). `what` names the file in
    errors, e.g. "gallery"."""
    path = Path(path)
    if not path.exists():
        # Owner-only from the start; SQLite gives its WAL and shm files the same mode.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    try:  # a FIFO or device in the file's place fails here (disk I/O error)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} is not a usable {what} database ({exc}).") from None
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


def raise_if_damaged(exc: sqlite3.DatabaseError, where: str) -> None:
    """IntegrityError for an SQLite error that says the file's pages are damaged (bytes edited by
    hand, a bad disk): no verdict could be read from it. A busy or locked file (OperationalError)
    and SQL errors are left as they are."""
    if type(exc) is sqlite3.DatabaseError:  # SQLITE_CORRUPT, SQLITE_NOTADB: no subclass of its own
        raise IntegrityError(f"{where} is damaged ({exc}): it was edited by hand or its disk failed. Restore it "
                             "from a backup.") from None


def file_identity(path: Path) -> tuple[int, int]:
    """The device and inode of the file at `path`; (-1, -1) when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)


def store_identity(path: Path) -> tuple[tuple[int, int], ...]:
    """The identities of the database at `path` and of its write-ahead log and shared-memory index
    beside it. Taken after the connection's first statement: SQLite opens those two then and
    keeps them while the connection lives (none deletes them while another connection is open)."""
    return tuple(file_identity(Path(f"{path}{part}")) for part in ("", "-wal", "-shm"))


def refuse_replaced(path: Path, opened: tuple[tuple[int, int], ...], where: str) -> None:
    """A connection reads the file it opened, whatever now has its name: a copy renamed over it
    (a restore, or anyone who can write the folder) split the processes in two, the open ones
    reading and writing the old file while new ones used the new. So did the -wal and -shm files
    deleted or replaced: each side then committed into a log the other never read. Checked by
    three stats a call, and again before a write commits."""
    if store_identity(path) != opened:
        raise ReplacedFile(f"{where} was replaced or removed since it was opened (another file now has its "
                             "name, or its -wal or -shm file beside it); nothing was read or written. Open the "
                             "workspace again.")
