"""The audit log: append-only, hash-chained, its head signed with the workspace's audit key and
anchored outside the file.

Two tables, in the workspace's SQLite file or in the PostgreSQL record store (storage/sqltables.py:
one chain logic, two places to keep it). Each entry holds the time, operation, purpose, token id, legal basis, subject
pseudonyms, decision, rule and the acting credential (the service's API key id); never an image, a template or a raw subject id. Entry n stores
``hash_n = SHA-256(hash_{n-1} || canonical JSON of entry n)``; the head row stores the last
sequence number and hash with an HMAC-SHA256 under the audit key, so that deleting the tail and
re-chaining needs the key. The head also names, for each operation, its newest entry (seq and hash,
under the same HMAC): the lookups the SDK decides by at open and at each call (the last trust
change, the last assessment) read that entry through the head and check its hash, so an entry
edited or renamed by hand in the file is refused there, not only by a full `verify`. Each append is one serialised write transaction (SQLite's BEGIN
IMMEDIATE, or a PostgreSQL advisory lock, held from reading the previous entry to committing), so
two processes, on one machine or many, appending at once take turns and the chain never forks;
a process killed mid-append leaves the previous, consistent state (the transaction rolls back).

The head inside the file cannot tell a restored older copy from the real one, so after each
commit the new head also goes to the anchors (anchor.py), and `verify`/`check_head` compare the
log with them. The entry's time is taken here, inside the transaction, from the host's clock:
no caller can backdate an entry, and a clock set back is refused. Every text field has a length
limit; a longer value is cut and marked with its length and a hash, so nothing of any length is
logged verbatim.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from ..errors import IntegrityError
from ..hashing import same_digest
from ..jsondepth import loads
from ..storage.base import IN_CLUSTER
from ..storage.sqltables import SqliteTables
from .anchor import Anchor, AnchorStore, check_anchor
from .purgeindex import PurgeIndex

GENESIS = hashlib.sha256(b"safeface-audit-genesis-v1").hexdigest()
FIELDS = ("seq", "time", "operation", "purpose", "token_id", "basis", "subjects", "decision", "rule", "note")
PAGE_ROWS = 5000  # entries read at a time by verify()
_COLUMNS = "seq, time, operation, purpose, token_id, basis, subjects, decision, rule, note, actor"
# An erasure's or revocation's entry names the time the policy state withdrew at (the SDK's clock,
# which a demo may set), so the log and the state judge a token's issue time alike. It opens the
# note (which holds no caller text); see withdrawal_time.
WITHDRAWN_AT = "withdrawn at"
_WITHDRAWN_AT = re.compile("^" + WITHDRAWN_AT + r" ([0-9]+);")
# NTP may step the clock back a little; more than this is a clock set back (or a forged entry).
CLOCK_TOLERANCE = dt.timedelta(seconds=2)
# Longest text kept per field; longer values are cut and marked (see `_bounded`). Notes are
# written by the SDK and list the rows an erasure or purge removed (the store check reads them),
# so theirs is generous: about 9,000 row ids; a removal of more rows must be split over entries.
LIMITS = {"operation": 32, "purpose": 128, "token_id": 128, "basis": 256, "decision": 16, "rule": 32,
          "note": 65_536, "subject": 128, "actor": 64}
MAX_SUBJECTS = 100


# A call's entry names the last entry before the guard judged it (see SafeFace._run); the SDK
# writes it after any caller text, so the last mention counts. Entries an earlier safeface wrote
# name none.
JUDGED_AFTER = "judged after entry"
# The entry that spends a liveness evidence where the call is judged (sdk/nonces.py), and how a
# liveness check's entry and that one name the evidence ("liveness <ref>", nonces.nonce_ref).
LIVENESS_SPENT = "liveness-spent"
_LIVENESS_REF = re.compile(r"(?:^|; )(?:evidence ([0-9a-f]{16}); )?liveness ([0-9a-f]{12})$")


def liveness_ref(note: Optional[str]) -> Optional[tuple[str, Optional[str]]]:
    """The nonce a liveness check's entry, or a spending entry, names last, and the signed
    evidence it names with it (None in entries written before they named it); None if none."""
    found = _LIVENESS_REF.search(note or "")
    return (found[2], found[1]) if found else None
_JUDGED = re.compile(JUDGED_AFTER + r" ([0-9]+)\b")


def last_mention(mark: re.Pattern[str], note: Optional[str]) -> Optional[int]:
    """The number the last mention of `mark` in a note carries, or None. The SDK writes its own
    marks after any caller text (an export's recipient), so the last one is the SDK's."""
    found = mark.findall(note or "")
    return int(found[-1]) if found else None


_ROWS = re.compile(r"\brows=([0-9,]+)")
# An enrolment's entry on a store that can tell a transaction's outcome later (PostgreSQL) names
# the store's transaction, so settling asks the store rather than a ceiling a table holds.
# Since this release it also names the cluster the transaction ran on (PostgreSQL's system
# identifier): a transaction id means another transaction on another cluster, so a store restored
# there must not take its answer for this one's. A reader of an earlier release reads the id alone.
STORE_TRANSACTION = "store transaction"
_STORE_TRANSACTION = re.compile(STORE_TRANSACTION + r" ([0-9]+)\b(?: " + IN_CLUSTER + r" ([0-9]+)\b)?")


def store_transaction(note: Optional[str]) -> Optional[str]:
    """The store transaction an enrolment entry names ("<id>", or "<id> in cluster <system
    identifier>"), or None."""
    found = _STORE_TRANSACTION.findall(note or "")
    if not found:
        return None
    xact, cluster = found[-1]
    return f"{int(xact)} {IN_CLUSTER} {int(cluster)}" if cluster else str(int(xact))


def rows_named(note: Optional[str]) -> list[int]:
    """The row ids an audit note names ("rows=3,4")."""
    m = _ROWS.search(note or "")
    return [int(x) for x in m.group(1).split(",") if x] if m else []


@dataclass(frozen=True)
class RowsOnRecord:
    """A subject's rows as the audit log tells them (AuditLog.rows_on_record)."""

    removed: frozenset[int]  # removed and not enrolled again since: stored there, put back
    # Named by its enrolments, with the token reference the (newest) one naming it was let in
    # under; None where one names no row.
    enrolled: Optional[Mapping[int, str]]

    def explains(self, row_id: int, token_ref: str) -> bool:
        """Whether a row stored at `row_id` under this subject, filed under `token_ref`, came in
        through an enrolment on record and was not removed since. The token counts: a row a
        copy of the workspace sealed at an id this log names for the same person (both enrolled
        them after the copy) opens here, and was matched, under the copy's consent."""
        if row_id in self.removed:
            return False
        if self.enrolled is None:
            return True
        named = self.enrolled.get(row_id)
        # An entry naming no token (none is written so now) explains its row by the id alone,
        # as the store check reads it.
        return named is not None and (not named or same_digest(named, str(token_ref)))


# A re-key's entry names the key versions the templates moved to ("keys {'transform': 2, 'seal': 2}").
_KEY_VERSION = re.compile(r"'(transform|seal)': ([0-9]+)")


def key_versions_named(note: Optional[str]) -> dict[str, int]:
    """The key versions a re-key entry's note records ({} for none)."""
    return {p: int(v) for p, v in _KEY_VERSION.findall(note or "")}


def judged_after(note: Optional[str]) -> Optional[int]:
    """The judging point an entry's note names, or None."""
    return last_mention(_JUDGED, note)


# An enrolment's entry under us-bipa names the latest an interaction may keep its template (its
# purpose's end plus the grace, US-01): what a match reads, rather than a table beside the log
# that anyone who can write the folder can edit.
KEPT_AT_MOST = "kept at most until"
_KEPT = re.compile(KEPT_AT_MOST + r" ([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+[+-][0-9]{2}:[0-9]{2})")


def kept_at_most(note: Optional[str]) -> Optional[dt.datetime]:
    """The limit an enrolment's note records (KEPT_AT_MOST), in UTC, or None (written before notes
    named it)."""
    found = _KEPT.findall(note or "")
    try:
        return dt.datetime.fromisoformat(found[-1]).astimezone(dt.timezone.utc) if found else None
    except ValueError:
        return None
    except OverflowError:  # year 1 with a zone ahead of UTC: safeface never writes one
        raise IntegrityError(f"an enrolment entry of the audit log records a retention limit ({found[-1]!r}) "
                             "before any real date: it was edited by hand. Run `safeface audit verify` and "
                             "restore the log from a backup.") from None


def entry_time(seq: Any, text: Any, where: str = "the audit log") -> dt.datetime:
    """An entry's time as append writes it (ISO 8601 with a zone), in UTC. One edited by hand into
    anything else (or to the first or last year a datetime holds, where the clock check's arithmetic
    overflows) made the next append, the store check or the report fail with a bare ValueError or
    OverflowError, at every call and every open."""
    try:
        when: Optional[dt.datetime] = dt.datetime.fromisoformat(str(text))
        if when is not None and when.utcoffset() is not None:
            when = when.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        when = None
    if when is None or when.utcoffset() is None or not dt.MINYEAR < when.year < dt.MAXYEAR:
        raise IntegrityError(f"{where}: the time of audit entry {seq} ({str(text)[:40]!r}) is not one "
                             "safeface wrote: it was edited by hand. Run `safeface audit verify` and restore "
                             "the log from a backup.")
    return when


def withdrawal_time(note: Optional[str], time: Any, seq: Any = "?") -> int:
    """When withdrawal entry `seq` withdrew (Unix seconds): as it names it, else the entry's own
    time (IntegrityError for one edited into no time safeface writes: entry_time)."""
    m = _WITHDRAWN_AT.search(note or "")
    return int(m.group(1)) if m else int(entry_time(seq, time).timestamp())


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
    hash TEXT NOT NULL,
    actor TEXT
);
CREATE INDEX IF NOT EXISTS entries_operation ON entries (operation);
CREATE INDEX IF NOT EXISTS entries_token ON entries (token_id);
-- A token's revocation, found without reading its uses: a legal basis behind a million identify
-- calls was looked up, at each of them, through every one (entries_token).
CREATE INDEX IF NOT EXISTS entries_revoked_tokens ON entries (token_id) WHERE operation = 'revoke';
CREATE INDEX IF NOT EXISTS entries_withdrawn_subjects ON entries (subjects) WHERE operation IN ('erase', 'revoke');
-- Every key check looks for its key's revocation and every console page for its session's end
-- (records): an index probe, however many logins and logouts the log holds.
CREATE INDEX IF NOT EXISTS entries_apikey_notes ON entries (note) WHERE operation = 'apikey';
CREATE INDEX IF NOT EXISTS entries_enrolled_subjects ON entries (subjects) WHERE operation = 'enroll';
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL,
    marks TEXT
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
    actor: Optional[str] = None  # the credential that made the call (an API key id), when one did

    def canonical(self) -> bytes:
        d = {k: getattr(self, k) for k in FIELDS}
        d["subjects"] = list(self.subjects)
        if self.actor is not None:  # absent from entries without one, so older chains still verify
            d["actor"] = self.actor
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in FIELDS}
        d["subjects"] = list(self.subjects)
        d["actor"] = self.actor
        return d


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head_seq: int
    head_hash: str
    anchors: tuple[str, ...] = ()  # the anchors the log was checked against


