"""Opening the workspace's SQLite files (gallery, audit log, policy state) the one way they need:
owner-only, write-ahead log, full sync, waiting for other writers rather than failing."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import quote

from .atomicfile import DISK_FAILED, DISK_REFUSED, refuse_foreign_link
from .errors import ConfigError, IntegrityError, ReplacedFile, WorkspaceBusy, WorkspaceDiskFailed, WorkspaceUnwritable
from .diskread import first_failing_read
from .sqlite_wal import wal_decides_pages

BUSY_TIMEOUT_MS = 30_000
# SQLite's primary result codes (an error's sqlite_errorcode, low byte).
SQLITE_ERROR, SQLITE_BUSY, SQLITE_LOCKED = 1, 5, 6
# A write the disk refused: a read-only file system (a write through a file opened before it went
# read-only is an I/O error), a full one. Extended codes of a read that failed (a damaged disk,
# not a full one) are left as they are.
SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL = 8, 10, 13
SQLITE_IOERR_READ, SQLITE_IOERR_SHORT_READ, SQLITE_IOERR_CORRUPTFS = 266, 522, 8458
# What SQLite makes of a read the device failed (EIO): inside a statement "database disk image is
# malformed", like a file edited by hand; only reading the file again tells the two apart.
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26


def connect(path: Path, what: str, *, own: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit). `what` names the file in
    errors, e.g. "gallery". `own`: a file the workspace made (its audit log, policy state, key
    store), which SQLite calling it malformed or no database means damaged or cut short, an
    IntegrityError (raise_if_damaged), not a path to check."""
    path = Path(path)
    create_file(path)
    try:  # a FIFO or device in the file's place fails here (disk I/O error)
        # mode=rw: SQLite makes no file (create_file did, never through a link), so a link to
        # nowhere planted after create_file's check makes nothing where it points either.
        conn = sqlite3.connect(_uri(path, "rw"), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False, uri=True)
    except sqlite3.DatabaseError as exc:
        raise_if_busy(exc, f"the {what} {path}")
        _refuse_read_only_folder(path, what, exc)
        raise_if_unwritable(exc, f"the {what} {path}")  # a full disk: not the file's fault
        if own:
            raise_if_damaged(exc, f"the {what} {path}", path)
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
        _refuse_special_files(path, what)
    except ConfigError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise_if_busy(exc, f"the {what} {path}")
        _refuse_special_files(path, what)  # a FIFO at the -shm fails the first statement
        _refuse_read_only_folder(path, what, exc)
        raise_if_unwritable(exc, f"the {what} {path}")  # a full disk: not the file's fault
        if own:  # a file cut short (a disk fault, or someone hiding its tail) fails here
            raise_if_damaged(exc, f"the {what} {path}", path)
        raise ConfigError(f"{path} is not a usable {what} database ({exc}).") from None
    return conn


def _uri(path: Path, mode: str) -> str:
    """SQLite's URI for the file at `path` (its bytes, percent-escaped: a `?`, `#` or `%` in a
    folder's name is part of the path), opened in `mode`. Its folder is named as the system
    finds it, each link followed before the `..` after it: os.path.abspath took `link/..` off the
    text, so `home/link/../ws` (`data/ws`, `link` leading to `data/deep`) was opened at `home/ws`,
    another folder (no database there, or another workspace's beside this one's keys)."""
    if b"\x00" in os.fsencode(path):  # %00 would end SQLite's name there: another file
        raise ConfigError(f"{str(path)!a}: not a path a file can have (a NUL in it); check the path.")
    name = os.fsencode(os.path.join(os.path.realpath(Path(path).parent), Path(path).name))
    return f"file://{quote(name, safe=b'/')}?mode={mode}"  # no authority: the path follows


def _refuse_special_files(path: Path, what: str) -> None:
    """ConfigError naming a pipe, socket or device in the place of the database or of the -wal or
    -shm SQLite opened beside it by name (a read-only `audit verify` copy refuses them too): a
    FIFO at the -wal took SQLite's reads as an empty log and failed its writes as "disk I/O
    error", which read as a full or read-only disk (every call a 503 to retry, for ever)."""
    for part in ("", "-wal", "-shm"):
        name = Path(f"{path}{part}")
        try:
            mode = os.lstat(name).st_mode
        except FileNotFoundError:
            continue
        # (A link at the database's own name is left as before: SQLite follows it.)
        if not stat.S_ISREG(mode) and not (part == "" and stat.S_ISLNK(mode)):
            raise ConfigError(f"{name} is not a regular file (a pipe, socket or device in its place, beside the {what} "
                              "database): remove it, then run `safeface audit verify`.")


