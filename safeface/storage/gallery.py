"""The gallery: protected, sealed templates in SQLite, and the in-memory index that searches them.

Each row holds a protected template (the embedding after the keyed orthogonal transform, as
float32 bytes) sealed with AES-256-GCM, next to its subject pseudonym, purposes, consent token id,
expiry and provenance; the seal's associated data binds those columns to the template. No subject
id, image or raw embedding is ever written.

The index lives in memory and is rebuilt from the store on open (every row unsealed, so a tampered
row is caught at once). Several processes may share one file: each write runs in one
``BEGIN IMMEDIATE`` transaction that also appends to a change log, and each process replays the
log (or reloads) when ``PRAGMA data_version`` says another connection committed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence, Union

import numpy as np

from ..errors import ConfigError, IntegrityError
from ..sqlite_store import connect as _connect_store
from ..hazmat.templates.keyring import Keyring
from ..hazmat.templates.pseudonym import pseudonymize
from ..hazmat.templates.rowfilter import RowFilter
from ..hazmat.templates.sealing import RowBinding, Sealer
from ..hazmat.templates.transform import TemplateTransform
from .lock import WriteLock

SCHEMA_VERSION = 1
# Change-log entries kept for other processes to replay; one that falls further behind reloads.
CHANGE_LOG_KEEP = 10_000

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
    sealed BLOB NOT NULL
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


@dataclass(frozen=True)
class GalleryRow:
    """A row's public description (never its template)."""

    row_id: int
    pseudonym: str
    purposes: tuple[str, ...]
    token_id: str
    expires_at: datetime
    provenance: str
    created_at: datetime
    last_interaction: Optional[datetime]
    token: Optional[str] = field(default=None, repr=False)  # sealed with the row; None before tokens were kept


@dataclass(frozen=True)
class Enrollment:
    """One template to store with `Gallery.add_many` (the arguments of `Gallery.add`)."""

    subject_id: str
    embedding: np.ndarray = field(repr=False)
    purposes: Sequence[str]
    token_id: str
    expires_at: datetime
    provenance: str = "consent"
    token: Optional[str] = None  # the consent or legal-basis token, sealed with the row


@dataclass(frozen=True)
class Match:
    pseudonym: str
    score: float
    row_id: int
    token_id: str


@dataclass(frozen=True)
class ErasureResult:
    """What an erasure removed. `pseudonym` is None when the rows belonged to several subjects
    (or none)."""

    pseudonym: Optional[str]
    row_ids: tuple[int, ...]
    count: int


@dataclass(frozen=True)
class RekeyResult:
    rows: int
    transform_version: tuple[int, int]
    seal_version: tuple[int, int]


@dataclass(frozen=True)
class _Entry:
    pseudonym: str
    purposes: frozenset[str]
    token_id: str
    expires_us: int


@dataclass
class _Keys:
    """The key versions the gallery's rows are under, and the objects made from them."""

    transform_version: int
    seal_version: int
    transform: TemplateTransform
    sealer: Sealer


def to_us(t: datetime, what: str) -> int:
    if not isinstance(t, datetime):
        raise ConfigError(f"{what} must be a datetime, got {type(t).__name__}.")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ConfigError(f"{what} must be timezone-aware (e.g. datetime.now(timezone.utc)).")
    delta = t - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    from datetime import timedelta

    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(us))


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


