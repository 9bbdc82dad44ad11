"""What the policy layer remembers between calls: revoked tokens and subjects, the liveness
challenges issued and the nonces already used (PA-01). The filing-threshold crossing and each
subject's purpose end (BIPA) are read from the audit log (a hand edit here stretched them); their
tables stay for files written before, and an erasure still clears its subject's. Subjects appear
only as pseudonyms. Kept in the workspace's ``policy.db`` (SQLite), or, when the records are in
PostgreSQL, in its ``state_*`` tables (storage/sqltables.py): the same statements on either.

The liveness rows carry an HMAC under a key derived from the keyring (workspace/keys.py:
POLICY_MAC), so a hand edit cannot stretch a challenge's expiry, ease its moves, forge a challenge,
or move a used nonce's "until" into the past so that it is pruned early and the nonce can be used
again: such a row fails its check and the call is refused with IntegrityError (the column dropped
to pass edited rows off as older than the MACs gains nothing: see `_adopt`). A row deleted
outright (or the file restored from an older copy) is not caught here; what bounds that is the
evidence's own signed 60 s validity."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import IntegrityError
from ..hashing import same_digest
from ..storage.sqltables import SqliteTables

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revoked_tokens (token_id TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_subjects (pseudonym TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS facts (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS purpose_ends (pseudonym TEXT NOT NULL, purpose TEXT NOT NULL, ends TEXT NOT NULL,
                                         PRIMARY KEY (pseudonym, purpose));
CREATE TABLE IF NOT EXISTS used_nonces (nonce TEXT PRIMARY KEY, until REAL NOT NULL, mac TEXT);
CREATE TABLE IF NOT EXISTS challenges (nonce TEXT PRIMARY KEY, steps TEXT NOT NULL, issued_at REAL NOT NULL,
                                       expires_at REAL NOT NULL, mac TEXT);
"""
ADOPTED_HOLD_S = 3600  # longer than any evidence or challenge is valid (60 s by default)
MACED = ("used_nonces", "challenges")  # their rows carry a "mac" column (added to files made before it)
PURGE_OWED = "purge-owed"  # the facts row of owe_purge
MIRRORED = ";mirrored"  # the end of a challenge's steps text when its clip will be recorded mirrored


@dataclasses.dataclass(frozen=True)
class OwedPurge:
    """A purge's note (PolicyState.owe_purge): its time, the log's last entry then (seq, hash),
    and the rows it removed (row id -> pseudonym)."""
    at: int
    seq: int
    head: str
    rows: dict[int, str]


TABLES = ("revoked_tokens", "revoked_subjects", "facts", "purpose_ends", "used_nonces", "challenges")


