"""The server store: sealed rows in PostgreSQL (the store of record), protected vectors in Milvus
(an index of it). Many processes on many machines share one workspace through it.

The rows are those of the SQLite gallery, sealed the same way (storage/rows.py). Nothing is held
in memory: opening reads the meta and the pending list, not the rows, so a process joins in
seconds whatever the gallery size; every read goes to PostgreSQL and sees every commit.

Records first, vectors second. Every write runs under a PostgreSQL advisory lock (the store's
write lock, which erasure and revocation also hold; each record transaction also takes a
transaction lock of its own, see ServerStore._write): one transaction changes the rows and notes
each row whose vector must change in ``pending``; after the commit, still under the lock, Milvus
is written and the notes cleared. A crash or an unreachable Milvus between the two leaves notes
that the next write or the next open carries out (reconciling by row id). An erasure reports its
vectors "removed" only once a query by id finds none of them, otherwise "pending". A search asks
Milvus for candidates, then opens each candidate's record and scores it from there: a row
erased, expired or outside the purpose is never returned, whatever Milvus still holds.

Milvus may also stop being the index of these records without a note: its data restored from an
older copy, its collection emptied or made afresh, or the records restored from before later
writes. Each confirmed vector write is counted in both stores (Milvus's in a stamp entity no search
admits); a search that finds Milvus's count outside the records' scores the records instead, and
the next write or open rebuilds the index and counts the loss, which `index check` reports.

Visible-region templates (masked probes, with the flag saying whether the enrolment image was
masked) live only in the sealed records, not in Milvus: a masked search takes Milvus's candidates
for the probe against the main templates (a wider net, MASKED_FETCH times as many) and scores
each from its record's visible-region template. In a gallery no larger
than the net that is every row; beyond it, a mated row whose main template ranks below the net is
missed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Collection, Iterator, Mapping, Optional, Sequence, TypeVar

import numpy as np

from .. import atomicfile
from ..errors import BackendError, ConfigError, IndexUnavailable, IntegrityError, StoreConnectionLost
from ..hashing import same_digest
from ..hazmat.templates.keyring import Keyring
from ..hazmat.templates.transform import TemplateTransform
from ..hazmat.templates.sealing import Sealer
from .base import IN_CLUSTER
from .rows import (REKEYED_FROM, ROW_COLS, erased_mark, rekey_mark, Enrollment, Entry, ErasureResult, GalleryRow,
                   Keys, Looks, Match, RekeyResult, check_embedding, check_path, check_text, describe, ended_columns,
                   from_us, initial_meta, iso, keys_from_meta, looks_of, moved_expiry, path_template, prepare, protect,
                   pseudonym_of, purge_condition, refuse_kept, refuse_lookalikes, rekeyed, seal_row, to_us,
                   touched_expiry, unseal_row, utc_now)
from .rows import BLANK_LOOKS, OPEN_COLS, meta_number, refuse_blanked, stored_looks
from .factory import dsn_parts, misread
from .pglocks import bound_lock_wait, lock_timeout, raise_lock_wait
from .pgrights import named_after_rollback, refused_right
from .pgsession import CATALOG_PATH, PgSession, raise_if_lost, refuse_moved_names
from .pgtls import tls_mode
from .vectors import LEAVE_OUT_MAX, AskingAgain, MilvusVectors, purpose_set

log = logging.getLogger("safeface.storage")
NAMESPACE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
READ_TRIES = 3  # a read that another process's re-key overlaps runs again (ServerStore._steady)
_T = TypeVar("_T")
_R = TypeVar("_R")
REBUILD = 0  # the pending note's row id that asks for the whole index to be rebuilt
FETCH_MAX = 16384  # Milvus's largest search limit
# How many rows each purpose allows only tunes the approximate index's effort (vectors.search_params),
# never what is returned, so it is estimated from a sample of about FRACTION_SAMPLE rows and kept
# for FRACTION_TTL_S seconds.
FRACTION_SAMPLE = 20_000
FRACTION_TTL_S = 60.0
# While Milvus lags the records (ServerStore._search), up to LAGGING_MAX rows noted as unwritten
# are scored from the records beside Milvus's candidates; more, or a whole rebuild, and every
# record is scored, up to SCAN_MAX rows (benches/lagging_search.py: 0.69 s over 20,000 rows on 2 cores).
LAGGING_MAX = 1000
SCAN_MAX = 100_000
MASKED_FETCH = 8  # a masked search asks Milvus for this many times the candidates (see above)
VISIBLE_PATHS = ("visible", "visible-masked")  # scored from the sealed records' visible-region templates
CEILING = "committed_ceiling"  # meta key: see ServerStore._raise_ceiling
# Meta key: "0" while no masked enrolment was ever written, "1" after (an erasure does not lower it:
# only `check_index`, which opens every record under the write lock, sets it to what it finds); a
# store made before it has none, which reads as "may hold" (see may_hold).
MASKED_SEEN = "masked_enrolments_seen"
# Meta keys of the index's bookkeeping (see _stamp, _index_state, _lagging):
STAMP = "vector_stamp"  # the vector writes Milvus confirmed, counted after Milvus's own stamp
STAMP_INTENDED = "vector_stamp_intended"  # the same count, written before Milvus's stamp
LOSSES = "vector_losses_found"  # how often Milvus's count was found to differ and the index rebuilt
REBUILDS = "vector_rebuilds_noted"  # each rebuild note counts here, so a search can tell one began under it
IN_FLIGHT = "enrolment_in_flight"  # "<lock connection's pid>:<first row id>" of the enrolment writing now
STORE_ID = "vector_store_id"  # random, made once: whose index a collection is (the stamp's tag carries it)
EPOCH = "vector_epoch"  # random, made anew by each rebuild: which filling of the collection the counts count
_BOOK = [STAMP, STAMP_INTENDED, REBUILDS, IN_FLIGHT, STORE_ID, EPOCH]
OK, DIFFERS, FOREIGN = "ok", "differs", "foreign"  # what _index_state finds
# An erasure's statements read the table itself (ServerStore._read_the_table): index scans off,
# and the planner's costs as PostgreSQL ships them, so that no database or role default (a huge
# cost per row, say) makes an index scan cheaper all the same.
_TABLE_SCAN = (("enable_seqscan", "on"), ("enable_indexscan", "off"), ("enable_bitmapscan", "off"),
               ("enable_indexonlyscan", "off"), ("seq_page_cost", "1"), ("random_page_cost", "4"),
               ("cpu_tuple_cost", "0.01"), ("cpu_index_tuple_cost", "0.005"), ("cpu_operator_cost", "0.0025"))
# The indexes safeface makes on the store's own tables (name, table, column, unique); an index
# on them unlike these is refused (ServerStore._refuse_foreign_rules).
# The log's partial indexes (sqltables.PG_AUDIT): name, column, predicate as the catalog shows it
# (pg_get_indexdef, names resolved in the catalog only).
_LOG_PARTIAL_INDEXES = (
    ("audit_entries_revoked_tokens", "token_id", "(operation = ''revoke''::text)"),
    ("audit_entries_withdrawn_subjects", "subjects", "(operation = ANY (ARRAY[''erase''::text, ''revoke''::text]))"),
    ("audit_entries_apikey_notes", "note", "(operation = ''apikey''::text)"),
    ("audit_entries_enrolled_subjects", "subjects", "(operation = ''enroll''::text)"))
_INDEXES = (("rows_pkey", "rows", "row_id", True), ("rows_pseudonym", "rows", "pseudonym", False),
            ("rows_look", "rows", "look", False), ("rows_look_small", "rows", "look_small", False),
            ("rows_token", "rows", "token_id", False), ("rows_expiry", "rows", "expires_us", False),
            ("meta_pkey", "meta", "k", True), ("pending_pkey", "pending", "row_id", True),
            ("erased_pkey", "erased", "row_id", True))

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {ns};
CREATE TABLE IF NOT EXISTS {ns}.meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {ns}.rows (
    row_id BIGSERIAL PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    purposes TEXT NOT NULL,
    token_id TEXT NOT NULL,
    provenance TEXT NOT NULL,
    expires_us BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    last_interaction TEXT,
    transform_version INTEGER NOT NULL,
    seal_version INTEGER NOT NULL,
    sealed BYTEA NOT NULL,
    look TEXT NOT NULL,
    look_small TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_pseudonym ON {ns}.rows (pseudonym);
CREATE INDEX IF NOT EXISTS rows_look ON {ns}.rows (look);
CREATE INDEX IF NOT EXISTS rows_look_small ON {ns}.rows (look_small);
CREATE INDEX IF NOT EXISTS rows_token ON {ns}.rows (token_id);
CREATE INDEX IF NOT EXISTS rows_expiry ON {ns}.rows (expires_us);
CREATE TABLE IF NOT EXISTS {ns}.pending (row_id BIGINT PRIMARY KEY, op TEXT NOT NULL);
{erased}
"""
# Each row an erasure deleted: its id (the one its seal binds), the SHA-256 of its sealed bytes and
# a MAC of both under the seal key (rows.erased_mark), written in the delete's transaction. See
# ServerStore._owned for what reads it.
_ERASED = ("CREATE TABLE IF NOT EXISTS {ns}.erased (row_id BIGINT PRIMARY KEY, sealed_sha256 TEXT NOT NULL, "
           "seal_version INTEGER NOT NULL, mac TEXT NOT NULL)")
# The digest noted for a row the log names that an erasure found stored under no id (moved and
# edited by hand: Unfound): whatever is stored under that id later is that row put back by whoever
# moved it, which its valid seal let be matched again (after an index rebuild) once it stood as
# the log lists it. It is matched no more (_not_erased), and goes with the subject's next erasure.
UNFOUND_DIGEST = "not-found"


# Names resolve in the catalog only (pg_connect); the function that says so is named with its
# schema, so no function of the role's earlier in the path it replaces is called instead.
RESET_PATH = f"pg_catalog.set_config('search_path', '{CATALOG_PATH}', false)"
PINNED = ", ".join(f"pg_catalog.set_config('{name}', '{value}', false)" for name, value in (
    ("extra_float_digits", "1"), ("quote_all_identifiers", "off"), ("default_transaction_read_only", "off")))


def pg_session(dsn: str, password: Optional[str], where: str, *, auto: bool = True) -> PgSession:
    """A long-lived connection (pg_connect), opened again through pg_connect when the server ends
    it (`auto`: at its next statement; otherwise where its holder revives it)."""

    def connect() -> Any:  # each connection's settings, for reconnections too
        return pg_connect(dsn, password, where)

    return PgSession(connect(), connect, auto=auto, where=where)


def pg_connect(dsn: str, password: Optional[str], where: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError("the deployment keeps its records in PostgreSQL, but psycopg is not installed: "
                          "pip install 'safeface[server]'.") from None
    # The encoding is named in the startup packet, which outranks the database's and the role's
    # settings: a client_encoding of SQL_ASCII there (the app's role may set it for its database or
    # itself) handed every text back as bytes, which no check of safeface's reads as text.
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 5, "client_encoding": "UTF8"}
    if password is not None:
        kwargs["password"] = password
    # A password (ours, or one libpq finds in PGPASSWORD or ~/.pgpass) goes out only inside a
    # SCRAM exchange, never in the clear or as an MD5 hash to a server that asks for it that way.
    # The URL may say otherwise (certificate or peer authentication): it is sealed in deployment.json.
    try:
        named = "require_auth" in psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        named = False
    if not named:
        kwargs["require_auth"] = "scram-sha-256"
    mode = tls_mode(dsn)  # TLS to another machine, or a ConfigError before anything is sent
    if mode is not None:
        kwargs["sslmode"] = mode
    try:
        conn = psycopg.connect(dsn, **kwargs)
        # Read committed whatever the server's or role's default: a writer's transaction begins,
        # then waits for the lock its part's writers take in turn; under repeatable read its
        # snapshot would predate the last writer's commit, and it would miss that entry or row
        # (a false "duplicate" alarm, a one-time spend seen as unspent).
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        # Names resolve in the catalog only, whatever the database's or role's search_path: safeface
        # names its own tables with their schema, and an operator or a catalog view of the role's
        # earlier in the path (an "=" false for one pseudonym, an empty pg_publication_tables)
        # made an erasure delete nothing, or the check of what acts on its tables see nothing.
        # And every lock a statement waits for (a row another session holds locked, an open
        # transaction in psql; a table an ALTER holds) is waited for at most LOCK_WAIT_S, whatever
        # the server's, database's or role's lock_timeout (0: for ever); a write transaction
        # bounds its own waits tighter (bound_lock_wait). One statement, as before.
        # Nor does the server end a session for being idle, whatever the role's
        # idle_session_timeout (which the app's role may set for itself): the write lock's
        # connection idles while its holder writes on the other, and ending it gave the lock to
        # another writer mid-erasure or mid-rekey; every other connection was opened again at every
        # call. (PostgreSQL 14 and later have the setting.)
        # The setting function is named with its schema: this statement is read under the path the
        # role or database gave the session, where a set_config of the role's own, ahead of the
        # catalog, set the path to its schema and every name after it resolved there.
        # Nor may the database's or role's settings change what an answer reads as: floats come back
        # as written (extra_float_digits -14 rounded each to one digit, and a challenge's times, a
        # used nonce's or an API key's rate failed its MAC as if edited by hand), the catalog's
        # definitions as safeface wrote them (quote_all_identifiers made the open name safeface's
        # own constraints and defaults as foreign code), and writes are not refused as read-only
        # (default_transaction_read_only stopped every open with a bare driver error).
        idle = ", pg_catalog.set_config('idle_session_timeout', '0', false)" \
            if conn.info.server_version >= 140000 else ""
        conn.execute(f"SELECT {RESET_PATH}, {PINNED}, "
                     f"pg_catalog.set_config('lock_timeout', %s, false){idle}", (lock_timeout(atomicfile.LOCK_WAIT_S),))
        return conn
    except psycopg.Error as exc:
        # libpq's own words, except where it quotes the DSN it could not read (a password in it).
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
        if isinstance(exc, psycopg.ProgrammingError) or "connection info string" in first or "URI" in first:
            first = "the DSN does not parse"
        raise BackendError(f"{where} cannot be reached or refused the credentials ({first}). Check that it runs and "
                           "that SAFEFACE_PG_PASSWORD (or SAFEFACE_PG_PASSWORD_FILE) is right; nothing was written."
                           ) from None


