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
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ..atomicfile import refuse_lost_lock, take_lock_file
from ..errors import ConfigError


class WriteLock:
    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: Optional[int] = None

    @contextmanager
    def held(self, timeout: Optional[float] = None) -> Iterator[None]:
        """Hold the lock; with `timeout` (seconds), wait at most that long for another process to
        let it go, then raise ConfigError naming what holds it up."""
        with self._thread_lock:
            if self._depth == 0:
                self._fd = _take(self._path, timeout)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)

    def check(self) -> None:
        """Refuse a write about to commit under this lock if its file was deleted or replaced
        since it was taken: another process could then hold a lock on the new file and write too."""
        with self._thread_lock:
            if self._fd is not None:
                refuse_lost_lock(self._fd, self._path)


def _take(path: Path, timeout: Optional[float]) -> int:
    """A descriptor holding the lock on the file that has `path`'s name (atomicfile.take_lock_file),
    waited for at most `timeout` seconds in all."""
    deadline = None if timeout is None else time.monotonic() + timeout  # one deadline across retries

    def take(fd: int) -> None:
        if not _flock(fd, None if deadline is None else max(0.0, deadline - time.monotonic())):
            raise lock_not_free(str(path), timeout)

    return take_lock_file(path, take)


def _flock(fd: int, timeout: Optional[float]) -> bool:
    """Whether the lock was taken on `fd` within `timeout` seconds (None: waits for it)."""
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    # A blocking wait, in a thread of its own, rather than polling: a poller is overtaken by every
    # writer already blocked on the lock, and a steady stream of short writes starves it.
    waiter = os.dup(fd)  # the same open file: the lock it takes is this descriptor's
    decided = threading.Lock()  # the waiter's taking and the caller's giving up, one after the other
    got, abandoned = threading.Event(), threading.Event()

    def take() -> None:
        try:
            fcntl.flock(waiter, fcntl.LOCK_EX)
            with decided:
                if abandoned.is_set():
                    fcntl.flock(waiter, fcntl.LOCK_UN)
                else:
                    got.set()
        finally:
            os.close(waiter)

    threading.Thread(target=take, name="safeface-write-lock-wait", daemon=True).start()
    got.wait(timeout)
    with decided:
        if got.is_set():
            return True
        abandoned.set()
    return False


def lock_not_free(what: str, timeout: Optional[float]) -> ConfigError:
    """What a bounded wait for a store's write lock says when it gives up (`timeout` None: the
    limit the command set, PostgreSQL's lock_timeout)."""
    within = f"{timeout:g} s" if timeout is not None else "the time this command waits"
    return ConfigError(f"the store's write lock ({what}) was not free within {within}: another process is "
                       "writing (a long erasure or purge) or is stuck; nothing was changed. Let it finish or stop it, "
                       "then try again.")
