"""Commit marks a live process owes: rows it stored whose "enroll-committed" entry the disk
refused (full), each held as an OFD read lock on a byte of the workspace's folder until the mark
is written, by this process or by any other that settles the log.

Settling otherwise goes by the store's committed ceiling, which a row deleted by hand with the id
counter set back lowers: the row was then recorded as never committed, and its deletion went
unnoticed. A lock cannot be written into a file: only a process that holds it open has it, so no
edit of the workspace's files can make a committed row read as never stored. A process killed
before its mark gives its locks up, and its rows are settled by the ceiling as before; a lock
taken by another program can only make a never-committed row read as stored and missing (named
by the store check), never hide one."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable, Optional

from .. import atomicfile
from ..atomicfile import _marked, _one_byte

_BASE = 1 << 52  # above the lock guards' and folder marks' bytes (atomicfile)
_SPAN = 1 << 52


def _byte(row: int) -> int:
    return _BASE + int(row) % _SPAN


def _take(fd: int, lock_type: int, row: int) -> None:
    import fcntl

    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _one_byte(lock_type, _byte(row)))


class OwedMarks:
    """The rows this handle stored whose commit mark is still to be written, and the check any
    handle makes before settling a row as never committed."""

    def __init__(self, folder: Path) -> None:
        self._folder = Path(folder)
        self._fd: Optional[int] = None
        self._rows: set[int] = set()
        self._lock = threading.Lock()

    def owe(self, rows: Iterable[int]) -> None:
        """Hold each row's byte until settled() or close(). Best effort: a folder or file system
        without OFD locks leaves the rows to the ceiling, as before."""
        import fcntl

        if not atomicfile._OFD_LOCKS:
            return
        with self._lock:
            try:
                if self._fd is None:
                    self._fd = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
                for row in rows:
                    _take(self._fd, fcntl.F_RDLCK, row)
                    self._rows.add(int(row))
            except OSError:
                pass

    def stored_by_a_live_process(self, rows: Iterable[int]) -> set[int]:
        """Those of `rows` whose byte a process holds (this one's handles included): stored, their
        mark owed. Read through a descriptor of its own, which every holder's lock conflicts with."""
        wanted = [int(r) for r in rows]
        if not wanted or not atomicfile._OFD_LOCKS:
            return set()
        try:
            fd = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return set()
        try:
            return {row for row in wanted if _marked(fd, _byte(row))}
        except OSError:  # no OFD locks here: nothing was held
            return set()
        finally:
            os.close(fd)

    def owed(self) -> set[int]:
        with self._lock:
            return set(self._rows)

    def settled(self, rows: Iterable[int]) -> None:
        """Let go of the rows whose mark is written now (by anyone)."""
        import fcntl

        with self._lock:
            for row in rows:
                if int(row) in self._rows and self._fd is not None:
                    try:
                        _take(self._fd, fcntl.F_UNLCK, row)
                    except OSError:
                        pass
                    self._rows.discard(int(row))

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            self._rows.clear()
        if fd is not None:
            import fcntl

            try:  # unlocked first: a child forked meanwhile shares the descriptor and its locks
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _one_byte(fcntl.F_UNLCK, 0, length=0))
            except OSError:
                pass
            os.close(fd)