class AdvisoryLock:
    """The store's write lock: a PostgreSQL session advisory lock on its own connection (so it
    spans processes and machines, and the server releases it if the holder dies), re-entrant
    within a process. A connection found ended is opened again only here, as the lock is taken
    (holding nothing): the lock died with the old one, and is taken anew, waiting for any other
    holder, on the new one. While held it is never replaced; a write under a lock whose
    connection ended is refused inside its transaction (ServerStore._refuse_lost_lock)."""

    def __init__(self, conn: PgSession, key: int, on_acquire: Optional[Callable[[Any], None]] = None,
                 where: str = "the PostgreSQL record store") -> None:
        self._conn = conn
        self.key = key
        self.where = where
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._on_acquire = on_acquire
        self._after: list[Callable[[], None]] = []

    @property
    def depth(self) -> int:
        """How many holds of this process are open (0: not held here)."""
        return self._depth

    @contextmanager
    def held(self) -> Iterator[None]:
        after: list[Callable[[], None]] = []
        try:
            with self._thread_lock:
                if self._depth == 0:
                    try:
                        self._conn.revive()
                        self._conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
                    except Exception as exc:  # its connection lost (ended, or closed by _release): nothing written
                        _raise_pg(exc, self.where)
                        raise
                    if self._on_acquire is not None:
                        try:
                            self._on_acquire(self._conn)
                        except BaseException:
                            self._release()
                            raise
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                    if self._depth == 0:
                        self._release()
                        after, self._after = self._after, []
        finally:
            for fn in after:  # let go of in this process too: no other thread waits for them
                fn()

    def after_release(self, fn: Callable[[], None]) -> None:
        """Run `fn` once this thread lets the lock go (now, if it does not hold it): work that
        must not keep other writers waiting, though it follows a write."""
        with self._thread_lock:
            if self._depth:
                if fn not in self._after:
                    self._after.append(fn)
                return
        fn()

    def _release(self) -> None:
        """Unlock. A failure here is not the call's: what it wrote is committed or rolled back by
        now, and a caller told "nothing was stored" of a committed row was misled. The lock goes
        with its session, so the connection is closed (the server releases the lock for certain),
        and this handle's next write opens a new one and takes the lock there (`held`)."""
        try:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except Exception as exc:
            log.warning("the store's write lock could not be released (%s); its connection is closed, which "
                        "releases it", type(exc).__name__)
            self._conn.drop()


