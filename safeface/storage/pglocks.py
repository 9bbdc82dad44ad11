"""PostgreSQL's lock waits, bounded: every lock a statement of safeface waits for (the store's
write lock, a row or table another session holds locked) is given up after a set time, whatever
lock_timeout the server, database or role sets, and named as WorkspaceBusy."""

from __future__ import annotations

import time
from typing import Any

from ..errors import WorkspaceBusy
from .lock import lock_not_free


def bound_lock_wait(conn: Any, deadline: float, where: str, local: bool) -> None:
    """The next lock `conn` waits for waits only until `deadline` (time.monotonic()); `local`:
    for the rest of this transaction. Past it: ConfigError, nothing taken."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise lock_not_free(where, None)
    conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, %s)", (lock_timeout(left), local))


def lock_timeout(seconds: float) -> str:
    """`seconds` as a lock_timeout setting: at least 1 ms (0 would mean no limit), at most the
    largest the server takes (also for an endless wait: a lock held for ever freezes its callers)."""
    ms = seconds * 1000
    return f"{max(1, round(ms)) if ms < 2**31 - 1 else 2**31 - 1}ms"


def raise_lock_wait(exc: BaseException, where: str) -> None:
    """A lock given up waiting for under PostgreSQL's lock_timeout (held_write_lock's, or one
    the database or its role sets) becomes the ConfigError a bounded wait gives."""
    import psycopg

    if isinstance(exc, psycopg.errors.LockNotAvailable):
        raise lock_wait_ended(where) from None


def lock_wait_ended(where: str) -> WorkspaceBusy:
    """A lock given up waiting for in a PostgreSQL statement: the store's write lock, or a row or
    table another session holds locked."""
    return WorkspaceBusy(f"{where}: a lock it needs was not free within the time a call waits: another process "
                         "is writing (a long erasure or purge), or another session holds a row or table locked (an "
                         "open transaction, in psql for instance); nothing was changed. Let it finish or end it, then "
                         "try again.")
