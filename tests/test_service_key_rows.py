"""API key rows written or edited by hand: a key the audit log never issued, a live key's row
marked revoked, a rate edited into text, and the smallest rate a key may be issued with."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402
from service_support import console_login, in_process_app, keyed_client  # noqa: E402


def test_a_key_written_into_the_table_behind_the_audited_issue_does_not_work(tmp_path: Path) -> None:
    """An operator with the passphrase writes a key row into the key table: the key is 401."""
    import datetime as dt

    from safeface.errors import AuthenticationError
    from safeface.hazmat.templates import PassphraseKeyring
    from safeface.workspace.apikeys import ApiKeys, hashing_key

    client, ws, _ = keyed_client(tmp_path, "auditor")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    kr = PassphraseKeyring.open(ws.keyring, PASSPHRASE)
    keys = ApiKeys(ws.apikeys, hashing_key(kr.key("pseudonym")))
    try:
        _, key = keys.issue("operator", "build bot", None, None, dt.datetime.now(dt.timezone.utc))
    finally:
        keys.close()
    with client:
        r = client.post("/v1/erase", headers={"X-API-Key": key}, json={"subject": "alice"})
        login = console_login(client, key)
    assert r.status_code == 401, r.text[:200]
    assert login.headers["location"] == "/login?error=invalid"
    with open_sf(ws) as sf:
        assert len(sf.records()) == 1
        with pytest.raises(AuthenticationError, match="never issued on the audit log"):
            sf.authenticate(key)


def test_a_live_key_marked_revoked_by_hand_stops_working(tmp_path: Path) -> None:
    """An operator sets `revoked` on a live key's row (listings say revoked): the key is 401."""
    client, ws, (op, aud) = keyed_client(tmp_path, "operator", "auditor", rate=1000)
    with open_sf(ws) as sf:
        backdoor = sf.authenticate(op).key_id
    with client:
        assert console_login(client, op).status_code == 303
        with sqlite3.connect(str(ws.root / "apikeys.db")) as db:
            db.execute("UPDATE apikeys SET revoked = '2026-01-01T00:00:00+00:00' WHERE key_id = ?", (backdoor,))
        works = client.post("/v1/purge", headers={"X-API-Key": op}).status_code
        session = client.get("/audit", follow_redirects=False)  # its console session ends too
        assert console_login(client, aud).status_code == 303
        page = client.get("/keys").text
    assert works == 401
    assert session.status_code == 303 and session.headers["location"] == "/login"
    with open_sf(ws) as sf:
        listed = {k.key_id: k for k in sf.api_keys()}[backdoor]
        assert listed.revoked is not None and listed.revocation_logged is False
    # The mark is not a revocation on the log: the page says so and still offers to revoke it.
    row = page.split(f"<code>{backdoor}</code>", 1)[1].split("</tr>", 1)[0]
    assert "revoke-key" in row and "key table only" in row
    with open_sf(ws) as sf:
        sf.revoke_api_key(backdoor)
        assert {k.key_id: k for k in sf.api_keys()}[backdoor].revocation_logged is True
        assert [e.note for e in sf.audit_entries() if e.note == f"API key {backdoor} revoked"]


def test_on_postgresql_a_live_key_marked_revoked_by_hand_stops_working(pg: Any, tmp_path: Path) -> None:
    """The same with the key table on PostgreSQL, edited with the database role: refused."""
    import psycopg
    from server_support import PG_PASSWORD
    from test_server_audit import server_workspace

    from safeface.errors import AuthenticationError
    from safeface.sdk import SafeFace

    ws, dsn = server_workspace(pg, tmp_path)
    with SafeFace.open(ws) as sf:
        info, key = sf.issue_api_key("operator", label="contractor")
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        (table,) = c.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                             "WHERE table_name LIKE '%apikeys'").fetchone()
        c.execute(f"UPDATE {table} SET revoked = '2026-01-01T00:00:00+00:00' WHERE key_id = %s", (info.key_id,))
    with SafeFace.open(ws) as sf:
        with pytest.raises(AuthenticationError):
            sf.authenticate(key)
        assert {k.key_id: k for k in sf.api_keys()}[info.key_id].revoked is not None


def test_a_key_rate_edited_into_text_is_refused_and_named_by_the_listing_and_report(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An operator edits a key's `rate` into text: the key is 401; listings name it, no 500."""
    from safeface.errors import IntegrityError

    client, ws, (kiosk, aud) = keyed_client(tmp_path, "kiosk", "auditor", rate=1000)
    with open_sf(ws) as sf:
        victim = sf.authenticate(kiosk).key_id
    with sqlite3.connect(str(ws.root / "apikeys.db")) as db:
        db.execute("UPDATE apikeys SET rate = 'fast' WHERE key_id = ?", (victim,))
    with client:
        own = client.post("/v1/identify", headers={"X-API-Key": kiosk}, json={}).status_code
        assert console_login(client, aud).status_code == 303
        keys_page = client.get("/keys")
        report = client.get("/v1/report", headers={"X-API-Key": aud})
    assert own == 401
    # A typed refusal; the service names the cause (the key) in its own log, by reference.
    assert keys_page.status_code == 409 and report.status_code == 409, (keys_page.text[:200], report.text[:200])
    assert f"row for key {victim} was edited by hand" in caplog.text
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError, match=victim):
            sf.api_keys()
        with pytest.raises(IntegrityError, match=victim):
            sf.report(tmp_path / "report")


def test_a_key_cannot_be_issued_with_a_rate_too_small_to_wait_out(tmp_path: Path) -> None:
    """`apikey new --rate 1e-310` (whose wait, 1 / rate, is infinite: a 500) is refused at issue."""
    from safeface.errors import InvalidArgument

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        with pytest.raises(InvalidArgument, match="rate"):
            sf.issue_api_key("operator", label="slowest", rate=1e-310)
        assert sf.issue_api_key("operator", label="slow", rate=0.0001)[0].rate == 0.0001


def test_a_key_over_the_slowest_rate_is_answered_429_with_a_finite_retry_after(tmp_path: Path) -> None:
    """A key at (or, issued earlier, below) the slowest rate: 429, with a bounded Retry-After."""
    from fastapi.testclient import TestClient

    from safeface.errors import ServiceBusy

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="slow", rate=0.0001)
    with TestClient(in_process_app(ws.root, tmp_path), raise_server_exceptions=False) as client:
        assert client.post("/v1/purge", headers={"X-API-Key": key}).status_code == 200
        second = client.post("/v1/purge", headers={"X-API-Key": key})
        rt = client.app.state.runtime
        rt.limit("old key", 1e-310)  # a rate issued before the floor: its first request goes
        with pytest.raises(ServiceBusy) as exc:
            rt.limit("old key", 1e-310)
    assert second.status_code == 429 and second.json()["error"] == "RateLimited"
    assert 1 <= int(second.headers["Retry-After"]) <= 10_000
    assert exc.value.retry_after == 10_000