class ServerStore:
    """Sealed rows in PostgreSQL, protected vectors in Milvus. Use `ServerStore.open`."""

    def __init__(self, conn: PgSession, lock_conn: PgSession, where: str, ns: str, keyring: Keyring, dim: int,
                 vectors: MilvusVectors) -> None:
        self._conn = conn
        self._lock_conn = lock_conn
        self.where = where
        self._ns = ns
        self._keyring = keyring
        self._dim = dim
        self.vectors = vectors
        self._lock = threading.RLock()  # one statement at a time on the connection
        # The write lock's second half is taken inside each record transaction on this connection
        # (see _write).
        key, self._xact_key = write_lock_keys(ns)
        self._lock_pid = int(lock_conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        self._old_lock_pids: list[int] = []  # of lock connections that ended (_forget_flight)
        conn.on_new = self._reconnected
        lock_conn.on_new = self._new_lock_conn
        self._opened = False  # the tables exist and this handle may clear its own marks (_forget_flight)
        self._write_lock = AdvisoryLock(lock_conn, key, self._forget_flight, where)
        self._keys: Optional[Keys] = None
        self._half_open = False  # opened while Milvus could not be reached (open, _finish_open)
        self._finishing = threading.Lock()  # one thread of this handle asks Milvus for _finish_open
        self._pseudonym_version = 0
        self._closed = False
        self._fractions: dict[str, float] = {}
        self._fractions_at = float("-inf")
        self._vacuum_told = False  # _vacuum said once that this role may not vacuum the rows
        self._xact: Optional[str] = None  # the enrolment's store transaction, inside before_commit
        self._cluster_id: Optional[int] = None  # the cluster's system identifier (_cluster)
        self._cluster_warned = False
        # Test seam: called with a point name ("add:recorded", "erase:recorded") between the
        # record's commit and the vector write, so a test can stop the process there.
        self._hook: Optional[Callable[[str], None]] = None

    def __repr__(self) -> str:
        return f"ServerStore({self.where!r}, {self.vectors!r})"

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, dsn: str, password: Optional[str], vectors: Callable[[], MilvusVectors], keyring: Keyring,
             dim: int, namespace: str = "safeface") -> "ServerStore":
        """Connect, check the records' schema, dimension and keys and the Milvus collection, and
        only then create what is missing; carry out pending vector writes. Reads no row.

        A store whose records exist opens while Milvus cannot be reached (IndexUnavailable): a
        service restarted during an outage serves from the records, as a running one does
        (searches score them, erasures leave their vector removals noted, enrolments are
        refused). It finishes opening at the first search or write once Milvus answers
        (_finish_open). A new store needs Milvus: nothing is created without it. (Work that must
        wait for the write lock a bounded time, without opening the store: held_write_lock.)"""
        where = _store_where(dsn, namespace)

        conn = pg_session(dsn, password, where)
        lock_conn = None
        vec = None
        try:
            lock_conn = pg_session(dsn, password, where, auto=False)
            # Each wait for the write lock on this connection (pg_advisory_lock) ends after
            # LOCK_WAIT_S, as a local store's does (storage/lock.py), in WorkspaceBusy: it had no
            # end while another process or host held the lock (a long rekey, a stuck process), and a
            # worker's first console login, which opens a handle, waited with it, the logins
            # queued behind it too.
            bound_lock_wait(lock_conn, time.monotonic() + atomicfile.LOCK_WAIT_S, where, False)
            meta = _read_meta(conn, namespace) if _exists(conn, namespace) else None
            if meta is not None:
                keys_from_meta(meta, keyring, dim, where)
            vec = vectors()
            # Connects: the collection is checked before anything is created.
            down = _outage_of(vec.reachable, fresh=meta is None)
            store = cls(conn, lock_conn, where, namespace, keyring, dim, vec)
            with store._write_lock.held():
                store._create(meta is None)
                store._refuse_foreign_rules()
                if down is None:
                    down = _outage_of(vec.ensure, fresh=meta is None)
                store._keys, store._pseudonym_version = keys_from_meta(_read_meta(conn, namespace), keyring, dim,
                                                                       where)
                store._sql(f"INSERT INTO {{ns}}.meta (k, v) VALUES ('{STORE_ID}', %s) ON CONFLICT (k) DO NOTHING",
                           (secrets.token_hex(8),))
                store._opened = True
                if down is None:
                    store._drain_pending(best_effort=True)
                else:
                    store._half_open = True
                    log.warning("%s; %s opened without it: searches score the records, enrolments are refused, and "
                                "it finishes opening once Milvus answers", down, where)
            return store
        except BaseException as exc:
            # A right revoked on the store's tables, met by the opening's own statements (its reads
            # of the meta table, outside the wrapped paths), named while the connection is open:
            # psycopg's error got through, a 500 at a worker's first console login (which opens a
            # handle) and a traceback at the worker's start.
            try:
                refused = refused_right(conn, exc, namespace) if isinstance(exc, Exception) else None
            except Exception:  # the connection lost meanwhile: the error as it came
                refused = None
            for c in (conn, lock_conn):
                if c is not None:
                    c.close()
            if vec is not None:
                vec.close()
            raise_lock_wait(exc, where)  # a statement of the opening, under a database's lock_timeout
            if refused is not None:
                raise refused from None
            raise

    def _needs_owner(self, what: str) -> ConfigError:
        return ConfigError(f"{self.where} was made by an earlier safeface and needs {what}. Open the workspace once "
                           "with the owner's credentials (any safeface command does it), then again with these.")

    def _create(self, fresh: bool) -> None:
        if not fresh:
            # A store made before look digests (pseudonym.look_digests): its rows keep none (""),
            # and from here on every new row must have them, whichever safeface writes it: an
            # older one, which writes none, is refused. NOT NULL with a constant default is a
            # change of the catalogue only, not a rewrite of every row under an exclusive lock.
            if self._conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND "
                                  "table_name = 'rows' AND column_name = 'look_small'", (self._ns,)).fetchone() is None:
                import psycopg

                try:
                    with self._conn.transaction():
                        for col in ("look", "look_small"):
                            self._conn.execute(f"ALTER TABLE {self._ns}.rows ADD COLUMN IF NOT EXISTS {col} TEXT "
                                               "NOT NULL DEFAULT ''")
                            self._conn.execute(f"ALTER TABLE {self._ns}.rows ALTER COLUMN {col} DROP DEFAULT")
                            self._conn.execute(f"CREATE INDEX IF NOT EXISTS rows_{col} ON {self._ns}.rows ({col})")
                except psycopg.errors.InsufficientPrivilege:
                    raise self._needs_owner("two new columns (look digests), which only the owner of its tables "
                                            "may add") from None
            if self._conn.execute("SELECT to_regclass(%s)", (f"{self._ns}.erased",)).fetchone()[0] is None:
                import psycopg

                try:
                    with self._conn.transaction():
                        self._conn.execute(_ERASED.format(ns=self._ns))
                        # The roles that may use the rows (a service's data-only role) may use this
                        # table too: without, each of their searches and erasures failed on it.
                        for grantee, priv in self._conn.execute(
                                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, "
                                "a.privilege_type FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
                                "LEFT JOIN pg_roles r ON r.oid = a.grantee WHERE c.oid = %s::regclass "
                                "AND a.grantee <> c.relowner AND a.privilege_type IN "
                                "('SELECT', 'INSERT', 'UPDATE', 'DELETE')", (f"{self._ns}.rows",)).fetchall():
                            self._conn.execute(f"GRANT {priv} ON {self._ns}.erased TO {grantee}")
                except psycopg.errors.InsufficientPrivilege:
                    raise self._needs_owner("a new table (erased rows), which only a role that may create tables "
                                            "in its schema may add") from None
            return
        with self._conn.transaction():
            for stmt in _SCHEMA.format(ns=self._ns, erased=_ERASED.format(ns=self._ns)).split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            if not self._conn.execute(f"SELECT 1 FROM {self._ns}.meta LIMIT 1").fetchone():
                with self._conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {self._ns}.meta (k, v) VALUES (%s, %s)",
                                    list(initial_meta(self._keyring, self._dim).items()) + [(MASKED_SEEN, "0")])

    def _refuse_foreign_rules(self) -> None:
        """safeface's tables hold nothing that acts on their rows but safeface: a trigger or rule
        can skip an erasure's delete, put a row back (a deferred one at commit, even on a table
        in another schema that a foreign key with a cascade ties to them) or copy sealed rows
        elsewhere; row-level security can hide rows from the erasure alone; a child table holds
        rows of its own; a publication that leaves deletes out sends every row and no erasure.
        Nor anything that runs code of the role's inside safeface's own writes: a check
        constraint, a column default or generated column, a column of a type, domain or collation
        not the catalog's, an index over an expression or with a predicate (but safeface's own
        partial indexes of the log), or an operator class not the catalog's. Such code may set the
        session's search_path to a schema of the role's (set_config(..., false) outlives the
        statement), after which an "=" of theirs answered the guard's lookups of the log and the
        policy state: a revoked consent enrolled its subject again.
        Checked at open and at each erasure (rows.refuse_kept checks the delete itself); each
        time the path is set back first, in case such code ran since the connection was made."""
        self._conn.execute(f"SELECT {RESET_PATH}")
        ns = (self._ns,) * 14
        # audit_head's one row; and the look digests' checks a store made by a release of 4 December
        # 2026 holds (later ones make the columns NOT NULL).
        own_checks = ", ".join(f"('{t}', '{d}')" for t, d in (
            ("audit_head", "CHECK ((id = 1))"), ("rows", "CHECK ((look IS NOT NULL))"),
            ("rows", "CHECK ((look_small IS NOT NULL))")))
        own_partial = " UNION ALL ".join(
            f"SELECT format('CREATE INDEX %%I ON %%I.audit_entries USING btree (%%I) WHERE {pred}', '{name}', "
            f"n.nspname, '{col}')" for name, col, pred in _LOG_PARTIAL_INDEXES)
        ours = ", ".join(f"('{n}', '{t}', '{c}', {str(u).lower()})" for n, t, c, u in _INDEXES)
        found = [str(n) for n, in self._conn.execute(
            # A view (its rule is not in pg_rules), or anything else that is no plain table, index
            # or sequence, in place of one of safeface's: a view named rows over the renamed table
            # hid the row from the erasure alone.
            "SELECT 'not a table: ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind NOT IN ('r', 'i', 'S') UNION ALL "
            "SELECT 'trigger ' || c.relname || '.' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal "
            "UNION ALL SELECT 'rule ' || tablename || '.' || rulename FROM pg_rules WHERE schemaname = %s "
            "UNION ALL SELECT 'row security on ' || c.relname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND (c.relrowsecurity OR c.relforcerowsecurity) "
            "UNION ALL SELECT 'policy ' || c.relname || '.' || p.polname FROM pg_policy p JOIN pg_class c "
            "ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "UNION ALL SELECT 'foreign key ' || f.relname || '.' || k.conname FROM pg_constraint k JOIN pg_class c "
            "ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class f ON f.oid = k.conrelid "
            "WHERE n.nspname = %s AND k.contype = 'f' "
            "UNION ALL SELECT 'child table ' || ch.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class ch ON ch.oid = i.inhrelid WHERE n.nspname = %s "
            "UNION ALL SELECT 'publication ' || p.pubname FROM pg_publication_tables t JOIN pg_publication p "
            "ON p.pubname = t.pubname WHERE t.schemaname = %s AND NOT p.pubdelete "
            # An index the planner may choose for an erasure's lookup whose entries are not what
            # safeface put there: on its own tables, one unlike those it makes (_INDEXES), and on
            # any table of the schema, one whose catalog entry names a column it was not made
            # over (pg_index edited: the dependencies made with it still name the other column).
            # The erasure's statements read the table itself anyway (_read_the_table).
            "UNION ALL SELECT 'index ' || c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
            f"LEFT JOIN (VALUES {ours}) AS w (name, tbl, col, uniq) ON w.name = c.relname AND w.tbl = t.relname "
            "WHERE n.nspname = %s AND t.relname IN ('rows', 'meta', 'pending', 'erased') AND CASE WHEN w.name IS NULL "
            "THEN true ELSE pg_get_indexdef(x.indexrelid) <> "
            "format('CREATE %%sINDEX %%I ON %%I.%%I USING btree (%%I)', "
            "CASE WHEN w.uniq THEN 'UNIQUE ' ELSE '' END, w.name, n.nspname, w.tbl, w.col) END "
            "UNION ALL SELECT DISTINCT 'index ' || c.relname || ' (its catalog entry was edited)' FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN LATERAL unnest(x.indkey::int2[]) AS k (att) WHERE n.nspname = %s AND k.att > 0 "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
            "AND d.objid = x.indexrelid AND d.refclassid = 'pg_class'::regclass AND d.refobjid = x.indrelid "
            "AND d.refobjsubid = k.att) AND NOT EXISTS (SELECT 1 FROM pg_constraint o WHERE o.conindid = x.indexrelid "
            "AND o.conrelid = x.indrelid AND k.att = ANY (o.conkey)) "
            # Code of the role's run by safeface's own inserts and updates (see above).
            "UNION ALL SELECT 'constraint ' || c.relname || '.' || k.conname FROM pg_constraint k JOIN pg_class c "
            "ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND k.contype NOT IN ('p', 'u', 'n') AND NOT (k.contype = 'c' AND (c.relname, pg_get_constraintdef(k.oid)) "
            f"IN ({own_checks})) "
            "UNION ALL SELECT 'default ' || c.relname || '.' || a.attname FROM pg_attrdef d JOIN pg_attribute a "
            "ON a.attrelid = d.adrelid AND a.attnum = d.adnum JOIN pg_class c ON c.oid = d.adrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT (c.relname = 'rows' "
            "AND a.attname = 'row_id' AND a.attgenerated = '' AND pg_get_expr(d.adbin, d.adrelid) = "
            "format('nextval(%%L::regclass)', format('%%I.rows_row_id_seq', n.nspname))) "
            "UNION ALL SELECT 'column type ' || c.relname || '.' || a.attname FROM pg_attribute a JOIN pg_class c "
            "ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_collation co ON co.oid = a.attcollation WHERE n.nspname = %s AND c.relkind = 'r' "
            "AND a.attnum > 0 AND NOT a.attisdropped AND (t.typnamespace <> 'pg_catalog'::regnamespace "
            "OR t.typtype <> 'b' OR co.collnamespace <> 'pg_catalog'::regnamespace) "
            "UNION ALL SELECT 'index ' || c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND ((x.indexprs IS NOT NULL "
            f"OR x.indpred IS NOT NULL) AND pg_get_indexdef(x.indexrelid) NOT IN ({own_partial}) "
            "OR EXISTS (SELECT 1 FROM unnest(x.indclass::oid[]) AS o (oid) JOIN pg_opclass oc ON oc.oid = o.oid "
            "WHERE oc.opcnamespace <> 'pg_catalog'::regnamespace) OR EXISTS (SELECT 1 FROM "
            "unnest(x.indcollation::oid[]) AS o (oid) JOIN pg_collation co ON co.oid = o.oid "
            "WHERE co.collnamespace <> 'pg_catalog'::regnamespace)) ORDER BY 1", ns).fetchall()]
        if found:
            raise IntegrityError(f"{self.where} holds what safeface did not make on its tables "
                                 f"({', '.join(repr(n) for n in found[:5])}): it could keep or copy rows through an "
                                 "erasure, or run code of its own inside safeface's writes. Find who added it and "
                                 "remove it before using the store.")

    def _reconnected(self, conn: PgSession) -> None:
        """On a connection opened again for this handle (PgSession): the open's checks, before any
        call uses it. The server now reached may not be the one this handle opened (a failover to
        a replica, a DNS name moved to another server): the store's tables must be there (none is
        made: a new, empty store under a running service would hide every row), its keys this
        keyring's (keys_from_meta reads the meta afresh), its schema as this release makes it, and
        nothing of another's on its tables (_refuse_foreign_rules: one catalog query; the checks together
        take about 4 ms on loopback, once a reconnection, so they are made in full).
        While this handle holds the write lock, the lock must still be held by its lock
        connection (the server that ended one connection may have ended both, or be another):
        otherwise the steps a writer takes outside a record transaction (the vector counts, the
        notes, which _refuse_lost_lock does not guard) would go on under another writer's lock.
        The rest the handle reads at each call already: key versions (_keys_now), the index's
        write counts (_index_state: a store restored from before later writes has Milvus's count
        above its own, and searches score the records until a write rebuilds the index), the
        pending notes. The cluster's system identifier is read again, as an open reads it: on
        another cluster an enrolment entry written here no longer settles by txid_status."""
        if self._write_lock.depth and _write_lock_holder(lambda q, a: conn.execute(q, a).fetchall(),
                                                         self._write_lock.key) != self._lock_pid:
            raise BackendError(f"{self.where}: the connection holding its write lock has ended (the server or an "
                               "operator ended it) while a call held it; nothing more was written. Try again: the "
                               "next call takes the lock on a new connection.")
        if not _exists(conn, self._ns):
            raise ConfigError(f"{self.where}: its connection was opened again (the server restarted, failed over or "
                              "ended it), and the server now reached holds no such store; nothing was written. Point "
                              "the deployment at the server that holds it, then open the workspace again.")
        self._create(False)
        self._keys, self._pseudonym_version = keys_from_meta(_read_meta(conn, self._ns), self._keyring, self._dim,
                                                             self.where)
        self._refuse_foreign_rules()
        if self._cluster_id is not None:
            try:
                now: Optional[int] = int(conn.execute(
                    "SELECT system_identifier FROM pg_catalog.pg_control_system()").fetchone()[0])
            except Exception:  # noqa: BLE001 - a role not allowed to read it there: asked again by _cluster
                now = None
            if now is not None and now != self._cluster_id:
                log.warning("%s: its connection was opened again on another PostgreSQL cluster (system identifier %s, "
                            "before %s); enrolment entries name this one from now on. Run `safeface audit verify` to "
                            "check the store.", self.where, now, self._cluster_id)
            self._cluster_id, self._cluster_warned = now, False

    def _new_lock_conn(self, lock_conn: PgSession) -> None:
        """On the write lock's connection opened again (AdvisoryLock.held, holding no lock): its
        backend pid is the one that must hold the lock from now on (_refuse_lost_lock)."""
        self._old_lock_pids.append(self._lock_pid)
        self._lock_pid = int(lock_conn.execute("SELECT pg_backend_pid()").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
                self._lock_conn.close()
                self.vectors.close()

    def __enter__(self) -> "ServerStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dim(self) -> int:
        return self._dim

    def index_state(self) -> str:
        return "opening" if self._half_open else "down" if self._index_down(search=True) else "up"

    @property
    def key_versions(self) -> dict[str, int]:
        k = self._keys_now()
        return {"transform": k.transform_version, "seal": k.seal_version}

    def _keys_now(self) -> Keys:
        """The keys the records are under now. Another process's re-key moves them while this
        handle is open (a service worker while the CLI re-keys): the meta's versions are read
        again, one query, and the keys follow them."""
        with self._lock:
            keys = self._require_keys()
            if self._versions() != (keys.transform_version, keys.seal_version):
                keys, self._pseudonym_version = keys_from_meta(_read_meta(self._conn, self._ns), self._keyring,
                                                               self._dim, self.where)
                self._keys = keys
            return keys

    def _steady(self, read: Callable[[Keys], _T]) -> _T:
        """`read` with the keys the records are under, run again with the new ones when another
        process re-keyed the store while it ran (the versions moved up): a row it met already
        moved would read as tampered, and its probe, under the old transform, would meet none. A
        check that fails while the versions stayed, or went down (a re-key never lowers them),
        is raised: that is tampering."""
        failed: Optional[IntegrityError] = None
        for _ in range(READ_TRIES):
            keys = self._keys_now()
            was = (keys.transform_version, keys.seal_version)
            out: Optional[_T] = None
            try:
                out, failed = read(keys), None
            except IntegrityError as exc:
                failed = exc
            now = self._versions()
            if now[0] < was[0] or now[1] < was[1]:
                raise failed or IntegrityError(f"{self.where}: its key versions went down during a read ({was} to "
                                               f"{now}); a re-key never lowers them, so its meta table was edited. "
                                               "Restore it.")
            if now == was:
                if failed is not None:
                    raise failed
                return out  # type: ignore[return-value]  # read returned: out is its result
        if failed is not None:
            raise failed
        raise BackendError(f"{self.where} was re-keyed {READ_TRIES} times during one read; nothing was changed. "
                           "Try again.")

    def _versions(self) -> tuple[int, int]:
        got = dict(self._sql("SELECT k, v FROM {ns}.meta WHERE k IN ('transform_version', 'seal_version')"))
        return (meta_number(got.get("transform_version"), "transform_version", self.where),
                meta_number(got.get("seal_version"), "seal_version", self.where))

    def _require_keys(self) -> Keys:
        if self._closed or self._keys is None:
            raise ConfigError(f"{self.where} is closed.")
        return self._keys

    def _at(self, point: str) -> None:
        if self._hook is not None:
            self._hook(point)

    def _sql(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            self._require_keys()
            try:
                cur = self._conn.execute(query.format(ns=self._ns), args)
                return cur.fetchall() if cur.description else []
            except Exception as exc:
                _raise_pg(exc, self.where, self._conn, self._ns)
                raise

    def pseudonym(self, subject_id: str) -> str:
        self._require_keys()
        return pseudonym_of(self._keyring, self._pseudonym_version, subject_id)

    def looks(self, subject_id: str) -> Looks:
        """The subject id's look digests under the pseudonym key (rows.refuse_lookalikes)."""
        self._require_keys()
        return looks_of(self._keyring, self._pseudonym_version, subject_id)

    def locked(self) -> AbstractContextManager[None]:
        """The write lock (threads, processes and machines) that every write of this store holds."""
        return self._write_lock.held()

    # ---------------------------------------------------------------- the vector side

    def _note(self, ids: Sequence[int], op: str) -> None:
        """Inside a record transaction: these rows' vectors must be written ("upsert") or removed."""
        self._conn.execute(f"INSERT INTO {self._ns}.pending (row_id, op) SELECT unnest(%s::bigint[]), %s "
                           "ON CONFLICT (row_id) DO UPDATE SET op = EXCLUDED.op", ([int(r) for r in ids], op))

    def _clear(self, ids: Sequence[int]) -> None:
        for i in range(0, len(ids), 10_000):
            self._sql("DELETE FROM {ns}.pending WHERE row_id = ANY(%s)", ([int(r) for r in ids[i:i + 10_000]],))

    def _upsert_vectors(self, ids: Sequence[int]) -> None:
        """Write the vectors of these rows as the records hold them now (rows gone are removed)."""
        keys = self._keys_now()
        found: dict[int, tuple[Entry, np.ndarray]] = {}
        for i in range(0, len(ids), 5000):
            part = [int(r) for r in ids[i:i + 5000]]
            for r in self._sql(f"SELECT {OPEN_COLS} FROM {{ns}}.rows WHERE row_id = ANY(%s)", (part,)):
                entry, vec, _ = unseal_row(keys, r, self._dim)
                found[int(r[0])] = (entry, vec)
        found = self._not_erased(found)
        if found:
            rids = list(found)
            self.vectors.upsert(rids, np.stack([v for _, v in found.values()]),
                                [sorted(e.purposes) for e, _ in found.values()], [e.expires_us for e, _ in found.values()])
        gone = [int(r) for r in ids if int(r) not in found]
        if gone:
            self.vectors.delete(gone)
        self._stamp()

    def _remove_vectors(self, ids: Sequence[int]) -> bool:
        """Delete, then confirm by a query by id; True when none is left (and, on Milvus Lite, no
        file holds them: see below). Under the write lock."""
        self.vectors.delete(ids)
        if self.vectors.present(ids):
            return False
        self._stamp()
        if self.vectors.lite:
            # Milvus Lite keeps a deleted vector's bytes in its segments, their index files and its
            # write-ahead log until it compacts them on its own schedule (its manual compaction does
            # nothing): a copy of its files taken after the receipt held the erased vector. Dropping
            # the collection deletes its files, so it is written again from the records, noted first
            # as `index rebuild` does (searches meanwhile score the records; a failure part way
            # leaves the note, and the next write or open finishes it). About 1 s for 3,000 rows.
            if self._every_row_opens("after an erasure, so its files keep the erased vectors until it compacts them"):
                self._sql(self._rebuild_note())
                self._rebuild_vectors()
        return True

    def _every_row_opens(self, so: str) -> bool:
        """Whether every record opens under the keys, read before a rewrite of Milvus's collection
        that may be skipped: one edited by hand (which the store check names) would stop the
        rebuild part way, leaving its note for every later write to fail on. Not rewritten then,
        and said so (`so`: what that leaves)."""
        try:
            for _ in self._every_row(self._keys_now()):
                pass
        except IntegrityError as exc:
            log.warning("%s was not rewritten %s: %s", self.vectors.where, so, exc)
            return False
        return True

    def _stamp(self) -> None:
        """After a vector write Milvus confirmed, under the write lock: count it three times. The
        records' intended count first, then Milvus's stamp, then the records' count, so that at
        any moment recorded <= Milvus's <= intended unless one store went back in time. The
        stamp's tag names this store and the epoch of the collection's filling (see _index_state)."""
        book = self._book()
        n = _counts(book, self.where)[1] + 1
        self._set_meta(STAMP_INTENDED, str(n))
        self.vectors.set_stamp(n, _tag(book.get(STORE_ID, ""), book.get(EPOCH, "0")))
        self._set_meta(STAMP, str(n))

    def _set_meta(self, k: str, v: str) -> None:
        self._sql("INSERT INTO {ns}.meta (k, v) VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", (k, v))

    def _meta_int(self, k: str) -> int:
        got = self._sql("SELECT v FROM {ns}.meta WHERE k = %s", (k,))
        return meta_number(got[0][0], k, self.where) if got else 0

    def _book(self) -> dict[str, str]:
        """The meta keys of the index's bookkeeping (_BOOK)."""
        return {str(k): str(v) for k, v in self._sql("SELECT k, v FROM {ns}.meta WHERE k = ANY(%s)", (_BOOK,))}

    def _index_state(self, book: dict[str, str]) -> str:
        """Whether Milvus holds this store's index as the records count it. FOREIGN: its stamp
        names another store (two workspaces given one collection). DIFFERS: its count lies
        outside the records' [recorded, intended], or it counts another filling (epoch): below,
        Milvus lost writes (restored from an older copy, its collection emptied or made afresh);
        above or another epoch, the records went back (restored from before later writes or a
        rebuild). A search then scores the records, and the next write or open rebuilds the
        index. Not seen here: single vectors deleted or rewritten behind the store with the
        stamp left alone (`check_index` finds those)."""
        held = self.vectors.stamp()
        recorded, intended = _counts(book, self.where)
        if held is None:
            return DIFFERS if recorded > 0 else OK
        count, tag = held
        store, epoch = _tag_parts(tag)
        if store != book.get(STORE_ID, ""):
            return FOREIGN
        if epoch != book.get(EPOCH, "0") or count < recorded:
            return DIFFERS
        if count > intended:
            # A writer raises the intended count before Milvus's: read it again, so a write
            # between this reader's two reads is not taken for the records going back.
            again = self._book()
            return DIFFERS if count > _counts(again, self.where)[1] or epoch != again.get(EPOCH, "0") else OK
        return OK

    def _foreign(self) -> ConfigError:
        return ConfigError(f"the collection {self.vectors.collection!r} in {self.vectors.where} holds another "
                           f"store's index (another workspace's records name it), not that of {self.where}; nothing "
                           "was written. Give each workspace its own collection in storage.collection.")

    def _forget_flight(self, lock_conn: Any) -> None:
        """On taking the write lock: a mark of this handle's own enrolment in flight left by a
        failed _landed would hide that returned enrolment while this handle holds the lock."""
        if self._opened:
            try:
                # And those of this handle's lock connections that ended: their pids may be
                # another backend's by now, which would hide the rows while it held the lock.
                lock_conn.execute(f"DELETE FROM {self._ns}.meta WHERE k = '{IN_FLIGHT}' AND v LIKE ANY(%s)",
                                  ([f"{p}:%" for p in [self._lock_pid, *self._old_lock_pids]],))
                self._old_lock_pids = []
            except Exception as exc:  # a right revoked on meta: named (it was psycopg's own error, a 500)
                _raise_pg(exc, self.where, lock_conn, self._ns)
                raise

    def _rebuild_note(self, lost: bool = False) -> str:
        """One statement: the rebuild note, counted in REBUILDS (and in LOSSES when Milvus's count
        differed). Its table names are filled in, so it runs inside a transaction or outside."""
        def count(k: str) -> str:
            return (f"INSERT INTO {self._ns}.meta (k, v) VALUES ('{k}', '1') ON CONFLICT (k) DO UPDATE SET "
                    f"v = ({self._ns}.meta.v::bigint + 1)::text")
        parts = [f"INSERT INTO {self._ns}.pending (row_id, op) VALUES ({REBUILD}, 'rebuild') ON CONFLICT (row_id) "
                 "DO UPDATE SET op = EXCLUDED.op", count(REBUILDS)] + ([count(LOSSES)] if lost else [])
        return "WITH " + ", ".join(f"s{i} AS ({q})" for i, q in enumerate(parts[:-1])) + " " + parts[-1]

    def _drain_pending(self, best_effort: bool = False) -> int:
        """Carry out the vector writes the records still ask for, and rebuild an index whose
        count of confirmed writes differs from the records' (see _index_state). Under the
        write lock. Best effort, it waits for a later write or open while Milvus is taken for
        down (_index_down): each request to a hung Milvus waits out its deadline, under the lock."""
        if best_effort and not self._index_asked():
            return 0
        notes = self._sql("SELECT row_id, op FROM {ns}.pending ORDER BY row_id")
        # A rebuild under way (or stopped part way) emptied the collection itself: no loss.
        if not any(int(r) == REBUILD for r, _ in notes):
            try:
                state = self._index_state(self._book())
                if state == FOREIGN:
                    raise self._foreign()
                if state == DIFFERS:
                    # Rebuilt at once, and counted where `index check` reports it: it stays visible.
                    log.warning("%s is not the index of these records (its count of confirmed writes differs: "
                                "one of them was restored from another time, or the index emptied); rebuilding "
                                "it from the records", self.vectors.where)
                    self._sql(self._rebuild_note(lost=True))
                    notes = self._sql("SELECT row_id, op FROM {ns}.pending ORDER BY row_id")
            except BackendError:
                if not best_effort:
                    raise
                return 0
        if not notes:
            return 0
        try:
            if any(int(r) == REBUILD for r, _ in notes):
                # Best effort, a row failing its check leaves the note (searches score the records)
                # rather than failing the write that drains it: with a rebuild noted (a kill -9 in
                # one, or the note written by hand), one such row of anyone's refused every
                # erasure, and the open itself.
                if best_effort and not self._every_row_opens("from the records; a search scores the records"):
                    return 0
                self._rebuild_vectors()
                return len(notes)
            ups = [int(r) for r, op in notes if op == "upsert"]
            dels = [int(r) for r, op in notes if op == "delete"]
            if ups:
                self._upsert_vectors(ups)
                self._clear(ups)
            if dels and self._remove_vectors(dels):
                self._clear(dels)
        except BackendError:
            if not best_effort:
                raise
        return len(notes)

    def _finish_open(self, probe_now: bool = False) -> None:
        """What an open during a Milvus outage left undone: load the collection (made afresh if
        it is gone) and carry out the vector writes the records ask for, rebuilding an index
        that is not theirs (_drain_pending). Tried at each search and write, before it takes a
        lock, once the retry window after the last failure has passed (at once with
        `probe_now`: an enrolment, which needs Milvus). Milvus is asked and the collection
        loaded with no lock held, by one thread of the handle at a time: a hung or slow Milvus
        costs that thread its wait, while the handle's other calls score the records and other
        handles' writes go on. Until it is done the store asks Milvus nothing else, and writes
        no vector: a stamp written before the index was judged would hide an index that lost
        its vectors. An index that is another store's keeps the store scoring the records."""
        if not self._half_open or (self._index_down() and (not probe_now or self.vectors.refused_lately())):
            return  # an answer not this store's is not asked again before its window ends, not even by an enrolment
        if not self._finishing.acquire(blocking=False):
            return
        try:
            try:
                self.vectors.load_if_present()
            except IndexUnavailable:
                return  # taken for down again (MilvusVectors.down)
            except ConfigError as exc:  # Milvus answers, but not to this store (the credentials, the collection)
                log.error("%s; %s keeps scoring the records", exc, self.where)
                return
            with self._write_lock.held():
                if not self._half_open:
                    return
                try:
                    self.vectors.ensure()  # a missing collection is made under the lock, as a rebuild makes it
                    self.vectors.probe()  # a read answers: the window ends
                    state = self._index_state(self._book())
                except IndexUnavailable:
                    return
                if state == FOREIGN:
                    log.error("%s; %s keeps scoring the records", self._foreign(), self.where)
                    self.vectors.hold_off(refusal=self._foreign())
                    return
                self._half_open = False
                self._drain_pending(best_effort=True)
        finally:
            self._finishing.release()

    def _index_asked(self, *, search: bool = False) -> bool:
        """Whether searches (`search`) and writes may ask Milvus now: the store opened with it
        (or finished opening since), and it has not failed a request in the retry window."""
        return not self._half_open and not self._index_down(search=search)

    def _index_down(self, *, search: bool = False) -> bool:
        """Whether Milvus failed a request and its retry window (MilvusVectors.hold_off) has not
        passed; with `search`, also a search's window that a probe does not end."""
        return self.vectors.down(search=search)

    def pending(self) -> dict[str, int]:
        """How many vector writes and removals the records still wait for."""
        return {str(op): int(n) for op, n in self._sql("SELECT op, COUNT(*) FROM {ns}.pending GROUP BY op")}

    def rebuild_index(self) -> int:
        """Rebuild the Milvus collection from the records; returns the number of vectors. The
        rebuild is noted first, so that searches meanwhile, or after a failure part way, score
        the records instead of a collection being emptied."""
        self._finish_open()
        with self.locked():
            self._sql(self._rebuild_note())
            return self._rebuild_vectors()

    def _note_now(self, ids: Sequence[int], op: str) -> None:
        """Note vector writes about to be made outside a record transaction (committed at once)."""
        self._sql("INSERT INTO {ns}.pending (row_id, op) SELECT unnest(%s::bigint[]), %s "
                  "ON CONFLICT (row_id) DO UPDATE SET op = EXCLUDED.op", ([int(r) for r in ids], op))

    def _rebuild_vectors(self) -> int:
        keys = self._keys_now()
        held = self.vectors.stamp()
        if held is not None and _tag_parts(held[1])[0] != self._book().get(STORE_ID, ""):
            raise self._foreign()  # never empty another store's index
        self._set_meta(EPOCH, secrets.token_hex(8))  # this filling's counts are not any other's
        self.vectors.drop()
        self.vectors.ensure()
        n = 0
        for opened in self._every_row(keys):
            if not opened:
                continue
            self.vectors.upsert(list(opened), np.stack([v for _, v in opened.values()]),
                                [sorted(e.purposes) for e, _ in opened.values()], [e.expires_us for e, _ in opened.values()])
            n += len(opened)
        self._stamp()
        self._sql("DELETE FROM {ns}.pending")
        return n

    def _every_row(self, keys: Keys) -> Iterator[dict[int, tuple[Entry, np.ndarray]]]:
        """Every record, opened with `keys`, 5,000 at a time in row order."""
        last = -1
        while True:
            batch = self._sql(f"SELECT {OPEN_COLS} FROM {{ns}}.rows WHERE row_id > %s ORDER BY row_id LIMIT 5000",
                              (last,))
            if not batch:
                return
            opened = {}
            for r in batch:
                entry, vec, _ = unseal_row(keys, r, self._dim)
                opened[int(r[0])] = (entry, vec)
            yield self._not_erased(opened)
            last = int(batch[-1][0])

    def check_index(self, repair: bool = False) -> "IndexCheck":
        """Compare Milvus with the records, under the write lock (so neither moves meanwhile):
        rows whose vector is missing, vectors with no live row (orphans: an erasure's delete
        still pending, or a vector written behind the store), and vectors that differ from
        their sealed record (another key version, purposes or expiry). With `repair`, the
        pending notes are carried out first, then every finding is fixed from the records and
        orphans are deleted and confirmed gone. The masked-enrolment mark is compared too: a "0"
        while a masked enrolment is stored hides it from bare probes (a finding), and a "1" or none
        while none is stored only costs bare identifies an embedding; `repair` sets it to what
        the records hold."""
        self._finish_open()
        with self.locked():
            notes = self._sql("SELECT row_id FROM {ns}.pending")
            pending = len(notes)
            # Found at a write or an open, it is rebuilt there already (`losses`).
            differs = all(int(r) != REBUILD for r, in notes) and self._index_state(self._book()) != OK
            if repair:
                self._drain_pending()
            found = self._compare()
            if repair and found.mark != ("1" if found.masked else "0"):
                self._set_meta(MASKED_SEEN, "1" if found.masked else "0")
            if repair and (found.missing or found.stale or found.orphans):
                if found.missing or found.stale:
                    self._note_now(list(found.missing) + list(found.stale), "upsert")
                    self._upsert_vectors(list(found.missing) + list(found.stale))
                if found.orphans and not self._remove_vectors(list(found.orphans)):
                    raise BackendError(f"{self.vectors.where} still holds orphan vectors after deleting them; run "
                                       "`safeface index check --repair` again.")
                self._clear(list(found.missing) + list(found.stale) + list(found.orphans))
                after = self._compare()
                if after.missing or after.stale or after.orphans:
                    raise BackendError(f"{self.vectors.where} still differs from the records after the repair "
                                       f"({after.summary()}); run it again.")
            if repair:
                differs = self._index_state(self._book()) != OK
            return replace(found, pending=pending, repaired=repair, stamp_differs=differs,
                           losses=self._meta_int(LOSSES))

    def _compare(self) -> "IndexCheck":
        keys = self._keys_now()
        in_milvus = set(self.vectors.ids())
        total = len(in_milvus)
        missing: list[int] = []
        stale: list[int] = []
        rows, last, masked = 0, -1, False
        while True:
            batch = self._sql(f"SELECT {OPEN_COLS} FROM {{ns}}.rows WHERE row_id > %s ORDER BY row_id LIMIT 5000",
                              (last,))
            if not batch:
                break
            ids = [int(r[0]) for r in batch]
            held = self.vectors.fetch([i for i in ids if i in in_milvus])
            for r in batch:
                entry, vec, _ = unseal_row(keys, r, self._dim)
                masked = masked or entry.masked_enrolment
                got = held.get(int(r[0]))
                if got is None:
                    missing.append(int(r[0]))
                elif (sorted(got[1]) != sorted(entry.purposes) or got[2] != entry.expires_us
                      or got[0].shape != vec.shape or not np.allclose(got[0], vec, atol=1e-5)):
                    stale.append(int(r[0]))
                in_milvus.discard(int(r[0]))
            rows += len(batch)
            last = ids[-1]
        mark = self._sql(f"SELECT v FROM {{ns}}.meta WHERE k = '{MASKED_SEEN}'")
        return IndexCheck(rows, total, tuple(missing), tuple(sorted(in_milvus)), tuple(stale), 0, False,
                          masked, str(mark[0][0]) if mark else None)

    # ---------------------------------------------------------------- writing

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One record transaction under the write lock, after any vector writes still pending.

        The write lock is a session lock on another connection, which an operator with the app's
        role may end (pg_terminate_backend) while this transaction waits: the server releases it,
        another writer takes it, and both transactions committed (two people past a filing
        threshold of one; a row committed after its subject's erasure receipt). So the
        transaction also takes a transaction lock on this connection first (always after the
        session lock: one order, no deadlock), which serialises the commits whatever happens to
        the other connection, and goes on only if the session lock is still held once it has it.
        (Rolling back one that lost the lock later would leave the "enroll allowed" entries its
        hook committed naming rows never stored, which the next writer's rows would then pass.)"""
        with self._write_lock.held(), self._lock:
            self._drain_pending(best_effort=True)
            try:
                with self._conn.transaction():
                    # Bounded as the session half's wait is (open): a transaction going on after
                    # its session lock's connection ended (an idle_session_timeout, an operator)
                    # still holds this half, and the next write waited for it with no end. And
                    # then the transaction's own statements, each to what is left: a row another
                    # session held locked (SELECT ... FOR UPDATE in an open psql transaction)
                    # stalled an enrolment or erasure, and every writer behind it, for ever.
                    # Given up, the transaction rolls back whole (WorkspaceBusy, _raise_pg).
                    deadline = time.monotonic() + atomicfile.LOCK_WAIT_S
                    bound_lock_wait(self._conn, deadline, self.where, True)
                    self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._xact_key,))
                    bound_lock_wait(self._conn, deadline, self.where, True)
                    self._refuse_lost_lock()
                    yield
                    refuse_moved_names(self._conn, self.where)
            except Exception as exc:
                _raise_pg(exc, self.where, self._conn, self._ns)
                raise

    @contextmanager
    def serialized(self) -> Iterator[None]:
        """Both halves of the write lock, as a write holds them, for work outside the store that
        must fall wholly before or after every write (a trust key's removal): an enrolment's
        commit waits for it even if the session lock's connection is ended meanwhile."""
        with self._write():
            yield

    def add_many(self, items: Sequence[Enrollment], *, decide: Optional[Callable[[], None]] = None,
                 before_commit: Optional[Callable[[list[GalleryRow]], None]] = None) -> list[GalleryRow]:
        """Store several templates: the records in one transaction (all or none), then their
        vectors. Both hooks run inside the transaction, under the write lock (as in the SQLite
        gallery). Milvus is checked first, so an unreachable index refuses before anything is
        written; if it fails between the two writes the vectors are written later."""
        prepared = [prepare(it, self.pseudonym(it.subject_id), self.looks(it.subject_id), self._dim) for it in items]
        for p in prepared:
            purpose_set(p.purposes)  # refused before the records: a row Milvus cannot hold would block every drain
        created = utc_now()
        out: list[GalleryRow] = []
        self._finish_open(probe_now=True)
        if self._half_open:
            refusal = self.vectors.refused_lately()
            if refusal is not None:  # Milvus answered, as another store's index or refusing the credentials
                raise ConfigError(str(refusal))
            raise IndexUnavailable(f"{self.vectors.where} has not answered this store since it opened; nothing was "
                                   "written. Try again once Milvus answers.")
        if self._index_down():
            # Another thread is asking Milvus whether it is back: its answer decides this
            # enrolment too (a refusal while it was out sent callers away from a Milvus that
            # was about to answer).
            if self.vectors.await_trial() and self._index_down():
                raise IndexUnavailable(f"{self.vectors.where} did not answer; nothing was written. Try again in "
                                       f"{max(1, round(self.vectors.window_left()))} s.")
            # Milvus failed a request moments ago: ask it a read once before taking the write
            # lock, so that a hung one keeps this caller waiting out the deadline, not every writer.
            if self._index_down():
                self.vectors.probe()
        with self._write_lock.held():
            self.vectors.ensure()  # reachable, and the collection is there
            with self._write():
                if decide is not None:
                    decide()
                keys = self._keys_now()
                refuse_blanked(self._conn.execute(f"SELECT {OPEN_COLS} FROM {self._ns}.rows WHERE {BLANK_LOOKS}"),
                               keys, self._dim)
                refuse_lookalikes(
                    prepared,
                    lambda looks, p: self._conn.execute(f"SELECT 1 FROM {self._ns}.rows WHERE {looks.where('%s')} "
                                                        "AND pseudonym <> %s LIMIT 1",
                                                        (*looks.query(), p)).fetchone() is not None,
                    lambda p: self._conn.execute(f"SELECT 1 FROM {self._ns}.rows WHERE pseudonym = %s LIMIT 1",
                                                 (p,)).fetchone() is not None)
                raw = np.stack([p.embedding for p in prepared]) if prepared else np.zeros((0, self._dim))
                templates = keys.transform.apply(raw).astype(np.float32)
                ids = [int(r[0]) for r in self._conn.execute(
                    f"SELECT nextval(pg_get_serial_sequence('{self._ns}.rows', 'row_id')) "
                    "FROM generate_series(1, %s)", (len(prepared),)).fetchall()] if prepared else []
                records = []
                for rid, p, t in zip(ids, prepared, templates):
                    vis = protect(keys, p.visible, self._dim)
                    records.append((rid, p.pseudonym, json.dumps(list(p.purposes)), p.token_id, p.provenance,
                                    p.expires_us, iso(created), iso(created), keys.transform_version, keys.seal_version,
                                    seal_row(keys, rid, p.pseudonym, p.purposes, p.token_id, p.provenance, p.expires_us,
                                             t, p.token, visible=vis, masked_enrolment=p.visible_masked,
                                             looks=p.looks.stored), *p.looks.stored))
                    out.append(GalleryRow(rid, p.pseudonym, p.purposes, p.token_id, from_us(p.expires_us), p.provenance,
                                          created, created, masked_template=vis is not None,
                                          masked_enrolment=p.visible_masked))
                # COPY, not INSERT per row: a third of the enrolment time at 2,000-row batches.
                with self._conn.cursor() as cur, cur.copy(
                        f"COPY {self._ns}.rows (row_id, pseudonym, purposes, token_id, provenance, expires_us, "
                        "created_at, last_interaction, transform_version, seal_version, sealed, look, look_small) FROM STDIN"
                        ) as cp:
                    for rec in records:
                        cp.write_row(rec)
                self._note(ids, "upsert")
                flight = self._in_flight(ids)
                self._raise_ceiling(max(ids, default=0))
                if any(p.visible_masked for p in prepared):
                    self._saw_masked()
                if before_commit is not None:
                    # PostgreSQL keeps each transaction's outcome (txid_status) where no role can
                    # set it back: the entry names it, for never_committed.
                    xact = int(self._conn.execute("SELECT txid_current()").fetchone()[0])
                    cluster = self._cluster()
                    self._xact = f"{xact} {IN_CLUSTER} {cluster}" if cluster is not None else str(xact)
                    try:
                        before_commit(out)
                    finally:
                        self._xact = None
            self._at("add:recorded")
            try:
                self.vectors.upsert(ids, templates, [p.purposes for p in prepared], [p.expires_us for p in prepared])
                self._stamp()
                self._clear(ids)
            except BackendError:
                pass  # recorded; the note stays and a later write or open writes the vectors
            finally:
                self._landed(flight)
        return out

    def _in_flight(self, ids: Sequence[int]) -> Optional[str]:
        """Inside a record transaction: these new rows' vectors are being written by this handle
        (see _lagging), until _landed."""
        if not ids:
            return None
        flight = f"{self._lock_pid}:{min(int(i) for i in ids)}"
        self._conn.execute(f"INSERT INTO {self._ns}.meta (k, v) VALUES ('{IN_FLIGHT}', %s) ON CONFLICT (k) DO "
                           "UPDATE SET v = EXCLUDED.v", (flight,))
        return flight

    def _landed(self, flight: Optional[str]) -> None:
        if flight is not None:
            try:
                self._sql(f"DELETE FROM {{ns}}.meta WHERE k = '{IN_FLIGHT}' AND v = %s", (flight,))
            except BackendError:
                pass  # left behind: this handle's next enrolment overwrites it, and its pid goes with the handle

    def _erase(self, where: str, args: tuple[Any, ...],
               before_commit: Optional[Callable[[list[tuple[int, str]]], None]] = None, *,
               owner: Optional[tuple[str, str, Collection[int]]] = None
               ) -> tuple[list[tuple[int, str]], Optional[str], "Unfound"]:
        """Delete the rows `where` finds. `owner`: (column, value, logged ids) of an erasure or a
        revocation, whose rows are opened under the keys as the subject's or consent's (_owned).
        Then, the write lock let go, free the deleted rows' space (_vacuum). Returns (id, pseudonym)
        of each row removed, what became of their vectors, and the logged rows found nowhere."""
        out = self._erase_held(where, args, before_commit, owner=owner)
        if out[0]:
            # After a caller's own hold of the lock too (SafeFace.erase holds it to its receipt and
            # entries): vacuumed inside it, every other writer waited for the vacuum.
            self._write_lock.after_release(self._vacuum)
        return out

    def _erase_held(self, where: str, args: tuple[Any, ...],
                    before_commit: Optional[Callable[[list[tuple[int, str]]], None]] = None, *,
                    owner: Optional[tuple[str, str, Collection[int]]] = None
                    ) -> tuple[list[tuple[int, str]], Optional[str], "Unfound"]:
        self._finish_open()
        with self._write_lock.held():
            with self._write():
                self._refuse_foreign_rules()
                self._read_the_table()
                deleted = self._conn.execute(f"DELETE FROM {self._ns}.rows WHERE {where} RETURNING {ROW_COLS}",
                                             args).fetchall()
                found = [(int(r[0]), str(r[1])) for r in deleted]
                gone = [r for r, _ in found]
                buried = [(int(r[0]), bytes(r[8])) for r in deleted]
                unfound = Unfound((), ())
                if owner is not None:
                    found, gone, buried, unfound = self._owned(deleted, *owner)
                self._bury(buried, unfound=unfound.rows)
                self._note(gone, "delete")
                self._conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # what is deferred to the commit runs now
                refuse_kept(self._kept(where, args), f"{self._ns}.rows")
                if before_commit is not None and found:
                    before_commit(found)
            self._at("erase:committed")
            try:
                kept = self._kept(where, args)  # and once committed
            except BackendError as exc:
                # The delete is committed: a connection lost here (or not opened again) is no
                # rolled-back write. The retry finds the rows gone, names them, and gets the receipt.
                raise StoreConnectionLost(f"{self.where}: the erasure's delete was committed, but its connection "
                                          "ended before the check of what it kept could run, so no receipt was "
                                          "given. Erase again: the retry finds the rows gone and gives the receipt."
                                          ) from exc
            refuse_kept(kept, f"{self._ns}.rows")
            if not found and not unfound.rows:
                return found, None, unfound
            self._at("erase:recorded")
            ids = gone
            if not self._index_asked():
                return found, "pending", unfound  # the note stays; a later write or open removes them
            try:
                if self._remove_vectors(ids):
                    self._clear(ids)
                    return found, "removed", unfound
            except BackendError:
                pass  # the note stays (and a failing Milvus is taken for down: MilvusVectors.down)
            return found, "pending", unfound

    def _owned(self, deleted: Sequence[Any], column: str, value: str, logged: Collection[int]
               ) -> tuple[list[tuple[int, str]], list[int], list[tuple[int, bytes]], "Unfound"]:
        """Inside an erasure's delete: each deleted row (ROW_COLS) opened under the keys as a row
        of `column` = `value` (the subject's pseudonym, or the consent's token reference), and the
        rows the log names (`logged`) that the delete missed, found by their seals. The columns
        are not the seal's word: with the app's role and no key, alice's and bob's rows swapped
        ids and pseudonyms made her erasure delete his template under a receipt and keep hers,
        and her row moved to an id the log never named got a receipt for 0 templates calling it
        gone. Returns (id the seal binds, pseudonym) for the result, the ids whose vectors go
        (both of a moved row), and (id the seal binds, sealed bytes) of each row to note as
        erased (_bury), and the logged rows found nowhere (Unfound). The table is read whole only
        when a logged row is missing (a crash between an erasure's commit and its entry, or an
        edit): 0.9 s at 30,000 rows.

        A logged row that is missing and that the table's failing rows do not explain (it may be
        one of them with more columns edited) is returned as unfound, with those failing rows,
        unless the store's note of an earlier erasure (_erased_before) says that erasure deleted
        it: an erasure killed before its entry, retried after someone edited any other row, was
        refused until the store was restored. Such a row once refused the whole erasure: every
        other row of the person stayed (GDPR art. 17: erase what can be found, and say what
        could not). Its vector, under the id the log names, goes. A failing row whose sealed
        bytes are those of a row noted erased is that row put back (a restored dump) with
        columns edited, and goes with this erasure.

        A deleted row that opens as none of the subject's (or consent's) rows goes too: it is under
        their name, and the role that could put it there could delete it. It is reported as the
        row the log names at its id when no other row opens as that one (her row with a column
        edited by hand, which refused her erasure for good); otherwise (another's row moved under
        her name, a copy planted there) it is only logged."""
        keys = self._keys_now()
        names = {int(k): str(v) for k, v in logged.items()} if isinstance(logged, Mapping) else {}
        logged = {int(r) for r in logged}
        missing = logged - {int(r[0]) for r in deleted}
        found: list[tuple[int, str]] = []
        gone: list[int] = []
        buried: list[tuple[int, bytes]] = []
        failing: list[Any] = []
        unfound = Unfound((), ())

        def whose(r: Sequence[Any], own: bool) -> Optional[tuple[int, str]]:
            for rid in ([int(r[0])] if own else []) + sorted(missing):
                claimed = [rid, *r[1:]]
                claimed[1 if column == "pseudonym" else 3] = value
                try:
                    entry = unseal_row(keys, claimed, self._dim)[0]
                except IntegrityError:
                    continue
                missing.discard(rid)
                return rid, entry.pseudonym
            return None

        for r in deleted:
            got = whose(r, True)
            if got is None:
                failing.append(r)
                continue
            found.append(got)
            gone.extend(sorted({int(r[0]), got[0]}))
            buried.append((got[0], bytes(r[8])))
        # The log's row at a failing row's id may be elsewhere, moved: looked for as missing.
        # Found nowhere else, the failing row deleted at that id is taken as it (below), also
        # where other rows of the table fail: it was recorded "not found, kept", deleted, left
        # off her receipt, and then named by the store check as deleted behind the guard.
        in_place = {int(r[0]) for r in failing if int(r[0]) in logged}
        missing.update(in_place)
        notes = self._erasure_notes(missing)  # one read: what they deleted, and where
        erased = {rid: digest for rid, (digest, _) in notes.items()}
        # Only a note bound to this namespace says a missing row was erased here: each namespace
        # numbers its rows from 1, so another's note, copied over, named a row of this one.
        # A row an earlier erasure found nowhere (UNFOUND_DIGEST) is excused by no note: it may
        # still be where it was moved.
        excused = {rid for rid, (digest, here) in notes.items() if here and digest != UNFOUND_DIGEST}
        if missing:
            moved: list[int] = []
            unexplained: list[int] = []
            with self._conn.cursor(name=f"moved_{secrets.token_hex(4)}") as cur:
                cur.itersize = 2000
                cur.execute(f"SELECT {ROW_COLS} FROM {self._ns}.rows")
                for r in cur:
                    if not missing:
                        break
                    try:
                        unseal_row(keys, r, self._dim)
                        continue  # a row as it was stored
                    except IntegrityError:
                        pass
                    got = whose(r, False)
                    if got is None:
                        if hashlib.sha256(bytes(r[8])).hexdigest() in erased.values():
                            moved.append(int(r[0]))  # an erased row put back, edited: it goes again
                            gone.append(int(r[0]))
                        else:
                            unexplained.append(int(r[0]))
                        continue
                    moved.append(int(r[0]))
                    found.append(got)
                    gone.extend((int(r[0]), got[0]))
                    buried.append((got[0], bytes(r[8])))
            if unexplained and not missing - excused:
                # Every logged row missing was deleted by an earlier erasure: the failing rows are
                # others' rows, edited by hand, which `safeface audit verify` names.
                log.warning("%s: gallery rows %s failed their integrity check (edited by hand; `safeface audit "
                            "verify` names them); rows %s were removed by an earlier erasure, so this one goes on",
                            self.where, unexplained[:5], sorted(missing))
                unexplained = []
            if unexplained and missing:
                lost = missing - in_place
                unfound = Unfound(tuple(sorted(lost)), tuple(unexplained))
                if lost:
                    log.warning("%s: rows %s that the log names as this erasure's are not stored under their ids, "
                                "and gallery rows %s failed their integrity check (one may be them, with more columns "
                                "edited by hand): the erasure removed every other row and records these as not found; "
                                "`safeface audit verify` names them. Restore the store from a backup made before the "
                                "change, then erase again.", self.where, sorted(lost), list(unexplained[:5]))
                else:
                    log.warning("%s: rows %s that the log names as this erasure's fail their integrity check under "
                                "their own ids (removed as them), and gallery rows %s fail it too (edited by hand; "
                                "one may be another row of theirs, moved): kept, and `safeface audit verify` names "
                                "them", self.where, sorted(missing), list(unexplained[:5]))
                gone.extend(unfound.rows)  # their vectors are under the ids the log names
                missing -= lost
            if moved:
                self._conn.execute(f"DELETE FROM {self._ns}.rows WHERE row_id = ANY(%s)", (moved,))
        for r in failing:
            rid = int(r[0])
            gone.append(rid)
            if rid in missing:  # nothing else opens as the log's row here: this is it, edited by hand
                missing.discard(rid)
                found.append((rid, value if column == "pseudonym" else names.get(rid, str(r[1]))))
                buried.append((rid, bytes(r[8])))
            else:
                log.warning("%s: gallery row %s, under the %s being removed, failed its integrity check and opens "
                            "as none of its rows (moved there or copied by hand); removed with them", self.where,
                            rid, "subject" if column == "pseudonym" else "consent")
        return found, list(dict.fromkeys(gone)), buried, unfound

    def _bury(self, rows: Sequence[tuple[int, bytes]], keyring: Optional[Keyring] = None,
              seal_version: Optional[int] = None, unfound: Sequence[int] = ()) -> None:
        """Inside an erasure's delete: note each deleted row (the id its seal binds, its sealed
        bytes) as erased, under the seal key (rows.erased_mark; `keyring` and `seal_version`: a
        re-key's new one), and each of `unfound` (the rows of the erasure it found stored under
        no id) as erased whatever bytes come back under its id (UNFOUND_DIGEST). A note planted
        for the id beforehand is overwritten."""
        if not rows and not unfound:
            return
        ring = keyring or self._keyring
        sv = self._keys_now().seal_version if seal_version is None else seal_version
        notes = []
        for rid, digest in [(rid, hashlib.sha256(sealed).hexdigest()) for rid, sealed in rows] + \
                [(int(rid), UNFOUND_DIGEST) for rid in unfound]:
            notes.append((rid, digest, sv, erased_mark(ring, sv, rid, digest, self._ns)))
        with self._conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {self._ns}.erased (row_id, sealed_sha256, seal_version, mac) "
                            "VALUES (%s, %s, %s, %s) ON CONFLICT (row_id) DO UPDATE SET sealed_sha256 = "
                            "EXCLUDED.sealed_sha256, seal_version = EXCLUDED.seal_version, mac = EXCLUDED.mac", notes)

    def _erased_before(self, ids: Collection[int], *, stored: bool = False, bound: bool = False) -> dict[int, str]:
        """Of `ids`, those an earlier erasure deleted (its note's MAC holds), with the SHA-256 of
        the sealed bytes it deleted. A note written or edited without the seal key counts for
        nothing. `stored`: only the ids whose row stored now has those very sealed bytes (the
        erased row put back): a row given the id anew, after the table's sequence was put back
        with a dump, is another person's, and was never matched. `bound`: only notes bound to
        this namespace, as those that excuse a missing row must be (_owned); a note an earlier
        release wrote, bound to none, still names sealed bytes, which no other row has."""
        return {rid: digest for rid, (digest, here) in self._erasure_notes(ids, stored=stored).items()
                if here or not bound}

    def _erasure_notes(self, ids: Collection[int], *, stored: bool = False) -> dict[int, tuple[str, bool]]:
        """_erased_before's notes in one query: of `ids`, those an earlier erasure deleted, with
        the SHA-256 of the sealed bytes it deleted and whether the note is bound to this
        namespace (False: one an earlier release wrote, bound to none)."""
        if not ids:
            return {}
        out: dict[int, tuple[str, bool]] = {}
        query = ("SELECT e.row_id, e.sealed_sha256, e.seal_version, e.mac FROM {ns}.erased e "
                 + ("JOIN {ns}.rows r ON r.row_id = e.row_id AND (encode(sha256(r.sealed), 'hex') = e.sealed_sha256 "
                    f"OR e.sealed_sha256 = '{UNFOUND_DIGEST}') " if stored else "") + "WHERE e.row_id = ANY(%s)")
        for rid, digest, sv, mac in self._sql(query, (sorted(int(r) for r in ids),)):
            try:
                here = erased_mark(self._keyring, int(sv), int(rid), str(digest), self._ns)
                unbound = erased_mark(self._keyring, int(sv), int(rid), str(digest))
            except (ConfigError, ValueError, TypeError):
                continue  # a seal key version the keyring no longer holds, or a value edited out of its type
            if same_digest(str(mac), here):
                out[int(rid)] = (str(digest), True)
            elif same_digest(str(mac), unbound):
                out[int(rid)] = (str(digest), False)
        return out

    def _vacuum(self) -> None:
        """After an erasure's commit: free the deleted rows' space in the table's pages, so that
        PostgreSQL's compaction of each page writes the rows left over most of the erased bytes
        (a deleted row stays whole in its page, sealed template and all, until a vacuum). Pages
        unchanged since the last vacuum are skipped and indexes left for autovacuum, so it costs
        about 1 ms on 200,000 rows (0.17 s for the first one after a bulk import of 200,000 rows
        autovacuum had not reached, outside the write lock); it never waits for a vacuum already
        running (SKIP_LOCKED) nor takes the exclusive lock that would stall searches (TRUNCATE
        OFF). What it cannot scrub: the row's bytes where no live row was moved over them (15 to
        38% of erased rows in a measurement: the newest of its page, and older versions a
        match's update left), until new rows fill that space; the write-ahead log; the row while
        a transaction older than the erasure is open. A role that does not own the table
        vacuums nothing (PostgreSQL only warns it): said once a handle."""
        self._at("erase:vacuum")
        try:
            if not self._vacuum_told and not self._sql("SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE "
                                                       "oid = %s::regclass", (f"{self._ns}.rows",))[0][0]:
                self._vacuum_told = True
                log.warning("%s: this role does not own the rows table, so an erasure cannot vacuum it and the "
                            "erased rows' sealed bytes stay in its pages until autovacuum reaches them; let the "
                            "role own it (or, on PostgreSQL 17, grant it MAINTAIN on the table)", self.where)
            self._sql("VACUUM (INDEX_CLEANUP OFF, TRUNCATE OFF, SKIP_LOCKED) {ns}.rows")
        except (BackendError, ConfigError) as exc:  # a lost connection; a lock_timeout (raise_lock_wait)
            log.warning("%s: the erased rows' space was not freed (%s); autovacuum will free it", self.where, exc)

    def _kept(self, where: str, args: tuple[Any, ...]) -> list[int]:
        """Rows an erasure's WHERE still finds (at most five, to name them), reading the table itself.
        Once the erasure committed, outside the write's own handling: a right revoked from the role
        in between (SELECT on `rows`) let psycopg's error through, a 500; it is SchemaOwnerNeeded."""
        try:
            with self._conn.transaction():
                self._read_the_table()
                return [int(r) for r, in self._conn.execute(f"SELECT row_id FROM {self._ns}.rows WHERE {where} "
                                                            "LIMIT 5", args).fetchall()]
        except Exception as exc:
            _raise_pg(exc, self.where, self._conn, self._ns)
            raise

    def _read_the_table(self) -> None:
        """Inside a transaction, to its end: its statements read the tables, never an index. An
        index whose entries are not what its catalog entry says (made over token_id, then its
        pg_index row edited to say pseudonym, with sequential scans turned off for the database)
        made an erasure's delete and its check of what it kept both find nothing: a receipt for 0
        templates, the subject still matched. The open and each erasure also refuse an index
        unlike safeface's (_refuse_foreign_rules); a superuser role, which may edit the catalog
        at will, is not refused, only never needed."""
        self._conn.execute("SELECT " + ", ".join(f"pg_catalog.set_config('{k}', '{v}', true)" for k, v in _TABLE_SCAN))

    def erase_subject(self, subject_id: str) -> ErasureResult:
        """Remove every row of the subject from the records and its vectors from Milvus."""
        return self.erase_pseudonym(self.pseudonym(subject_id))

    def erase_pseudonym(self, pseudonym: str, *, rows: Collection[int] = ()) -> ErasureResult:
        """The same, for a subject known only by pseudonym (an operator's console). `rows`: ids the
        caller's record (the audit log) names as the subject's, removed too: a row whose columns
        were edited by hand escapes the WHERE. Each row is opened as the subject's (_owned)."""
        check_text(pseudonym, "pseudonym")
        logged = sorted(int(r) for r in rows)
        found, vectors, unfound = self._erase("pseudonym = %s OR row_id = ANY(%s::bigint[])", (pseudonym, logged),
                                              owner=("pseudonym", pseudonym, logged))
        return ErasureResult(pseudonym, tuple(sorted(r for r, _ in found)), len(found), vectors,
                             not_found=unfound.rows, failing=unfound.failing)

    def remove_token(self, token_id: str, *, rows: Collection[int] = ()) -> ErasureResult:
        """`rows` as in erase_pseudonym; a mapping (row id -> pseudonym, as the log names them)
        says whose a row edited by hand is (_owned), rather than its pseudonym column."""
        check_text(token_id, "token_id")
        logged = sorted(int(r) for r in rows)
        found, vectors, unfound = self._erase("token_id = %s OR row_id = ANY(%s::bigint[])", (token_id, logged),
                                              owner=("token_id", token_id, rows))
        ps = {p for _, p in found}
        return ErasureResult(ps.pop() if len(ps) == 1 else None, tuple(sorted(r for r, _ in found)), len(found),
                             vectors, not_found=unfound.rows, failing=unfound.failing)

    def purge_expired(self, now: Optional[datetime] = None, *, ended: Sequence[str] = (),
                      before_commit: Optional[Callable[[list[tuple[int, str]]], None]] = None) -> list[ErasureResult]:
        """As Gallery.purge_expired."""
        now_us = to_us(now or utc_now(), "now")
        columns: list[str] = []
        if ended:
            self._finish_open()
            columns = ended_columns([c for c, in self._conn.execute(
                f"SELECT DISTINCT purposes FROM {self._ns}.rows").fetchall()], ended)
        found, vectors, _ = self._erase(*purge_condition(now_us, columns, "%s"), before_commit)
        by_p: dict[str, list[int]] = {}
        for r, p in found:
            by_p.setdefault(p, []).append(r)
        return [ErasureResult(p, tuple(sorted(rs)), len(rs), vectors) for p, rs in by_p.items()]

    def touch(self, subject_id: str, now: Optional[datetime] = None, new_expiry: Optional[datetime] = None, *,
              purpose: Optional[str] = None) -> int:
        """Record an interaction under `purpose` with the subject's rows held for it; optionally
        move their expiry (re-sealed, and their vectors' expiry field rewritten). Without
        `purpose`, every row of the subject, and no expiry may be moved."""
        now_t = now or utc_now()
        to_us(now_t, "now")
        exp_us = touched_expiry(new_expiry, purpose)
        p = self.pseudonym(subject_id)
        looks = self.looks(subject_id).stored  # bound by each re-sealed row (one stored without gets them)
        self._finish_open()
        with self._write_lock.held():
            with self._write():
                keys = self._keys_now()
                rows = self._conn.execute(f"SELECT {OPEN_COLS} FROM {self._ns}.rows WHERE pseudonym = %s",
                                          (p,)).fetchall()
                opened = [(r, *unseal_row(keys, r, self._dim)) for r in rows]
                if purpose is not None:
                    opened = [o for o in opened if purpose in o[1].purposes]
                for r, *_ in opened:
                    self._conn.execute(f"UPDATE {self._ns}.rows SET last_interaction = %s WHERE row_id = %s",
                                       (iso(now_t), int(r[0])))
                if exp_us is not None and opened:
                    back = self._erased_before([int(r[0]) for r, *_ in opened], stored=True)  # as in rekey
                    for r, entry, vec, token in opened:
                        exp = moved_expiry(entry.purposes, entry.expires_us, exp_us)
                        sealed = seal_row(keys, int(r[0]), p, sorted(entry.purposes), entry.token_id, str(r[4]),
                                          exp, vec, token, visible=entry.visible,
                                          masked_enrolment=entry.masked_enrolment, looks=looks)
                        self._conn.execute(f"UPDATE {self._ns}.rows SET expires_us = %s, sealed = %s, look = %s, "
                                           "look_small = %s WHERE row_id = %s", (exp, sealed, *looks, int(r[0])))
                        if int(r[0]) in back:
                            self._bury([(int(r[0]), sealed)])
                    self._note([int(r[0]) for r, *_ in opened], "upsert")
            if exp_us is not None and opened:
                self._drain_pending(best_effort=True)
        return len(opened)

    def rekey(self, keyring: Optional[Keyring] = None) -> RekeyResult:
        """Move every record to the newest transform and seal keys in one transaction, then
        rebuild the vectors (a note asks for it, so a crash between the two finishes on open)."""
        target = keyring or self._keyring
        self._finish_open()
        with self._write_lock.held():
            with self._write():
                old = self._keys_now()
                meta = _read_meta(self._conn, self._ns)
                pv = int(meta["pseudonym_version"])
                if pv not in target.versions("pseudonym") or target.key_id("pseudonym", pv) != meta["pseudonym_key_id"]:
                    raise ConfigError("the new keyring does not hold this store's pseudonym key; the pseudonym key "
                                      "cannot change, so carry it over to the new keyring.")
                tv, sv = target.version("transform"), target.version("seal")
                t_id, s_id = target.key_id("transform", tv), target.key_id("seal", sv)
                if t_id == meta["transform_key_id"] and s_id == meta["seal_key_id"]:
                    return RekeyResult(0, (old.transform_version, tv), (old.seal_version, sv))
                same = t_id == meta["transform_key_id"]
                new = Keys(tv, sv, old.transform if same else TemplateTransform.from_key(target.key("transform", tv),
                                                                                          self._dim),
                           Sealer(target.key("seal", sv)))
                rows = self._conn.execute(f"SELECT {OPEN_COLS} FROM {self._ns}.rows ORDER BY row_id").fetchall()
                # An erased row put back keeps its note on its new bytes: it was matched again after.
                back = self._erased_before([int(r[0]) for r in rows], stored=True)
                renoted: list[tuple[int, bytes]] = []
                for r in rows:
                    entry, t_old, token = unseal_row(old, r, self._dim)
                    t_new = (t_old if same else old.transform.rekey_to(new.transform, t_old)).astype("<f4")
                    sealed = seal_row(new, int(r[0]), entry.pseudonym, json.loads(r[2]), entry.token_id, str(r[4]),
                                      entry.expires_us, t_new, token, visible=rekeyed(old, new, same, entry.visible),
                                      masked_enrolment=entry.masked_enrolment, looks=stored_looks(r[9], r[10]))
                    self._conn.execute(f"UPDATE {self._ns}.rows SET transform_version = %s, seal_version = %s, "
                                       "sealed = %s WHERE row_id = %s", (tv, sv, sealed, int(r[0])))
                    if int(r[0]) in back:
                        renoted.append((int(r[0]), sealed))
                self._bury(renoted, target, sv)
                with self._conn.cursor() as cur:
                    cur.executemany(f"UPDATE {self._ns}.meta SET v = %s WHERE k = %s", [
                        (str(tv), "transform_version"), (t_id, "transform_key_id"),
                        (str(sv), "seal_version"), (s_id, "seal_key_id")])
                self._set_meta(REKEYED_FROM, rekey_mark(target, _read_meta(self._conn, self._ns),
                                                        f"{old.transform_version}/{old.seal_version}"))
                if not same:
                    self._conn.execute(self._rebuild_note())
            self._keyring = target
            self._keys = new
            self._drain_pending(best_effort=True)
        return RekeyResult(len(rows), (old.transform_version, tv), (old.seal_version, sv))

    # ---------------------------------------------------------------- reading

    def _open_rows(self, ids: Sequence[int], keys: Keys) -> dict[int, tuple[Entry, np.ndarray]]:
        out: dict[int, tuple[Entry, np.ndarray]] = {}
        if not ids:
            return out
        for r in self._sql(f"SELECT {OPEN_COLS} FROM {{ns}}.rows WHERE row_id = ANY(%s)", ([int(i) for i in ids],)):
            entry, vec, _ = unseal_row(keys, r, self._dim)
            out[int(r[0])] = (entry, vec)
        return self._not_erased(out)

    def _not_erased(self, opened: dict[int, _R]) -> dict[int, _R]:
        """`opened` less the rows an erasure deleted, stored again with the very sealed bytes it
        deleted (_erased_before: put back from an older dump of the table, say). Searched,
        verified against or written to Milvus, it matched an erased person again until someone
        ran `safeface audit verify`, which names it. One query by id."""
        back = self._erased_before(list(opened), stored=True)
        if back:
            log.warning("%s: gallery rows %s were erased and are stored again (put back from an older copy?); they "
                        "are not matched. `safeface audit verify` names them; erase the subject again to remove them",
                        self.where, sorted(back)[:5])
        return {k: v for k, v in opened.items() if k not in back}

    def search(self, embedding: np.ndarray, purpose: str, k: int = 5, threshold: Optional[float] = None,
               now: Optional[datetime] = None, *, path: Optional[str] = None,
               exclude: Collection[int] = ()) -> list[Match]:
        """The best-matching subjects (one match each, their best row) among rows whose purposes
        include `purpose` and that have not expired at `now`, best first, at most `k`. Milvus
        proposes; each proposal is opened from the records and scored from its sealed template.
        `path` as in the SQLite gallery (storage.rows.PATHS): "visible" and "visible-masked" score
        the visible-region templates of the rows enrolled bare and masked (other rows take no
        part), "plain-only" the main templates of rows without one. `exclude`: row ids that take
        no part, left out before ranking, as in the SQLite gallery."""
        check_text(purpose, "purpose")
        check_path(path)
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}.")
        now_us = to_us(now or utc_now(), "now")
        probe = check_embedding(embedding, self._dim)
        self._finish_open()
        left_out = frozenset(int(i) for i in exclude)
        return self._steady(lambda keys: self._search(keys, probe, purpose, k, threshold, now_us, path, left_out))

    def _search(self, keys: Keys, probe: np.ndarray, purpose: str, k: int, threshold: Optional[float], now_us: int,
                path: Optional[str], exclude: frozenset[int] = frozenset()) -> list[Match]:
        q = keys.transform.apply(probe).astype(np.float32)  # the probe and the rows it meets under the same keys
        if self._index_asked(search=True):
            try:
                return self._search_with_index(keys, q, purpose, k, threshold, now_us, path, exclude)
            except IndexUnavailable as exc:
                # Milvus went away under a running store: the records answer, slower, rather than
                # a gate refusing everyone until it is back. A write still needs Milvus (or notes
                # it). A hung Milvus fails only at each request's deadline, so searches leave it
                # alone for a while (MilvusVectors.down) instead of each waiting that long.
                if not isinstance(exc, AskingAgain):
                    log.warning("%s; searches score the records for the next %.1f s", exc,
                                self.vectors.window_left(search=True))
        self._refuse_scan_past_max("cannot be asked now")
        return self._scan(keys, q, purpose, k, threshold, now_us, path, exclude)

    def _search_with_index(self, keys: Keys, q: np.ndarray, purpose: str, k: int, threshold: Optional[float],
                           now_us: int, path: Optional[str], exclude: frozenset[int] = frozenset()) -> list[Match]:
        lagging, rebuilds = self._lagging()
        if lagging is None:
            return self._scan(keys, q, purpose, k, threshold, now_us, path, exclude)
        best: dict[str, Match] = {}
        # The caller's rows are left out inside Milvus, so they take no place among its proposals:
        # on a masked probe's path (which Milvus does not rank) one such row proposed sent the
        # search to the records, and past SCAN_MAX refused it. Beyond LEAVE_OUT_MAX, that many are
        # left out inside Milvus, and Milvus is asked at once for as many more proposals as the
        # rest, which are dropped from them (as below): none left out and rounds of 4 times more
        # took 0.8 s at 4,097 such rows on 20,000 (0.2 s now), and past FETCH_MAX of them every
        # such search scored the records, or was refused past SCAN_MAX.
        leave_out = sorted(exclude)[:LEAVE_OUT_MAX]
        fetch = min(FETCH_MAX, 4 * k * (MASKED_FETCH if path in VISIBLE_PATHS else 1)
                    + len(exclude) - len(leave_out))
        while True:
            hits = self.vectors.search(q, purpose, now_us, fetch, self.allowed_fraction(purpose), leave_out)
            if threshold is not None and path not in VISIBLE_PATHS:  # Milvus scores main templates only
                hits = [(i, s) for i, s in hits if s >= threshold - 1e-4]
            # An excluded row is not opened and counts for nothing: Milvus is asked further instead.
            opened = self._open_rows([i for i, _ in hits if i not in lagging and i not in exclude], keys)
            self._score(opened, q, purpose, threshold, now_us, path, best)
            # Proposals that take no part: left out by the caller, or erased and put back (which
            # _open_rows drops). Either kind crowds out what Milvus ranks below it. On a masked
            # probe's path, which Milvus does not rank, only the caller's: one put-back row among
            # the proposals sent every masked search that found fewer than k to the records.
            unopened = [i for i, _ in hits if i not in opened and i not in lagging]
            crowded = any(i in exclude for i in unopened) if path in VISIBLE_PATHS else bool(unopened)
            # Only Milvus's proposals count towards k: a lagging row scored beside them is no
            # reason to stop before a better one Milvus has not proposed yet.
            if len(best) >= k or len(hits) < fetch or fetch >= FETCH_MAX:
                break
            fetch = min(FETCH_MAX, fetch * 4)
        # A rebuild noted since the notes were read (another process's `index rebuild`) may have
        # emptied the collection under this search: its answer is the records'.
        if self._meta_int(REBUILDS) != rebuilds:
            self._refuse_scan_past_max()
            return self._scan(keys, q, purpose, k, threshold, now_us, path, exclude)
        if len(best) < k and len(hits) >= fetch and crowded:
            # Milvus proposed as many as it ranks, rows that take no part took places among them
            # (left out by the caller, or erased and put back with the Milvus data: the store's
            # own notes drop those), and fewer than k subjects came of the rest: up to FETCH_MAX
            # such rows, ranked first, hid what ranks below them. The records answer instead: a
            # wrong "no one" is worse than slow. (Otherwise, as before: a masked probe's path,
            # which Milvus does not rank, keeps its best effort.)
            if int(self._sql("SELECT count(*) FROM {ns}.rows")[0][0]) > SCAN_MAX:
                raise BackendError(f"{self.where}: some of the {FETCH_MAX} rows Milvus ranks first take no "
                                   "part in this search (rows put back after an erasure, or edited by hand), and the "
                                   "store has too many rows to search without Milvus; nothing was changed. Run "
                                   "`safeface audit verify` and erase again the subjects it names.")
            return self._scan(keys, q, purpose, k, threshold, now_us, path, exclude)
        self._score(self._open_rows(sorted(lagging - exclude), keys), q, purpose, threshold, now_us, path, best)
        return sorted(best.values(), key=lambda m: -m.score)[:k]

    def _scan(self, keys: Keys, q: np.ndarray, purpose: str, k: int, threshold: Optional[float], now_us: int,
              path: Optional[str], exclude: frozenset[int] = frozenset()) -> list[Match]:
        """Every record scored, without Milvus (less the rows `exclude` names)."""
        found: dict[str, Match] = {}
        for opened in self._every_row(keys):
            self._score({i: r for i, r in opened.items() if i not in exclude}, q, purpose, threshold, now_us, path,
                        found)
        return sorted(found.values(), key=lambda m: -m.score)[:k]

    def _lagging(self) -> tuple[Optional[set[int]], int]:
        """The rows Milvus lags on, to be scored from the records, and the count of rebuilds
        noted so far. None instead of rows when every record must be scored: a rebuild is
        pending (a re-key's, under way or stopped, or `rebuild_index`'s); Milvus is not the index
        of these records (_index_state); or more rows than LAGGING_MAX lag. The rows of an
        enrolment still writing (its process holds the write lock) are left out: that call has
        not returned, and a bulk enrolment would otherwise make every search in every process
        open its rows. Rows whose enrolment returned are scored whoever holds the lock. Refused
        with BackendError past SCAN_MAX records."""
        ids, book = self._notes_and_book()
        holder = None
        if ids and IN_FLIGHT in book:
            # Read again after the lock's holder: a mark still there then is that holder's flight
            # or a newer one (read before it, a holder may have finished and taken its notes).
            holder = self._lock_holder()
            ids, book = self._notes_and_book()
        rebuilds = meta_number(book.get(REBUILDS, 0), REBUILDS, self.where)
        if REBUILD not in ids:
            if self._index_state(book) == OK:
                if ids and IN_FLIGHT in book:
                    # Exactly "<pid>:<first>": a mark of one or three parts was edited by hand,
                    # and read by its first two it would hide rows no enrolment is writing.
                    parts = book[IN_FLIGHT].split(":")
                    pid, first = (meta_number(v, IN_FLIGHT, self.where)
                                  for v in (parts if len(parts) == 2 else [None, None]))
                    if pid == holder:
                        ids = {i for i in ids if i < first}
                if len(ids) <= LAGGING_MAX:
                    return ids, rebuilds
        self._refuse_scan_past_max()
        return None, rebuilds

    def _notes_and_book(self) -> tuple[set[int], dict[str, str]]:
        """The rows noted for a vector write (at most LAGGING_MAX + 1) and the bookkeeping, in one read."""
        (notes, meta), = self._sql(
            "SELECT ARRAY(SELECT row_id FROM {ns}.pending WHERE op <> 'delete' ORDER BY row_id LIMIT %s), "
            "(SELECT json_object_agg(k, v) FROM {ns}.meta WHERE k = ANY(%s))", (LAGGING_MAX + 1, _BOOK))
        return {int(r) for r in notes}, {str(k): str(v) for k, v in (meta or {}).items()}

    def _refuse_scan_past_max(self, why: str = "") -> None:
        if int(self._sql("SELECT count(*) FROM {ns}.rows")[0][0]) <= SCAN_MAX:
            return
        if why:
            raise IndexUnavailable(f"{self.where}: its Milvus index {why}, and the store has too many rows to search "
                                   "without it; nothing was changed. Try again once Milvus answers.")
        raise BackendError(f"{self.where}: its Milvus index lags the records (a rebuild, vector writes that did "
                           "not finish, or an index or records restored from another time), and the store has "
                           "too many rows to search without it; nothing was changed. Try again once the rebuild "
                           "ends, or run `safeface index check WS --repair` if no process is rebuilding it.")

    def _refuse_lost_lock(self) -> None:
        """Inside a record transaction, before it writes: refuse it unless this handle's lock
        connection still holds the write lock (see _write)."""
        if self._lock_holder() != self._lock_pid:
            raise BackendError(f"{self.where}: the connection holding its write lock has ended (the server or an "
                               "operator ended it); nothing was stored. Try again: the next call takes the lock on a "
                               "new connection.")

    def _lock_holder(self) -> Optional[int]:
        """The backend pid of the connection holding the store's write lock now, if any."""
        return _write_lock_holder(self._sql, self._write_lock.key)

    @staticmethod
    def _score(opened: dict[int, tuple[Entry, np.ndarray]], q: np.ndarray, purpose: str, threshold: Optional[float],
               now_us: int, path: Optional[str], best: dict[str, Match]) -> None:
        """Score opened rows allowed for `purpose` at `now_us` into `best` (a subject's best row)."""
        for rid, (entry, vec) in opened.items():
            if purpose not in entry.purposes or entry.expires_us <= now_us:
                continue
            t = path_template(entry, vec, path)
            if t is None:
                continue
            score = float(np.dot(t, q))
            if threshold is not None and score < threshold:
                continue
            m = best.get(entry.pseudonym)
            if m is None or score > m.score:
                best[entry.pseudonym] = Match(entry.pseudonym, score, rid, entry.token_id)

    def allowed_fraction(self, purpose: str) -> float:
        """About what fraction of the rows `purpose` allows (0.0 when none; 1.0 in an empty store),
        from a sample of the records refreshed every FRACTION_TTL_S seconds."""
        now = time.monotonic()
        if now - self._fractions_at > FRACTION_TTL_S:
            est = self._sql("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (f"{self._ns}.rows",))
            pct = min(100.0, 100.0 * FRACTION_SAMPLE / max(1.0, float(est[0][0]) if est else 0.0))
            sample = f"TABLESAMPLE SYSTEM ({pct:.6f})" if pct < 100.0 else ""
            sets = self._sql(f"SELECT purposes, count(*) FROM {{ns}}.rows {sample} GROUP BY purposes")
            total = sum(int(c) for _, c in sets)
            fractions: dict[str, float] = {}
            for text, c in sets:
                for purpose_ in set(json.loads(text)):
                    fractions[purpose_] = fractions.get(purpose_, 0.0) + int(c) / total
            self._fractions, self._fractions_at = fractions, (now if total else float("-inf"))
        return self._fractions.get(purpose, 0.0) if self._fractions else 1.0

    def verify(self, subject_id: str, embedding: np.ndarray, purpose: str,
               now: Optional[datetime] = None, *, path: Optional[str] = None,
               exclude: Collection[int] = ()) -> Optional[float]:
        """The best score between the embedding and the subject's rows allowed for `purpose` at
        `now`, from the records alone; None when there is no such row. `path` as in `search`
        (None when no row of the subject takes part in it). `exclude`: row ids that take no part."""
        check_text(purpose, "purpose")
        check_path(path)
        now_us = to_us(now or utc_now(), "now")
        probe = check_embedding(embedding, self._dim)

        def read(keys: Keys) -> Optional[float]:
            q = keys.transform.apply(probe).astype(np.float32)  # the probe and the rows under the same keys
            scores = [float(np.dot(t, q)) for t in self._subject_templates(subject_id, path, purpose, now_us, keys,
                                                                            exclude)]
            return max(scores) if scores else None

        return self._steady(read)

    def _subject_templates(self, subject_id: str, path: Optional[str], purpose: str, now_us: int,
                           keys: Keys, exclude: Collection[int] = ()) -> Iterator[np.ndarray]:
        """The templates `path` scores of the subject's rows allowed for `purpose` at `now_us`
        (less the rows `exclude` names), each opened from its sealed record with `keys`."""
        rows = self._sql(f"SELECT {OPEN_COLS} FROM {{ns}}.rows WHERE pseudonym = %s", (self.pseudonym(subject_id),))
        kept = self._not_erased({int(r[0]): r for r in rows if int(r[0]) not in exclude})
        for r in kept.values():
            entry, vec, _ = unseal_row(keys, r, self._dim)
            t = path_template(entry, vec, path)
            if t is not None and purpose in entry.purposes and entry.expires_us > now_us:
                yield t

    def may_hold(self, path: Optional[str], purpose: str, now: Optional[datetime] = None, *,
                 subject_id: Optional[str] = None, exclude: Collection[int] = ()) -> bool:
        """Whether any row allowed for `purpose` at `now` takes part in `path`: exact for one
        subject (from its records, less the rows `exclude` names). For the whole store the
        masked-enrolment flag is inside each seal, so "visible-masked" is False only while no
        masked enrolment was ever written (or copied in) and every other path is True. Editing the meta key to "0" hides masked
        enrolments from bare probes (they are never met whole): a refusal, never a false match."""
        check_text(purpose, "purpose")
        check_path(path)
        now_us = to_us(now or utc_now(), "now")
        if subject_id is None:
            if path != "visible-masked":
                return True
            got = self._sql(f"SELECT v FROM {{ns}}.meta WHERE k = '{MASKED_SEEN}'")
            return not got or str(got[0][0]) != "0"
        left_out = frozenset(int(i) for i in exclude)
        return self._steady(lambda keys: next(self._subject_templates(subject_id, path, purpose, now_us, keys,
                                                                      left_out), None) is not None)

    def _described(self, where: str, args: tuple[Any, ...]) -> list[GalleryRow]:
        return self._steady(lambda keys: self._describe(keys, where, args))

    def _describe(self, keys: Keys, where: str, args: tuple[Any, ...]) -> list[GalleryRow]:
        out = []
        for r in self._sql(f"SELECT {OPEN_COLS}, created_at, last_interaction FROM {{ns}}.rows {where} ORDER BY row_id",
                           args):
            entry, _, token = unseal_row(keys, r[:11], self._dim)
            out.append(describe(entry, r[0], r[4], r[11], r[12], token))
        return out

    def rows(self) -> list[GalleryRow]:
        """Every row's description (never a template), each checked against its seal."""
        return self._described("", ())

    def rows_for(self, subject_id: str) -> list[GalleryRow]:
        return self._described("WHERE pseudonym = %s", (self.pseudonym(subject_id),))

    def row_ids_of(self, pseudonym: str) -> set[int]:
        """The ids of the rows filed under this pseudonym (the records' pseudonym column)."""
        return {int(r[0]) for r in self._sql("SELECT row_id FROM {ns}.rows WHERE pseudonym = %s", (pseudonym,))}

    def sealed_rows(self, after: int = -1, limit: int = 5000) -> list[tuple[Any, ...]]:
        """Rows as stored (sealed), for copying between stores."""
        return [tuple(r) for r in self._sql(f"SELECT {ROW_COLS}, created_at, last_interaction, look, look_small "
                                            "FROM {ns}.rows WHERE row_id > %s ORDER BY row_id LIMIT %s", (after, limit))]

    def meta(self) -> dict[str, str]:
        with self._lock:
            try:
                return _read_meta(self._conn, self._ns)
            except Exception as exc:  # a right revoked on meta: named, as _sql names it
                _raise_pg(exc, self.where, self._conn, self._ns)
                raise

    def workspace_log_end(self) -> Optional[tuple[int, str]]:
        """The (seq, hash) of the last entry of the audit log moved into this namespace; None when
        no workspace's log was moved here."""
        if not self._sql("SELECT to_regclass(%s) IS NOT NULL", (f"{self._ns}.workspace_meta",))[0][0]:
            return None
        got = self._sql("SELECT seq, hash FROM {ns}.audit_entries ORDER BY seq DESC LIMIT 1")
        return (int(got[0][0]), str(got[0][1])) if got else (0, "")

    def discard_copy(self) -> None:
        """Drop what a migration that stopped part way copied here (the caller, workspace/migrate.py,
        checks first that no workspace has run on it): the rows, their vectors, the store's
        bookkeeping and any audit log and state moved with them. The handle is spent; open the
        store again."""
        from .sqltables import workspace_tables

        with self.locked():
            self.vectors.drop()
            names = ["rows", "meta", "pending", "erased"] + workspace_tables()
            self._sql("DROP TABLE IF EXISTS " + ", ".join(f"{{ns}}.{n}" for n in names))

    def import_sealed(self, rows: Sequence[tuple[Any, ...]], *, ceiling: int = 0) -> None:
        """Copy rows sealed by another store of this deployment verbatim (same row ids, so the
        seals still open), noting their vectors for writing. The caller (workspace/migrate.py)
        copies into an empty store under the same keys only, and checks both first. `ceiling`: the highest
        id the other store ever used, removed rows' included, which no new row may take (the
        audit log names those ids as removed, or as never stored)."""
        for r in rows:
            purpose_set(json.loads(r[2]))  # as in add_many
        with self._write_lock.held():
            with self._write():
                with self._conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {self._ns}.rows (row_id, pseudonym, purposes, token_id, provenance, "
                                    "expires_us, transform_version, seal_version, sealed, created_at, "
                                    "last_interaction, look, look_small) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                                    "%s, %s, %s, %s)",
                                    # A row stored before look digests has none: "" (never a digest).
                                    [tuple(r[:8]) + (bytes(r[8]),) + tuple(r[9:11]) + tuple(v or "" for v in r[11:13])
                                     for r in rows])
                # The next id follows the highest ever used; 1 when none was (is_called false).
                self._conn.execute(f"SELECT setval(pg_get_serial_sequence('{self._ns}.rows', 'row_id'), GREATEST(u, 1), "
                                   f"u > 0) FROM (SELECT GREATEST((SELECT COALESCE(MAX(row_id), 0) FROM {self._ns}.rows), "
                                   "%s) AS u) AS used", (int(ceiling),))
                self._note([int(r[0]) for r in rows], "upsert")
                flight = self._in_flight([int(r[0]) for r in rows])
                self._raise_ceiling(max([int(r[0]) for r in rows] + [int(ceiling)]))
                if rows:
                    self._saw_masked()  # the flag is inside the seals, which a verbatim copy does not open
            try:
                self._drain_pending()
            finally:
                self._landed(flight)

    def _saw_masked(self) -> None:
        """Inside a record transaction: a masked enrolment may now be in the store (MASKED_SEEN)."""
        self._conn.execute(f"INSERT INTO {self._ns}.meta (k, v) VALUES ('{MASKED_SEEN}', '1') ON CONFLICT (k) DO UPDATE "
                           "SET v = '1'")

    def _raise_ceiling(self, top: int) -> None:
        """Inside a record transaction: the highest row id a committed write has used. The row id
        sequence cannot tell (nextval is not rolled back), so the store keeps its own, in meta."""
        self._conn.execute(f"INSERT INTO {self._ns}.meta (k, v) VALUES ('{CEILING}', %s) ON CONFLICT (k) DO UPDATE "
                           f"SET v = GREATEST({self._ns}.meta.v::bigint, EXCLUDED.v::bigint)::text", (str(int(top)),))

    def stored_ids(self, ids: Sequence[int]) -> set[int]:
        wanted = sorted({int(i) for i in ids})
        return {int(r[0]) for r in self._sql("SELECT row_id FROM {ns}.rows WHERE row_id = ANY(%s)", (wanted,))} \
            if wanted else set()

    def never_committed(self, ids: Sequence[int], transactions: Mapping[int, str] = {}) -> list[int]:
        """Ids above the committed ceiling (an enrolment that never committed did not raise it;
        a committed row deleted since stays below it and is not excused). A store made before the
        ceiling was kept has none: there, the ids with no row. Less the ids whose enrolment
        entry names a store transaction (`transactions`) that PostgreSQL says committed: the
        ceiling is a value in a table, which whoever deleted the row by hand could set back, and
        the row read as never stored (after a kill -9 between the commit and its mark)."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        got = self._sql(f"SELECT v FROM {{ns}}.meta WHERE k = '{CEILING}'")
        if got:
            above = [i for i in wanted if i > meta_number(got[0][0], CEILING, self.where)]
        else:
            present = {int(r[0]) for r in self._sql("SELECT row_id FROM {ns}.rows WHERE row_id = ANY(%s)",
                                                    (wanted,))}
            above = [i for i in wanted if i not in present]
        return [i for i in above if not self._committed(transactions.get(i))]

    def _committed(self, xact: Optional[str]) -> bool:
        """Whether PostgreSQL says the transaction `xact` (writing_transaction's: txid_current's,
        and the cluster it ran on) committed. Unknown (none named, too old for the server to
        remember, from another cluster: a store copied or restored elsewhere) is False: the
        ceiling decides, as before. Asked on another cluster, txid_status answers for another
        transaction that had the same id there: a row whose transaction never committed read as
        committed, and the store check named it missing, deleted behind the guard."""
        parts = (xact or "").split(f" {IN_CLUSTER} ")
        if not all(p.isdigit() for p in parts) or len(parts) > 2:
            return False
        # An entry naming its cluster, asked where this one's cannot be read (a role not allowed
        # pg_control_system, as on a managed service it was restored onto), cannot be told from
        # another cluster's: unknown, as on another. An entry naming none is asked, as before.
        here = self._cluster() if len(parts) == 2 else None
        if len(parts) == 2 and here is None:
            return False
        if len(parts) == 2 and int(parts[1]) != here:
            log.warning("%s was restored onto another PostgreSQL cluster than the one an enrolment stored on "
                        "(system identifier %s, here %s): whether that enrolment committed is unknown here, so "
                        "the store's ceiling decides. Run `safeface audit verify` to check the store.",
                        self.where, parts[1], here)
            return False
        try:
            with self._lock, self._conn.transaction():
                got = self._conn.execute("SELECT txid_status(%s)", (int(parts[0]),)).fetchone()
        except Exception:  # psycopg's error for an id in the future: not this cluster's transaction
            return False
        return bool(got) and got[0] == "committed"

    def _cluster(self) -> Optional[int]:
        """The PostgreSQL cluster's system identifier (initdb's; a dump restored elsewhere does
        not carry it), read once; None where the server does not let the role read it (a
        managed service may not): enrolment entries then name the transaction alone, as before.
        Read in a savepoint, since an enrolment's transaction asks for it."""
        if self._cluster_id is None:
            try:
                with self._lock, self._conn.transaction():
                    self._cluster_id = int(self._conn.execute(
                        "SELECT system_identifier FROM pg_catalog.pg_control_system()").fetchone()[0])
            except Exception as exc:  # psycopg's error for a function the role may not run
                # Asked again next time (not kept: a passing failure would disarm the check for good).
                if not self._cluster_warned:
                    log.warning("%s: the PostgreSQL cluster's system identifier cannot be read (%s): enrolment "
                                "entries name their transaction without it", self.where, type(exc).__name__)
                    self._cluster_warned = True
        return self._cluster_id

    def writing_transaction(self) -> Optional[str]:
        return self._xact

    def skip_ids(self, upto: int) -> None:
        """Never hand out row ids up to `upto`, and count them as used: the row id sequence never
        hands out an id twice on its own, but a sequence or ceiling set back by hand would."""
        with self._write():
            seq = self._conn.execute(f"SELECT pg_get_serial_sequence('{self._ns}.rows', 'row_id')").fetchone()[0]
            last, called = self._conn.execute(f"SELECT last_value, is_called FROM {seq}").fetchone()
            if int(last) < int(upto) or (int(last) == int(upto) and not called):
                self._conn.execute("SELECT setval(%s, %s, true)", (seq, int(upto)))
            self._raise_ceiling(int(upto))

    def has_subject(self, subject_id: str) -> bool:
        return bool(self._sql("SELECT 1 FROM {ns}.rows WHERE pseudonym = %s LIMIT 1", (self.pseudonym(subject_id),)))

    def subject_count(self) -> int:
        return int(self._sql("SELECT COUNT(DISTINCT pseudonym) FROM {ns}.rows")[0][0])

    def __len__(self) -> int:
        return int(self._sql("SELECT COUNT(*) FROM {ns}.rows")[0][0])


