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
from typing import Callable, Iterator, Optional

from ..atomicfile import guard_lock, late_guard, refuse_lost_lock, release_guard, take_guard, take_lock_file
from ..errors import WorkspaceBusy


class WriteLock:
    """`guard`: the database the lock protects, also locked (atomicfile.take_guard), so that a lock
    file deleted while held lets no second process write beside the holder."""

    def __init__(self, path: Path, guard: Optional[Path] = None) -> None:
        self._path = Path(path)
        self._guard = guard
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: Optional[int] = None
        self._guard_fd: Optional[int] = None

    @contextmanager
    def held(self, timeout: Optional[float] = None) -> Iterator[None]:
        """Hold the lock; with `timeout` (seconds), wait at most that long for another process to
        let it go, then raise WorkspaceBusy (a ConfigError) naming what holds it up."""
        with self._thread_lock:
            if self._depth == 0:
                self._fd, self._guard_fd = _take(self._path, self._guard, timeout)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    guard, self._guard_fd = self._guard_fd, None
                    try:
                        release_guard(guard, self._path)
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                        os.close(fd)

    def check(self) -> None:
        """Refuse a write about to commit under this lock if its file was deleted or replaced
        since it was taken and its guard is not held (or was replaced too), or if it took no guard
        and another process holds it now: another process could then hold a lock on the other
        file and write too."""
        with self._thread_lock:
            if self._fd is not None:
                if self._guard_fd is None:
                    self._guard_fd = late_guard(self._guard, self._path)
                refuse_lost_lock(self._fd, self._path, self._guard_fd, self._guard)


def _take(path: Path, guard: Optional[Path], timeout: Optional[float]) -> tuple[int, Optional[int]]:
    """Descriptors holding the lock on the file that has `path`'s name (atomicfile.take_lock_file)
    and on its guard (atomicfile.take_guard), waited for at most `timeout` seconds in all."""
    deadline = None if timeout is None else time.monotonic() + timeout  # one deadline across retries

    def left() -> Optional[float]:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def take(fd: int) -> None:
        waiter = os.dup(fd)  # the same open file: the lock it takes is this descriptor's

        def done() -> None:
            os.close(waiter)

        if not _bounded(lambda: fcntl.flock(waiter, fcntl.LOCK_EX), lambda: fcntl.flock(waiter, fcntl.LOCK_UN),
                        done, left()):
            raise lock_not_free(str(path), timeout)

    def take_guarded(fd: int, offset: int) -> None:
        # No dup here: closing any descriptor of the database drops SQLite's locks in this process.
        if not _bounded(lambda: guard_lock(fd, offset, "w", True), lambda: release_guard(fd, path),
                        lambda: None, left()):
            # Named: a process holding this byte is invisible to fuser or lsof on the lock file.
            raise lock_not_free(f"{path}, held also as byte {offset} of {guard}, which lslocks or /proc/locks "
                                "shows with the process holding it", timeout)

    fd = take_lock_file(path, take)
    try:
        return fd, take_guard(guard, path, take_guarded)
    except BaseException:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise


def _bounded(lock: Callable[[], object], unlock: Callable[[], None], done: Callable[[], None],
             timeout: Optional[float]) -> bool:
    """Whether `lock()` (a blocking wait) returned within `timeout` seconds (None: waits for it).
    A wait given up on goes on in its thread, which calls `unlock` once it gets the lock; `done`
    runs when that thread ends."""
    if timeout is None:
        try:
            lock()
        finally:
            done()
        return True
    # A blocking wait, in a thread of its own, rather than polling: a poller is overtaken by every
    # writer already blocked on the lock, and a steady stream of short writes starves it.
    decided = threading.Lock()  # the waiter's taking and the caller's giving up, one after the other
    got, abandoned = threading.Event(), threading.Event()

    def take() -> None:
        try:
            lock()
            with decided:
                if abandoned.is_set():
                    unlock()
                else:
                    got.set()
        finally:
            done()

    threading.Thread(target=take, name="safeface-write-lock-wait", daemon=True).start()
    got.wait(timeout)
    with decided:
        if got.is_set():
            return True
        abandoned.set()
    return False


def lock_not_free(what: str, timeout: Optional[float]) -> WorkspaceBusy:
    """What a bounded wait for a store's write lock says when it gives up (`timeout` None: the
    limit the command set, PostgreSQL's lock_timeout)."""
    within = f"{timeout:g} s" if timeout is not None else "the time this command waits"
    return WorkspaceBusy(f"the store's write lock ({what}) was not free within {within}: another process is "
                       "writing (a long erasure or purge) or is stuck; nothing was changed. Let it finish or stop it, "
                       "then try again.")