def _chain(prev: str, entry: AuditEntry) -> str:
    return hashlib.sha256(prev.encode("ascii") + entry.canonical()).hexdigest()


def _marks(text: str) -> dict[str, list[Any]]:
    """A head's marks, {operation: [seq, hash] of its newest entry}, once its MAC has held."""
    got = json.loads(text)
    if not isinstance(got, dict):
        raise IntegrityError("the audit log's signed head is malformed.")
    return got


def _marks_text(marks: dict[str, list[Any]]) -> str:
    return json.dumps(marks, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _subjects(seq: Any, text: Any) -> tuple[str, ...]:
    """An entry's subjects column, as append writes it: a JSON list of pseudonyms, one level deep.
    The depth is counted before parsing: a column edited into brackets nested thousands deep made
    every open and `audit verify` raise RecursionError, where it is a corrupt entry."""
    try:
        return tuple(loads(text, 1))
    except (TypeError, ValueError):
        raise IntegrityError(f"audit entry {seq} is corrupt.") from None


def _entry(r: Sequence[Any]) -> AuditEntry:
    return AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], r[5], _subjects(r[0], r[6]), r[7], r[8], r[9], r[10])


def _utc_now() -> dt.datetime:
    """The host's clock; the only source of entry times."""
    return dt.datetime.now(dt.timezone.utc)


