"""The workspace's write lock: one holder at a time across threads and processes.

Enrolment's final write, erasure and revocation all take it, so the facts the guard decides
again at the write (revocation, erasure, the filing count) cannot change between that decision
and the commit. An advisory ``flock`` on a lock file serialises processes (released by the
kernel if the holder dies); a re-entrant thread lock serialises threads of one process and lets
the holder call other locked operations."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from .. import atomicfile
from ..atomicfile import HeldLock, late_guard, let_locks_go, refuse_lost_lock, take_locks
from ..errors import WorkspaceBusy


class WriteLock:
    """`guard`: the database the lock protects, also locked (atomicfile.take_guard), so that a lock
    file deleted while held lets no second process write beside the holder."""

    def __init__(self, path: Path, guard: Optional[Path] = None) -> None:
        self._path = Path(path)
        self._guard = guard
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._held: Optional[HeldLock] = None

    @contextmanager
    def held(self, timeout: Optional[float] = None) -> Iterator[None]:
        """Hold the lock; wait at most `timeout` seconds in all (None: atomicfile.LOCK_WAIT_S) for
        another process or thread to let it go, then raise WorkspaceBusy (a ConfigError) naming
        what holds it up: one held for ever (stuck or hostile) froze every enrolment and erasure."""
        limit = min(max(0.0, atomicfile.LOCK_WAIT_S if timeout is None else timeout), threading.TIMEOUT_MAX)
        deadline = time.monotonic() + limit
        # Bounded as a wait on another process is: behind another thread of this handle (stuck, or
        # a long erasure) every other writer of a service's workers waited with no end.
        if not self._thread_lock.acquire(timeout=limit):
            raise lock_not_free(f"{self._path}, held by another thread of this process", limit)
        try:
            if self._depth == 0:
                self._held = take_locks(self._path, self._guard, False, max(0.0, deadline - time.monotonic()),
                                        lambda what, _: lock_not_free(what, limit))
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._held is not None:
                    held, self._held = self._held, None
                    let_locks_go(held, self._path)
        finally:
            self._thread_lock.release()

    def check(self) -> None:
        """Refuse a write about to commit under this lock if its file was deleted or replaced
        since it was taken and its guard is not held (or was replaced too), or if it took no guard
        and another process holds it now: another process could then hold a lock on the other
        file and write too."""
        with self._thread_lock:
            if self._held is not None:
                fd, guard_fd, mark_fd = self._held
                if guard_fd is None:
                    guard_fd = late_guard(self._guard, self._path)
                    self._held = (fd, guard_fd, mark_fd)
                refuse_lost_lock(fd, self._path, guard_fd, self._guard)


def lock_not_free(what: str, timeout: Optional[float]) -> WorkspaceBusy:
    """What a bounded wait for a store's write lock says when it gives up (`timeout` None: the
    limit the command set, PostgreSQL's lock_timeout)."""
    within = f"{timeout:g} s" if timeout is not None else "the time this command waits"
    return WorkspaceBusy(f"the store's write lock ({what}) was not free within {within}: another process is "
                       "writing (a long erasure or purge) or is stuck; nothing was changed. Let it finish or stop it, "
                       "then try again.")
