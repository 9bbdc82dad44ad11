"""The gallery: protected, sealed templates in SQLite, and the in-memory index that searches them.

Each row holds a protected template (the embedding after the keyed orthogonal transform, as
float32 bytes) and, for rows enrolled since masked faces are matched, the protected visible-region
template (storage/rows.py) and whether its enrolment image was masked, sealed together with
AES-256-GCM, next to its subject pseudonym, purposes, consent token id, expiry and provenance;
the seal's associated data binds those columns to the template. No subject id, image or raw
embedding is ever written.

The index lives in memory (a second one holds the visible-region templates, for masked probes) and is rebuilt from the store on open (every row unsealed, so a tampered
row is caught at once). Several processes may share one file: each write runs in one
``BEGIN IMMEDIATE`` transaction that also appends to a change log, and each process replays the
log (or reloads) when ``PRAGMA data_version`` says another connection committed.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Optional, Protocol, Sequence, Union

import numpy as np

from ..atomicfile import hold_database, let_database_go
from ..errors import ConfigError
from ..sqlite_store import (BUSY_TIMEOUT_MS, connect as _connect_store, create_file, raise_if_busy, raise_if_damaged,
                            raise_if_unwritable, refuse_cut, refuse_foreign_triggers, refuse_replaced, store_identity)
from ..hazmat.templates.keyring import Keyring
from ..hazmat.templates.rowfilter import RowFilter
from ..hazmat.templates.sealing import Sealer
from ..hazmat.templates.transform import TemplateTransform
from .lock import WriteLock
from .rows import (REKEYED_FROM, ROW_COLS, rekey_mark, SCHEMA_VERSION, Entry as _Entry, Enrollment,  # noqa: F401
                   ErasureResult, GalleryRow, Looks, Keys as _Keys, Match, RekeyResult, check_embedding, check_path,
                   check_purposes as _check_purposes, check_text as _check_text, describe, ended_columns, from_us,
                   initial_meta, iso as _iso, keys_from_meta, looks_of, moved_expiry, prepare, protect, pseudonym_of,
                   purge_condition, refuse_kept, refuse_lookalikes, rekeyed, seal_row, to_us, touched_expiry,
                   unseal_row, utc_now as _now)
from .rows import BLANK_LOOKS, OPEN_COLS, refuse_blanked, stored_looks
# Change-log entries kept for other processes to replay; one that falls further behind reloads.
CHANGE_LOG_KEEP = 10_000
# How long an erasure waits for readers of the write-ahead log before leaving its old pages
# there, owed (Gallery._scrub_wal); the store's other statements wait BUSY_TIMEOUT_MS.
SCRUB_WAIT_MS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    pseudonym TEXT NOT NULL,
    purposes TEXT NOT NULL,
    token_id TEXT NOT NULL,
    provenance TEXT NOT NULL,
    expires_us INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    last_interaction TEXT,
    transform_version INTEGER NOT NULL,
    seal_version INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    look TEXT,
    look_small TEXT
);
CREATE INDEX IF NOT EXISTS rows_pseudonym ON rows (pseudonym);
CREATE INDEX IF NOT EXISTS rows_token ON rows (token_id);
CREATE INDEX IF NOT EXISTS rows_expiry ON rows (expires_us);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    row_id INTEGER,
    op TEXT NOT NULL
);
"""


class SearchIndex(Protocol):
    """What the gallery needs of an index (ExactIndex and FaissIndex both provide it)."""

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(self, queries: np.ndarray, k: int, threshold: Optional[float] = None,
               allowed: Any = None) -> tuple[np.ndarray, np.ndarray]: ...


#: Makes an empty index for (dim, expected row count). Called whenever the index is rebuilt.
IndexFactory = Callable[[int, int], SearchIndex]
# As the gallery grows, the factory is asked again each time the row count has grown by a
# quarter since the last ask (from 64 rows on): a few dozen cheap calls up to millions of rows,
# and the switch to an approximate index comes at most a quarter past the factory's threshold.
INDEX_CHECK_FIRST = 64
INDEX_CHECK_GROWTH = 1.25


def default_index_factory(dim: int, size_hint: int) -> SearchIndex:
    """Exact search; ``safeface.hazmat.index.make_index`` where it exists (it switches to an approximate
    FAISS index above its size threshold)."""
    from ..hazmat import index

    make = getattr(index, "make_index", None)
    if make is not None:
        made: SearchIndex = make(dim, size_hint)
        return made
    return index.ExactIndex(dim)


def write_lock(path: Path) -> WriteLock:
    """The write lock of the gallery at `path`: a lock file beside it, taken without opening the
    database (a trust change must not wait on a store that no longer opens)."""
    return WriteLock(path.with_name(path.name + ".lock"), guard=path)