def create_file(path: Path) -> None:
    """Make the database file at `path` if there is none: owner-only from the start (SQLite gives
    its WAL and shm files the same mode), and never through a link. A link at the name whose
    target did not exist (planted by whoever may write the folder) had the file made wherever
    it pointed, with this process's rights (a service run as root: any folder of the host). A
    link to an existing file is followed, as SQLite follows it, where this user or root made it
    on a path no other user may change (atomicfile.trusted_path, as deployment.json's link is):
    one made by another user who may write the folder sent a root command into another program's
    SQLite database, turned to write-ahead logging with the gallery's tables written into it."""
    refuse_foreign_link(path)
    if path.exists():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if path.exists():  # made meanwhile by another process
            return
        raise ConfigError(f"{path} is a link to a file that does not exist: safeface makes a database only under "
                          "its own name, never through a link. Remove the link (or point it at the database it "
                          "stands for), then run `safeface audit verify`.") from None
    os.close(fd)


def _refuse_read_only_folder(path: Path, what: str, exc: sqlite3.DatabaseError) -> None:
    """ConfigError saying what to do when `path` is in a folder nobody may write (a read-only
    copy given to an auditor, a read-only mount): "not a usable database" sent them looking
    for damage in a file that was whole. SQLite writes its -wal and -shm files beside a database
    even to read it, and the workspace's lock files live there too."""
    if os.access(path.parent, os.W_OK):
        return
    raise ConfigError(f"the {what} {path} cannot be opened ({exc}): its folder {path.parent} is read-only, and "
                      "safeface needs to write there even to read it (SQLite's -wal and -shm files, the lock files). "
                      "`safeface audit verify` checks a read-only workspace as it is; for any other command, copy the "
                      "whole workspace folder to one you may write (cp -a) and run the command on that copy.") from None


def raise_if_busy(exc: sqlite3.DatabaseError, where: str) -> None:
    """WorkspaceBusy (a ConfigError) for SQLite's "database is locked" once the busy timeout ran
    out: another process held the file's write lock all that time (a rekey, a large erasure or
    purge, a migration). It
    escaped as a bare OperationalError (a traceback on the command line) or as "not a usable
    database", which sent an operator to restore a whole file from a backup. Judged by SQLite's
    result code, not by the words of its message: the message also quotes names read from the file
    ("no such table: main.locked" from a trigger added by hand), which made a file edited so that
    every write failed read as busy, to be retried for ever."""
    code = getattr(exc, "sqlite_errorcode", None)
    busy = (code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED) if isinstance(code, int)
            else str(exc) in ("database is locked", "database table is locked"))
    if isinstance(exc, sqlite3.OperationalError) and busy:
        raise WorkspaceBusy(f"{where} is busy: another process has been writing to it for over "
                            f"{BUSY_TIMEOUT_MS / 1000:g} s (a rekey, a large erasure or purge, a storage migration). "
                            "Nothing was changed; try again once it has finished.") from None


def raise_if_unwritable(exc: BaseException, where: str) -> None:
    """WorkspaceUnwritable (a ConfigError) for a write the disk refused: full, over quota or gone
    read-only under the process. It escaped as a bare OperationalError (or OSError): a server
    error with a traceback in the service, though the same call works once the disk takes writes
    again. Judged by SQLite's result code or the errno, never by the message's words."""
    code = getattr(exc, "sqlite_errorcode", None)
    # (SQLite's CORRUPTFS is a read the operating system failed: EIO, ENXIO. A plain failed read
    # may be a FIFO in the file's place: raise_if_disk_failed reads the file again to tell.)
    if code == SQLITE_IOERR_CORRUPTFS or (isinstance(exc, OSError) and exc.errno in DISK_FAILED):
        raise disk_failed(where, (exc.strerror if isinstance(exc, OSError) else None) or str(exc)) from None
    if (isinstance(exc, sqlite3.OperationalError) and isinstance(code, int)
            and code & 0xFF in (SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL)
            and code not in (SQLITE_IOERR_READ, SQLITE_IOERR_SHORT_READ)) or \
            (isinstance(exc, OSError) and exc.errno in DISK_REFUSED):
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise WorkspaceUnwritable(f"{where} cannot be written ({why}): its disk is full or read-only. Free space or "
                                  "remount it read-write, then try again.") from None


def disk_failed(where: str, why: str, path: Optional[Path] = None) -> WorkspaceDiskFailed:
    """The error for a read (or write) of `where` that its disk failed (EIO)."""
    return WorkspaceDiskFailed(f"{where} cannot be used ({why}): its disk failed (an I/O error). Nothing was "
                               "changed; check the device and the kernel's log (dmesg), then try again, or restore "
                               "the workspace from a backup if the disk is lost.", None if path is None else str(path))


def disk_read_error(paths: Iterable[Path]) -> Optional[tuple[Path, OSError]]:
    """The first of `paths` (each with its -wal) whose disk fails reading it whole (EIO), with the
    error; None where each reads (or is absent). Read only after SQLite reported damage, or to see
    whether a disk that failed reads again; read by a child process (diskread.py), since a
    descriptor of this process's own, once closed, dropped its connections' locks on the file."""
    return first_failing_read([p for path in paths for p in (Path(path), Path(f"{path}-wal"))])