class PolicyState:
    """Open with a SQLite file's path or the record store's PgTables."""

    def __init__(self, where: Union[Path, str, Any], mac_key: Optional[bytes] = None) -> None:
        """`mac_key`: the key of the liveness rows' HMACs; without it (a tool that reads
        revocations, a migration's copy) liveness rows can be neither written nor read."""
        self._t = SqliteTables(Path(where), "policy state", _SCHEMA) if isinstance(where, (str, Path)) else where
        self._key = mac_key
        for table in MACED:
            if "mac" not in self._t.columns(table):  # a state from before the rows were authenticated
                self._t.add_column(table, "mac TEXT")
                if mac_key is not None:  # its rows are adopted, once, when the column is added
                    self._adopt(table)

    def _mac(self, table: str, *fields: object) -> str:
        if self._key is None:
            raise IntegrityError("the policy state was opened without its key; liveness rows cannot be checked.")
        body = "\x1f".join([table, *(repr(f) for f in fields)]).encode("utf-8")
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def _adopt(self, table: str) -> None:
        """A missing column may also mean one dropped by hand to pass edited rows off as old, so
        nothing in them is trusted: a used nonce stays used for at least ADOPTED_HOLD_S (its "until"
        may have been moved into the past), and challenges are dropped (they live for seconds; the
        client asks for a new one) rather than let a forged one with easy moves be adopted."""
        if table == "used_nonces":
            floor = dt.datetime.now(dt.timezone.utc).timestamp() + ADOPTED_HOLD_S
            for nonce, until in self._t.q("SELECT nonce, until FROM {t}used_nonces WHERE mac IS NULL"):
                try:
                    held = max(float(until), floor)
                except (TypeError, ValueError):  # edited into text: held the longest either way
                    held = floor
                self._t.run("UPDATE {t}used_nonces SET until = ?, mac = ? WHERE nonce = ?",
                            (held, self._mac(table, str(nonce), held), nonce))
        else:
            self._t.run("DELETE FROM {t}challenges WHERE mac IS NULL")

    def _number(self, table: str, value: Any) -> float:
        """A stored time as a number; a value of another type (text, a blob) was written by hand."""
        try:
            if isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError
            return float(value)
        except (TypeError, ValueError):
            raise IntegrityError(f"a row of {table} in {self._t.where} holds a time that is not a number: it was "
                                 "edited by hand; restore it from a backup and investigate who changed it.") from None

    def _check(self, table: str, mac: Any, *fields: object) -> None:
        if not isinstance(mac, str) or not same_digest(mac, self._mac(table, *fields)):
            raise IntegrityError(f"a row of {table} in {self._t.where} fails its check: it was edited by hand; "
                                 "restore it from a backup and investigate who changed it.")

    def close(self) -> None:
        self._t.close()

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows (by its name in PostgreSQL), for a migration to copy verbatim."""
        return {f"state_{name}": self._t.q(f"SELECT * FROM {{t}}{name}") for name in TABLES}

    def frozen(self) -> Any:
        """The state's write lock, held while a migration copies it."""
        return self._t.write()

    def move_to(self, where: Any) -> None:
        """Keep the state in `where` (holding a copy of this one) from now on."""
        old, self._t = self._t, where
        old.close()

    # -- revocation -------------------------------------------------------------------------
    def revoke_token(self, token_ref: str, now: dt.datetime) -> None:
        self._t.run("INSERT INTO {t}revoked_tokens VALUES (?, ?) ON CONFLICT DO NOTHING", (token_ref, now.isoformat()))

    def revoke_subject(self, pseudonym: str, now: dt.datetime) -> None:
        """Every token for this subject issued up to now is revoked; a later, new consent is not.
        A withdrawal taken at an earlier clock (one set back) never moves the time back: that would
        let a token issued between the two be used again as far as this table says."""
        self._t.run("INSERT INTO {t}revoked_subjects VALUES (?, ?) ON CONFLICT (pseudonym) DO UPDATE "
                    "SET at = excluded.at WHERE excluded.at > {t}revoked_subjects.at", (pseudonym, int(now.timestamp())))

    def is_revoked(self, token_id: str, pseudonym: Optional[str], issued_at: int) -> bool:
        if self._t.q("SELECT 1 FROM {t}revoked_tokens WHERE token_id = ?", (token_id,)):
            return True
        if pseudonym is not None:
            rows = self._t.q("SELECT at FROM {t}revoked_subjects WHERE pseudonym = ?", (pseudonym,))
            if rows:
                try:
                    return issued_at <= int(rows[0][0])
                except (TypeError, ValueError):  # a time edited into text: the revocation still stands
                    return True
        return False

    def revoked_count(self) -> int:
        return int(self._t.q("SELECT COUNT(*) FROM {t}revoked_tokens")[0][0]) + int(
            self._t.q("SELECT COUNT(*) FROM {t}revoked_subjects")[0][0])

    # -- facts (filing) ---------------------------------------------------------------------
    def fact(self, name: str) -> Optional[str]:
        rows = self._t.q("SELECT value FROM {t}facts WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def set_fact_once(self, name: str, value: str) -> bool:
        return self._t.run("INSERT INTO {t}facts VALUES (?, ?) ON CONFLICT DO NOTHING", (name, value)) == 1

    # -- a purge's rows, until its audit entries are written -------------------------------------
    def owe_purge(self, rows: Sequence[tuple[int, str]], at: int, head: tuple[int, str]) -> None:
        """Inside a purge's store transaction: the (row id, pseudonym) pairs it removes, kept
        until purge_paid. A purge whose entries a full disk refused after its delete committed
        left rows the log listed as stored and no later purge found: the store check named them
        deleted behind the guard for good. MACed: a pair written by hand would excuse a row
        deleted by hand. `at` (the purge's time) and `head` (the audit log's last entry, seq and
        hash) say when and in which log: a note taken from a copy of the workspace purged later,
        or whose log went on apart, excused a row deleted by hand here (SafeFace._owed_rows)."""
        text = f"{int(at)};{int(head[0])};{head[1]};" + ",".join(f"{int(r)}:{p}" for r, p in sorted(rows))
        self._t.run("INSERT INTO {t}facts VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (PURGE_OWED, f"{text};{self._mac('facts', PURGE_OWED, text)}"))

    def purge_owed(self) -> Optional["OwedPurge"]:
        """What owe_purge noted and purge_paid has not cleared; None when nothing is owed."""
        got = self.fact(PURGE_OWED)
        if got is None:
            return None
        text, _, mac = got.rpartition(";")
        self._check("facts", mac, PURGE_OWED, text)
        try:
            at, seq, head, listed = text.split(";")
            pairs = [p.split(":", 1) for p in listed.split(",") if p]
            return OwedPurge(int(at), int(seq), head, {int(r): p for r, p in pairs})
        except ValueError:  # MACed, so a note from before it named its time and log: it excuses nothing
            return None

    def purge_paid(self) -> None:
        self._t.run("DELETE FROM {t}facts WHERE name = ?", (PURGE_OWED,))

    # -- purpose ends (BIPA), as an earlier safeface kept them ------------------------------
    def forget_subject(self, pseudonym: str) -> None:
        self._t.run("DELETE FROM {t}purpose_ends WHERE pseudonym = ?", (pseudonym,))

    # -- liveness (PA-01) ----------------------------------------------------------------------
    def use_nonce(self, nonce: str, until: dt.datetime) -> bool:
        """Mark a nonce used; False when it already was. One INSERT, so two processes racing with
        the same nonce cannot both win. Entries past `until` are dropped: by then whatever carried
        the nonce has expired anyway. A row is dropped only when its "until" is authentic, and the
        row of this nonce, if there is one, must be authentic too."""
        now = dt.datetime.now(dt.timezone.utc).timestamp()
        for old, old_until, mac in self._t.q("SELECT nonce, until, mac FROM {t}used_nonces WHERE until < ? OR nonce = ?",
                                             (now, nonce)):
            self._check("used_nonces", mac, str(old), self._number("used_nonces", old_until))
        self._t.run("DELETE FROM {t}used_nonces WHERE until < ?", (now,))
        stamp = float(until.timestamp())
        return self._t.run("INSERT INTO {t}used_nonces VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           (nonce, stamp, self._mac("used_nonces", nonce, stamp))) == 1

    def add_challenge(self, nonce: str, steps: str, issued_at: float, expires_at: float,
                      mirrored: bool = False) -> None:
        """`mirrored` (the clip will be recorded mirrored) is kept in the steps' text, so the row's
        HMAC covers it as it covers the steps, and the table is that of every state already made
        (SQLite or PostgreSQL, and a migration's copy between them); a row without it is unmirrored."""
        stored = steps + (MIRRORED if mirrored else "")
        self._t.run("DELETE FROM {t}challenges WHERE expires_at < ?", (issued_at - 3600,))
        self._t.run("INSERT INTO {t}challenges VALUES (?, ?, ?, ?, ?)",
                    (nonce, stored, issued_at, expires_at,
                     self._mac("challenges", nonce, stored, float(issued_at), float(expires_at))))

    def issued_challenge(self, nonce: str) -> Optional[tuple[str, bool, float, float]]:
        """(steps, mirrored, issued_at, expires_at) of an issued challenge, or None; IntegrityError
        when its row was edited or forged."""
        rows = self._t.q("SELECT steps, issued_at, expires_at, mac FROM {t}challenges WHERE nonce = ?", (nonce,))
        if not rows:
            return None
        stored = str(rows[0][0])
        issued, expires = self._number("challenges", rows[0][1]), self._number("challenges", rows[0][2])
        self._check("challenges", rows[0][3], nonce, stored, issued, expires)
        mirrored = stored.endswith(MIRRORED)
        return (stored[:-len(MIRRORED)] if mirrored else stored), mirrored, issued, expires