@dataclass(frozen=True)
class Unfound:
    """Of an erasure's or revocation's rows that the audit log names, those stored under no id
    (`rows`: moved by hand and edited so that no seal opens as theirs), and the rows failing
    their integrity check that may be them (`failing`)."""

    rows: tuple[int, ...]
    failing: tuple[int, ...]


@dataclass(frozen=True)
class IndexCheck:
    """What `check_index` found (row ids only; never a vector)."""

    rows: int
    vectors: int
    missing: tuple[int, ...]  # rows with no vector in Milvus
    orphans: tuple[int, ...]  # vectors with no live row
    stale: tuple[int, ...]  # vectors that differ from their sealed record
    pending: int  # vector writes the records were still waiting for
    repaired: bool
    masked: bool = False  # any row is a masked enrolment
    mark: Optional[str] = None  # the masked-enrolment mark as found (MASKED_SEEN; None: absent)
    stamp_differs: bool = False  # Milvus's count of confirmed writes is not the records' (_index_state)
    losses: int = 0  # how often the store found that and rebuilt the index (at a write or an open)

    @property
    def mark_hides(self) -> bool:
        """The mark says no masked enrolment was written while one is stored: bare probes never meet it."""
        return self.masked and self.mark == "0"

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.orphans or self.stale or self.mark_hides or self.stamp_differs)

    def summary(self) -> str:
        hides = "; the masked-enrolment mark hides masked enrolments" if self.mark_hides else ""
        differs = ("; the index's count of confirmed writes is not the records' (one of them restored from another "
                   "time, or the index emptied)") if self.stamp_differs else ""
        return f"{len(self.missing)} missing, {len(self.orphans)} orphan(s), {len(self.stale)} stale{hides}{differs}"

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "vectors": self.vectors, "missing": list(self.missing),
                "orphans": list(self.orphans), "stale": list(self.stale), "pending": self.pending,
                "masked_enrolments": self.masked, "masked_mark": self.mark, "stamp_differs": self.stamp_differs,
                "losses_found": self.losses,
                "consistent": self.consistent, "repaired": self.repaired}


