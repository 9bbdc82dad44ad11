"""What the policy layer remembers between calls, in the workspace's ``policy.db`` (SQLite):
revoked tokens and subjects, the filing-threshold crossing, and each subject's purpose end (for
BIPA's "last interaction + 3 years"), the liveness challenges issued and the nonces already used
(PA-01). Subjects appear only as pseudonyms."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

from ..sqlite_store import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revoked_tokens (token_id TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_subjects (pseudonym TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS facts (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS purpose_ends (pseudonym TEXT NOT NULL, purpose TEXT NOT NULL, ends TEXT NOT NULL,
                                         PRIMARY KEY (pseudonym, purpose));
CREATE TABLE IF NOT EXISTS used_nonces (nonce TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS challenges (nonce TEXT PRIMARY KEY, steps TEXT NOT NULL, issued_at REAL NOT NULL,
                                       expires_at REAL NOT NULL);
"""


class PolicyState:
    def __init__(self, path: Path) -> None:
        self._db = connect(path, "policy state")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- revocation -------------------------------------------------------------------------
    def revoke_token(self, token_ref: str, now: dt.datetime) -> None:
        self._db.execute("INSERT OR IGNORE INTO revoked_tokens VALUES (?, ?)", (token_ref, now.isoformat()))

    def revoke_subject(self, pseudonym: str, now: dt.datetime) -> None:
        """Every token for this subject issued up to now is revoked; a later, new consent is not."""
        self._db.execute("INSERT OR REPLACE INTO revoked_subjects VALUES (?, ?)", (pseudonym, int(now.timestamp())))

    def is_revoked(self, token_id: str, pseudonym: Optional[str], issued_at: int) -> bool:
        if self._db.execute("SELECT 1 FROM revoked_tokens WHERE token_id = ?", (token_id,)).fetchone():
            return True
        if pseudonym is not None:
            row = self._db.execute("SELECT at FROM revoked_subjects WHERE pseudonym = ?", (pseudonym,)).fetchone()
            if row and issued_at <= int(row[0]):
                return True
        return False

    def revoked_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM revoked_tokens").fetchone()[0]) + int(
            self._db.execute("SELECT COUNT(*) FROM revoked_subjects").fetchone()[0])

    # -- facts (filing) ---------------------------------------------------------------------
    def fact(self, name: str) -> Optional[str]:
        row = self._db.execute("SELECT value FROM facts WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def set_fact_once(self, name: str, value: str) -> bool:
        cur = self._db.execute("INSERT OR IGNORE INTO facts VALUES (?, ?)", (name, value))
        return cur.rowcount == 1

    # -- purpose ends (BIPA) ----------------------------------------------------------------
    def set_purpose_end(self, pseudonym: str, purpose: str, ends: dt.datetime) -> None:
        self._db.execute("INSERT OR REPLACE INTO purpose_ends VALUES (?, ?, ?)", (pseudonym, purpose, ends.isoformat()))

    def purpose_end(self, pseudonym: str, purpose: str) -> Optional[dt.datetime]:
        row = self._db.execute("SELECT ends FROM purpose_ends WHERE pseudonym = ? AND purpose = ?",
                               (pseudonym, purpose)).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row else None

    def forget_subject(self, pseudonym: str) -> None:
        self._db.execute("DELETE FROM purpose_ends WHERE pseudonym = ?", (pseudonym,))

    # -- liveness (PA-01) ----------------------------------------------------------------------
    def use_nonce(self, nonce: str, until: dt.datetime) -> bool:
        """Mark a nonce used; False when it already was. One INSERT, so two processes racing with
        the same nonce cannot both win. Entries past `until` are dropped: by then whatever carried
        the nonce has expired anyway."""
        self._db.execute("DELETE FROM used_nonces WHERE until < ?", (dt.datetime.now(dt.timezone.utc).timestamp(),))
        cur = self._db.execute("INSERT OR IGNORE INTO used_nonces VALUES (?, ?)", (nonce, until.timestamp()))
        return cur.rowcount == 1

    def add_challenge(self, nonce: str, steps: str, issued_at: float, expires_at: float) -> None:
        self._db.execute("DELETE FROM challenges WHERE expires_at < ?", (issued_at - 3600,))
        self._db.execute("INSERT INTO challenges VALUES (?, ?, ?, ?)", (nonce, steps, issued_at, expires_at))

    def challenge(self, nonce: str) -> Optional[tuple[str, float, float]]:
        """(steps, issued_at, expires_at) of an issued challenge, or None."""
        row = self._db.execute("SELECT steps, issued_at, expires_at FROM challenges WHERE nonce = ?",
                               (nonce,)).fetchone()
        return (str(row[0]), float(row[1]), float(row[2])) if row else None
