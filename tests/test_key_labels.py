"""What a key listing shows of each key (its label and when it was issued) is bound to the key's
issue entry: a row whose label or date was edited by hand is a key that works no more."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, open_sf  # noqa: E402
from service_support import console_login, keyed_client  # noqa: E402

SWAP = "UPDATE apikeys SET label = CASE role WHEN 'operator' THEN 'auditor' ELSE 'contractor' END"


def test_labels_swapped_by_hand_between_two_keys_stop_both(tmp_path: Path) -> None:
    """Someone who can write apikeys.db (no key) swaps the labels of a contractor's operator key
    and the auditor's, so an admin revoking "contractor" revokes the wrong one: both are 401."""
    client, ws, (contractor, aud) = keyed_client(tmp_path, "operator", "auditor", rate=1000)
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    with sqlite3.connect(str(ws.apikeys)) as db:
        db.execute(SWAP)
    with client:
        erased = client.post("/v1/erase", headers={"X-API-Key": contractor},
                             json={"subject": "alice"})
        login = console_login(client, aud)
    assert erased.status_code == 401, erased.text[:200]
    assert login.headers["location"] == "/login?error=invalid"
    with open_sf(ws) as sf:
        assert len(sf.records()) == 1


@pytest.mark.parametrize("column, value", [("label", "ci deploy (read only)"),
                                           ("created", "2020-01-01T00:00:00+00:00")])
def test_a_label_or_issue_date_edited_by_hand_ends_the_keys_console_session(
        tmp_path: Path, column: str, value: str) -> None:
    """A key's label or issue date is rewritten by hand while its console session is open: the
    session and the key itself are refused from then on (back to the login page, 401)."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        assert client.get("/keys", follow_redirects=False).status_code == 200
        with sqlite3.connect(str(ws.apikeys)) as db:
            db.execute(f"UPDATE apikeys SET {column} = ?", (value,))
        page = client.get("/keys", follow_redirects=False)
        direct = client.get("/v1/audit/verify", headers={"X-API-Key": op})
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert direct.status_code == 401, direct.text[:200]
