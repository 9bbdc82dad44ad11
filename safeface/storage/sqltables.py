"""Where the audit chain and the policy state persist: a few tables in a workspace's SQLite file
(the embedded default) or in the PostgreSQL record store (a deployment whose records are on a
server). The chain's logic (workspace/audit.py) and the state's (workspace/state.py) are one code
path over either; this module only runs their SQL.

The SQL is written once, with ``?`` placeholders and ``{t}`` before each table name, in the
subset both engines speak (``INSERT ... ON CONFLICT``). A write transaction is serialised across
every process and machine: SQLite's BEGIN IMMEDIATE, or in PostgreSQL a transaction-scoped
advisory lock taken first, so two appenders can never both read the same last entry.

In PostgreSQL the tables sit in the store's schema (``audit_*``, ``state_*``, and the service's
API keys, ``service_apikeys``) beside a
``workspace_meta`` table that names their schema version. Opening never creates them: only
`create_and_fill` does, in the one transaction that fills them (a migration), so a failure
anywhere leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from .. import atomicfile
from ..errors import BackendError, ConfigError, IntegrityError, WorkspaceBusy
from ..sqlite_store import (BUSY_TIMEOUT_MS, connect, raise_if_busy, raise_if_damaged, raise_if_edited, refuse_cut,
                            raise_if_unwritable, refuse_foreign_triggers, refuse_replaced, store_identity)
from .pglocks import bound_lock_wait, raise_lock_wait
from .pgrights import named_after_rollback, refused_right
from .pgsession import raise_if_lost, refuse_moved_names, reset_moved_names

WORKSPACE_SCHEMA = 1
# How long a write that does not wait (PgTables.write(wait=False)) waits for a row or table lock
# another session holds once it has its part's lock: only a session outside safeface's writers
# (which take that lock first) holds one for longer.
NO_WAIT_S = 0.05

PG_AUDIT = """
CREATE TABLE IF NOT EXISTS {ns}.audit_entries (
    seq BIGINT PRIMARY KEY, time TEXT NOT NULL, operation TEXT NOT NULL, purpose TEXT, token_id TEXT,
    basis TEXT, subjects TEXT NOT NULL, decision TEXT NOT NULL, rule TEXT, note TEXT, prev TEXT NOT NULL,
    hash TEXT NOT NULL, actor TEXT);
CREATE INDEX IF NOT EXISTS audit_entries_operation ON {ns}.audit_entries (operation);
CREATE INDEX IF NOT EXISTS audit_entries_token ON {ns}.audit_entries (token_id);
CREATE INDEX IF NOT EXISTS audit_entries_revoked_tokens ON {ns}.audit_entries (token_id) WHERE operation = 'revoke';
CREATE INDEX IF NOT EXISTS audit_entries_withdrawn_subjects ON {ns}.audit_entries (subjects)
    WHERE operation IN ('erase', 'revoke');
CREATE INDEX IF NOT EXISTS audit_entries_apikey_notes ON {ns}.audit_entries (note) WHERE operation = 'apikey';
CREATE INDEX IF NOT EXISTS audit_entries_enrolled_subjects ON {ns}.audit_entries (subjects) WHERE operation = 'enroll';
CREATE TABLE IF NOT EXISTS {ns}.audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL, mac TEXT NOT NULL,
    marks TEXT)