def _bounded(value: Optional[str], limit: int) -> Optional[str]:
    """`value`, or its head with a marker "[cut LENGTH:SHA-256 prefix]" (so two cut values can
    still be told apart, and the original can be matched if it is ever produced)."""
    if value is None:
        return None
    value = str(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a JSON "\\ud800") cannot be stored as UTF-8: written as its escape,
        # so the call is still recorded rather than failing unrecorded.
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    # PostgreSQL refuses a NUL in text: a caller's purpose holding one made the append fail, the
    # call went unrecorded, and the error told the operator to restore the log from a backup.
    # Written as its escape in both stores; lookups pass their text through here too. A value
    # holding a NUL or that escape's four characters has its backslashes doubled first, so
    # "a\x00" and the text "a\\x00" (one caller's refusal and another's) never log alike.
    if "\x00" in value or "\\x00" in value:
        value = value.replace("\\", "\\\\").replace("\x00", "\\x00")
    if len(value) <= limit:
        return value
    marker = f"[cut {len(value)}:{hashlib.sha256(value.encode('utf-8', 'replace')).hexdigest()[:12]}]"
    return (value[:max(0, limit - len(marker))] + marker)[:limit]


def _bounded_subjects(subjects: Sequence[str]) -> tuple[str, ...]:
    items = [str(_bounded(str(s), LIMITS["subject"])) for s in subjects]
    if len(items) <= MAX_SUBJECTS:
        return tuple(items)
    rest = items[MAX_SUBJECTS - 1:]
    digest = hashlib.sha256("\n".join(rest).encode("utf-8")).hexdigest()[:12]
    return tuple(items[:MAX_SUBJECTS - 1]) + (f"[+{len(rest)} more:{digest}]",)


