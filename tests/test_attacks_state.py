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
    assert keys.session(cookie, NOW + dt.timedelta(minutes=20)) == info
    keys.revoke(info.key_id, NOW)
    with pytest.raises(AuthenticationError):
        keys.session(cookie, NOW + dt.timedelta(minutes=20))
    keys.close()


def test_dropping_the_mac_column_does_not_get_a_forged_challenge_adopted(tmp_path: Path) -> None:
    """The operator drops the "mac" column of challenges (so the file looks older than the MACs),
    forges a challenge with easy moves and a day's validity, and reopens: the forged row must not
    be adopted as if it predated the column."""
    db = tmp_path / "policy.db"
    state = PolicyState(db, KEY)
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    state.add_challenge("real", "left,right", now, now + 30)
    state.close()
    con = sqlite3.connect(str(db))
    con.execute("ALTER TABLE challenges DROP COLUMN mac")
    con.execute("UPDATE challenges SET steps = 'left', expires_at = ? WHERE nonce = 'real'", (now + 86_400,))
    con.execute("INSERT INTO challenges VALUES ('forged', 'left', ?, ?)", (now, now + 86_400))
    con.commit()
    con.close()
    state = PolicyState(db, KEY)
    assert state.issued_challenge("forged") is None
    assert state.issued_challenge("real") is None
    state.add_challenge("next", "up", now, now + 30)  # the state works on
    assert state.issued_challenge("next") == ("up", False, now, now + 30)
    state.close()


def test_dropping_the_mac_column_does_not_get_an_early_until_adopted(tmp_path: Path) -> None:
    """The same with a used nonce: its "until" moved into the past once the column is gone. The
    nonce must stay used for as long as the evidence that carried it is valid."""
    db = tmp_path / "policy.db"
    state = PolicyState(db, KEY)
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    assert state.use_nonce("evidence:n-1", until) is True
    state.close()
    con = sqlite3.connect(str(db))
    con.execute("ALTER TABLE used_nonces DROP COLUMN mac")
    con.execute("UPDATE used_nonces SET until = 0")
    con.commit()
    con.close()
    state = PolicyState(db, KEY)
    assert state.use_nonce("evidence:n-1", until) is False
    state.close()


def test_a_subject_revocation_whose_time_was_edited_into_text_still_stands(tmp_path: Path) -> None:
    """The policy state's own reading, apart from the audit log's copy of the withdrawal."""
    now = dt.datetime.now(dt.timezone.utc)
    db = tmp_path / "policy.db"
    st = PolicyState(db)
    st.revoke_subject("p-alice", now)
    assert st.is_revoked("t-unrelated", "p-alice", int(now.timestamp()) - 10)
    st.close()
    con = sqlite3.connect(db)
    con.execute("UPDATE revoked_subjects SET at = 'soon' WHERE pseudonym = 'p-alice'")
    con.commit()
    con.close()
    st = PolicyState(db)
    try:
        assert st.is_revoked("t-unrelated", "p-alice", int(now.timestamp()) - 10)
    finally:
        st.close()


def test_a_consent_issued_in_the_second_of_the_erasure_counts_as_withdrawn(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    st = PolicyState(tmp_path / "policy.db")
    try:
        st.revoke_subject("p-alice", now)
        assert st.is_revoked("t-unrelated", "p-alice", int(now.timestamp()))
        assert not st.is_revoked("t-unrelated", "p-alice", int(now.timestamp()) + 1)
    finally:
        st.close()


def test_a_second_withdrawal_covers_a_consent_given_between_the_two(tmp_path: Path) -> None:
    """Alice is erased, consents again, and is erased again: the second erasure withdraws every
    token issued up to it, the one between included."""
    st = PolicyState(tmp_path / "policy.db")
    try:
        st.revoke_subject("p-alice", NOW)
        between = int((NOW + dt.timedelta(days=1)).timestamp())
        assert not st.is_revoked("t-new", "p-alice", between)
        st.revoke_subject("p-alice", NOW + dt.timedelta(days=2))
        assert st.is_revoked("t-new", "p-alice", between)
    finally:
        st.close()


def test_a_withdrawal_at_an_earlier_clock_keeps_the_later_one(tmp_path: Path) -> None:
    """Alice is erased, then erased again by a process whose clock runs a day behind: the table
    keeps the later time, so a consent issued between the two stays withdrawn."""
    st = PolicyState(tmp_path / "policy.db")
    try:
        st.revoke_subject("p-alice", NOW + dt.timedelta(days=2))
        st.revoke_subject("p-alice", NOW)
        assert st.is_revoked("t-new", "p-alice", int((NOW + dt.timedelta(days=1)).timestamp()))
    finally:
        st.close()


def test_issuing_a_challenge_keeps_the_other_open_ones(tmp_path: Path) -> None:
    st = PolicyState(tmp_path / "policy.db", KEY)
    try:
        now = dt.datetime.now(dt.timezone.utc).timestamp()
        st.add_challenge("first", "left,right", now, now + 60)
        st.add_challenge("second", "up", now + 1, now + 61)
        assert st.issued_challenge("first") == ("left,right", False, now, now + 60)
    finally:
        st.close()


def test_a_console_session_ends_at_its_eighth_hour_and_a_logout_is_never_forgotten(tmp_path: Path) -> None:
    """A session in use lasts SESSION_SECONDS to the second; logging out of one session keeps every
    other logout on record (a prune that forgot them let a logged-out cookie past the key
    table's check); a key cannot be issued already expired."""
    from safeface.errors import InvalidArgument
    from safeface.workspace.apikeys import SESSION_SECONDS

    keys = ApiKeys(tmp_path / "apikeys.db", KEY)
    try:
        _, key = keys.issue("operator", "console", None, None, NOW)
        _, cookie = keys.open_session(key, NOW)
        for minutes in range(25, SESSION_SECONDS // 60, 25):  # used within each idle time
            keys.session(cookie, NOW + dt.timedelta(minutes=minutes))
        assert keys.session(cookie, NOW + dt.timedelta(seconds=SESSION_SECONDS)).role == "operator"
        with pytest.raises(AuthenticationError, match="expired"):
            keys.session(cookie, NOW + dt.timedelta(seconds=SESSION_SECONDS + 1))
        _, first = keys.open_session(key, NOW)
        _, second = keys.open_session(key, NOW)
        assert keys.end_session(first, NOW)
        assert keys.end_session(second, NOW + dt.timedelta(minutes=1))
        with pytest.raises(AuthenticationError, match="logged out"):
            keys.session(first, NOW + dt.timedelta(minutes=2))
        with pytest.raises(InvalidArgument, match="in the past"):
            keys.issue("operator", "x", NOW.date() - dt.timedelta(days=1), None, NOW)
    finally:
        keys.close()