class Gallery:
    """Sealed protected templates in one SQLite file, searched in memory. Use `Gallery.open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, keyring: Keyring, dim: int,
                 index_factory: IndexFactory) -> None:
        self._conn: Optional[sqlite3.Connection] = conn
        self._path = path
        self._keyring = keyring
        self._dim = dim
        self._factory = index_factory
        self._lock = threading.RLock()
        self._write_lock = write_lock(path)
        self._held: Optional[tuple[int, int, int]] = None  # atomicfile.hold_database's count of this handle
        self._keys: Optional[_Keys] = None
        self._index: SearchIndex = index_factory(dim, 0)
        self._vindex: SearchIndex = index_factory(dim, 0)  # visible-region templates, by row id
        self._visible_ids: set[int] = set()
        self._masked_ids: set[int] = set()  # of those, the rows enrolled from a masked image
        self._next_index_check = INDEX_CHECK_FIRST
        self._entries: dict[int, _Entry] = {}
        self._by_pseudonym: dict[str, set[int]] = {}
        # Look digest -> the row (or rows) holding it, in either column: look-alikes are judged
        # here, from rows opened against their seals, not through the store's look indexes, which
        # can be rebuilt over another column under their old definitions (writable_schema) with no
        # key. Reading the table instead costs a full scan per enrolment under the write lock
        # (~1 s per million rows); this, with Entry.looks, ~350 bytes a row.
        self._by_look: dict[str, Union[int, set[int]]] = {}
        self._top_id = 0  # the highest row id this handle has read
        self._filter = RowFilter()
        self._seen_seq = 0
        self._scrub_owed = False  # see _scrub_wal
        self._data_version = -1
        self._file = store_identity(path)  # the files `conn` opened (see _refresh), again after the schema
        self._pseudonym_version = 0
        # Test seam: called with a point name inside write transactions ("add:sealed",
        # "rekey:row", "rekey:meta"), so a test can kill the process there.
        self._hook: Optional[Callable[[str], None]] = None

    def __repr__(self) -> str:
        return f"Gallery(path={str(self._path)!r}, dim={self._dim})"

    # ---------------------------------------------------------------- opening and closing

    @classmethod
    def open(cls, path: Union[str, Path], keyring: Keyring, dim: int,
             index_factory: Optional[IndexFactory] = None, *, own: bool = False) -> "Gallery":
        """Open (or create) the gallery at `path`, unseal every row and build the index.
        A row that fails its integrity check raises IntegrityError naming it. `own`: the
        workspace's own gallery, which SQLite calling malformed, or a file cut inside a page,
        means damage (IntegrityError), not a path to check (ConfigError)."""
        path = Path(path).absolute()  # checked by name at every call (_refresh), whatever the cwd then
        if not isinstance(dim, int) or dim <= 0:
            raise ConfigError(f"dim must be a positive integer, got {dim!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        create_file(path)
        held = hold_database(path)  # before SQLite locks it: the write lock's guard descriptors stay open
        try:
            conn = _connect_store(path, "gallery", own=own)
        except BaseException:
            let_database_go(held)
            raise
        g = cls(conn, path, keyring, dim, index_factory or default_index_factory)
        g._held = held
        try:
            with g._lock:
                try:
                    if own:  # before the schema's statements write anything to the -wal
                        refuse_cut(conn, path, f"the gallery at {path}")
                    g._init_schema()
                except sqlite3.DatabaseError as exc:  # a FIFO or device in its place, a damaged file
                    raise_if_busy(exc, f"the gallery at {path}")
                    raise_if_damaged(exc, f"the gallery at {path}", path)
                    raise_if_unwritable(exc, f"the gallery at {path}")
                    raise ConfigError(f"the gallery at {path} cannot be opened ({exc}): check that it is this "
                                      "workspace's own SQLite file, or restore it from a backup.") from None
                g._file = store_identity(path)  # its -wal and -shm are open now
                g._reload()
                g._scrub_wal(wait=False)  # what an erasure before could not drop (see _scrub_wal)
        except BaseException:
            conn.close()
            g._conn = None
            let_database_go(g._held)
            g._held = None
            raise
        return g

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                if self._scrub_owed:
                    self._scrub_wal(wait=False)
                self._conn.close()
                self._conn = None
                let_database_go(self._held)
                self._held = None
            self._entries.clear()
            self._by_pseudonym.clear()
            self._by_look.clear()
            self._index = self._factory(self._dim, 0)
            self._vindex = self._factory(self._dim, 0)
            self._visible_ids, self._masked_ids = set(), set()
            self._filter = RowFilter()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    def index_state(self) -> str:
        return "local"  # the in-process index, rebuilt from the rows: never out of reach

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def key_versions(self) -> dict[str, int]:
        """The transform and seal key versions the stored rows are under."""
        with self._lock:
            self._refresh()
            k = self._require_keys()
            return {"transform": k.transform_version, "seal": k.seal_version}

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError(f"the gallery at {self._path} is closed.")
        return self._conn

    def _require_keys(self) -> _Keys:
        if self._keys is None:
            raise ConfigError(f"the gallery at {self._path} has not loaded its keys; open it with its keyring.")
        return self._keys

    def _at(self, point: str) -> None:
        if self._hook is not None:
            self._hook(point)

    def _init_schema(self) -> None:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            # A gallery made before look digests (pseudonym.look_digests): its rows keep none. From
            # here on every new row must have them, whichever safeface writes it: an older one,
            # which stores none, is refused (its rows would escape the look-alike check).
            have = {str(r[1]) for r in db.execute("PRAGMA table_info(rows)")}
            for col in ("look", "look_small"):
                if col not in have:
                    db.execute(f"ALTER TABLE rows ADD COLUMN {col} TEXT")
                db.execute(f"CREATE INDEX IF NOT EXISTS rows_{col} ON rows ({col})")
            db.execute("DROP TRIGGER IF EXISTS rows_need_looks")  # ours, exactly, whatever was put in its place
            db.execute("CREATE TRIGGER rows_need_looks BEFORE INSERT ON rows "
                       "WHEN NEW.look IS NULL OR NEW.look_small IS NULL BEGIN SELECT RAISE(ABORT, "
                       "'this gallery stores rows with look digests only: upgrade safeface'); END")
            self._refuse_foreign_triggers(db)
            meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
            if not meta:
                values = initial_meta(self._keyring, self._dim)
                db.executemany("INSERT INTO meta (k, v) VALUES (?, ?)", list(values.items()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a BEGIN that failed (a FIFO in the file's place) left none
                db.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------- keys

    def _keys_from_meta(self, meta: dict[str, str]) -> _Keys:
        keys, self._pseudonym_version = keys_from_meta(meta, self._keyring, self._dim, f"the gallery at {self._path}")
        return keys

    def pseudonym(self, subject_id: str) -> str:
        """The subject's pseudonym under this deployment's pseudonym key."""
        with self._lock:
            self._db()
            return pseudonym_of(self._keyring, self._pseudonym_version, subject_id)

    def looks(self, subject_id: str) -> Looks:
        """The subject id's look digests under the pseudonym key (rows.refuse_lookalikes)."""
        with self._lock:
            self._db()
            return looks_of(self._keyring, self._pseudonym_version, subject_id)

    # ---------------------------------------------------------------- sync with the store

    def _read_meta(self) -> dict[str, str]:
        return dict(self._db().execute("SELECT k, v FROM meta").fetchall())

    def _unseal_row(self, keys: _Keys, row: sqlite3.Row | tuple[Any, ...]) -> tuple[_Entry, np.ndarray]:
        entry, vec, _ = self._unseal_full(keys, row)
        return entry, vec

    def _unseal_full(self, keys: _Keys, row: sqlite3.Row | tuple[Any, ...]
                     ) -> tuple[_Entry, np.ndarray, Optional[str]]:
        return unseal_row(keys, row, self._dim)

    _ROW_COLS = OPEN_COLS  # the look digests too, which unseal_row compares with the seal

    def _reload(self) -> None:
        """Rebuild keys, entries and index from the store, in one read snapshot."""
        try:
            self._reload_store()
        except sqlite3.DatabaseError as exc:
            raise_if_damaged(exc, f"the gallery at {self._path}", self._path)
            raise

    def _reload_store(self) -> None:
        db = self._db()
        data_version = int(db.execute("PRAGMA data_version").fetchone()[0])
        own_txn = not db.in_transaction
        if own_txn:
            db.execute("BEGIN")
        try:
            keys = self._keys_from_meta(self._read_meta())
            rows = db.execute(f"SELECT {self._ROW_COLS} FROM rows ORDER BY row_id").fetchall()
            entries: dict[int, _Entry] = {}
            vecs = np.zeros((len(rows), self._dim), dtype=np.float32)
            for i, r in enumerate(rows):
                entries[int(r[0])], vecs[i] = self._unseal_row(keys, r)
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        finally:
            if own_txn:
                db.execute("COMMIT")
        visible = {rid: e.visible for rid, e in entries.items() if e.visible is not None}
        vindex = self._factory(self._dim, len(visible))
        if visible:
            vindex.add(np.fromiter(visible.keys(), dtype=np.int64, count=len(visible)), np.stack(list(visible.values())))
        index = self._factory(self._dim, len(rows))
        if rows:
            index.add(np.fromiter(entries.keys(), dtype=np.int64, count=len(entries)), vecs)
        self._vindex, self._visible_ids = vindex, set(visible)
        self._masked_ids = {rid for rid, e in entries.items() if e.visible is not None and e.masked_enrolment}
        self._keys, self._entries, self._index = keys, entries, index
        self._by_pseudonym, self._by_look = {}, {}
        for rid, e in entries.items():
            self._link(e, rid)
        self._top_id = max(entries, default=0)
        self._next_index_check = max(INDEX_CHECK_FIRST, int(len(rows) * INDEX_CHECK_GROWTH))
        self._filter = RowFilter.build((rid, e.purposes, e.expires_us) for rid, e in entries.items())
        self._seen_seq = int(seq)
        # Only now that every row was read: a reload that failed (a row that fails its check) is
        # tried again at the next call. Marked current before, it left this handle on the rows it
        # had, and its writes judged look-alikes and the filing count by them.
        self._data_version = data_version

    def _same_file(self) -> None:
        refuse_replaced(self._path, self._file, f"the gallery at {self._path}")

    def _refresh(self) -> None:
        """Catch up with commits made by other connections, if any."""
        db = self._db()
        # Other processes' erasures reach this handle only through the file it opened: one put in
        # its place meanwhile would leave erased people matched here, after their receipts.
        self._same_file()
        dv = int(db.execute("PRAGMA data_version").fetchone()[0])
        if dv == self._data_version:
            return
        own_txn = not db.in_transaction
        if own_txn:
            db.execute("BEGIN")
        try:
            changes = db.execute("SELECT seq, row_id, op FROM changes WHERE seq > ? ORDER BY seq",
                                 (self._seen_seq,)).fetchall()
            named = {rid for _, rid, _ in changes if isinstance(rid, int)}
            above = {int(r[0]) for r in db.execute("SELECT row_id FROM rows WHERE row_id > ?", (self._top_id,))}
            # Re-keyed elsewhere: read from the meta, whatever the change log says. A new row no change
            # names: the change log (editable without a key) was cut or pointed elsewhere, and the rows
            # in memory (which decide look-alikes and the filing count) would miss it. The new ids come
            # from a range on the integer primary key: cheap.
            if self._keys_moved() or not above <= named:
                self._reload()
                self._data_version = dv
                return
            if not changes:
                self._data_version = dv
                return
            # A row id that is no integer (the table's affinity lets text in) was never written by
            # safeface: read the store whole rather than fail every later call on it.
            if changes[0][0] != self._seen_seq + 1 or any(op == "reload" or not isinstance(rid, int)
                                                          for _, rid, op in changes):
                self._reload()
                self._data_version = dv
                return
            keys = self._require_keys()
            changed = sorted({int(rid) for _, rid, _ in changes})
            # Another process erased rows: their old pages may still be in the log if that
            # process could not truncate it (its owed scrub dies with it), so this one owes it too.
            self._scrub_owed = self._scrub_owed or any(op == "delete" for _, _, op in changes)
            found: dict[int, tuple[_Entry, np.ndarray]] = {}
            for i in range(0, len(changed), 500):
                part = changed[i:i + 500]
                marks = ",".join("?" * len(part))
                for r in db.execute(f"SELECT {self._ROW_COLS} FROM rows WHERE row_id IN ({marks})", part):
                    found[int(r[0])] = self._unseal_row(keys, r)
            seq = int(changes[-1][0])
        finally:
            if own_txn:
                db.execute("COMMIT")
        self._apply(upserts=found, removals=[rid for rid in changed if rid not in found])
        self._seen_seq = seq
        self._data_version = dv

    def _keys_moved(self) -> bool:
        """Whether the meta names other key versions than this handle holds: another process
        re-keyed. Its "reload" change tells the same, but the change log is a table anyone with
        the file can empty, and a handle that missed it sealed new rows under retired keys."""
        meta, keys = self._read_meta(), self._require_keys()
        return (meta.get("transform_version"), meta.get("seal_version")) != (str(keys.transform_version),
                                                                             str(keys.seal_version))

    def _apply(self, upserts: dict[int, tuple[_Entry, np.ndarray]], removals: Sequence[int]) -> None:
        if removals:
            self._index.remove(np.asarray(removals, dtype=np.int64))
            self._drop_visible(removals)
            for rid in removals:
                gone = self._entries.pop(rid, None)
                if gone is not None:
                    self._unlink(gone, rid)
                self._filter.remove(rid)
        if upserts:
            ids = np.fromiter(upserts.keys(), dtype=np.int64, count=len(upserts))
            self._index.add(ids, np.stack([v for _, v in upserts.values()]))
            # An upserted row's visible-region template replaces the one it had (or its absence).
            self._drop_visible(list(upserts))
            vis = {rid: e.visible for rid, (e, _) in upserts.items() if e.visible is not None}
            if vis:
                self._vindex.add(np.fromiter(vis.keys(), dtype=np.int64, count=len(vis)), np.stack(list(vis.values())))
                self._visible_ids.update(vis)
                self._masked_ids.update(rid for rid in vis if upserts[rid][0].masked_enrolment)
            for rid, (entry, _) in upserts.items():
                old = self._entries.get(rid)
                if old is not None:
                    self._unlink(old, rid)
                self._entries[rid] = entry
                self._link(entry, rid)
                self._top_id = max(self._top_id, rid)
                self._filter.upsert(rid, entry.purposes, entry.expires_us)
            if len(self._entries) >= self._next_index_check:
                self._follow_factory()

    def _drop_visible(self, row_ids: Sequence[int]) -> None:
        gone = [rid for rid in row_ids if rid in self._visible_ids]
        if gone:
            self._vindex.remove(np.asarray(gone, dtype=np.int64))
            self._visible_ids.difference_update(gone)
            self._masked_ids.difference_update(gone)

    def _follow_factory(self) -> None:
        """Ask the index factory again now that the gallery has grown: where it would now build
        another kind of index (exact to approximate past its size threshold), rebuild."""
        n = len(self._entries)
        self._next_index_check = max(INDEX_CHECK_FIRST, int(n * INDEX_CHECK_GROWTH))
        if type(self._factory(self._dim, n)) is not type(self._index):
            self._reload()

    def _link(self, entry: _Entry, rid: int) -> None:
        self._by_pseudonym.setdefault(entry.pseudonym, set()).add(rid)
        for d in entry.looks:
            held = self._by_look.setdefault(d, rid) if d else rid  # one row, the usual case, takes no set
            if isinstance(held, set):
                held.add(rid)
            elif held != rid:
                self._by_look[d] = {held, rid}

    def _unlink(self, entry: _Entry, rid: int) -> None:
        rows = self._by_pseudonym.get(entry.pseudonym)
        if rows is not None:
            rows.discard(rid)
            if not rows:
                del self._by_pseudonym[entry.pseudonym]
        for d in entry.looks:
            held = self._by_look.get(d)
            if isinstance(held, set):
                held.discard(rid)
                if len(held) == 1:
                    self._by_look[d] = held.pop()
            elif held == rid:
                del self._by_look[d]

    def _look_clash(self, looks: Looks, pseudonym: str) -> bool:
        """Whether a row of another subject holds one of the look digests (Looks.query's), in
        either column: a capitals reading that is another id's small-letter one prints alike too."""
        for d in looks.query():
            held = self._by_look.get(d)
            rows = held if isinstance(held, set) else () if held is None else (held,)
            if any(self._entries[rid].pseudonym != pseudonym for rid in rows):
                return True
        return False

    @contextmanager
    def _write(self) -> Iterator[list[Callable[[], None]]]:
        """One write transaction. The caller queues in-memory updates, applied only after COMMIT,
        so a failed or rolled-back write leaves memory as it was."""
        with self._write_lock.held(), self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            after: list[Callable[[], None]] = []
            try:
                self._refresh()
                yield after
                db.execute("DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?",
                           (CHANGE_LOG_KEEP,))
                seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])
                # Checked last: a file put in its place, or a lock file replaced (another writer let in)
                # while this write ran, would make its receipt describe a store no one else reads.
                self._same_file()
                self._write_lock.check()
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError):
                    raise_if_unwritable(exc, f"the gallery at {self._path}")
                raise
            for fn in after:
                fn()
            self._seen_seq = seq
            if self._scrub_owed:
                self._scrub_wal(wait=False)

    def _log(self, row_ids: Sequence[int], op: str) -> None:
        self._db().executemany("INSERT INTO changes (row_id, op) VALUES (?, ?)", [(int(r), op) for r in row_ids])

    # ---------------------------------------------------------------- writing

    def _check_embedding(self, embedding: np.ndarray) -> np.ndarray:
        return check_embedding(embedding, self._dim)

    def locked(self) -> AbstractContextManager[None]:
        """The write lock (threads and processes) that every write of this store holds; erasure
        and revocation hold it around their policy-state change and the delete."""
        return self._write_lock.held()

    def add(self, subject_id: str, embedding: np.ndarray, purposes: Sequence[str], token_id: str,
            expires_at: datetime, provenance: str = "consent", *, token: Optional[str] = None) -> GalleryRow:
        """Protect, seal and store one template for the subject; returns the new row."""
        return self.add_many([Enrollment(subject_id, embedding, tuple(_check_purposes(purposes)), token_id,
                                         expires_at, provenance, token)])[0]

    def add_many(self, items: Sequence["Enrollment"], *, decide: Optional[Callable[[], None]] = None,
                 before_commit: Optional[Callable[[list[GalleryRow]], None]] = None) -> list[GalleryRow]:
        """Store several templates in one transaction: all of them or, on any error, none.
        Both hooks run inside the transaction, under the write lock: `decide` before anything is
        written (it sees the store as it is), `before_commit` once the rows have their ids.
        Either may refuse (raise), and nothing is stored."""
        prepared = [prepare(it, self.pseudonym(it.subject_id), self.looks(it.subject_id), self._dim) for it in items]
        created = _now()
        out: list[GalleryRow] = []
        with self._write() as after:
            if decide is not None:
                decide()
            keys = self._require_keys()
            db = self._db()
            refuse_blanked(db.execute(f"SELECT {OPEN_COLS} FROM rows WHERE {BLANK_LOOKS}"), keys, self._dim)
            # From the rows in memory (see _by_look), which the write's _refresh caught up with the store.
            refuse_lookalikes(prepared, self._look_clash, lambda p: p in self._by_pseudonym)
            upserts: dict[int, tuple[_Entry, np.ndarray]] = {}
            raw = np.stack([p.embedding for p in prepared]) if prepared else np.zeros((0, self._dim))
            templates = keys.transform.apply(raw)
            for p, template in zip(prepared, templates):
                visible = protect(keys, p.visible, self._dim)
                cur = db.execute(
                    "INSERT INTO rows (pseudonym, purposes, token_id, provenance, expires_us, created_at, "
                    "last_interaction, transform_version, seal_version, sealed, look, look_small) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (p.pseudonym, json.dumps(list(p.purposes)), p.token_id, p.provenance, p.expires_us, _iso(created),
                     _iso(created), keys.transform_version, keys.seal_version, b"", *p.looks.stored))
                row_id = int(cur.lastrowid or 0)
                db.execute("UPDATE rows SET sealed = ? WHERE row_id = ?",
                           (seal_row(keys, row_id, p.pseudonym, p.purposes, p.token_id, p.provenance, p.expires_us,
                                     template, p.token, visible=visible, masked_enrolment=p.visible_masked,
                                     looks=p.looks.stored), row_id))
                upserts[row_id] = (_Entry(p.pseudonym, frozenset(p.purposes), p.token_id, p.expires_us, visible,
                                          p.visible_masked, p.looks.stored), template.astype(np.float32))
                out.append(GalleryRow(row_id, p.pseudonym, p.purposes, p.token_id, from_us(p.expires_us),
                                      p.provenance, created, created, masked_template=visible is not None,
                                      masked_enrolment=p.visible_masked))
            self._log(list(upserts), "upsert")
            self._at("add:sealed")
            if before_commit is not None:
                before_commit(out)
            after.append(lambda: self._apply(upserts, []))
        return out

    def _refuse_foreign_triggers(self, db: sqlite3.Connection) -> None:
        """No trigger but safeface's: one can skip an erasure's delete, put the row back (also
        from a trigger on another table, after the delete), or copy sealed rows elsewhere.
        Checked at open and at each erasure (rows.refuse_kept checks the delete itself)."""
        refuse_foreign_triggers(db, f"the gallery at {self._path}", "one could keep rows through an erasure or copy "
                                "them elsewhere. Find who added them and drop them (DROP TRIGGER) before using it.",
                                own=("rows_need_looks",))

    def _delete_where(self, where: str, args: tuple[Any, ...],
                      held: Callable[[], Collection[int]] = lambda: ()) -> list[tuple[int, str]]:
        """Delete matching rows inside the current write; returns (row_id, pseudonym) pairs.
        `held`: the rows in memory (opened against their seals) that the erasure takes, read
        after the write caught up with the store."""
        db = self._db()
        self._refuse_foreign_triggers(db)
        found = dict((int(r), str(p)) for r, p in db.execute(f"SELECT row_id, pseudonym FROM rows WHERE {where}", args))
        # The columns need no key to edit: a row whose pseudonym, token or expiry column was
        # changed by hand escaped the WHERE above, and stayed matchable in every open handle
        # under a receipt that said it was gone. The rows the seals bind to it go too.
        mine = sorted(set(held()) - set(found))
        for r in _stored_ids(db, mine, ""):
            entry = self._entries.get(r)
            found[r] = entry.pseudonym if entry is not None else str(db.execute(
                "SELECT pseudonym FROM rows WHERE row_id = ?", (r,)).fetchone()[0])
        if found:
            ids = sorted(found)
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                db.execute(f"DELETE FROM rows WHERE row_id IN ({','.join('?' * len(part))})", part)
            self._log(ids, "delete")
        # Last, before the commit: nothing written after it can put a row back unseen. Read from
        # the table itself, whatever the lookup found: an index whose entries were rebuilt over
        # another column under its old definition (writable_schema) hid the row from both.
        kept = [int(r) for r, in db.execute(f"SELECT row_id FROM rows NOT INDEXED WHERE {where} LIMIT 5", args)]
        refuse_kept((kept + _stored_ids(db, mine, "NOT INDEXED"))[:5], "rows")
        return sorted(found.items())

    def _erase(self, where: str, args: tuple[Any, ...],
               held: Callable[[], Collection[int]] = lambda: (),
               before_commit: Optional[Callable[[list[tuple[int, str]]], None]] = None) -> list[tuple[int, str]]:
        with self._write() as after:
            try:
                found = self._delete_where(where, args, held)
            except sqlite3.DatabaseError as exc:  # an index bent by hand, met by the delete of a row it hid
                raise_if_damaged(exc, f"the gallery at {self._path}", self._path)
                raise
            self._at("erase:deleted")
            if before_commit is not None and found:
                before_commit(found)
            ids = [r for r, _ in found]
            after.append(lambda: self._apply({}, ids))
        if found:
            self._scrub_wal()
        return found

    def _scrub_wal(self, wait: bool = True) -> bool:
        """Drop the write-ahead log's frames, which still hold erased rows' pages (secure_delete
        zeroes them in the database file only). A connection reading the log (another worker
        mid-search, a backup, a shell) makes the truncating checkpoint fail after the busy
        timeout: it is owed, and tried again, without waiting (`wait` False), after each write,
        at open and at close."""
        with self._lock:  # the busy timeout is the connection's: no other thread's statement meanwhile
            db = self._db()
            try:
                db.execute(f"PRAGMA busy_timeout = {SCRUB_WAIT_MS if wait else 0}")
                busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error:
                busy = 1
            finally:
                db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._scrub_owed = bool(busy)
            return not self._scrub_owed

    def _copies(self) -> Optional[str]:
        return "pending" if self._scrub_owed else None

    def erase_subject(self, subject_id: str) -> ErasureResult:
        """Remove every row of the subject from the store and the index."""
        return self.erase_pseudonym(self.pseudonym(subject_id))

    def erase_pseudonym(self, pseudonym: str, *, rows: Collection[int] = ()) -> ErasureResult:
        """The same, for a subject known only by pseudonym (an operator's console). `rows`: ids the
        caller's record names as the subject's (the audit log), removed too."""
        _check_text(pseudonym, "pseudonym")
        found = self._erase("pseudonym = ?", (pseudonym,),
                            lambda: {*self._by_pseudonym.get(pseudonym, ()), *map(int, rows)})
        return ErasureResult(pseudonym, tuple(r for r, _ in found), len(found), copies=self._copies())

    def remove_token(self, token_id: str, *, rows: Collection[int] = ()) -> ErasureResult:
        """Remove every row enrolled under the consent token (e.g. on withdrawal); `rows` as in
        erase_pseudonym."""
        _check_text(token_id, "token_id")
        found = self._erase("token_id = ?", (token_id,),
                            lambda: {*(rid for rid, e in self._entries.items() if e.token_id == token_id),
                                     *map(int, rows)})
        ps = {p for _, p in found}
        return ErasureResult(ps.pop() if len(ps) == 1 else None, tuple(r for r, _ in found), len(found),
                             copies=self._copies())

    def purge_expired(self, now: Optional[datetime] = None, *, ended: Sequence[str] = (),
                      before_commit: Optional[Callable[[list[tuple[int, str]]], None]] = None) -> list[ErasureResult]:
        """Remove rows whose expiry is at or before `now`, and every row of the purposes `ended`
        names (ended since they were enrolled, whatever expiry the row was given); one result per
        subject. `before_commit((row_id, pseudonym) pairs)` runs inside the delete's transaction
        when it removes anything; it may refuse (raise), and nothing is removed."""
        now_us = to_us(now or _now(), "now")
        columns: list[str] = []
        if ended:  # read from the table itself, as the erasure's own check reads it
            with self._lock:
                stored = [c for c, in self._db().execute("SELECT DISTINCT purposes FROM rows NOT INDEXED")]
            columns = ended_columns(stored, ended)
        gone = {str(x) for x in ended}
        found = self._erase(*purge_condition(now_us, columns, "?"),
                            lambda: [rid for rid, e in self._entries.items()
                                     if e.expires_us <= now_us or (e.purposes and e.purposes <= gone)], before_commit)
        by_p: dict[str, list[int]] = {}
        for r, p in found:
            by_p.setdefault(p, []).append(r)
        return [ErasureResult(p, tuple(rs), len(rs), copies=self._copies()) for p, rs in by_p.items()]

    def touch(self, subject_id: str, now: Optional[datetime] = None,
              new_expiry: Optional[datetime] = None, *, purpose: Optional[str] = None) -> int:
        """Record an interaction under `purpose` with the subject's rows held for it, and optionally
        move their expiry (re-sealed, since the seal binds the expiry). Without `purpose`, every
        row of the subject, and no expiry may be moved. Returns the number of rows touched."""
        now_t = now or _now()
        to_us(now_t, "now")
        exp_us = touched_expiry(new_expiry, purpose)
        p = self.pseudonym(subject_id)
        # A re-sealed row binds the subject's look digests (of the present version): a row an
        # earlier release stored without them gets them here.
        looks = self.looks(subject_id).stored
        with self._write() as after:
            db = self._db()
            keys = self._require_keys()
            rows = db.execute(f"SELECT {self._ROW_COLS} FROM rows WHERE pseudonym = ?", (p,)).fetchall()
            opened = [(r, *self._unseal_full(keys, r)) for r in rows]
            if purpose is not None:
                opened = [o for o in opened if purpose in o[1].purposes]
            db.executemany("UPDATE rows SET last_interaction = ? WHERE row_id = ?",
                           [(_iso(now_t), int(r[0])) for r, *_ in opened])
            if exp_us is not None and opened:
                updates: dict[int, tuple[_Entry, np.ndarray]] = {}
                for r, entry, vec, token in opened:
                    rid = int(r[0])
                    exp = moved_expiry(entry.purposes, entry.expires_us, exp_us)
                    sealed = seal_row(keys, rid, p, sorted(entry.purposes), entry.token_id, str(r[4]), exp, vec,
                                      token, visible=entry.visible, masked_enrolment=entry.masked_enrolment,
                                      looks=looks)
                    db.execute("UPDATE rows SET expires_us = ?, sealed = ?, look = ?, look_small = ? WHERE row_id = ?",
                               (exp, sealed, *looks, rid))
                    updates[rid] = (dataclasses.replace(entry, expires_us=exp, looks=looks), vec)
                self._log(list(updates), "upsert")
                after.append(lambda: self._apply(updates, []))
        return len(opened)

    # ---------------------------------------------------------------- re-keying

    def rekey(self, keyring: Optional[Keyring] = None) -> RekeyResult:
        """Move every stored template to the newest transform and seal keys, of this keyring (after
        ``keyring.rotate()``) or of `keyring` (a new one holding the same pseudonym key), in ONE
        transaction: a crash leaves all rows under the old keys or all under the new. The key
        versions in use are stored with the rows, so the keyring must keep the old versions until
        this returns; retire them afterwards. No raw embedding is formed: each template moves
        through the product of the new matrix with the transpose of the old."""
        target = keyring or self._keyring
        with self._write() as after:
            old = self._require_keys()
            meta = self._read_meta()
            pv = int(meta["pseudonym_version"])
            if pv not in target.versions("pseudonym") or target.key_id("pseudonym", pv) != meta["pseudonym_key_id"]:
                raise ConfigError("the new keyring does not hold this gallery's pseudonym key; the pseudonym key "
                                  "cannot change, so carry it over to the new keyring.")
            tv, sv = target.version("transform"), target.version("seal")
            t_id, s_id = target.key_id("transform", tv), target.key_id("seal", sv)
            if t_id == meta["transform_key_id"] and s_id == meta["seal_key_id"]:
                return RekeyResult(0, (old.transform_version, tv), (old.seal_version, sv))
            if tv == old.transform_version and t_id != meta["transform_key_id"] and target is self._keyring:
                raise ConfigError("the keyring's transform key changed without a new version number.")
            same_transform = t_id == meta["transform_key_id"]
            new_transform = (old.transform if same_transform
                             else TemplateTransform.from_key(target.key("transform", tv), self._dim))
            new = _Keys(tv, sv, new_transform, Sealer(target.key("seal", sv)))
            db = self._db()
            rows = db.execute(f"SELECT {self._ROW_COLS} FROM rows ORDER BY row_id").fetchall()
            for r in rows:
                entry, t_old, token = self._unseal_full(old, r)
                t_new = (t_old if same_transform else old.transform.rekey_to(new.transform, t_old)).astype("<f4")
                v_new = rekeyed(old, new, same_transform, entry.visible)
                rid = int(r[0])
                sealed = seal_row(new, rid, entry.pseudonym, json.loads(r[2]), entry.token_id, str(r[4]),
                                  entry.expires_us, t_new, token, visible=v_new,
                                  masked_enrolment=entry.masked_enrolment, looks=stored_looks(r[9], r[10]))
                db.execute("UPDATE rows SET transform_version = ?, seal_version = ?, sealed = ? WHERE row_id = ?",
                           (tv, sv, sealed, rid))
                self._at("rekey:row")
            db.executemany("UPDATE meta SET v = ? WHERE k = ?", [
                (str(tv), "transform_version"), (t_id, "transform_key_id"),
                (str(sv), "seal_version"), (s_id, "seal_key_id")])
            db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                       (REKEYED_FROM, rekey_mark(target, self._read_meta(),
                                                 f"{old.transform_version}/{old.seal_version}")))
            self._log([0], "reload")
            self._at("rekey:meta")

            def swap() -> None:
                self._keyring = target
                self._reload()

            after.append(swap)
        self._scrub_wal()
        return RekeyResult(len(rows), (old.transform_version, tv), (old.seal_version, sv))

    def rebuild_index(self) -> None:
        """Rebuild the in-memory index from the store through the index factory, which sees the
        current row count. The gallery also asks the factory again by itself as it grows."""
        with self._lock:
            self._db()
            self._reload()

    # ---------------------------------------------------------------- reading

    def _allowed(self, purpose: str, now_us: int, pseudonym: Optional[str] = None) -> np.ndarray:
        if pseudonym is not None:
            mine = sorted(rid for rid in self._by_pseudonym.get(pseudonym, ())
                         if purpose in self._entries[rid].purposes and self._entries[rid].expires_us > now_us)
            return np.asarray(mine, dtype=np.int64)
        return self._filter.allowed(purpose, now_us)

    def _by_path(self, allowed: np.ndarray, path: Optional[str]) -> tuple[np.ndarray, SearchIndex]:
        """The allowed rows and the index a path searches (storage.rows.PATHS): None, every row's
        template; "visible" and "visible-masked", the visible-region templates of the rows
        enrolled bare and masked; "plain-only", the main templates of the rows that hold none;
        "plain-bare", the main templates of the rows not enrolled masked."""
        check_path(path)
        if path is None:
            return allowed, self._index
        if path == "plain-only":
            return np.setdiff1d(allowed, _ids(self._visible_ids)), self._index
        masked = _ids(self._masked_ids)
        if path == "plain-bare":
            return np.setdiff1d(allowed, masked), self._index
        if path == "visible-masked":
            return np.intersect1d(allowed, masked), self._vindex
        return np.setdiff1d(np.intersect1d(allowed, _ids(self._visible_ids)), masked), self._vindex

    def search(self, embedding: np.ndarray, purpose: str, k: int = 5, threshold: Optional[float] = None,
               now: Optional[datetime] = None, *, path: Optional[str] = None,
               exclude: Collection[int] = ()) -> list[Match]:
        """The best-matching subjects (one match each, their best row) among rows whose purposes
        include `purpose` and that have not expired at `now`, best first, at most `k`. `path`:
        see `_by_path` ("visible" and "visible-masked" for a masked probe). `exclude`: row ids
        that take no part, left out before ranking (a row left out after it could take a place
        in the `k` from a genuine match, or stand as its subject's best row)."""
        _check_text(purpose, "purpose")
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}.")
        now_us = to_us(now or _now(), "now")
        vec = self._check_embedding(embedding)
        with self._lock:
            self._refresh()
            found = self._search_locked(vec, purpose, k, threshold, now_us, path, exclude)
            if self._still_stored([m.row_id for m in found]):
                return found
            self._reload()  # the change log missed a removal: read the store whole
            return self._search_locked(vec, purpose, k, threshold, now_us, path, exclude)

    def _search_locked(self, vec: np.ndarray, purpose: str, k: int, threshold: Optional[float], now_us: int,
                       path: Optional[str], exclude: Collection[int] = ()) -> list[Match]:
        allowed, index = self._by_path(self._allowed(purpose, now_us), path)
        allowed = _less(allowed, exclude)
        if allowed.size == 0:
            return []
        q = self._require_keys().transform.apply(vec).reshape(1, -1)
        fetch = min(int(allowed.size), 4 * k)
        while True:
            scores, ids = index.search(q, fetch, threshold=threshold, allowed=allowed)
            best: dict[str, Match] = {}
            hits = 0
            for s, i in zip(scores[0].tolist(), ids[0].tolist()):
                if i < 0:
                    continue
                hits += 1
                e = self._entries[i]
                if e.pseudonym not in best:
                    best[e.pseudonym] = Match(e.pseudonym, float(s), int(i), e.token_id)
            if len(best) >= k or hits < fetch or fetch >= allowed.size:
                break
            fetch = min(int(allowed.size), fetch * 4)
        return sorted(best.values(), key=lambda m: -m.score)[:k]

    def _still_stored(self, row_ids: Sequence[int]) -> bool:
        """Whether every row a result names is in the store now. Other processes' removals reach
        this handle through the change log; one whose entries were deleted by hand would leave
        an erased person matchable here for as long as the handle lives. One index probe a row."""
        if not row_ids:
            return True
        marks = ",".join("?" * len(row_ids))
        got = self._db().execute(f"SELECT COUNT(*) FROM rows WHERE row_id IN ({marks})", [int(r) for r in row_ids])
        return int(got.fetchone()[0]) == len(set(row_ids))

    def verify(self, subject_id: str, embedding: np.ndarray, purpose: str,
               now: Optional[datetime] = None, *, path: Optional[str] = None,
               exclude: Collection[int] = ()) -> Optional[float]:
        """The best score between the embedding and the subject's rows allowed for `purpose` at
        `now`; None when the subject has no such row. `path` as in `search` (None when no row of
        the subject takes part in it). `exclude`: row ids that take no part."""
        _check_text(purpose, "purpose")
        now_us = to_us(now or _now(), "now")
        vec = self._check_embedding(embedding)
        p = self.pseudonym(subject_id)
        with self._lock:
            self._refresh()
            best = self._best_locked(vec, p, purpose, now_us, path, exclude)
            if best is None or self._still_stored([best[1]]):  # as search's
                return None if best is None else best[0]
            self._reload()
            best = self._best_locked(vec, p, purpose, now_us, path, exclude)
            return None if best is None else best[0]

    def _best_locked(self, vec: np.ndarray, pseudonym: str, purpose: str, now_us: int, path: Optional[str],
                     exclude: Collection[int] = ()) -> Optional[tuple[float, int]]:
        """(score, row id) of the subject's best row allowed for `purpose`, or None."""
        allowed, index = self._by_path(self._allowed(purpose, now_us, pseudonym=pseudonym), path)
        allowed = _less(allowed, exclude)
        if allowed.size == 0:
            return None
        q = self._require_keys().transform.apply(vec).reshape(1, -1)
        scores, ids = index.search(q, 1, allowed=allowed)
        return (float(scores[0, 0]), int(ids[0, 0])) if ids[0, 0] >= 0 else None

    def may_hold(self, path: Optional[str], purpose: str, now: Optional[datetime] = None, *,
                 subject_id: Optional[str] = None, exclude: Collection[int] = ()) -> bool:
        """Whether any row allowed for `purpose` at `now` (of `subject_id`, or of anyone), less the
        rows `exclude` names, takes part in `path`; exact here. Lets a caller skip making a probe
        for a path with nothing on it."""
        _check_text(purpose, "purpose")
        now_us = to_us(now or _now(), "now")
        p = None if subject_id is None else self.pseudonym(subject_id)
        with self._lock:
            self._refresh()
            allowed, _ = self._by_path(self._allowed(purpose, now_us, pseudonym=p), path)
            return bool(_less(allowed, exclude).size)

    def rows_for(self, subject_id: str) -> list[GalleryRow]:
        """The subject's rows (descriptions only), each checked against its seal."""
        p = self.pseudonym(subject_id)
        with self._lock:
            self._refresh()
            # Also the rows whose seals bind the subject (as erasure takes them): one whose
            # pseudonym column was edited by hand fails its check here, rather than go unlisted.
            held = sorted(self._by_pseudonym.get(p, ()))
            return self._described("WHERE pseudonym = ?" + "".join(" OR row_id = ?" for _ in held), (p, *held))

    def row_ids_of(self, pseudonym: str) -> set[int]:
        """The ids of the rows whose seals bind this pseudonym, from the rows in memory."""
        with self._lock:
            self._refresh()
            return set(self._by_pseudonym.get(pseudonym, ()))

    def rows(self) -> list[GalleryRow]:
        """Every row's description (never a template), each checked against its seal."""
        return self._described("", ())

    def _described(self, where: str, args: tuple[Any, ...]) -> list[GalleryRow]:
        with self._lock:
            self._refresh()
            db = self._db()
            keys = self._require_keys()
            out = []
            for r in db.execute(f"SELECT {self._ROW_COLS}, created_at, last_interaction FROM rows "
                                f"{where} ORDER BY row_id", args).fetchall():
                entry, _, token = self._unseal_full(keys, r[:11])
                out.append(describe(entry, r[0], r[4], r[11], r[12], token))
            return out

    def sealed_rows(self, after: int = -1, limit: int = 5000) -> list[tuple[Any, ...]]:
        """Rows as stored (sealed, ROW_COLS then created_at, last_interaction, look, look_small),
        for copying to another record store; nothing is unsealed."""
        with self._lock:
            return [tuple(r) for r in self._db().execute(
                f"SELECT {ROW_COLS}, created_at, last_interaction, look, look_small FROM rows WHERE row_id > ? "
                "ORDER BY row_id LIMIT ?",
                (after, limit)).fetchall()]

    def meta(self) -> dict[str, str]:
        with self._lock:
            return self._read_meta()

    def has_subject(self, subject_id: str) -> bool:
        p = self.pseudonym(subject_id)
        with self._lock:  # from the rows in memory, as the look-alike check (not the bendable pseudonym index)
            self._refresh()
            return p in self._by_pseudonym

    def never_committed(self, ids: Sequence[int], transactions: Mapping[int, str] = {}) -> list[int]:
        """The ids above the highest row id any committed write has used: SQLite's AUTOINCREMENT
        counter is part of each transaction, so an enrolment that never committed left it lower,
        while a committed row deleted since (or lost to a restore of an older copy after a later
        enrolment) stays below it and is not excused. (SQLite keeps no outcome of a transaction
        once it is over: `transactions` is never given here.)"""
        ceiling = self.id_ceiling()
        return sorted(int(i) for i in ids if int(i) > ceiling)

    def writing_transaction(self) -> Optional[str]:
        return None

    def stored_ids(self, ids: Sequence[int]) -> set[int]:
        with self._lock:
            return set(_stored_ids(self._db(), sorted({int(i) for i in ids}), "NOT INDEXED"))

    def id_ceiling(self) -> int:
        """The highest row id any committed write has used (or skip_ids passed), removed rows'
        included: a store these rows are copied to must hand out none of them again."""
        with self._lock:
            got = self._db().execute("SELECT seq FROM sqlite_sequence WHERE name = 'rows'").fetchone()
        return int(got[0]) if got else 0

    def skip_ids(self, upto: int) -> None:
        """Never hand out row ids up to `upto` (ids the audit log already named for an enrolment
        that never committed), so no later row takes one of them."""
        with self._write():
            self._db().execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'rows', 0 WHERE NOT EXISTS "
                               "(SELECT 1 FROM sqlite_sequence WHERE name = 'rows')")
            self._db().execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'rows'", (int(upto),))

    def subject_count(self) -> int:
        with self._lock:  # as has_subject
            self._refresh()
            return len(self._by_pseudonym)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM rows").fetchone()[0])


def _stored_ids(db: sqlite3.Connection, ids: Sequence[int], how: str) -> list[int]:
    """Which of `ids` the rows table holds, read `how` ("" or "NOT INDEXED"), 500 at a time."""
    out: list[int] = []
    for i in range(0, len(ids), 500):
        part = list(ids[i:i + 500])
        out += [int(r) for r, in db.execute(f"SELECT row_id FROM rows {how} WHERE row_id IN "
                                            f"({','.join('?' * len(part))})", part)]
    return out


def _less(allowed: np.ndarray, exclude: Collection[int]) -> np.ndarray:
    """The allowed row ids less those `exclude` names."""
    return np.setdiff1d(allowed, np.asarray(sorted(exclude), dtype=np.int64)) if exclude else allowed


def _ids(rows: set[int]) -> np.ndarray:
    return np.fromiter(rows, dtype=np.int64, count=len(rows))