class AuditLog:
    """Open with where the log is kept (a SQLite file's path, or PgTables from the record
    store), the audit key (from the workspace keyring) and the anchors to keep the head in
    (none: the log is only checked against itself); `append` and `verify`. `still_here`: run
    inside each append's write transaction, before anything is written; it raises when the
    workspace no longer keeps its log here (migrate.refuse_if_moved)."""

    def __init__(self, where: Union[Path, str, Any], key: bytes, anchors: Sequence[AnchorStore] = (),
                 still_here: Optional[Callable[[], None]] = None) -> None:
        if isinstance(where, (str, Path)):
            where = SqliteTables(Path(where), "audit log", _SCHEMA)
            if "actor" not in where.columns("entries"):  # logs from before entries named their caller
                where.add_column("entries", "actor TEXT")
        if "marks" not in where.columns("head"):  # heads from before they named each operation's newest entry
            where.add_column("head", "marks TEXT")
        self._t = where
        self.where = str(where.where)
        self._key = key
        self._anchors = tuple(anchors)
        self._still_here = still_here
        self._purges = PurgeIndex()

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def anchors(self) -> tuple[AnchorStore, ...]:
        return self._anchors

    def use_anchors(self, anchors: Sequence[AnchorStore]) -> None:
        """Check and advance `anchors` from now on (session.follow_witnesses: the witnesses a newer
        assessment names, for a handle opened before it)."""
        self._anchors = tuple(anchors)

    def _mac(self, seq: int, h: str, marks: Optional[str]) -> str:
        # A head written before it carried marks has none (NULL) and its own message; one with
        # marks cannot be passed off as one without, since the two messages differ.
        body = f"safeface-audit-head|{seq}|{h}" if marks is None else f"safeface-audit-head-v2|{seq}|{h}|{marks}"
        return hmac.new(self._key, body.encode("utf-8"), hashlib.sha256).hexdigest()

    def _head_holds(self, seq: Any, h: Any, mac: Any, marks: Any) -> bool:
        if marks is not None and not isinstance(marks, str):
            return False
        return same_digest(self._mac(int(seq), str(h), marks), str(mac))

    def _bootstrap_marks(self) -> dict[str, list[Any]]:
        """Marks for a log whose head has none yet (written by an earlier safeface): the chain is
        checked whole first, so the entries they name are the ones that were written. Once,
        under the write lock, at the first append."""
        self.verify()
        marks: dict[str, list[Any]] = {}
        for op, seq, h in self._t.q("SELECT e.operation, e.seq, e.hash FROM {t}entries e JOIN (SELECT operation, "
                                    "MAX(seq) AS seq FROM {t}entries GROUP BY operation) m ON m.seq = e.seq"):
            marks[str(op)] = [int(seq), str(h)]
        return marks

    def append(self, operation: str, decision: str, *, purpose: Optional[str] = None,
               token_id: Optional[str] = None, basis: Optional[str] = None,
               subjects: Sequence[str] = (), rule: Optional[str] = None, note: Optional[str] = None,
               actor: Optional[str] = None) -> AuditEntry:
        entry = self._append(None, operation, decision, purpose=purpose, token_id=token_id, basis=basis,
                             subjects=subjects, rule=rule, note=note, actor=actor)
        if entry is None:  # cannot happen: there was nothing to decide against
            raise IntegrityError(f"{self.where} wrote no entry for {operation!r}.")
        return entry

    def append_unless(self, already: Callable[[], bool], operation: str, decision: str, *,
                      token_id: Optional[str] = None, note: Optional[str] = None,
                      actor: Optional[str] = None) -> Optional[AuditEntry]:
        """Append, unless `already()` (a read of this log) is true; both in one write transaction,
        so of two processes racing, only one appends: what makes the chain a ledger of one-time
        things (a liveness evidence spent, a console session ended). Keep `already` to index
        probes: appends wait for it. None when `already()` held."""
        return self._append(already, operation, decision, token_id=token_id, note=note, actor=actor)

    def names_token(self, operation: str, token_id: str) -> bool:
        """Whether an entry of `operation` names `token_id` (one index probe)."""
        return bool(self._t.q("SELECT 1 FROM {t}entries WHERE token_id = ? AND operation = ? LIMIT 1",
                              (token_id, operation)))

    def _append(self, already: Optional[Callable[[], bool]], operation: str, decision: str, *,
                purpose: Optional[str] = None, token_id: Optional[str] = None, basis: Optional[str] = None,
                subjects: Sequence[str] = (), rule: Optional[str] = None, note: Optional[str] = None,
                actor: Optional[str] = None) -> Optional[AuditEntry]:
        fields = {"operation": operation, "purpose": purpose, "token_id": token_id, "basis": basis,
                  "decision": decision, "rule": rule, "note": note, "actor": actor}
        b = {k: _bounded(v, LIMITS[k]) for k, v in fields.items()}
        subs = _bounded_subjects(subjects)
        t = self._t
        with t.write():
            if self._still_here is not None:
                self._still_here()
            got = t.q("SELECT e.seq, e.hash, e.time, h.seq, h.hash, h.mac, h.marks FROM {t}entries e LEFT JOIN {t}head h "
                      "ON h.id = 1 ORDER BY e.seq DESC LIMIT 1")
            row = got[0] if got else None
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            when = _utc_now()
            # Chain only onto the entry the signed head names: the chain's hash needs no key, so an
            # entry added behind the log's back would otherwise be signed over by this append.
            if row is not None and (row[3] is None or (int(row[3]), str(row[4])) != (int(row[0]), str(row[1]))
                                    or not self._head_holds(row[3], row[4], row[5], row[6])):
                raise IntegrityError(f"{self.where} does not match its signed head: an entry was added or removed "
                                     "without the audit key. Nothing was written; run `safeface audit verify` and "
                                     "restore the log from a backup.")
            if row is not None:
                last = self._entry_time(row[0], row[2])
                if when < last - CLOCK_TOLERANCE:
                    self._check_written(row[0])  # a time moved ahead by hand is no clock gone back
                    raise IntegrityError(
                        f"the clock went back: it reads {when.isoformat(timespec='seconds')} but audit entry {row[0]} "
                        f"was written at {last.isoformat(timespec='seconds')}. Set the host's clock right; no "
                        "entry is written before a later one. If it is right now, it ran ahead when that entry was "
                        "written and was corrected since: the log takes entries again once the clock passes "
                        f"{last.isoformat(timespec='seconds')}.")
                when = max(when, last)  # within the tolerance: keep the log's times in order
            if already is not None and already():
                return None
            marks = self._bootstrap_marks() if row is not None and row[6] is None else _marks(row[6] if row else "{}")
            entry = AuditEntry(seq, when.isoformat(timespec="microseconds"), str(b["operation"]), b["purpose"],
                               b["token_id"], b["basis"], subs, str(b["decision"]), b["rule"], b["note"], b["actor"])
            h = _chain(prev, entry)
            marks[entry.operation] = [seq, h]
            marked = _marks_text(marks)
            t.run(f"INSERT INTO {{t}}entries ({_COLUMNS}, prev, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                  (seq, entry.time, entry.operation, entry.purpose, entry.token_id, entry.basis,
                   json.dumps(list(subs)), entry.decision, entry.rule, entry.note, entry.actor, prev, h))
            t.run("INSERT INTO {t}head (id, seq, hash, mac, marks) VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
                  "SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, marks = excluded.marks",
                  (seq, h, self._mac(seq, h, marked), marked))
        # After the commit: an anchor must never name an entry the log could still lose.
        for anchor in self._anchors:
            anchor.advance(seq, h)
        return entry

    def _chain_rows(self) -> tuple[list[tuple[Any, ...]], Optional[tuple[Any, ...]]]:
        """Every entry as stored (fields, prev, hash), in order, and the signed head."""
        rows = self._t.q(f"SELECT {_COLUMNS}, prev, hash FROM {{t}}entries ORDER BY seq")
        heads = self._t.q("SELECT seq, hash, mac, marks FROM {t}head WHERE id = 1")
        return rows, (heads[0] if heads else None)

    @contextmanager
    def frozen(self) -> Iterator[tuple[list[tuple[Any, ...]], tuple[Any, ...]]]:
        """Hold the log's write lock, so no one appends, and give the chain as stored (entries
        and signed head), checked whole first: what a migration copies verbatim."""
        with self._t.write():
            self.verify()
            rows, head = self._chain_rows()
            if head is None:  # verify() has refused a log without one
                raise IntegrityError(f"{self.where} has no signed head.")
            yield rows, head

    def move_to(self, where: Any) -> None:
        """Continue the chain in `where` (holding a verbatim copy of this one) from now on."""
        old, self._t, self.where = self._t, where, str(where.where)
        self._still_here = None  # the log is where deployment.json now says
        old.close()

    def entries(self) -> Iterator[AuditEntry]:
        """Every entry in order, read a page at a time (the store check walks the whole log)."""
        for r in self._pages():
            yield _entry(r)

    def last_entry(self, operations: Sequence[str],
                   held_to: Optional[Sequence[AnchorStore]] = None) -> Optional[AuditEntry]:
        """The newest entry of one of `operations` (e.g. the last trust change), as the signed
        head names it: an entry renamed or edited by hand is refused here (IntegrityError), and
        one added without the key is not the newest. A genuine head written before heads named
        entries (its old signature) is read the old way, the newest such entry in the table.
        `held_to`: the anchors the head is held to, when not the log's own (session.follow_witnesses)."""
        # The head is checked whatever it holds, and held to the last entry and the anchors: a
        # head deleted, its marks cleared, or an older genuine head put back for one call (whose
        # marks name an older trust change) must not decide anything.
        head = self._current_head(held_to)
        if head[3] is not None:
            named = [v for op, v in _marks(str(head[3])).items() if op in operations]
            if not named:
                return None
            seq, h = max(named, key=lambda v: int(v[0]))
            got = self._t.q(f"SELECT {_COLUMNS}, prev, hash FROM {{t}}entries WHERE seq = ?", (int(seq),))
            problem = None
            if not got:
                problem = "is missing"
            else:
                try:
                    stored = self._check_link(got[0], str(got[0][11]))
                except IntegrityError:
                    stored = ""
                if not same_digest(stored, str(h)) or got[0][2] not in operations:
                    problem = "was altered after it was written"
            if problem is not None:
                raise IntegrityError(f"audit entry {seq}, the last {'/'.join(operations)} entry the log's signed head "
                                     f"names, {problem} (edited or renamed by hand). Nothing is decided on it: run "
                                     "`safeface audit verify` and restore the log from a backup.")
            return _entry(got[0])
        marks = ",".join("?" for _ in operations)
        got = self._t.q(f"SELECT {_COLUMNS} FROM {{t}}entries WHERE operation IN ({marks}) ORDER BY seq DESC LIMIT 1",
                        tuple(operations))
        return _entry(got[0]) if got else None

    def records(self, operation: str, note: str) -> bool:
        """Whether an allowed entry of `operation` carries exactly `note` (say, a key's revocation):
        a fact the anchored chain keeps even when a table beside it is restored from an older copy."""
        note = str(_bounded(note, LIMITS["note"]))  # as append wrote it
        if operation == "apikey":  # written out, so the planner takes the partial index on these notes
            return bool(self._t.q("SELECT 1 FROM {t}entries WHERE operation = 'apikey' AND decision = 'allowed' AND "
                                  "note = ? LIMIT 1", (note,)))
        return bool(self._t.q("SELECT 1 FROM {t}entries WHERE operation = ? AND decision = 'allowed' AND note = ? "
                              "LIMIT 1", (operation, note)))

    def records_start(self, operation: str, start: str) -> bool:
        """Whether an allowed entry of `operation` carries a note beginning with `start` (say, an
        issue of a key, whatever role and expiry it named)."""
        start = str(_bounded(start, LIMITS["note"]))
        # Compared whole, not with LIKE, which SQLite reads without case: a revocation of "ABC..."
        # would find the issue of "abc..." and leave that key live.
        return bool(self._t.q("SELECT 1 FROM {t}entries WHERE operation = ? AND decision = 'allowed' AND "
                              "substr(note, 1, ?) = ? LIMIT 1", (operation, len(start), start)))

    def newest_start(self, operation: str, start: str) -> Optional[str]:
        """The note of the newest allowed entry of `operation` whose note begins with `start`, or
        None: one query, not a page of entries read per report call written since."""
        start = str(_bounded(start, LIMITS["note"]))
        rows = self._t.q("SELECT note FROM {t}entries WHERE operation = ? AND decision = 'allowed' AND "
                         "substr(note, 1, ?) = ? ORDER BY seq DESC LIMIT 1", (operation, len(start), start))
        return str(rows[0][0]) if rows else None

    def newest_first(self, operations: Sequence[str], *, allowed_only: bool = True) -> Iterator[AuditEntry]:
        """The entries of `operations` (allowed ones only, unless told otherwise), newest first,
        read in pages: a caller that stops early reads no further."""
        marks = ",".join("?" for _ in operations)
        decided = " AND decision = 'allowed'" if allowed_only else ""
        before = None
        while True:
            page = self._t.q(f"SELECT {_COLUMNS} FROM {{t}}entries WHERE operation IN ({marks}){decided}"
                             + (" AND seq < ?" if before is not None else "") + " ORDER BY seq DESC LIMIT 256",
                             tuple(operations) + ((before,) if before is not None else ()))
            if not page:
                return
            for r in page:
                yield _entry(r)
            before = page[-1][0]

    def records_withdrawal(self, token_ref: str, pseudonym: Optional[str], issued_at: int) -> bool:
        """Whether the log records the withdrawal of this token: its own revocation, or an erasure
        or revocation of its subject at or after `issued_at` (Unix seconds). The anchored chain
        keeps these when the policy state's tables are restored from an older copy or deleted;
        the lookups use indexes (token_id; subjects of withdrawals)."""
        if self._t.q("SELECT 1 FROM {t}entries WHERE operation = 'revoke' AND token_id = ? AND decision = 'allowed' "
                     "LIMIT 1", (token_ref,)):
            return True
        if pseudonym is None:
            return False
        rows = self._t.q("SELECT seq, time, note FROM {t}entries WHERE operation IN ('erase', 'revoke') AND "
                         "subjects = ? AND token_id IS NULL AND decision = 'allowed'", (json.dumps([pseudonym]),))
        first: list[int] = []  # the judging point of the token's first use, read once if needed
        for seq, time, note in rows:
            if issued_at <= withdrawal_time(note, time, seq):
                return True
            # Issued "after" it by its issuer's clock, yet used before it: given before, withdrawn.
            # A use counts where it was judged: a call judged before the withdrawal may be recorded
            # after it (its work ended later), so every use is read with its judging point, not the
            # first few (the store check reads them all, and must agree).
            if not first:
                uses = self._t.q("SELECT seq, note FROM {t}entries WHERE token_id = ? AND decision = 'allowed' AND "
                                 "operation IN ('enroll', 'verify', 'identify', 'export')", (token_ref,))
                first.append(min((min(int(s), judged_after(n) or int(s)) for s, n in uses), default=sys.maxsize))
            if first[0] < int(seq):
                return True
        return False

    def interaction_limit(self, pseudonym: str, purpose: str) -> Optional[dt.datetime]:
        """The latest an interaction may keep this subject's templates for `purpose`, as its newest
        enrolment for it recorded (KEPT_AT_MOST); None when it recorded none. An index probe."""
        got = self._t.q("SELECT note FROM {t}entries WHERE operation = 'enroll' AND subjects = ? AND purpose = ? AND "
                        "decision = 'allowed' ORDER BY seq DESC LIMIT 1",
                        (json.dumps([pseudonym]), _bounded(purpose, LIMITS["purpose"])))
        return kept_at_most(got[0][0]) if got else None

    def names_removed(self, pseudonym: str) -> bool:
        """Whether an allowed erasure or revocation of this subject alone removed rows, or a purge
        removed its rows: someone was enrolled under the pseudonym once. A refused request, or an
        erasure that found no row, names a spelling without showing anyone was enrolled under it
        (a refused erasure in a full-width spelling kept a later one from reaching the usual)."""
        # LIKE with its patterns passed, not instr or GLOB: the same query runs on PostgreSQL (an
        # empty removal says "rows=-").
        return bool(self._t.q("SELECT 1 FROM {t}entries WHERE decision = 'allowed' AND ((operation IN ('erase', "
                              "'revoke') AND subjects = ? AND note LIKE ? AND note NOT LIKE ?) OR "
                              "(operation = 'purge' AND subjects LIKE ?)) LIMIT 1",
                              (json.dumps([pseudonym]), "%rows=%", "%rows=-%", "%" + json.dumps(pseudonym) + "%")))

    def rows_left(self, pseudonym: str) -> set[int]:
        """The rows the log says this subject has stored now: named by its enrolment entries and
        by no removal (its erasures and revocations, a revocation of a consent or legal basis
        they were enrolled under, a purge naming it, enrolments that never committed). Index
        probes on the subject and the references, and the purge and never-committed entries."""
        subject = json.dumps([pseudonym])
        named: set[int] = set()
        gone: set[int] = set()
        refs: set[str] = set()
        for note, ref in self._t.q("SELECT note, token_id FROM {t}entries WHERE operation = 'enroll' AND subjects = ? "
                                   "AND decision = 'allowed'", (subject,)):
            named.update(rows_named(note))
            refs.add(str(ref or ""))
        # A revocation of a legal basis many people were enrolled under names them all in one
        # entry, under no subject: read by the reference their rows were enrolled under. Missed,
        # the rows it removed stayed "stored" here, and each later erasure of one of those people
        # read the table whole for them and was refused for any other row failing its check.
        for ref in sorted(refs - {""}):
            for (note,) in self._t.q("SELECT note FROM {t}entries WHERE operation = 'revoke' AND token_id = ? AND "
                                     "decision = 'allowed'", (ref,)):
                gone.update(rows_named(note))
        for (note,) in self._t.q("SELECT note FROM {t}entries WHERE operation IN ('erase', 'revoke') AND subjects = ? "
                                 "AND decision = 'allowed'", (subject,)):
            gone.update(rows_named(note))
        for _, note in self._purges_naming(pseudonym) + self._t.q(
                "SELECT seq, note FROM {t}entries WHERE operation = 'uncommitted' AND decision = 'allowed'"):
            gone.update(rows_named(note))
        return named - gone

    def _purges_naming(self, pseudonym: str, after: int = 0) -> list[tuple[Any, ...]]:
        """(seq, note) of the allowed purges after seq `after` naming the subject: the entries
        the purge map (PurgeIndex) points at, read and judged by their own text, as a scan of
        every purge would (a read of the purges appended since the last call, then index
        probes, instead of that scan at each call)."""
        seqs = self._purges.naming(self._t.q, pseudonym, after)
        found: list[tuple[Any, ...]] = []
        for i in range(0, len(seqs), 500):
            part = seqs[i:i + 500]
            found += self._t.q(f"SELECT seq, note FROM {{t}}entries WHERE seq IN ({', '.join('?' * len(part))}) AND "
                               "operation = 'purge' AND decision = 'allowed' AND subjects LIKE ?",
                               (*part, "%" + json.dumps(pseudonym) + "%"))
        return found

    def rows_on_record(self, pseudonym: str) -> "RowsOnRecord":
        """What the log says of the subject's rows: those removed (`removed`: each row id
        whose newest mention is an erasure or revocation of the subject, a revocation of a
        consent or legal basis it was enrolled under, or a purge naming the subject. A row stored
        at such an id was put back (the `rows` table restored together with the store's notes of
        its erasures, which then said nothing): searches leave it out, the log being the record
        that an anchor outside the database keeps), and those its enrolments name (`enrolled`).
        Index probes, as rows_left's."""
        subject = json.dumps([pseudonym])
        enrolled: dict[int, int] = {}
        under: dict[int, str] = {}  # row id -> the token reference its newest enrolment names
        removed: dict[int, int] = {}
        refs: set[str] = set()
        since: Optional[int] = None  # before its first enrolment, no purge removed a row of the subject
        for seq, note, ref in self._t.q("SELECT seq, note, token_id FROM {t}entries WHERE operation = 'enroll' AND "
                                        "subjects = ? AND decision = 'allowed'", (subject,)):
            named = rows_named(note)
            for r in named:
                if int(seq) >= enrolled.get(r, 0):
                    enrolled[r] = int(seq)
                    under[r] = str(ref or "")
            refs.add(str(ref or ""))
            since = 0 if not named else int(seq) if since is None else min(since, int(seq))
        found = list(self._t.q("SELECT seq, note FROM {t}entries WHERE operation IN ('erase', 'revoke') AND "
                               "subjects = ? AND decision = 'allowed'", (subject,)))
        for ref in sorted(refs - {""}):
            found += self._t.q("SELECT seq, note FROM {t}entries WHERE operation = 'revoke' AND token_id = ? AND "
                               "decision = 'allowed'", (ref,))
        # Purges name their subjects in a list no index reads: those since the subject's first
        # enrolment (from the start, for an enrolment entry naming no row, from an earlier
        # release), found through the purge map rather than a scan at each verify and each
        # candidate an identify finds.
        found += self._purges_naming(pseudonym, since or 0)
        # An enrolment whose store never committed is settled as `uncommitted`, naming its ids:
        # nothing of this workspace was ever stored there, so a row at such an id (copied from a
        # copy of the workspace that enrolled the person there) is no enrolment's. Rare entries,
        # read through the operation index.
        if enrolled:
            found += self._t.q("SELECT seq, note FROM {t}entries WHERE operation = 'uncommitted' AND "
                               "decision = 'allowed'")
        # A revocation of a legal basis, or a purge, names other people's rows too (tens of
        # thousands for a basis behind many enrolments), which every verify then sorted out of
        # the subject's few. Where each enrolment entry names its rows, the subject's rows are
        # among those.
        mine = since is not None and since > 0
        for seq, note in found:
            for r in rows_named(note):
                if not mine or r in enrolled:
                    removed[r] = max(removed.get(r, 0), int(seq))
        # An enrolment entry of an earlier release names no row: what the subject's rows are
        # cannot be told from the log then.
        return RowsOnRecord(frozenset(r for r, seq in removed.items() if seq > enrolled.get(r, 0)),
                            None if since == 0 else under)

    def rows_left_under(self, token_ref: str) -> dict[int, str]:
        """The rows the log says are stored now under this consent or legal basis (row id ->
        pseudonym): named by its enrolment entries and by no removal of their subject (rows_left)."""
        named: dict[int, str] = {}
        for note, subjects in self._t.q("SELECT note, subjects FROM {t}entries WHERE token_id = ? AND operation = "
                                        "'enroll' AND decision = 'allowed'", (token_ref,)):
            try:
                whose = [str(s) for s in loads(subjects, 1)]
            except (TypeError, ValueError):
                continue  # edited by hand: the chain check names the entry
            if len(whose) == 1:
                named.update((r, whose[0]) for r in rows_named(note))
        left: dict[str, set[int]] = {p: self.rows_left(p) for p in set(named.values())}
        return {r: p for r, p in named.items() if r in left[p]}

    def newest_seq(self, operation: str) -> int:
        """The seq of the newest allowed entry of `operation` (0 for none): one index probe."""
        got = self._t.q("SELECT MAX(seq) FROM {t}entries WHERE operation = ? AND decision = 'allowed'", (operation,))
        return int(got[0][0]) if got and got[0][0] is not None else 0

    def end(self) -> int:
        """The last entry's seq (0 for an empty log)."""
        got = self._t.q("SELECT MAX(seq) FROM {t}entries")
        return int(got[0][0]) if got and got[0][0] is not None else 0

    def last_time(self) -> Optional[dt.datetime]:
        """When the entry the signed head names was written; None for an empty log. Once that
        entry is as written: a time moved ahead by hand (no key needed) must date nothing."""
        if self.end() == 0:
            return None
        head = self._current_head()
        self._check_written(head[0])
        got = self._t.q("SELECT time FROM {t}entries WHERE seq = ?", (int(head[0]),))
        return self._entry_time(head[0], got[0][0])

    def hash_at(self, seq: int) -> Optional[str]:
        got = self._t.q("SELECT hash FROM {t}entries WHERE seq = ?", (int(seq),))
        return str(got[0][0]) if got else None

    def _read_anchors(self, anchors: Sequence[AnchorStore]) -> list[tuple[AnchorStore, Optional[Anchor]]]:
        # Read before the log: an anchor only moves after a commit, so one read first can never
        # be ahead of the log read after it, even while other processes append.
        return [(a, a.read()) for a in anchors]

    def _pages(self, after: Optional[int] = None) -> Iterator[tuple[Any, ...]]:
        """Every entry as stored (fields, prev, hash), in seq order, read a page at a time; those
        after seq `after` only, if given."""
        size = PAGE_ROWS
        # Without `after` the first page has no lower bound: a forged seq 0 or below is seen.
        while True:
            page = self._t.q(f"SELECT {_COLUMNS}, prev, hash FROM {{t}}entries"
                             + (" WHERE seq > ?" if after is not None else "") + " ORDER BY seq LIMIT ?",
                             ((after,) if after is not None else ()) + (size,))
            yield from page
            if len(page) < size:
                return
            after = int(page[-1][0])

    @staticmethod
    def _check_link(r: tuple[Any, ...], prev: str) -> str:
        """The stored hash of entry `r`, once it is shown to follow `prev` and match its fields."""
        seq = r[0]
        # SQLite keeps the type a value was written with: a field rewritten as a BLOB of the same
        # bytes hashes alike here but no longer equals the text the guard's lookups ask for.
        if not isinstance(seq, int) or any(not isinstance(v, str) for v in (r[1], r[2], r[6], r[7], r[11], r[12])) \
                or any(v is not None and not isinstance(v, str) for v in (r[3], r[4], r[5], r[8], r[9], r[10])):
            raise IntegrityError(f"audit entry {seq!r} was altered after it was written (a field is not stored as "
                                 "text).")
        subjects = _subjects(seq, r[6])
        entry = AuditEntry(seq, r[1], r[2], r[3], r[4], r[5], subjects, r[7], r[8], r[9], r[10])
        # The chain hashes the parsed subjects; the text is looked up as written (records_withdrawal),
        # so it must be exactly as append wrote it: a re-spaced or escaped copy would hide a withdrawal.
        if r[6] != json.dumps(list(subjects)):
            raise IntegrityError(f"audit entry {seq} was altered after it was written (its subjects are not as "
                                 "written).")
        if r[11] != prev:
            raise IntegrityError(f"audit entry {seq} does not follow entry {seq - 1}: the chain is broken "
                                 "(an entry was deleted, inserted or reordered).")
        if not same_digest(_chain(prev, entry), str(r[12])):
            raise IntegrityError(f"audit entry {seq} was altered after it was written.")
        return str(r[12])

    def _linked(self, after: Optional[int], prev: str, head_seq: int,
                missing: Callable[[int, Any], str]) -> Iterator[tuple[tuple[Any, ...], str]]:
        """The one walk of the chain that `verify` and `check_since` share: each stored entry after
        seq `after` (every one for None, so a forged seq 0 or below is seen), in seq order up to
        `head_seq`, with its stored hash, once it is shown to be the next number and to follow
        `prev` as written (_check_link). IntegrityError(missing(expected seq, seq found)) where a
        number is missing or out of order; an entry past `head_seq` ends the walk (an append made
        meanwhile is the next check's)."""
        expected = (after or 0) + 1
        for r in self._pages(after=after):
            if r[0] != expected:
                raise IntegrityError(missing(expected, r[0]))
            if int(r[0]) > head_seq:
                return
            prev = self._check_link(r, prev)
            yield r, prev
            expected += 1

    def check_since(self, seq: int) -> None:
        """IntegrityError unless every entry after `seq` is as written and linked, up to the
        signed head: the part of the chain a decision reads from since `seq` (a trust change
        building on a store that entry `seq` made), read without the whole log's cost. An entry
        renamed there (its removal hidden) fails its hash."""
        head_seq, head_hash = self.signed_end()
        prev = self.hash_at(seq) if seq > 0 else GENESIS
        if prev is None:
            raise IntegrityError(f"audit entry {seq} is missing: the log was truncated or replaced. Run `safeface "
                                 "audit verify` and restore it from a backup.")
        last = seq
        for r, prev in self._linked(seq, prev, head_seq,
                                    lambda expected, _found: f"audit entry {expected} is missing or out of order: "
                                    "entries were deleted or reordered. Run `safeface audit verify` and restore the "
                                    "log from a backup."):
            last = int(r[0])
        if last != head_seq or not same_digest(prev, head_hash):
            raise IntegrityError(f"the audit log after entry {seq} does not reach its signed head: it was rewritten. "
                                 "Run `safeface audit verify` and restore it from a backup.")

    def verify(self, through: Optional[tuple[int, str]] = None) -> AuditReport:
        """Check the whole chain, the signed head and every anchor; raise IntegrityError at the
        first break. `through`: a (seq, hash) that `signed_end` read earlier, which the chain must
        reach and agree with (what a store check judged is then covered by this check)."""
        anchors = self._read_anchors(self._anchors)
        self._check_file()
        # Only the hashes the anchors name are kept: the chain is read in pages, so memory stays
        # flat however long the log grows.
        wanted = {v.seq for _, v in anchors if v is not None} | ({int(through[0])} if through else set())
        hashes: dict[int, str] = {}
        prev = GENESIS
        n = 0
        try:
            # The head first, then the chain up to it: entries appended meanwhile (by other
            # threads or processes) are the next check's, not a mismatch with a head read after them.
            heads = self._t.q("SELECT seq, hash, mac, marks FROM {t}head WHERE id = 1")
            head = heads[0] if heads else None
            if head is None:
                raise IntegrityError("the audit log has no signed head: it was truncated or replaced.")
            newest: dict[str, list[Any]] = {}
            for r, prev in self._linked(None, GENESIS, int(head[0]),
                                        lambda expected, found: f"audit entry {expected} is missing or out of order "
                                        f"(found {found} there): entries were deleted or reordered."):
                n = int(r[0])
                newest[str(r[2])] = [n, prev]
                if n in wanted:
                    hashes[n] = prev
        except self._t.read_errors() as exc:
            raise IntegrityError(f"{self.where} cannot be read ({exc}).") from None
        if not self._head_holds(*head):
            raise IntegrityError("the audit log's head signature is wrong: the log was rewritten without the audit "
                                 "key.")
        if head[3] is not None and _marks(str(head[3])) != newest:
            raise IntegrityError("the audit log's signed head does not name each operation's newest entry: an entry "
                                 "was renamed or its operation changed.")
        if int(head[0]) != n or not same_digest(str(head[1]), prev):
            raise IntegrityError(f"the audit log ends at entry {n} but its signed head says {head[0]}: "
                                 "entries were removed from the end (truncation).")
        if n == 0:
            raise IntegrityError("the audit log is empty although the workspace was initialised: it was truncated.")
        for anchor, value in anchors:
            check_anchor(anchor, value, n, hashes.get)
        if through is not None and not same_digest(hashes.get(int(through[0]), ""), str(through[1])):
            raise IntegrityError(f"audit entry {through[0]} changed while the log was checked: it was rewritten.")
        # Entries past the head read first are appends made meanwhile, or entries chained on
        # without the key (the chain's hash needs none): the head now must name the last one.
        self.signed_end()
        return AuditReport(entries=n, head_seq=int(head[0]), head_hash=prev,
                           anchors=tuple(a.name for a, _ in anchors))

    def _check_file(self) -> None:
        """SQLite's own integrity check: the chain is read from the table, but the guard's lookups
        (a revocation, an erasure) go through its indexes, which someone who edits the file's
        schema can make skip an entry. (A PostgreSQL server's files are its operator's.)"""
        if getattr(self._t, "dialect", None) != "sqlite":
            return
        try:
            got = [str(r[0]) for r in self._t.q("PRAGMA integrity_check(20)")]
        except self._t.read_errors() as exc:
            raise IntegrityError(f"{self.where} cannot be read ({exc}).") from None
        if got != ["ok"]:
            raise IntegrityError(f"{self.where} fails SQLite's integrity check ({'; '.join(got)[:300]}): its indexes "
                                 "no longer match its entries, which can hide an entry (a revocation, an erasure) "
                                 "from the guard. The file was edited or damaged: restore it from a backup.")

    def check_head(self) -> int:
        """:meth:`signed_end`'s seq."""
        return self.signed_end()[0]

    def signed_end(self) -> tuple[int, str]:
        """A quick check at open, and where a call is judged: the signed head exists, is genuine,
        names the last entry and agrees with every anchor; returns the last entry's seq. (verify()
        checks the whole chain.) Entries moved out of the log for a while, to hide a withdrawal
        from the guard, fail here unless the head and the anchors are rolled back with them."""
        head = self._current_head()
        return int(head[0]), str(head[1])

    def _current_head(self, held_to: Optional[Sequence[AnchorStore]] = None) -> tuple[Any, ...]:
        """The head row (seq, hash, mac, marks), once it is genuine, names the last entry and
        agrees with every anchor (what signed_end checks; `held_to`: those instead of the log's)."""
        anchors = self._read_anchors(self._anchors if held_to is None else held_to)
        # One statement, so one snapshot: read apart, another process's append could fall between
        # the head and the last entry and look like a mismatch.
        got = self._t.q("SELECT h.seq, h.hash, h.mac, h.marks, e.seq, e.hash, e.time FROM {t}head h "
                        "LEFT JOIN {t}entries e ON e.seq = (SELECT MAX(seq) FROM {t}entries) WHERE h.id = 1")
        head = got[0][:4] if got else None
        last = got[0][4:] if got and got[0][4] is not None else None
        if head is None or last is None:
            raise IntegrityError(f"{self.where} has no signed head or no entries: it was truncated or "
                                 "replaced. Restore it from a backup, then run `safeface audit verify`.")
        if not self._head_holds(*head) or (int(last[0]), str(last[1])) != (int(head[0]), str(head[1])):
            raise IntegrityError(f"{self.where} does not match its signed head: run `safeface audit "
                                 "verify` and restore it from a backup.")
        self._entry_time(last[0], last[2])  # what the next append compares the clock with
        for anchor, value in anchors:
            check_anchor(anchor, value, int(last[0]), self.hash_at)
        return tuple(head)

    def _entry_time(self, seq: Any, text: Any) -> dt.datetime:
        return entry_time(seq, text, self.where)

    def _check_written(self, seq: Any) -> None:
        """IntegrityError unless entry `seq` (the last: its hash is the one the signed head names)
        is as written. Before an append refuses for a clock gone back: a last entry dated ahead by
        hand (no key needed) made every append, erasures included, refuse so, and told the operator
        to set the clock right or wait until that date."""
        got = self._t.q(f"SELECT {_COLUMNS}, prev, hash FROM {{t}}entries WHERE seq = ?", (int(seq),))
        if not got:
            raise IntegrityError(f"{self.where}: audit entry {seq} is missing: the log was truncated or replaced. "
                                 "Run `safeface audit verify` and restore it from a backup.")
        try:
            self._check_link(got[0], str(got[0][11]))
        except IntegrityError as exc:
            raise IntegrityError(f"{self.where}: {exc} Nothing is written after it: run `safeface audit verify` and "
                                 "restore the log from a backup.") from None

    def counts(self) -> dict[str, Any]:
        """Totals for the report: by operation and decision, refusals by rule."""
        by_op: dict[str, dict[str, int]] = {}
        for op, decision, n in self._t.q(
                "SELECT operation, decision, COUNT(*) FROM {t}entries GROUP BY operation, decision"):
            by_op.setdefault(op, {})[decision] = int(n)
        refusals = {rule: int(n) for rule, n in self._t.q(
            "SELECT rule, COUNT(*) FROM {t}entries WHERE decision = 'refused' GROUP BY rule ORDER BY rule")}
        legal = int(self._t.q("SELECT COUNT(*) FROM {t}entries WHERE basis LIKE ?", ("legal-basis%",))[0][0])
        first = self._t.q("SELECT MIN(time), MAX(time) FROM {t}entries")[0]
        return {"by_operation": by_op, "refusals_by_rule": refusals, "legal_basis_calls": legal,
                "first": first[0], "last": first[1]}