def raise_if_disk_failed(exc: BaseException, paths: Iterable[Path], where: str) -> None:
    """WorkspaceDiskFailed for an SQLite error that a read its disk failed (EIO) caused: SQLite
    calls that "database disk image is malformed", and the file was called edited by hand (a 409
    from the service, an operator told to restore a whole file from a backup), or a bare
    DatabaseError escaped (a 500). Judged by reading the files again."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.DatabaseError) or not (
            type(exc) is sqlite3.DatabaseError or code in (SQLITE_IOERR_READ, SQLITE_IOERR_CORRUPTFS)
            or (isinstance(code, int) and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB))):
        return
    failed = disk_read_error(paths)
    if failed is not None:
        raise disk_failed(where, failed[1].strerror or "I/O error", failed[0]) from None


def raise_if_damaged(exc: BaseException, where: str, *paths: Path) -> None:
    """IntegrityError for an SQLite error that says the file's pages are damaged (bytes edited by
    hand): no verdict could be read from it. A busy or locked file (OperationalError) and SQL
    errors are left as they are. `paths`: the files, read again to tell a disk that fails reads
    (WorkspaceDiskFailed) from damage."""
    if paths:
        raise_if_disk_failed(exc, paths, where)
    if type(exc) is sqlite3.DatabaseError:  # SQLITE_CORRUPT, SQLITE_NOTADB: no subclass of its own
        raise IntegrityError(f"{where} is damaged ({exc}): it was edited by hand, cut short or its disk failed. "
                             "Restore it from a backup, then run `safeface audit verify`.") from None


def refuse_cut(db: sqlite3.Connection, path: Path, where: str) -> None:
    """IntegrityError for a file that lost its end: SQLite writes whole pages, and reads a short
    last page, or a page past the file's end that the database still counts, as zeros, so a
    file cut in its last page opened and was used as if whole. Excused only where the -wal
    decides the first page lost and every one after it (sqlite_wal.wal_decides_pages): a
    checkpoint that a crash interrupted is finished from the -wal. A file of whole pages is
    judged only where SQLite counts more pages than it holds (the -wal then holds them, or the
    file lost them); its -wal is read then, not at every open."""
    page = int(db.execute("PRAGMA page_size").fetchone()[0])
    if page <= 0:
        return
    # One read transaction over the count and the walk: the -wal frames it reads from cannot be
    # written over meanwhile (another process's checkpoint restarting the -wal), which would read
    # as a -wal that replays nothing.
    begun = not db.in_transaction
    if begun:
        db.execute("BEGIN")
    try:
        size = os.stat(path).st_size
        whole = size // page
        try:
            counted: Optional[int] = int(db.execute("PRAGMA page_count").fetchone()[0])
        except sqlite3.DatabaseError:
            counted = None  # judged by the statements that read it, but for a cut inside a page
        if not size % page and (counted is None or counted <= whole):
            return
        decided = wal_decides_pages(Path(f"{path}-wal"), page, whole + 1)
    except OSError:
        return  # judged by the statements that read it
    finally:
        if begun and db.in_transaction:
            db.execute("ROLLBACK")
    if not decided:
        raise IntegrityError(f"{where} is cut short or written to by hand ({size} bytes, "
                             + (f"not a whole number of its {page}-byte pages" if size % page else
                                f"{whole} of its {page}-byte pages, where the database counts more")
                             + "): a disk fault, or someone removed its end. "
                             "Restore it from a backup, then run `safeface audit verify`.")


def refuse_foreign_triggers(db: sqlite3.Connection, where: str, why: str, own: tuple[str, ...] = ()) -> None:
    """IntegrityError naming the triggers in `db` that safeface did not make (any but `own`): one
    added by hand (no key needed) can keep rows through an erasure or drop what a write records.
    `why` finishes the sentence: what such a trigger could do there, and what to do."""
    marks = ", ".join("?" for _ in own)
    names = [str(n) for n, in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                         + (f" AND name NOT IN ({marks})" if own else "") + " ORDER BY name LIMIT 6",
                                         own)]
    if names:
        raise IntegrityError(f"{where} holds triggers safeface did not make "
                             f"({', '.join(repr(n) for n in names[:5])}): {why}")


def raise_if_edited(exc: sqlite3.DatabaseError, where: str) -> None:
    """IntegrityError for an SQL error (SQLITE_ERROR) in one of safeface's own statements on its
    own tables: the schema was edited by hand (a table or column renamed, a trigger added whose
    body names a table that is not there). It escaped as a bare OperationalError."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.OperationalError) and isinstance(code, int) and code & 0xFF == SQLITE_ERROR:
        raise IntegrityError(f"{where} refused one of safeface's statements ({exc}): its tables were changed by "
                             "hand (a table, column or trigger safeface did not make). Restore it from a backup taken "
                             "before the change.") from None


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
