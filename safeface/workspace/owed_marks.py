"""Commit marks a live process owes: rows it stored whose "enroll-committed" entry the disk
refused (full), each held as an OFD write lock on a byte of the workspace's owed-marks lock file
(keys/, the owner's alone) until the mark is written, by this process or by any other that
settles the log.

Settling otherwise goes by the store's committed ceiling, which a row deleted by hand with the id
counter set back lowers: the row was then recorded as never committed, and its deletion went
unnoticed. A lock cannot be written into a file: only a process that holds it open has it, so no
edit of the workspace's files can make a committed row read as never stored. A process killed
before its mark gives its locks up, and its rows are settled by the ceiling as before.

Only a write lock counts, and taking one needs the file open for writing: the bytes were read
locks on the workspace's folder, which anyone allowed to read the folder (a backup account) could
take, and a row never stored then read as stored, its "enroll-committed" entry a lasting alarm of
a row deleted behind the guard. A process of the workspace's owner can still take one: it can
only make a never-committed row read as stored and missing (named by the store check), never
hide one.

A forked child shares its parent's open file, and the locks on it: the child lets go of none of
them and takes its own on a descriptor of its own.

The console sessions whose logout no store took (the audit log, the key store's tables and the
logouts folder all refused it) are held the same way, in bytes of their own (SESSION_ENDS_BASE) of
the workspace's keys folder: the process that was asked holds the session's byte (a read lock:
each process that owes the end holds it) for as long as it runs, and every process's session
check refuses a session whose byte is held. Held in that process's memory alone, a copy of the cookie sent
to another worker (uvicorn --workers, a second `safeface serve`) read on. A read lock on a folder
needs no write, nor a file to be made, on a disk that refuses both (full, or remounted read-only:
what refused the logout). They count only while the keys folder is this user's and closed to
others (0700, as made): a folder others may open lets anyone who can read it take such locks. It is seen by the
processes of this host only (a server workspace's other hosts read no lock of this one's)."""

from __future__ import annotations

import os
import stat
import struct
import threading
from pathlib import Path
from typing import Iterable, Optional

from .. import atomicfile
from ..atomicfile import _FLOCK, _one_byte, open_lock_file
from ..errors import SafeFaceError

_BASE = 1 << 52  # far above any byte another lock of this file could take
_SPAN = 1 << 52
# The bytes of console sessions whose end is owed (session_end_row), above the rows' span.
SESSION_ENDS_BASE = _BASE + _SPAN


def session_end_row(ref: str) -> int:
    """The number whose byte (under SESSION_ENDS_BASE) stands for the console session `ref` (its
    SHA-256 reference, hex): its first 52 bits."""
    return int(ref[:13], 16)


def _take(fd: int, lock_type: int, offset: int) -> None:
    import fcntl

    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _one_byte(lock_type, offset))


def _written(fd: int, offset: int, shared: bool = False) -> bool:
    """Whether another open file than `fd`'s holds a write lock on the byte at `offset`: asked as
    a read lock, which only a write lock conflicts with. `shared`: any lock, read locks too (asked
    as a write lock)."""
    import fcntl

    found = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _one_byte(fcntl.F_WRLCK if shared else fcntl.F_RDLCK, offset))
    return int(struct.unpack(_FLOCK, found)[0]) != fcntl.F_UNLCK


class OwedMarks:
    """The rows this handle stored whose commit mark is still to be written, and the check any
    handle makes before settling a row as never committed."""

    def __init__(self, lock_path: Path, base: int = _BASE, shared: bool = False) -> None:
        self._path = Path(lock_path)
        self._base = base  # the first of the bytes this kind of mark takes (the rows', or SESSION_ENDS_BASE)
        # Held as read locks, which several processes can hold at once, and any lock counts: for
        # the sessions' ends, where a lock taken by someone else refuses a session (never hides
        # one), and two processes owing one end must each keep it (the first one's restart let a
        # session whose end the second still owed live again). `lock_path` is then opened for
        # reading only, never made: a folder (the keys folder) will do.
        self._shared = shared
        self._fd: Optional[int] = None
        self._pid = 0  # the process that opened _fd: its locks are that process's
        self._rows: set[int] = set()
        self._lock = threading.Lock()

    def _byte(self, row: int) -> int:
        return self._base + int(row) % _SPAN

    def _mine(self) -> bool:
        return self._fd is not None and self._pid == os.getpid()

    def owe(self, rows: Iterable[int]) -> None:
        """Hold each row's byte until settled() or close(). Best effort: a file system without
        OFD locks, or a lock file that cannot be opened, leaves the rows to the ceiling, as before."""
        import fcntl

        if not atomicfile._OFD_LOCKS:
            return
        with self._lock:
            try:
                if self._fd is not None and not self._mine():  # forked: the parent's descriptor
                    os.close(self._fd)  # (its locks stay the parent's)
                    self._fd, self._rows = None, set()
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC) if self._shared \
                        else open_lock_file(self._path)
                    self._pid = os.getpid()
                for row in rows:
                    _take(self._fd, fcntl.F_RDLCK if self._shared else fcntl.F_WRLCK, self._byte(row))
                    self._rows.add(int(row))
            except (OSError, SafeFaceError):
                pass

    def stored_by_a_live_process(self, rows: Iterable[int]) -> set[int]:
        """Those of `rows` whose byte a process holds (this one's handles included): stored, their
        mark owed. Read through a descriptor of its own, which every holder's lock conflicts with."""
        wanted = [int(r) for r in rows]
        if not wanted or not atomicfile._OFD_LOCKS:
            return set()
        try:  # never made: no process owes a mark (a FIFO in its place must not block the open)
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return set()
        try:
            st = os.fstat(fd)
            mode = st.st_mode
            if not (stat.S_ISREG(mode) or (self._shared and stat.S_ISDIR(mode))):
                return set()
            if self._shared and (st.st_uid != os.geteuid() or mode & 0o077):
                # A read lock on a folder is anyone's who may open it: with the keys folder open
                # to a group (a backup account), one lock over the sessions' bytes refused every
                # console session of the host. Held there, an end is then refused by the process
                # that owes it alone (Runtime's ended_here), as before these marks.
                return set()
            return {row for row in wanted if _written(fd, self._byte(row), self._shared)}
        except OSError:  # no OFD locks here: nothing was held
            return set()
        finally:
            os.close(fd)

    def owed(self) -> set[int]:
        with self._lock:
            return set(self._rows) if self._mine() else set()

    def settled(self, rows: Iterable[int]) -> None:
        """Let go of the rows whose mark is written now (by anyone)."""
        import fcntl

        with self._lock:
            fd = self._fd if self._mine() else None  # a forked child's locks are its parent's
            for row in rows:
                if int(row) in self._rows and fd is not None:
                    try:
                        _take(fd, fcntl.F_UNLCK, self._byte(row))
                    except OSError:
                        pass
                self._rows.discard(int(row))

    def close(self) -> None:
        with self._lock:
            fd, mine, self._fd = self._fd, self._mine(), None
            self._rows.clear()
        if fd is not None:
            import fcntl

            if mine:  # let go first: a child forked meanwhile shares the descriptor and its locks
                try:
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _one_byte(fcntl.F_UNLCK, 0, length=0))
                except OSError:
                    pass
            os.close(fd)