def _exists(conn: Any, ns: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (f"{ns}.meta",)).fetchone()[0] is not None


def _tag(store: str, epoch: str) -> str:
    """The stamp's tag: "#<store id>#<epoch>" (no "|", so no purpose filter reads it)."""
    return f"#{store}#{epoch}"


def _tag_parts(tag: str) -> tuple[str, str]:
    """(store id, epoch) of a stamp's tag; empty strings where it holds none."""
    _, store, epoch = (tag.split("#") + ["", "", ""])[:3]
    return store, epoch


def _counts(book: dict[str, str], where: str) -> tuple[int, int]:
    """(recorded, intended) counts of confirmed vector writes (ServerStore._stamp)."""
    recorded = meta_number(book.get(STAMP, 0), STAMP, where)
    return recorded, max(recorded, meta_number(book.get(STAMP_INTENDED, 0), STAMP_INTENDED, where))


def _outage_of(step: Callable[[], object], *, fresh: bool) -> Optional[IndexUnavailable]:
    """Run an opening step that needs Milvus: None if it answered, the outage if it did not
    and the store has records to open on (a store made now needs Milvus: it raises)."""
    try:
        step()
    except IndexUnavailable as exc:
        if fresh:
            raise
        return exc
    return None


def _read_meta(conn: Any, ns: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute(f"SELECT k, v FROM {ns}.meta").fetchall()}