def _now() -> datetime:
    return datetime.now(timezone.utc)


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
        self._write_lock = WriteLock(path.with_name(path.name + ".lock"))
        self._keys: Optional[_Keys] = None
        self._index: SearchIndex = index_factory(dim, 0)
        self._next_index_check = INDEX_CHECK_FIRST
        self._entries: dict[int, _Entry] = {}
        self._by_pseudonym: dict[str, set[int]] = {}
        self._filter = RowFilter()
        self._seen_seq = 0
        self._data_version = -1
        self._pseudonym_version = 0
        # Test seam: called with a point name inside write transactions ("add:sealed",
        # "rekey:row", "rekey:meta"), so a test can kill the process there.
        self._hook: Optional[Callable[[str], None]] = None

    def __repr__(self) -> str:
        return f"Gallery(path={str(self._path)!r}, dim={self._dim})"

    # ---------------------------------------------------------------- opening and closing

    @classmethod
    def open(cls, path: Union[str, Path], keyring: Keyring, dim: int,
             index_factory: Optional[IndexFactory] = None) -> "Gallery":
        """Open (or create) the gallery at `path`, unseal every row and build the index.
        A row that fails its integrity check raises IntegrityError naming it."""
        path = Path(path)
        if not isinstance(dim, int) or dim <= 0:
            raise ConfigError(f"dim must be a positive integer, got {dim!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect_store(path, "gallery")
        g = cls(conn, path, keyring, dim, index_factory or default_index_factory)
        try:
            with g._lock:
                g._init_schema()
                g._reload()
        except BaseException:
            conn.close()
            g._conn = None
            raise
        return g

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._entries.clear()
            self._by_pseudonym.clear()
            self._index = self._factory(self._dim, 0)
            self._filter = RowFilter()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

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
            meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
            if not meta:
                kr = self._keyring
                tv, sv = kr.version("transform"), kr.version("seal")
                pv = kr.version("pseudonym")
                values = {
                    "schema": str(SCHEMA_VERSION),
                    "dim": str(self._dim),
                    "transform_version": str(tv),
                    "transform_key_id": kr.key_id("transform", tv),
                    "seal_version": str(sv),
                    "seal_key_id": kr.key_id("seal", sv),
                    "pseudonym_version": str(pv),
                    "pseudonym_key_id": kr.key_id("pseudonym", pv),
                }
                db.executemany("INSERT INTO meta (k, v) VALUES (?, ?)", list(values.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------- keys

    def _keys_from_meta(self, meta: dict[str, str]) -> _Keys:
        if meta.get("schema") != str(SCHEMA_VERSION):
            raise ConfigError(f"the gallery at {self._path} has schema {meta.get('schema')!r}; "
                              f"this safeface reads schema {SCHEMA_VERSION}.")
        if meta.get("dim") != str(self._dim):
            raise ConfigError(f"the gallery at {self._path} holds {meta.get('dim')}-dimensional templates, "
                              f"but it was opened with dim={self._dim}; use the engine it was enrolled with.")
        tv, sv, pv = int(meta["transform_version"]), int(meta["seal_version"]), int(meta["pseudonym_version"])
        kr = self._keyring
        for purpose, v, kid in (("transform", tv, meta["transform_key_id"]), ("seal", sv, meta["seal_key_id"]),
                                ("pseudonym", pv, meta["pseudonym_key_id"])):
            if v not in kr.versions(purpose):
                refresh = getattr(kr, "refresh", None)
                if refresh is not None:
                    refresh()
            if v not in kr.versions(purpose):
                raise ConfigError(f"the keyring holds no {purpose} key version {v}, which the gallery at "
                                  f"{self._path} is under; open it with the keyring it was made with.")
            if kr.key_id(purpose, v) != kid:
                raise ConfigError(f"the keyring's {purpose} key version {v} (id {kr.key_id(purpose, v)}) is not "
                                  f"the one the gallery at {self._path} is under (id {kid}); open it with the "
                                  f"keyring it was made with.")
        keys = [kr.key("transform", tv), kr.key("seal", sv), kr.key("pseudonym", pv)]
        if len({hashlib.sha256(k).digest() for k in keys}) != 3:
            raise ConfigError("the keyring hands out one key for several purposes; the transform, seal and "
                              "pseudonym keys must be independent.")
        self._pseudonym_version = pv
        return _Keys(tv, sv, TemplateTransform.from_key(kr.key("transform", tv), self._dim),
                     Sealer(kr.key("seal", sv)))

    def pseudonym(self, subject_id: str) -> str:
        """The subject's pseudonym under this deployment's pseudonym key."""
        with self._lock:
            self._db()
            return pseudonymize(self._keyring.key("pseudonym", self._pseudonym_version), subject_id)

    # ---------------------------------------------------------------- sync with the store

    def _read_meta(self) -> dict[str, str]:
        return dict(self._db().execute("SELECT k, v FROM meta").fetchall())

    def _unseal_row(self, keys: _Keys, row: sqlite3.Row | tuple[Any, ...]) -> tuple[_Entry, np.ndarray]:
        entry, vec, _ = self._unseal_full(keys, row)
        return entry, vec

    def _unseal_full(self, keys: _Keys, row: sqlite3.Row | tuple[Any, ...]
                     ) -> tuple[_Entry, np.ndarray, Optional[str]]:
        (row_id, pseudonym, purposes_json, token_id, provenance, expires_us, tv, sv, sealed) = row
        try:
            purposes = tuple(json.loads(purposes_json))
        except ValueError:
            raise IntegrityError(f"gallery row {row_id} failed its integrity check: its purposes "
                                 f"column is not valid.") from None
        if tv != keys.transform_version or sv != keys.seal_version:
            raise IntegrityError(f"gallery row {row_id} failed its integrity check: it claims key versions "
                                 f"{tv}/{sv} but the gallery is under {keys.transform_version}/{keys.seal_version}.")
        binding = RowBinding(int(row_id), str(pseudonym), purposes, str(token_id), str(provenance),
                             int(expires_us), int(tv), int(sv))
        vec, token = self._open_blob(keys, bytes(sealed), binding)
        return _Entry(str(pseudonym), frozenset(purposes), str(token_id), int(expires_us)), vec, token

    def _open_blob(self, keys: _Keys, sealed: bytes, binding: RowBinding) -> tuple[np.ndarray, Optional[str]]:
        """The template and the token sealed with it (rows sealed before tokens were kept hold
        the template alone)."""
        plain = keys.sealer.open(sealed, binding)
        n = 4 * self._dim
        if len(plain) < n:
            raise IntegrityError(f"gallery row {binding.row_id} failed its integrity check: its template has "
                                 f"the wrong length.")
        token = plain[n:].decode("utf-8") if len(plain) > n else None
        return np.frombuffer(plain[:n], dtype="<f4").astype(np.float32), token

    @staticmethod
    def _blob(template: np.ndarray, token: Optional[str]) -> bytes:
        return template.astype("<f4").tobytes() + (token or "").encode("utf-8")

    _ROW_COLS = ("row_id, pseudonym, purposes, token_id, provenance, expires_us, "
                 "transform_version, seal_version, sealed")

    def _reload(self) -> None:
        """Rebuild keys, entries and index from the store, in one read snapshot."""
        db = self._db()
        self._data_version = int(db.execute("PRAGMA data_version").fetchone()[0])
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
        index = self._factory(self._dim, len(rows))
        if rows:
            index.add(np.fromiter(entries.keys(), dtype=np.int64, count=len(entries)), vecs)
        by_p: dict[str, set[int]] = {}
        for rid, e in entries.items():
            by_p.setdefault(e.pseudonym, set()).add(rid)
        self._keys, self._entries, self._index, self._by_pseudonym = keys, entries, index, by_p
        self._next_index_check = max(INDEX_CHECK_FIRST, int(len(rows) * INDEX_CHECK_GROWTH))
        self._filter = RowFilter.build((rid, e.purposes, e.expires_us) for rid, e in entries.items())
        self._seen_seq = int(seq)

    def _refresh(self) -> None:
        """Catch up with commits made by other connections, if any."""
        db = self._db()
        dv = int(db.execute("PRAGMA data_version").fetchone()[0])
        if dv == self._data_version:
            return
        own_txn = not db.in_transaction
        if own_txn:
            db.execute("BEGIN")
        try:
            changes = db.execute("SELECT seq, row_id, op FROM changes WHERE seq > ? ORDER BY seq",
                                 (self._seen_seq,)).fetchall()
            if not changes:
                self._data_version = dv
                return
            if changes[0][0] != self._seen_seq + 1 or any(op == "reload" for _, _, op in changes):
                self._reload()
                self._data_version = dv
                return
            keys = self._require_keys()
            changed = sorted({int(rid) for _, rid, _ in changes})
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

    def _apply(self, upserts: dict[int, tuple[_Entry, np.ndarray]], removals: Sequence[int]) -> None:
        if removals:
            self._index.remove(np.asarray(removals, dtype=np.int64))
            for rid in removals:
                gone = self._entries.pop(rid, None)
                if gone is not None:
                    self._unlink(gone.pseudonym, rid)
                self._filter.remove(rid)
        if upserts:
            ids = np.fromiter(upserts.keys(), dtype=np.int64, count=len(upserts))
            self._index.add(ids, np.stack([v for _, v in upserts.values()]))
            for rid, (entry, _) in upserts.items():
                old = self._entries.get(rid)
                if old is not None:
                    self._unlink(old.pseudonym, rid)
                self._entries[rid] = entry
                self._by_pseudonym.setdefault(entry.pseudonym, set()).add(rid)
                self._filter.upsert(rid, entry.purposes, entry.expires_us)
            if len(self._entries) >= self._next_index_check:
                self._follow_factory()

    def _follow_factory(self) -> None:
        """Ask the index factory again now that the gallery has grown: where it would now build
        another kind of index (exact to approximate past its size threshold), rebuild."""
        n = len(self._entries)
        self._next_index_check = max(INDEX_CHECK_FIRST, int(n * INDEX_CHECK_GROWTH))
        if type(self._factory(self._dim, n)) is not type(self._index):
            self._reload()

    def _unlink(self, pseudonym: str, rid: int) -> None:
        rows = self._by_pseudonym.get(pseudonym)
        if rows is not None:
            rows.discard(rid)
            if not rows:
                del self._by_pseudonym[pseudonym]

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
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            for fn in after:
                fn()
            self._seen_seq = seq

    def _log(self, row_ids: Sequence[int], op: str) -> None:
        self._db().executemany("INSERT INTO changes (row_id, op) VALUES (?, ?)", [(int(r), op) for r in row_ids])

    # ---------------------------------------------------------------- writing

    def _check_embedding(self, embedding: np.ndarray) -> np.ndarray:
        v = np.asarray(embedding, dtype=np.float64).reshape(-1)
        if v.shape[0] != self._dim:
            raise ConfigError(f"the embedding has dimension {v.shape[0]} but the gallery holds {self._dim}.")
        if not np.isfinite(v).all():
            raise ConfigError("the embedding contains NaN or infinity.")
        n = float(np.linalg.norm(v))
        if n == 0.0:
            raise ConfigError("the embedding is all zeros.")
        return v / n

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
        prepared = []
        for it in items:
            purposes_t = _check_purposes(it.purposes)
            _check_text(it.token_id, "token_id")
            _check_text(it.provenance, "provenance")
            prepared.append((self.pseudonym(it.subject_id), self._check_embedding(it.embedding), purposes_t,
                             it.token_id, it.provenance, to_us(it.expires_at, "expires_at"), it.token))
        created = _now()
        out: list[GalleryRow] = []
        with self._write() as after:
            if decide is not None:
                decide()
            keys = self._require_keys()
            db = self._db()
            upserts: dict[int, tuple[_Entry, np.ndarray]] = {}
            raw = np.stack([v for _, v, *_ in prepared]) if prepared else np.zeros((0, self._dim))
            templates = keys.transform.apply(raw)
            for (pseudonym, _, purposes_t, token_id, provenance, exp_us, token), template in zip(prepared, templates):
                cur = db.execute(
                    "INSERT INTO rows (pseudonym, purposes, token_id, provenance, expires_us, created_at, "
                    "last_interaction, transform_version, seal_version, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (pseudonym, json.dumps(list(purposes_t)), token_id, provenance, exp_us, _iso(created),
                     _iso(created), keys.transform_version, keys.seal_version, b""))
                row_id = int(cur.lastrowid or 0)
                binding = RowBinding(row_id, pseudonym, purposes_t, token_id, provenance, exp_us,
                                     keys.transform_version, keys.seal_version)
                db.execute("UPDATE rows SET sealed = ? WHERE row_id = ?",
                           (keys.sealer.seal(self._blob(template, token), binding), row_id))
                upserts[row_id] = (_Entry(pseudonym, frozenset(purposes_t), token_id, exp_us),
                                   template.astype(np.float32))
                out.append(GalleryRow(row_id, pseudonym, purposes_t, token_id, from_us(exp_us), provenance,
                                      created, created))
            self._log(list(upserts), "upsert")
            self._at("add:sealed")
            if before_commit is not None:
                before_commit(out)
            after.append(lambda: self._apply(upserts, []))
        return out

    def _delete_where(self, where: str, args: tuple[Any, ...]) -> list[tuple[int, str]]:
        """Delete matching rows inside the current write; returns (row_id, pseudonym) pairs."""
        db = self._db()
        found = [(int(r), str(p)) for r, p in db.execute(f"SELECT row_id, pseudonym FROM rows WHERE {where}", args)]
        if found:
            ids = [r for r, _ in found]
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                db.execute(f"DELETE FROM rows WHERE row_id IN ({','.join('?' * len(part))})", part)
            self._log(ids, "delete")
        return found

    def _erase(self, where: str, args: tuple[Any, ...]) -> list[tuple[int, str]]:
        with self._write() as after:
            found = self._delete_where(where, args)
            self._at("erase:deleted")
            ids = [r for r, _ in found]
            after.append(lambda: self._apply({}, ids))
        if found:
            self._scrub_wal()
        return found

    def _scrub_wal(self) -> None:
        # secure_delete zeroes freed pages in the database file; a truncating checkpoint also
        # drops the WAL frames that still hold the erased rows' pages. Best effort: a reader in
        # another process may hold the WAL, and the next checkpoint finishes the job.
        try:
            self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            pass

    def erase_subject(self, subject_id: str) -> ErasureResult:
        """Remove every row of the subject from the store and the index."""
        p = self.pseudonym(subject_id)
        found = self._erase("pseudonym = ?", (p,))
        return ErasureResult(p, tuple(r for r, _ in found), len(found))

    def remove_token(self, token_id: str) -> ErasureResult:
        """Remove every row enrolled under the consent token (e.g. on withdrawal)."""
        _check_text(token_id, "token_id")
        found = self._erase("token_id = ?", (token_id,))
        ps = {p for _, p in found}
        return ErasureResult(ps.pop() if len(ps) == 1 else None, tuple(r for r, _ in found), len(found))

    def purge_expired(self, now: Optional[datetime] = None) -> list[ErasureResult]:
        """Remove rows whose expiry is at or before `now`; one result per subject."""
        now_us = to_us(now or _now(), "now")
        found = self._erase("expires_us <= ?", (now_us,))
        by_p: dict[str, list[int]] = {}
        for r, p in found:
            by_p.setdefault(p, []).append(r)
        return [ErasureResult(p, tuple(rs), len(rs)) for p, rs in by_p.items()]

    def touch(self, subject_id: str, now: Optional[datetime] = None,
              new_expiry: Optional[datetime] = None) -> int:
        """Record an interaction with the subject, and optionally move the expiry of all their rows
        (re-sealed, since the seal binds the expiry). Returns the number of rows touched."""
        now_t = now or _now()
        to_us(now_t, "now")
        exp_us = None if new_expiry is None else to_us(new_expiry, "new_expiry")
        p = self.pseudonym(subject_id)
        with self._write() as after:
            db = self._db()
            keys = self._require_keys()
            rows = db.execute(f"SELECT {self._ROW_COLS} FROM rows WHERE pseudonym = ?", (p,)).fetchall()
            db.execute("UPDATE rows SET last_interaction = ? WHERE pseudonym = ?", (_iso(now_t), p))
            if exp_us is not None and rows:
                updates: dict[int, tuple[_Entry, np.ndarray]] = {}
                for r in rows:
                    entry, vec, token = self._unseal_full(keys, r)
                    rid = int(r[0])
                    binding = RowBinding(rid, p, tuple(sorted(entry.purposes)), entry.token_id, str(r[4]),
                                         exp_us, keys.transform_version, keys.seal_version)
                    db.execute("UPDATE rows SET expires_us = ?, sealed = ? WHERE row_id = ?",
                               (exp_us, keys.sealer.seal(self._blob(vec, token), binding), rid))
                    updates[rid] = (_Entry(p, entry.purposes, entry.token_id, exp_us), vec)
                self._log(list(updates), "upsert")
                after.append(lambda: self._apply(updates, []))
        return len(rows)

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
                rid = int(r[0])
                binding = RowBinding(rid, entry.pseudonym, tuple(json.loads(r[2])), entry.token_id, str(r[4]),
                                     entry.expires_us, tv, sv)
                db.execute("UPDATE rows SET transform_version = ?, seal_version = ?, sealed = ? WHERE row_id = ?",
                           (tv, sv, new.sealer.seal(self._blob(t_new, token), binding), rid))
                self._at("rekey:row")
            db.executemany("UPDATE meta SET v = ? WHERE k = ?", [
                (str(tv), "transform_version"), (t_id, "transform_key_id"),
                (str(sv), "seal_version"), (s_id, "seal_key_id")])
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

    def search(self, embedding: np.ndarray, purpose: str, k: int = 5, threshold: Optional[float] = None,
               now: Optional[datetime] = None) -> list[Match]:
        """The best-matching subjects (one match each, their best row) among rows whose purposes
        include `purpose` and that have not expired at `now`, best first, at most `k`."""
        _check_text(purpose, "purpose")
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}.")
        now_us = to_us(now or _now(), "now")
        vec = self._check_embedding(embedding)
        with self._lock:
            self._refresh()
            allowed = self._allowed(purpose, now_us)
            if allowed.size == 0:
                return []
            q = self._require_keys().transform.apply(vec).reshape(1, -1)
            fetch = min(int(allowed.size), 4 * k)
            while True:
                scores, ids = self._index.search(q, fetch, threshold=threshold, allowed=allowed)
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

    def verify(self, subject_id: str, embedding: np.ndarray, purpose: str,
               now: Optional[datetime] = None) -> Optional[float]:
        """The best score between the embedding and the subject's rows allowed for `purpose` at
        `now`; None when the subject has no such row."""
        _check_text(purpose, "purpose")
        now_us = to_us(now or _now(), "now")
        vec = self._check_embedding(embedding)
        p = self.pseudonym(subject_id)
        with self._lock:
            self._refresh()
            allowed = self._allowed(purpose, now_us, pseudonym=p)
            if allowed.size == 0:
                return None
            q = self._require_keys().transform.apply(vec).reshape(1, -1)
            scores, ids = self._index.search(q, 1, allowed=allowed)
            return float(scores[0, 0]) if ids[0, 0] >= 0 else None

    def rows_for(self, subject_id: str) -> list[GalleryRow]:
        """The subject's rows (descriptions only), each checked against its seal."""
        return self._described("WHERE pseudonym = ?", (self.pseudonym(subject_id),))

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
                entry, _, token = self._unseal_full(keys, r[:9])
                out.append(GalleryRow(int(r[0]), entry.pseudonym, tuple(sorted(entry.purposes)), entry.token_id,
                                      from_us(entry.expires_us), str(r[4]), datetime.fromisoformat(r[9]),
                                      datetime.fromisoformat(r[10]) if r[10] else None, token))
            return out

    def has_subject(self, subject_id: str) -> bool:
        p = self.pseudonym(subject_id)
        with self._lock:
            return self._db().execute("SELECT 1 FROM rows WHERE pseudonym = ? LIMIT 1", (p,)).fetchone() is not None

    def subject_count(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(DISTINCT pseudonym) FROM rows").fetchone()[0])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM rows").fetchone()[0])


def _check_text(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string.")


def _check_purposes(purposes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(purposes, str):
        raise ConfigError("purposes must be a sequence of purpose names, not a single string.")
    out = tuple(sorted(set(purposes)))
    if not out:
        raise ConfigError("a gallery row needs at least one purpose.")
    for p in out:
        _check_text(p, "each purpose")
    return out
