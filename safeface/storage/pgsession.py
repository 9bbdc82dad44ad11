"""A PostgreSQL connection that is opened again, between transactions, once the server ended it.

A server restart, a failover or an operator's `pg_terminate_backend` ends a connection; psycopg
learns of it only at the next statement, and a handle holding it refused every later call until
it was opened again (a service never reopens its handles). A PgSession opens a new connection
through the same `connect` (pg_connect: the same settings) at the next statement or transaction
found outside a transaction, and runs the checks its owner's open runs on it (`on_new`) before
anything else uses it. Never inside a transaction: a call whose transaction lost its connection
fails whole, as before, and only the next call gets the new one.

Finding it ended costs no round trip: a connection idle between statements has nothing to read
unless the server sent its last words (the FATAL of a terminated backend, a shutdown) or closed
it, so a poll of its socket with no wait (about 1 us) tells. A connection that died silently (a
network cut) fails its next statement instead, and the call after that reconnects."""

from __future__ import annotations

import logging
import select
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from ..errors import BackendError, IntegrityError, StoreConnectionLost

log = logging.getLogger("safeface.storage")


class PgSession:
    """A psycopg connection (`conn`) standing in for one: `execute`, `cursor` and `transaction`
    as psycopg's, anything else read from the connection in use. `connect()` opens a new one
    (None: never opened again). `auto`: reopen at any statement outside a transaction; False
    for the write lock's connection, whose holder reopens it only when it holds no lock
    (`revive`), since the session lock dies with the connection. `on_new(session)` runs on each
    new connection before any call uses it (statements it makes go to that connection); if it
    raises, the connection is closed again and the next call tries anew."""

    def __init__(self, conn: Any, connect: Optional[Callable[[], Any]] = None, *, auto: bool = True,
                 where: str = "the PostgreSQL record store") -> None:
        self._raw = conn
        self._connect = connect
        self._auto = auto
        self.where = where
        self.on_new: Optional[Callable[["PgSession"], None]] = None
        self.reopened = 0  # how many times a new connection replaced an ended one
        self._depth = 0  # transactions open on the connection (any thread): no reopening then
        self._lock = threading.RLock()
        self._shut = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def ended(self) -> bool:
        """Whether the connection is known closed, or the server ended it while it was idle."""
        raw = self._raw
        if raw.closed:
            return True
        if not raw.lock.acquire(blocking=False):
            return False  # a statement is running on it: it answers, or its failure closes it
        try:
            from psycopg.pq import TransactionStatus

            if raw.info.transaction_status != TransactionStatus.IDLE:
                return False
            # poll, not select: select refuses a descriptor past 1023, which a busy service reaches.
            readable = select.poll()
            readable.register(raw.fileno(), select.POLLIN)
            for _ in range(3):  # the server's last message, then the end of the stream
                if not readable.poll(0):
                    return False  # nothing waiting, or a notice read and gone
                try:
                    raw.pgconn.consume_input()
                except Exception:  # noqa: BLE001 - libpq read the end of the connection
                    return True
                if raw.closed:
                    return True
            return False
        finally:
            raw.lock.release()

    def revive(self) -> Any:
        """The connection, a new one first if this one ended and no transaction is open on it."""
        with self._lock:
            if self._shut or self._depth or self._connect is None or not self.ended():
                return self._raw
            try:
                fresh = self._connect()
            except BackendError as exc:  # the server not back yet (restarting, failing over): retried next call
                raise StoreConnectionLost(f"{exc} Try again: the next call connects anew.") from None
            old, self._raw = self._raw, fresh
            try:
                old.close()
            except Exception:  # noqa: BLE001 - already gone
                pass
            self._depth += 1  # on_new's statements go to the new connection as they are
            try:
                if self.on_new is not None:
                    self.on_new(self)
            except BaseException:
                self._raw.close()  # checked again at the next call
                raise
            finally:
                self._depth -= 1
            self.reopened += 1
            log.warning("%s: its connection had ended (a server restart, a failover or an operator ended it); a new "
                        "one was opened and checked", self.where)
            return self._raw

    def _live(self) -> Any:
        return self.revive() if self._auto else self._raw

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        return self._live().execute(query, params, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return self._live().cursor(*args, **kwargs)

    @contextmanager
    def transaction(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raw = self._live()
        with self._lock:
            self._depth += 1
        try:
            with raw.transaction(*args, **kwargs) as tx:
                yield tx
        finally:
            with self._lock:
                self._depth -= 1

    def drop(self) -> None:
        """Close the connection in use; a new one is opened when next needed (`revive`)."""
        try:
            self._raw.close()
        except Exception:  # noqa: BLE001 - already gone
            pass

    def close(self) -> None:
        """Close for good: never opened again."""
        with self._lock:
            self._shut = True
        self._raw.close()


def raise_if_lost(exc: BaseException, where: str, done: str) -> None:
    """psycopg's error for a connection that ended under a statement (no SQLSTATE: the socket
    closed; class 08, a connection failure; 57P, the server shutting down or an operator ending
    the backend; 25P03, the server ending a session idle inside a transaction for longer than the
    idle_in_transaction_session_timeout the role may set itself, which psycopg does not count as
    operational and which was read as tables altered by hand) becomes StoreConnectionLost, which a
    caller retries; `done` says what became of the call's writes."""
    import psycopg

    state = getattr(exc, "sqlstate", None)
    if not isinstance(exc, psycopg.OperationalError) and not (isinstance(exc, psycopg.Error) and state == "25P03"):
        return
    if state is None or state.startswith(("08", "57P", "25P03")):
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:160]
        raise StoreConnectionLost(f"{where}: its connection ended during the call ({text}); {done} Try again: the "
                                  "next call opens a new connection.") from None


CATALOG_PATH = "pg_catalog, pg_temp"  # where every connection resolves names (server.pg_connect)


def refuse_moved_names(conn: Any, where: str) -> None:
    """Before a write transaction commits: IntegrityError (so it rolls back, and with it any
    setting made inside it) unless the session still resolves names in the catalog only. Code of
    the database role's run by one of the transaction's inserts (a check constraint, a default,
    an index expression or a domain added on a table while the handle was open) can point the
    session's search_path at the role's schema for the rest of the connection, where its own "="
    answered the guard's reads of the log. The open and each erasure refuse such code
    (ServerStore._refuse_foreign_rules); this stops a handle opened before it was added from
    keeping a connection it moved."""
    got = conn.execute("SELECT pg_catalog.current_setting('search_path')").fetchone()
    if not got or str(got[0]) != CATALOG_PATH:
        raise IntegrityError(f"{where}: a write ran code of the database role's (a check constraint, a default, an "
                             "index expression or a domain added on safeface's tables) that pointed the session's "
                             "names at another schema; nothing was written. Find who added it and remove it: the "
                             "next open of the workspace names it.")


def reset_moved_names(conn: Any, where: str) -> None:
    """After a write outside a transaction (committed already): the session resolves names in the
    catalog only again, whatever code of the role's the write ran (refuse_moved_names), with a
    warning if it had moved them. One statement."""
    got = conn.execute("SELECT pg_catalog.current_setting('search_path'), "
                       f"pg_catalog.set_config('search_path', '{CATALOG_PATH}', false)").fetchone()
    if got and str(got[0]) != CATALOG_PATH:
        log.warning("%s: a write ran code of the database role's (a check constraint, a default, an index expression "
                    "or a domain added on safeface's tables) that pointed the session's names at another schema; they "
                    "were set back. Find who added it and remove it: the next open of the workspace names it.", where)