"""
PG_STATE = """
CREATE TABLE IF NOT EXISTS {ns}.state_revoked_tokens (token_id TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {ns}.state_revoked_subjects (pseudonym TEXT PRIMARY KEY, at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {ns}.state_facts (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {ns}.state_purpose_ends (pseudonym TEXT NOT NULL, purpose TEXT NOT NULL,
                                                    ends TEXT NOT NULL, PRIMARY KEY (pseudonym, purpose));
CREATE TABLE IF NOT EXISTS {ns}.state_used_nonces (nonce TEXT PRIMARY KEY, until DOUBLE PRECISION NOT NULL,
                                                   mac TEXT);
CREATE TABLE IF NOT EXISTS {ns}.state_challenges (nonce TEXT PRIMARY KEY, steps TEXT NOT NULL,
                                                  issued_at DOUBLE PRECISION NOT NULL,
                                                  expires_at DOUBLE PRECISION NOT NULL, mac TEXT)
"""
PG_SERVICE = """
CREATE TABLE IF NOT EXISTS {ns}.service_apikeys (key_id TEXT PRIMARY KEY, role TEXT NOT NULL, label TEXT NOT NULL,
                                                 created TEXT NOT NULL, expires TEXT, rate DOUBLE PRECISION NOT NULL,
                                                 revoked TEXT, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {ns}.service_ended_sessions (session TEXT PRIMARY KEY, until BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {ns}.service_session_uses (session TEXT PRIMARY KEY, used BIGINT NOT NULL,
                                                      until BIGINT NOT NULL, mac TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {ns}.service_spent_logins (form TEXT PRIMARY KEY, until BIGINT NOT NULL,
                                                      session_until BIGINT NOT NULL, nonce TEXT NOT NULL)
"""
PG_META = "CREATE TABLE IF NOT EXISTS {ns}.workspace_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)"


def workspace_tables() -> list[str]:
    """The tables `create_and_fill` makes beside the rows, by their names within the schema."""
    return re.findall(r"CREATE TABLE IF NOT EXISTS \{ns\}\.(\w+)", ";".join((PG_AUDIT, PG_STATE, PG_SERVICE, PG_META)))


class SqliteTables:
    """Tables in one of the workspace's SQLite files. One connection, used by one thread at a
    time: a transaction belongs to the connection, not the thread, so a second thread's BEGIN
    inside the first's would fail, its reads would see the first's uncommitted rows, and one
    thread's COMMIT or ROLLBACK would end the other's work. A write holds the lock throughout."""

    dialect = "sqlite"

    def __init__(self, path: Path, what: str, schema: str) -> None:
        self.where = f"the {what} {path}"
        self.path = Path(path).absolute()  # checked by name at every statement, whatever the cwd then
        self.prefix = ""
        self._lock = threading.RLock()
        self._db = connect(self.path, what, own=True)
        try:
            self._db.executescript(schema)
        except sqlite3.DatabaseError as exc:  # a FIFO or device in its place, a damaged file
            self._db.close()
            raise_if_busy(exc, self.where)
            raise_if_damaged(exc, self.where, self.path)
            raise_if_unwritable(exc, self.where)
            raise ConfigError(f"{self.where} cannot be opened ({exc}): check that it is this workspace's own "
                              "SQLite file, or restore it from a backup.") from None
        # A long-running handle (a service) must not judge by, or record into, a file other
        # processes no longer read: a copy renamed over it kept a revoked key or consent let in.
        self._opened = store_identity(self.path)
        try:
            refuse_cut(self._db, self.path, self.where)
            self._refuse_triggers()
        except BaseException:
            self._db.close()
            raise


    def _refuse_triggers(self) -> None:
        """None of these stores makes a trigger, so any is someone else's: one added by hand to
        audit.db, policy.db or apikeys.db (no key needed) can drop or rewrite what a write
        records, quietly (an un-revoked API key, a withdrawal deleted) or by failing every write
        of one kind (only erasures). Checked at open, so `audit verify` names it, and at each
        write, for one added under an open handle."""
        refuse_foreign_triggers(self._db, self.where, "one can drop or rewrite what is recorded. Find who added "
                                "them, drop them (DROP TRIGGER), and run `safeface audit verify`.")

    def _same_file(self) -> None:
        refuse_replaced(self.path, self._opened, self.where)

    def q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self._same_file()
            try:
                return [tuple(r) for r in self._db.execute(sql.format(t=self.prefix), tuple(args)).fetchall()]
            except sqlite3.DatabaseError as exc:
                self._typed(exc)
                raise

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement; the number of rows it changed."""
        with self._lock:
            self._same_file()
            try:
                return int(self._db.execute(sql.format(t=self.prefix), tuple(args)).rowcount)
            except sqlite3.DatabaseError as exc:
                self._typed(exc)
                raise

    def _typed(self, exc: sqlite3.DatabaseError) -> None:
        """The typed error for an SQLite error in a statement: busy, damaged, edited by hand, or on
        a disk that refused the write."""
        raise_if_busy(exc, self.where)
        raise_if_damaged(exc, self.where, self.path)
        raise_if_edited(exc, self.where)
        raise_if_unwritable(exc, self.where)

    @contextmanager
    def write(self, wait: bool = True) -> Iterator[None]:
        """One transaction, holding the file's write lock from its first read to its commit.
        `wait`: False to give up at once (WorkspaceBusy) while another process holds that lock,
        rather than wait out the busy timeout: for a write that only copies what is recorded
        elsewhere already (a logout's row)."""
        with self._lock:
            try:
                if not wait:
                    self._db.execute("PRAGMA busy_timeout = 0")
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                finally:
                    if not wait:
                        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except sqlite3.DatabaseError as exc:
                raise_if_busy(exc, self.where)
                raise_if_unwritable(exc, self.where)
                raise
            try:
                self._same_file()
                self._refuse_triggers()
                yield
                self._same_file()
                self._db.execute("COMMIT")
            except BaseException as exc:
                # A full or read-only disk may have rolled the transaction back already; a
                # ROLLBACK then would fail and hide why.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError):
                    self._typed(exc)
                raise

    def columns(self, table: str) -> set[str]:
        with self._lock:
            self._same_file()
            return {str(r[1]) for r in self._db.execute(f"PRAGMA table_info({table})")}

    def add_column(self, table: str, decl: str) -> None:
        with self._lock:
            try:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {decl}")
            except sqlite3.OperationalError:  # another process added it first
                pass

    def read_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.DatabaseError,)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PgTables:
    """Tables in the PostgreSQL record store's schema. One connection per object, used by one
    thread at a time; every write transaction first takes the advisory lock of its `part`. A
    connection the server ended is opened again at the next statement or transaction outside a
    transaction (PgSession), and the schema checked on it as `open` checks it."""

    dialect = "postgresql"

    def __init__(self, conn: Any, where: str, ns: str, part: str) -> None:
        self._conn = conn
        self.where = where
        self.prefix = f"{ns}.{part}_"
        self._ns = ns
        self._key = int.from_bytes(hashlib.sha256(f"safeface {part} lock {ns}".encode()).digest()[:8], "big",
                                   signed=True)
        self._lock = threading.RLock()

    @classmethod
    def open(cls, dsn: str, password: Optional[str], ns: str, part: str, what: str) -> "PgTables":
        """Connect and check that this workspace's tables exist in a schema version this code
        reads; creates nothing."""
        from .server import _safe_dsn, check_namespace, pg_session

        check_namespace(ns)
        where = f"the {what} in PostgreSQL {_safe_dsn(dsn)} (schema {ns})"
        conn = pg_session(dsn, password, where)
        try:
            check_schema(conn, ns, where)
        except BaseException:
            conn.close()
            raise
        conn.on_new = lambda new: check_schema(new, ns, where)  # a failover's server may hold none, or another
        return cls(conn, where, ns, part)

    def _sql(self, sql: str) -> str:
        return sql.format(t=self.prefix).replace("?", "%s")

    def _guard(self, exc: BaseException) -> None:
        import psycopg

        raise_lock_wait(exc, self.where)  # a lock waited for past its bound (write): WorkspaceBusy
        missing = refused_right(self._conn, exc, self._ns)  # a right revoked: a restore mends nothing
        if missing is not None:
            raise missing from None
        raise_if_lost(exc, self.where, "nothing was written.")
        if isinstance(exc, psycopg.OperationalError):
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:160]
            raise BackendError(f"{self.where} failed ({text}); nothing was written.") from None
        if isinstance(exc, psycopg.Error):
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise IntegrityError(f"{self.where} cannot be read or written ({text}): its tables were altered or "
                                 "dropped. Restore them from a backup.") from None

    def q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Not set back after each read (a round trip each, about 0.1 ms: 15-20% of a verify on
        # cached embeddings): a read's plan may run an index expression of the role's that moves
        # the names, and the call's entry, whose write transaction checks them, then fails.
        with self._lock:
            try:
                cur = self._conn.execute(self._sql(sql), tuple(args))
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
            except Exception as exc:
                self._guard(exc)
                raise

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        from psycopg.pq import TransactionStatus

        with self._lock:
            try:
                done = int(self._conn.execute(self._sql(sql), tuple(args)).rowcount)
                if self._conn.info.transaction_status == TransactionStatus.IDLE:  # committed on its own
                    reset_moved_names(self._conn, self.where)
                return done
            except Exception as exc:
                self._guard(exc)
                raise

    @contextmanager
    def write(self, wait: bool = True) -> Iterator[None]:
        """One transaction under this part's advisory lock (released by the commit or rollback,
        or by the server if the holder dies), so writers on every machine take turns. `wait`:
        as for SqliteTables.write."""
        with self._lock:
            try:
                with self._conn.transaction():
                    # Every lock this transaction waits for (the part's lock, then rows: the log's
                    # head row held FOR UPDATE by another session stalled every audited call for
                    # ever) is waited for until LOCK_WAIT_S after its start, then WorkspaceBusy.
                    # Without `wait`, a row or table another session holds locked is waited for no
                    # more than the part's lock is (NO_WAIT_S): a page's record of a session's use,
                    # on the service's event loop, stalled the worker LOCK_WAIT_S, and a login,
                    # tried again until its deadline, waited past it.
                    deadline = time.monotonic() + (atomicfile.LOCK_WAIT_S if wait else NO_WAIT_S)
                    bound_lock_wait(self._conn, deadline, self.where, True)
                    if wait:
                        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))
                    elif not self._conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (self._key,)).fetchone()[0]:
                        raise WorkspaceBusy(f"{self.where} is being written by another process; nothing was "
                                            "written. Try again.")
                    bound_lock_wait(self._conn, deadline, self.where, True)
                    yield
                    refuse_moved_names(self._conn, self.where)
            except Exception as exc:
                self._guard(exc)
                named = named_after_rollback(exc)  # a right refused inside it: which one, asked now
                if named is not exc:
                    raise named from None
                raise

    def columns(self, table: str) -> set[str]:
        name = self.prefix.split(".", 1)[1] + table
        return {str(r[0]) for r in self.q("SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                                          "AND table_name = ?", (self._ns, name))}

    def add_column(self, table: str, decl: str) -> None:
        """For tables made before the column existed (IF NOT EXISTS: another machine may race)."""
        self.run(f"ALTER TABLE {{t}}{table} ADD COLUMN IF NOT EXISTS {decl}")

    def read_errors(self) -> tuple[type[BaseException], ...]:
        return ()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def check_schema(conn: Any, ns: str, where: str) -> None:
    """Refuse a record store that holds no workspace tables, or ones of an unknown version."""
    if conn.execute("SELECT to_regclass(%s)", (f"{ns}.workspace_meta",)).fetchone()[0] is None:
        raise ConfigError(f"{where} does not exist: this workspace's audit log and policy state were never moved "
                          "there. Move a local workspace with `safeface storage migrate WS --to server`, which "
                          "carries them over with the templates.")
    meta = dict(conn.execute(f"SELECT k, v FROM {ns}.workspace_meta").fetchall())
    if meta.get("schema") != str(WORKSPACE_SCHEMA):
        raise ConfigError(f"{where} has schema {meta.get('schema')!r}; this safeface reads schema "
                          f"{WORKSPACE_SCHEMA}. Upgrade safeface, or open it with the version that wrote it.")


def create_and_fill(dsn: str, password: Optional[str], ns: str, entries: Sequence[tuple[Any, ...]],
                    head: tuple[Any, ...], tables: Mapping[str, Sequence[tuple[Any, ...]]]) -> None:
    """Create the workspace tables in PostgreSQL and fill them, in one transaction: the audit
    chain verbatim (`entries`: seq, fields..., prev, hash; `head`: seq, hash, mac, marks) and the
    other tables' rows (name within the schema, e.g. "state_facts" -> rows). Refuses a schema
    that already holds them."""
    from .server import _safe_dsn, pg_connect

    where = f"the audit log and policy state in PostgreSQL {_safe_dsn(dsn)} (schema {ns})"
    conn = pg_connect(dsn, password, where)
    try:
        if conn.execute("SELECT to_regclass(%s)", (f"{ns}.workspace_meta",)).fetchone()[0] is not None:
            raise ConfigError(f"{where} already exist; migrate into an empty database or namespace.")
        with conn.transaction():
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ns}")
            for stmt in ";".join((PG_AUDIT, PG_STATE, PG_SERVICE, PG_META)).format(ns=ns).split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            with conn.cursor() as cur:
                if entries:
                    marks = ", ".join(["%s"] * len(entries[0]))
                    cur.executemany(f"INSERT INTO {ns}.audit_entries (seq, time, operation, purpose, token_id, basis, "
                                    "subjects, decision, rule, note, actor, prev, hash) "
                                    f"VALUES ({marks})", [tuple(e) for e in entries])
                cur.execute(f"INSERT INTO {ns}.audit_head (id, seq, hash, mac, marks) VALUES (1, %s, %s, %s, %s)",
                            tuple(head))
                for table, rows in tables.items():
                    if rows:
                        marks = ", ".join(["%s"] * len(rows[0]))
                        cur.executemany(f"INSERT INTO {ns}.{table} VALUES ({marks})", [tuple(r) for r in rows])
                cur.execute(f"INSERT INTO {ns}.workspace_meta (k, v) VALUES ('schema', %s)", (str(WORKSPACE_SCHEMA),))
    except BaseException as exc:
        conn.close()
        import psycopg

        if isinstance(exc, psycopg.Error):
            raise BackendError(f"{where} could not be written ({str(exc).strip()[:160]}); nothing was written there."
                               ) from None
        raise
    conn.close()