def _safe_dsn(dsn: str) -> str:
    """The DSN as messages show it: rebuilt from libpq's own reading with the user, host, port and
    database only, so no spelling of a password (in the user information, however escaped, or a
    parameter) can come through; a DSN libpq cannot read, or reads otherwise than it is written,
    is not shown at all."""
    parts = dsn_parts(dsn)
    if parts is None:
        return "(a DSN that does not parse)"
    if misread(parts):
        return "(a DSN whose user information libpq reads otherwise than it is written)"
    user, host, port, db = (parts.get(k, "") for k in ("user", "host", "port", "dbname"))
    return f"postgresql://{user + '@' if user else ''}{host}{':' + port if port else ''}/{db}"


def write_lock_keys(namespace: str) -> tuple[int, int]:
    """The advisory lock keys of the write lock of the store in `namespace`: its session half
    and its transaction half (another key, since the first is held on another connection)."""
    def key(text: str) -> int:
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)

    return key(f"safeface write lock {namespace}"), key(f"safeface write transaction lock {namespace}")


def _write_lock_holder(query: Callable[[str, Sequence[Any]], list[Any]], session_key: int) -> Optional[int]:
    """The backend pid of the connection holding the session half of the write lock, if any;
    `query(sql, args)` runs a statement and returns its rows."""
    key = session_key & 0xFFFF_FFFF_FFFF_FFFF
    # pg_locks spans the cluster: an advisory lock is this database's only where its database
    # is (another database's store of the same schema name has the same key).
    got = query("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s::oid "
                "AND objid = %s::oid AND objsubid = 1 AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) LIMIT 1", (key >> 32, key & 0xFFFF_FFFF))
    return int(got[0][0]) if got else None


