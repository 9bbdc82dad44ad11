"""A revocation hidden from the guard's lookups without touching the chain: someone who can write
the workspace folder (no passphrase) rebuilds the audit table's indexes without the revocation
entry and writes the original index definitions back into SQLite's schema, so the lookups that go
through an index miss it while the chain, read from the table, stays whole. The key (or consent)
gets in meanwhile; `audit verify` names the damaged file and every use of the key after its
revocation. An API key revoked while one of its calls is in flight never fails the audit."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402

from safeface import IntegrityError  # noqa: E402
from safeface.errors import AuthenticationError  # noqa: E402
from safeface.workspace.audit import AuditEntry  # noqa: E402
from safeface.workspace.storecheck import key_actor, key_revoked_note, read_log  # noqa: E402


def _hide_from_indexes(audit_db: Path, seq: int) -> None:
    con = sqlite3.connect(str(audit_db))
    idx = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' "
                      "AND sql IS NOT NULL").fetchall()
    assert idx, "the audit table has indexes to rebuild"
    for name, sql in idx:
        con.execute(f"DROP INDEX {name}")
        con.execute(sql.replace(" WHERE ", f" WHERE seq != {seq} AND ") if " WHERE " in sql
                    else f"{sql} WHERE seq != {seq}")
    con.commit()
    con.execute("PRAGMA writable_schema = ON")
    for name, sql in idx:
        con.execute("UPDATE sqlite_master SET sql = ? WHERE name = ?", (sql, name))
    con.commit()
    con.close()


def test_a_revoked_key_revived_behind_rebuilt_audit_indexes_fails_the_audit(tmp_path: Path) -> None:
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        info, key = sf.issue_api_key("operator", label="gate")
    con = sqlite3.connect(str(paths.apikeys))
    old_digest = con.execute("SELECT digest FROM apikeys WHERE key_id = ?", (info.key_id,)).fetchone()[0]
    con.close()
    with open_sf(paths) as sf:
        sf.revoke_api_key(info.key_id)
        with pytest.raises(AuthenticationError):
            sf.authenticate(key)
        seq = [e for e in sf.audit_entries() if e.note == key_revoked_note(info.key_id)][-1].seq
    con = sqlite3.connect(str(paths.apikeys))  # the key's row as it was before the revocation
    con.execute("UPDATE apikeys SET digest = ?, revoked = NULL WHERE key_id = ?", (old_digest, info.key_id))
    con.commit()
    con.close()
    _hide_from_indexes(paths.audit, seq)
    with open_sf(paths) as sf:
        got = sf.authenticate(key)  # the lookup misses the revocation: the key is back, for now
        sf.acting_as_key(got).issue_api_key("operator", label="back door")
        with pytest.raises(IntegrityError, match="integrity check"):
            sf.audit_verify()
        # What the entries alone show: the key's use after its revocation.
        late = read_log(sf.audit_entries()).late
        assert any(f"API key {info.key_id}" in x and f"revocation in entry {seq}" in x for x in late), late


def _entry(seq: int, operation: str, note: str, actor: str) -> AuditEntry:
    return AuditEntry(seq, f"2026-12-01T00:00:{seq:02d}+00:00", operation, None, None, None, (), "allowed", None,
                      note, actor)


def test_a_keys_use_is_judged_by_where_the_key_was_checked() -> None:
    """Entries made under a key name the log's end when the key was found unrevoked: a call
    checked before the revocation and recorded after it is in flight (honest); one checked after
    it got past a hidden revocation. Entries without the mark (an earlier safeface) are not judged."""
    k, op = "0123456789ab", "fedcba987654"
    log = [_entry(1, "apikey", "API key issued", key_actor(op, 0)),
           _entry(2, "apikey", key_revoked_note(k), key_actor(op, 1)),
           _entry(3, "purge", "nothing to purge", key_actor(k, 1)),  # checked before the revocation: in flight
           _entry(4, "purge", "nothing to purge", k),  # no mark: not judged
           _entry(5, "purge", "nothing to purge", key_actor(k, 4))]  # checked after it
    late = read_log(log).late
    assert len(late) == 1 and late[0].startswith("entry 5 ") and "revocation in entry 2" in late[0]
    assert len(key_actor(k, 10**12)) <= 64  # within the log's actor limit


def test_a_key_revoked_while_its_call_is_in_flight_never_fails_the_audit(tmp_path: Path) -> None:
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        info, key = sf.issue_api_key("operator", label="gate")
        view = sf.acting_as_key(sf.authenticate(key))
        issue = sf._apikeys.issue

        def revoked_meanwhile(*args: object, **kw: object) -> object:
            sf.revoke_api_key(info.key_id)  # another operator, while the call (judged) does its work
            return issue(*args, **kw)  # type: ignore[arg-type]

        sf._apikeys.issue = revoked_meanwhile  # type: ignore[method-assign]
        view.issue_api_key("kiosk", label="lobby")  # judged before the revocation, recorded after it
        sf._apikeys.issue = issue  # type: ignore[method-assign]
        assert [e.operation for e in sf.audit_entries()[-2:]] == ["apikey", "apikey"]
        with pytest.raises(AuthenticationError):  # its next call is refused where it is judged
            view.issue_api_key("kiosk", label="lobby 2")
        last = sf.audit_entries()[-1]
        assert last.actor is not None and last.actor.startswith(info.key_id + " ")
        with pytest.raises(AuthenticationError):
            sf.authenticate(key)
        assert sf.audit_verify().entries > 0


def test_a_key_checked_right_at_its_revocation_entry_is_named() -> None:
    k, op = "0123456789ab", "fedcba987654"
    log = [_entry(1, "apikey", "API key issued", key_actor(op, 0)),
           _entry(2, "apikey", key_revoked_note(k), key_actor(op, 1)),
           _entry(3, "purge", "nothing to purge", key_actor(k, 2))]  # the log ended at the revocation
    late = read_log(log).late
    assert len(late) == 1 and late[0].startswith("entry 3 "), late


def test_a_revived_key_used_first_thing_after_its_revocation_is_named(tmp_path: Path) -> None:
    """The key's row restored and the revocation hidden behind rebuilt indexes, the key is used
    by the very next call: its actor reads "checked after" the revocation entry itself."""
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        info, key = sf.issue_api_key("operator", label="gate")
    with sqlite3.connect(str(paths.apikeys)) as con:
        old_digest = con.execute("SELECT digest FROM apikeys WHERE key_id = ?", (info.key_id,)).fetchone()[0]
    with open_sf(paths) as sf:
        sf.revoke_api_key(info.key_id)
        seq = [e for e in sf.audit_entries() if e.note == key_revoked_note(info.key_id)][-1].seq
        assert sf.audit_entries()[-1].seq == seq
    with sqlite3.connect(str(paths.apikeys)) as con:
        con.execute("UPDATE apikeys SET digest = ?, revoked = NULL WHERE key_id = ?", (old_digest, info.key_id))
    _hide_from_indexes(paths.audit, seq)
    with open_sf(paths) as sf:
        sf.acting_as_key(sf.authenticate(key)).issue_api_key("operator", label="back door")
        entries = sf.audit_entries()
    assert any((e.actor or "").startswith(info.key_id + " ") for e in entries)
    late = read_log(entries).late
    assert any(f"API key {info.key_id}" in x and f"revocation in entry {seq}" in x for x in late), late
