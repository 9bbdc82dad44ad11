"""Attacks by someone who can write the workspace's tables but holds no key: a console session
whose key row is edited by hand, and a policy state whose liveness rows lose their MAC column so
that forged rows would be adopted as if they predated it."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from safeface.errors import AuthenticationError, IntegrityError
from safeface.workspace.apikeys import ApiKeys
from safeface.workspace.state import PolicyState

KEY = b"k" * 32
NOW = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)


def _edit(db: Path, sql: str, args: tuple[object, ...] = ()) -> None:
    con = sqlite3.connect(str(db))
    con.execute(sql, args)
    con.commit()
    con.close()


@pytest.mark.parametrize("column, value", [("role", "operator"), ("expires", None), ("rate", 100000.0)])
def test_a_session_does_not_take_rights_edited_into_its_key_row(tmp_path: Path, column: str, value: object) -> None:
    """An auditor logs into the console, then raises its key's role (or lifts its expiry or rate)
    in the key table: the session must end, not act with the new rights."""
    db = tmp_path / "apikeys.db"
    keys = ApiKeys(db, KEY)
    info, key = keys.issue("auditor", "console", NOW.date() + dt.timedelta(days=1), 5.0, NOW)
    _, cookie = keys.open_session(key, NOW)
    assert keys.session(cookie, NOW).role == "auditor"
    _edit(db, f"UPDATE apikeys SET {column} = ? WHERE key_id = ?", (value, info.key_id))
    with pytest.raises(AuthenticationError):
        keys.session(cookie, NOW)
    with pytest.raises(AuthenticationError):
        keys.authenticate(key, NOW)
    keys.close()


def test_a_session_of_an_untouched_key_still_works(tmp_path: Path) -> None:
    keys = ApiKeys(tmp_path / "apikeys.db", KEY)
    info, key = keys.issue("operator", "console", None, None, NOW)
    _, cookie = keys.open_session(key, NOW)
    assert keys.session(cookie, NOW + dt.timedelta(hours=1)) == info
    keys.revoke(info.key_id, NOW)
    with pytest.raises(AuthenticationError):
        keys.session(cookie, NOW + dt.timedelta(hours=1))
    keys.close()
