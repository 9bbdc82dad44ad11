"""The audit log: append-only, hash-chained, its head signed with the workspace's audit key.

One SQLite file. Each entry holds the time, operation, purpose, token id, legal basis, subject
pseudonyms, decision and rule; never an image, a template or a raw subject id. Entry n stores
``hash_n = SHA-256(hash_{n-1} || canonical JSON of entry n)``; the head row stores the last
sequence number and hash with an HMAC-SHA256 under the audit key, so that deleting the tail and
re-chaining needs the key. Each append is one IMMEDIATE transaction (the write lock is held from
reading the previous hash to committing), so two processes appending at once serialise, and a
process killed mid-append leaves the previous, consistent state (SQLite's journal rolls back).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from ..errors import IntegrityError
from ..sqlite_store import connect

GENESIS = hashlib.sha256(b"safeface-audit-genesis-v1").hexdigest()
FIELDS = ("seq", "time", "operation", "purpose", "token_id", "basis", "subjects", "decision", "rule", "note")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    operation TEXT NOT NULL,
    purpose TEXT,
    token_id TEXT,
    basis TEXT,
    subjects TEXT NOT NULL,
    decision TEXT NOT NULL,
    rule TEXT,
    note TEXT,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: str
    operation: str
    purpose: Optional[str]
    token_id: Optional[str]
    basis: Optional[str]  # "consent", "legal-basis: <provision>", or None
    subjects: tuple[str, ...]  # pseudonyms only
    decision: str  # "allowed", "refused", "failed"
    rule: Optional[str]
    note: Optional[str]

    def canonical(self) -> bytes:
        d = {k: getattr(self, k) for k in FIELDS}
        d["subjects"] = list(self.subjects)
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in FIELDS}
        d["subjects"] = list(self.subjects)
        return d


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head_seq: int
    head_hash: str


def _chain(prev: str, entry: AuditEntry) -> str:
    return hashlib.sha256(prev.encode("ascii") + entry.canonical()).hexdigest()


class AuditLog:
    """Open with the audit key (from the workspace keyring); `append` and `verify`."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = Path(path)
        self._key = key
        self._db = connect(self.path, "audit log")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mac(self, seq: int, h: str) -> str:
        return hmac.new(self._key, f"safeface-audit-head|{seq}|{h}".encode("ascii"), hashlib.sha256).hexdigest()

    def append(self, operation: str, decision: str, *, purpose: Optional[str] = None,
               token_id: Optional[str] = None, basis: Optional[str] = None,
               subjects: Sequence[str] = (), rule: Optional[str] = None, note: Optional[str] = None,
               now: Optional[dt.datetime] = None) -> AuditEntry:
        when = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            entry = AuditEntry(seq, when.isoformat(timespec="microseconds"), operation, purpose, token_id, basis,
                               tuple(subjects), decision, rule, note)
            h = _chain(prev, entry)
            db.execute("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (seq, entry.time, operation, purpose, token_id, basis, json.dumps(list(subjects)),
                        decision, rule, note, prev, h))
            db.execute("INSERT OR REPLACE INTO head (id, seq, hash, mac) VALUES (1, ?, ?, ?)",
                       (seq, h, self._mac(seq, h)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return entry

    def entries(self) -> Iterator[AuditEntry]:
        for r in self._db.execute(
                "SELECT seq, time, operation, purpose, token_id, basis, subjects, decision, rule, note "
                "FROM entries ORDER BY rowid"):
            yield AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), r[7], r[8], r[9])

    def verify(self) -> AuditReport:
        """Check the whole chain and the signed head; raise IntegrityError at the first break."""
        try:
            rows = self._db.execute(
                "SELECT seq, time, operation, purpose, token_id, basis, subjects, decision, rule, note, prev, hash "
                "FROM entries ORDER BY rowid").fetchall()
            head = self._db.execute("SELECT seq, hash, mac FROM head WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise IntegrityError(f"the audit log {self.path} cannot be read ({exc}).") from None
        prev = GENESIS
        expected_seq = 1
        for r in rows:
            seq = r[0]
            if seq != expected_seq:
                raise IntegrityError(f"audit entry {expected_seq} is missing or out of order (found {seq} there): "
                                     "entries were deleted or reordered.")
            try:
                subjects = tuple(json.loads(r[6]))
            except (TypeError, ValueError):
                raise IntegrityError(f"audit entry {seq} is corrupt.") from None
            entry = AuditEntry(seq, r[1], r[2], r[3], r[4], r[5], subjects, r[7], r[8], r[9])
            if r[10] != prev:
                raise IntegrityError(f"audit entry {seq} does not follow entry {seq - 1}: the chain is broken "
                                     "(an entry was deleted, inserted or reordered).")
            if not hmac.compare_digest(_chain(prev, entry), str(r[11])):
                raise IntegrityError(f"audit entry {seq} was altered after it was written.")
            prev = str(r[11])
            expected_seq += 1
        if head is None:
            raise IntegrityError("the audit log has no signed head: it was truncated or replaced.")
        n = expected_seq - 1
        if not hmac.compare_digest(self._mac(int(head[0]), str(head[1])), str(head[2])):
            raise IntegrityError("the audit log's head signature is wrong: the log was rewritten without the audit key.")
        if int(head[0]) != n or not hmac.compare_digest(str(head[1]), prev):
            raise IntegrityError(f"the audit log ends at entry {n} but its signed head says {head[0]}: "
                                 "entries were removed from the end (truncation).")
        if n == 0:
            raise IntegrityError("the audit log is empty although the workspace was initialised: it was truncated.")
        return AuditReport(entries=n, head_seq=int(head[0]), head_hash=prev)

    def check_head(self) -> None:
        """A quick check at open: the signed head exists, is genuine and names the last entry.
        (verify() checks the whole chain.)"""
        head = self._db.execute("SELECT seq, hash, mac FROM head WHERE id = 1").fetchone()
        last = self._db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if head is None or last is None:
            raise IntegrityError(f"the audit log {self.path} has no signed head or no entries: it was truncated or "
                                 "replaced. Restore it from a backup before processing.")
        if not hmac.compare_digest(self._mac(int(head[0]), str(head[1])), str(head[2])) or \
                (int(last[0]), str(last[1])) != (int(head[0]), str(head[1])):
            raise IntegrityError(f"the audit log {self.path} does not match its signed head: run `safeface audit "
                                 "verify` and restore it from a backup.")

    def counts(self) -> dict[str, Any]:
        """Totals for the report: by operation and decision, refusals by rule."""
        by_op: dict[str, dict[str, int]] = {}
        for op, decision, n in self._db.execute(
                "SELECT operation, decision, COUNT(*) FROM entries GROUP BY operation, decision"):
            by_op.setdefault(op, {})[decision] = n
        refusals = {rule: n for rule, n in self._db.execute(
            "SELECT rule, COUNT(*) FROM entries WHERE decision = 'refused' GROUP BY rule ORDER BY rule")}
        legal = self._db.execute("SELECT COUNT(*) FROM entries WHERE basis LIKE 'legal-basis%'").fetchone()[0]
        first = self._db.execute("SELECT MIN(time), MAX(time) FROM entries").fetchone()
        return {"by_operation": by_op, "refusals_by_rule": refusals, "legal_basis_calls": legal,
                "first": first[0], "last": first[1]}