def check_namespace(namespace: str) -> None:
    """Refuse a storage.namespace that is not a plain lower-case SQL name: it is written into
    statements."""
    if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):  # "$" allows a final "\n"
        raise ConfigError(f"storage.namespace must be a lower-case SQL name, got {namespace!r}.")


def _store_where(dsn: str, namespace: str) -> str:
    """How errors name the record store in `namespace` (checked first)."""
    check_namespace(namespace)
    return f"the PostgreSQL record store {_safe_dsn(dsn)} (schema {namespace})"


@contextmanager
def held_write_lock(dsn: str, password: Optional[str], namespace: str, lock_wait: float) -> Iterator[None]:
    """Both halves of the write lock of the server store in `namespace`, as a write holds them,
    taken without opening the store: no schema, key, row or Milvus collection is read, so a
    store that does not open (edited by hand, its index unreachable) cannot hold up work that
    must fall wholly before or after every write (a trust key's removal). The waits share
    `lock_wait` seconds, then give up with ConfigError."""
    where = _store_where(dsn, namespace)
    deadline = time.monotonic() + lock_wait
    session_key, xact_key = write_lock_keys(namespace)
    conns = [pg_connect(dsn, password, where)]
    try:
        conns.append(pg_connect(dsn, password, where))
        conn, lock_conn = conns
        lock_pid = int(lock_conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        lock = AdvisoryLock(PgSession(lock_conn), session_key, where=where)  # never opened again: a single use
        bound_lock_wait(lock_conn, deadline, where, False)
        with lock.held():
            try:
                with conn.transaction():
                    bound_lock_wait(conn, deadline, where, True)
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (xact_key,))
                    if _write_lock_holder(lambda q, a: conn.execute(q, a).fetchall(), session_key) != lock_pid:
                        raise BackendError(f"{where}: the connection holding its write lock has ended (the server "
                                           "or an operator ended it); nothing was changed. Try again.")
                    yield
            except Exception as exc:
                _raise_pg(exc, where, conn, namespace)
                raise
    finally:
        for c in conns:
            c.close()


def _raise_pg(exc: BaseException, where: str, conn: Any = None, ns: Optional[str] = None) -> None:
    """A connection lost mid-call becomes a BackendError naming the record store; a lock given
    up waiting for under a lock_timeout, a ConfigError saying so; with the `conn` it was met on
    and the store's schema `ns`, a right revoked from the role, SchemaOwnerNeeded naming it (it
    was psycopg's own error, a 500 in the service)."""
    try:
        import psycopg
    except ImportError:
        return
    raise_lock_wait(exc, where)
    if conn is not None and ns is not None:
        refused = refused_right(conn, exc, ns)
        named = refused if refused is not None else named_after_rollback(exc)
        if named is not exc and named is not None:
            raise named from None
    raise_if_lost(exc, where, "the write was rolled back.")
    if isinstance(exc, psycopg.OperationalError):
        raise BackendError(f"{where} failed ({str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else ''}); "
                           "the write was rolled back.") from None
