"""API key rows edited out of their types by someone who can write apikeys.db (no passphrase):
an infinite rate is named, not a 500, and an edited row cannot block the key's revocation."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import open_sf  # noqa: E402
from service_support import keyed_client  # noqa: E402


@pytest.mark.parametrize("value", ["9e999", "-9e999"])
def test_a_key_rate_edited_to_infinity_is_named_not_a_500(tmp_path: Path, value: str) -> None:
    """Someone sets a key's rate to +/-Infinity (a REAL, so of its type): the report is a typed
    409 (the row named to the operator, as for a rate edited into text), never a 500."""
    from safeface.errors import IntegrityError

    client, ws, (kiosk, aud) = keyed_client(tmp_path, "kiosk", "auditor", rate=1000)
    with open_sf(ws) as sf:
        victim = sf.authenticate(kiosk).key_id
    with sqlite3.connect(str(ws.apikeys)) as db:
        db.execute(f"UPDATE apikeys SET rate = {value} WHERE key_id = ?", (victim,))
    with client:
        report = client.get("/v1/report", headers={"X-API-Key": aud})
    assert report.status_code == 409 and report.json()["error"] == "IntegrityError", report.text[:200]
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError, match=victim):
            sf.report(tmp_path / "report")


def test_a_key_whose_row_was_edited_out_of_its_types_can_still_be_revoked_for_good(tmp_path: Path) -> None:
    """A thief holding a leaked key edits its rate into text just before the operator revokes it,
    then the table is restored from a backup: the revocation is on the log, the key stays 401."""
    from safeface.errors import AuthenticationError, IntegrityError

    _, ws, (leaked,) = keyed_client(tmp_path, "operator")
    with open_sf(ws) as sf:
        key_id = sf.authenticate(leaked).key_id
    backup = tmp_path / "apikeys.backup.db"
    with sqlite3.connect(str(ws.apikeys)) as src, sqlite3.connect(str(backup)) as dst:
        src.backup(dst)
    with sqlite3.connect(str(ws.apikeys)) as db:
        db.execute("UPDATE apikeys SET rate = 'fast' WHERE key_id = ?", (key_id,))
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError, match=key_id):  # the operator is told the row was edited
            sf.revoke_api_key(key_id)
    with sqlite3.connect(str(backup)) as src, sqlite3.connect(str(ws.apikeys)) as dst:
        src.backup(dst)  # the table put back from the backup
    with open_sf(ws) as sf:
        with pytest.raises(AuthenticationError, match="revoked"):
            sf.authenticate(leaked)
