"""The workspace's write lock: one holder at a time across threads and processes.

Enrolment's final write, erasure and revocation all take it, so the facts the guard decides
again at the write (revocation, erasure, the filing count) cannot change between that decision
and the commit. An advisory ``flock`` on a lock file serialises processes (released by the
kernel if the holder dies); a re-entrant thread lock serialises threads of one process and lets
the holder call other locked operations."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ..atomicfile import open_lock_file


class WriteLock:
    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: Optional[int] = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                fd = open_lock_file(self._path)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
