"""Revoking an API key is recorded on the audit log whatever its row in the key table looks like:
a row hidden from `apikey revoke`, or a key table held locked meanwhile, brings no key back; and a
whole key pasted where its id goes is never repeated back."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, open_sf  # noqa: E402
from service_support import console_login, csrf_of, keyed_client  # noqa: E402


def test_a_key_whose_row_was_hidden_during_its_revocation_stays_revoked(tmp_path: Path) -> None:
    """The thief of an operator key, able to write apikeys.db, deletes its row while the admin
    revokes it, then puts the row back: the revocation is on the log all the same, so 401."""
    from safeface.errors import IntegrityError, InvalidArgument

    client, ws, (stolen,) = keyed_client(tmp_path, "operator", rate=1000)
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        key_id = sf.authenticate(stolen).key_id
        typo = key_id[:-1] + ("0" if key_id[-1] != "0" else "1")  # named by no row, no entry
        with pytest.raises(InvalidArgument, match="no API key has the id"):
            sf.revoke_api_key(typo)
    with sqlite3.connect(str(ws.apikeys)) as db:
        row = db.execute("SELECT * FROM apikeys WHERE key_id = ?", (key_id,)).fetchone()
        db.execute("DELETE FROM apikeys WHERE key_id = ?", (key_id,))
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError, match="revoked"):
            sf.revoke_api_key(key_id)
    with sqlite3.connect(str(ws.apikeys)) as db:
        db.execute(f"INSERT INTO apikeys VALUES ({','.join('?' * len(row))})", row)
    with client:
        r = client.post("/v1/erase", headers={"X-API-Key": stolen}, json={"subject": "alice"})
    assert r.status_code == 401, r.text[:200]
    with open_sf(ws) as sf:
        assert len(sf.records()) == 1


def test_a_key_table_held_locked_during_a_revocation_does_not_keep_it_off_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thief holds a write lock on apikeys.db while the admin revokes the stolen key (the key
    still reads, so it still works): the revocation reaches the log anyway, and the key is 401."""
    import safeface.sqlite_store
    from safeface.errors import SafeFaceError

    monkeypatch.setattr(safeface.sqlite_store, "BUSY_TIMEOUT_MS", 300)
    client, ws, (stolen,) = keyed_client(tmp_path, "operator", rate=1000)
    with open_sf(ws) as sf:
        key_id = sf.authenticate(stolen).key_id
    lock = sqlite3.connect(str(ws.apikeys), isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        with open_sf(ws) as sf:
            with pytest.raises(SafeFaceError):
                sf.revoke_api_key(key_id)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    with client:
        r = client.get("/v1/audit/verify", headers={"X-API-Key": stolen})
    assert r.status_code == 401, r.text[:200]


def test_a_whole_key_pasted_as_the_id_to_revoke_is_never_repeated_back(tmp_path: Path) -> None:
    """An admin pastes a whole key (secret included) where its id goes, in the SDK and in the
    console's revoke form: refused, and neither the error nor the 422 answer repeats the secret."""
    from safeface.errors import InvalidArgument

    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    secret = op.split("_", 2)[2]
    with open_sf(ws) as sf:
        with pytest.raises(InvalidArgument) as e:
            sf.revoke_api_key(op)
    assert secret not in str(e.value)
    with client:
        assert console_login(client, op).status_code == 303
        form = {"csrf": csrf_of(client.get("/keys").text), "key_id": op}
        r = client.post("/keys/revoke", data=form, follow_redirects=False)
    assert r.status_code == 422 and secret not in r.text, r.text[:200]
