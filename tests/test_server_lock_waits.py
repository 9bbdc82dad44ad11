"""Locks another session holds on a PostgreSQL workspace's tables (an open transaction in psql
with `SELECT ... FOR UPDATE`, an UPDATE left uncommitted): every write waits for them a bounded
time, then answers WorkspaceBusy with nothing written, whatever lock_timeout the operator's role
sets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, open_sf  # noqa: E402
from server_support import PG_USER, PgCluster, while_held  # noqa: E402
from test_server_store_attacks import _server_ws, _sql  # noqa: E402

from safeface import atomicfile  # noqa: E402
from safeface.errors import WorkspaceBusy  # noqa: E402
from safeface.storage.sqltables import PgTables  # noqa: E402


def test_rows_another_session_holds_locked_bound_every_writes_wait(pg: PgCluster, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice's row held FOR UPDATE stalled her erasure for ever; the store's meta row, every
    enrolment; the audit log's head row (or its writers' lock), every audited call; the rows
    table locked, every search. Each now waits LOCK_WAIT_S, then WorkspaceBusy, rolled back whole; the operator's role setting lock_timeout = 0 (no limit)
    undoes none of it. Once the session lets go, each goes through."""
    monkeypatch.setattr(atomicfile, "LOCK_WAIT_S", 0.3)
    ws, dsn = _server_ws(pg, tmp_path)
    db = dsn.rsplit("/", 1)[1]
    _sql(dsn, f"ALTER ROLE {PG_USER} IN DATABASE {db} SET lock_timeout = 0")
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        busy = while_held(dsn, f"SELECT 1 FROM safeface.rows WHERE row_id = {alice.row_id} FOR UPDATE",
                           lambda: sf.erase("alice"))
        assert isinstance(busy, WorkspaceBusy) and "another session holds a row" in str(busy), busy
        assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(alice.row_id,)]
        # A read waits as long: a table another session holds locked stalled every search.
        busy = while_held(dsn, "LOCK TABLE safeface.rows IN ACCESS EXCLUSIVE MODE",
                           lambda: sf.identify(img / "obama2.jpg", "demo", legal_basis=legal_basis(ws)))
        assert isinstance(busy, WorkspaceBusy), busy
        bob = consent(ws, "bob")
        audit_lock = PgTables(None, "", "safeface", "audit")._key  # the log's writers take it in turn
        for lock in ("SELECT 1 FROM safeface.meta FOR UPDATE", "SELECT 1 FROM safeface.audit_head FOR UPDATE",
                     f"SELECT pg_advisory_lock({audit_lock})"):
            busy = while_held(dsn, lock, lambda: sf.enroll(img / "biden.jpg", "bob", "demo", bob))
            assert isinstance(busy, WorkspaceBusy), (lock, busy)
            assert _sql(dsn, "SELECT row_id FROM safeface.rows") == [(alice.row_id,)], lock
        assert sf.enroll(img / "biden.jpg", "bob", "demo", bob).row_id > alice.row_id
        assert sf.erase("alice").templates_removed == 1
        assert sf.audit_verify().entries > 0



def test_a_key_store_table_another_session_holds_locked_holds_no_login_or_page_past_its_bound(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table of the key store held locked by another session (an open transaction in psql, a
    CREATE INDEX): a console login, bounded by its deadline (runtime.LOGIN_WAIT_S), waited the
    whole LOCK_WAIT_S, and every login of the worker's line behind it; and a page's session
    check, whose record of the use is not waited for (it runs on the service's event loop),
    waited as long with the whole worker stalled. The login gives up by its deadline, and the
    page goes on without recording the use."""
    import secrets
    import time

    from policy_support import Clock

    monkeypatch.setattr(atomicfile, "LOCK_WAIT_S", 60.0)  # past while_held's 15 s
    ws, dsn = _server_ws(pg, tmp_path)
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        _, key = sf.issue_api_key("operator", label="op")
        _, cookie = sf.open_session(key, secrets.token_urlsafe(16))
        clock.advance(seconds=120)  # a use to record
        table = "safeface.service_{}"
        busy = while_held(dsn, f"LOCK TABLE {table.format('spent_logins')} IN EXCLUSIVE MODE",
                           lambda: sf.open_session(key, secrets.token_urlsafe(16), until=time.monotonic() + 0.3))
        assert isinstance(busy, WorkspaceBusy), busy
        page = while_held(dsn, f"LOCK TABLE {table.format('session_uses')} IN EXCLUSIVE MODE",
                           lambda: sf.session(cookie))
        assert not isinstance(page, Exception) and page.key_id, page
        assert sf.open_session(key, secrets.token_urlsafe(16))[1]  # once it is let go
