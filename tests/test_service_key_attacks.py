"""Service keys and console sessions under attack: a key revoked while a request's body is held
back, forged values sent to logout, a least-privilege database role."""

from __future__ import annotations

import asyncio
import html
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import Clock, legal_basis, make_workspace, open_sf  # noqa: E402

from safeface.errors import AuthenticationError, IntegrityError, SchemaOwnerNeeded  # noqa: E402


# -- F2: a revoked API key still acts, unrefused and unnamed ("in flight" for as long as it likes) --
def revoke(ws: Any, key_id: str, key: str) -> None:
    """The operator revokes the key (from another handle); it no longer authenticates."""
    with open_sf(ws) as admin:
        admin.revoke_api_key(key_id)
        with pytest.raises(AuthenticationError):
            admin.authenticate(key)


def held_back(app: Any, path: str, key: str, body: bytes, ctype: bytes, meanwhile: Any) -> int:
    """POST `body` to the app with the key, the body held back until `meanwhile` has run; the
    answer's status."""
    sent: list[dict[str, Any]] = []
    calls = [0]

    async def receive() -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 1:
            meanwhile()
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"svc"), (b"content-type", ctype),
                         (b"content-length", str(len(body)).encode()), (b"x-api-key", key.encode())],
             "client": ("127.0.0.1", 40000), "server": ("svc", 80)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 300))
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


def test_a_key_revoked_before_its_request_body_arrives_is_refused(tmp_path: Path) -> None:
    """The service checks the key when the headers arrive and reads the body afterwards. A key
    holder who holds a request's body back until the key is revoked gets nothing: the key is
    checked again where the call is judged, and nothing is exported or recorded as allowed."""
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        info, key = sf.issue_api_key("operator", label="contractor")
        lb = legal_basis(ws, operations=["transmit"])
    app = in_process_app(ws.root, tmp_path)
    body = json.dumps({"subject": "alice", "purpose": "demo", "recipient": "data broker", "legal_basis": lb}).encode()
    status = held_back(app, "/v1/export", key, body, b"application/json", lambda: revoke(ws, info.key_id, key))
    assert status == 401
    with open_sf(ws) as sf:
        assert not [e for e in sf.audit_entries() if e.operation == "export" and e.decision == "allowed"]
        assert sf.audit_verify().entries > 0


def test_a_key_revoked_before_its_liveness_clip_arrives_is_refused(tmp_path: Path) -> None:
    """The same for a liveness check: the clip is held back until the key is revoked. The check is
    judged where the key is checked again, so nothing is decoded, judged or recorded under it."""
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        info, key = sf.issue_api_key("kiosk", label="gate app")
        nonce = sf.liveness_challenge().nonce
    app = in_process_app(ws.root, tmp_path)
    b = b"sfboundary"
    body = (b"--" + b + b'\r\nContent-Disposition: form-data; name="challenge"\r\n\r\n' + nonce.encode()
            + b"\r\n--" + b + b'\r\nContent-Disposition: form-data; name="clip"; filename="c.mp4"\r\n'
            b"Content-Type: video/mp4\r\n\r\n" + b"\x00" * 2048 + b"\r\n--" + b + b"--\r\n")
    status = held_back(app, "/v1/liveness/check", key, body, b"multipart/form-data; boundary=" + b,
                       lambda: revoke(ws, info.key_id, key))
    assert status == 401
    with open_sf(ws) as sf:
        assert not [e for e in sf.audit_entries() if e.operation == "liveness"]
        assert sf.audit_verify().entries > 0


def test_a_key_that_expires_before_its_request_body_arrives_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key's expiry was checked when the headers arrived, never where the call was judged: a
    holder of a key on its last day held an erasure's body back, and two days later it was
    judged and allowed under the expired key (with a signed receipt). Expiry is checked again
    there too, as revocation is."""
    import datetime as dt

    import safeface.sdk.facade as facade
    from service_support import in_process_app

    later = [dt.timedelta(0)]
    real = facade.utc_now
    monkeypatch.setattr(facade, "utc_now", lambda: real() + later[0])
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        info, key = sf.issue_api_key("operator", label="contractor until today", expires=facade.utc_now().date())
    app = in_process_app(ws.root, tmp_path)

    def two_days_pass() -> None:
        later[0] = dt.timedelta(days=2)

    body = json.dumps({"subject": "alice"}).encode()
    assert held_back(app, "/v1/erase", key, body, b"application/json", two_days_pass) == 401
    with open_sf(ws) as sf:
        assert not [e for e in sf.audit_entries() if e.operation == "erase" and e.decision == "allowed"]


def test_the_consoles_reads_check_the_key_again_when_they_run(tmp_path: Path) -> None:
    """A console page queued behind others runs after its key was revoked: the records, the key
    table and the trusted keys are read as that key, which is checked again there."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        info, key = sf.issue_api_key("operator", label="console")
        view = sf.acting_as_key(sf.authenticate(key))
        assert view.records() == [] and view.api_keys()
        revoke(ws, info.key_id, key)
        for read in (view.records, view.api_keys, view.trusted_keys, view.audit_entries):
            with pytest.raises(AuthenticationError):
                read()



def test_the_consoles_reads_need_a_role_that_may_read_the_report_when_they_run(tmp_path: Path) -> None:
    """Logging in to the console needs a role that may read the report; the pages' reads (the
    records, the key table, the trusted keys, the audit entries) did not ask again, so a session
    of a role that lost the right by a new assessment read on, and a view of any role read
    everything. They are judged as the report is now, and a refusal is recorded."""
    from policy_support import edit_config

    from safeface import PolicyViolation

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="auditor console")
        view = sf.acting_as_key(sf.authenticate(key))
        kiosk = sf.acting_as("kiosk", "gate 3")
        reads = ("records", "api_keys", "trusted_keys", "audit_entries")
        for read in reads:
            getattr(view, read)()
            with pytest.raises(PolicyViolation):
                getattr(kiosk, read)()
        edit_config(ws, lambda raw: raw["roles"].__setitem__("auditor", ["verify"]))
        for read in reads:
            with pytest.raises(PolicyViolation):
                getattr(view, read)()
        refused = [e for e in sf.audit_entries() if e.operation == "report" and e.decision == "refused"]
        assert len(refused) == 2 * len(reads)
        assert sf.records() == []  # the host's own handle reads freely


def test_a_role_that_lost_the_report_at_a_new_assessment_is_let_into_the_console_no_more(tmp_path: Path) -> None:
    """The console lets in keys whose role may read the report, judged on the service's main
    handle, which never read the deployment again: after a recorded assessment took the right
    away, the key still logged in, and its session still downloaded the report's files."""
    from fastapi.testclient import TestClient
    from policy_support import edit_config
    from service_support import console_login, console_report, in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="auditor console")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        assert console_login(c, key).headers["location"] == "/audit"
        assert console_report(c).status_code == 303
        assert c.get("/report/compliance.json").status_code == 200
        edit_config(ws, lambda raw: raw["roles"].__setitem__("auditor", ["verify"]))
        for page in ("/subjects", "/report/compliance.json"):
            assert c.get(page, follow_redirects=False).headers.get("location", "").startswith("/login"), page
        again = TestClient(c.app, base_url="https://testserver")
        assert console_login(again, key).headers["location"] == "/login?error=role"


def test_the_consoles_lists_still_read_while_deployment_json_no_longer_loads(tmp_path: Path) -> None:
    """A broken hand edit stops processing, not an erasure, nor the console's lists of what
    there is to erase or revoke (judged under the last reading that loaded)."""
    from fastapi.testclient import TestClient
    from policy_support import consent, images
    from service_support import console_login, csrf_of, in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="op console")
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        pseudonym = sf.pseudonym("alice")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        assert console_login(c, key).status_code == 303
        csrf = csrf_of(c.get("/subjects").text)
        ws.config.write_text(ws.config.read_text() + "\n}broken")
        listed = c.get("/subjects", follow_redirects=False)
        assert listed.status_code == 200 and pseudonym in listed.text
        assert c.get("/consents", follow_redirects=False).status_code == 200
        erased = c.post("/subjects/erase", data={"csrf": csrf, "pseudonym": pseudonym}, follow_redirects=False)
        assert erased.status_code == 303 and erased.headers["location"].startswith("/receipts/")

# -- F3: logout stores any session-shaped value, unauthenticated, for up to ~31,000 years ----------
def test_logout_does_not_store_forged_session_values(tmp_path: Path) -> None:
    """POST /logout needs no key: only a genuine, live session is recorded as ended (until its own
    end, 8 hours at most), so forged session-shaped values sent to it store nothing and the
    table stays bounded by the sessions opened in 8 hours."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        for i in range(50):
            sf.end_session(f"{i:012x}.999999999999.{'0' * 64}")
        stored = sf._apikeys._t.q("SELECT COUNT(*) FROM {t}ended_sessions")[0][0]
        logged = [e for e in sf.audit_entries() if "console session" in (e.note or "")]
    assert stored == 0, f"{stored} forged session values were stored"
    assert not logged, f"{len(logged)} forged session values were written to the audit log"


def _pg_workspace(pg: Any, tmp_path: Path) -> tuple[Path, str]:
    from test_server_audit import server_workspace

    return server_workspace(pg, tmp_path)


def _open_keys(dsn: str) -> Any:
    from server_support import PG_PASSWORD

    from safeface.storage.sqltables import PgTables
    from safeface.workspace.apikeys import ApiKeys

    return ApiKeys(PgTables.open(dsn, PG_PASSWORD, "safeface", "service", "API key store"), b"k" * 32)


def test_a_dml_only_database_role_still_opens_the_workspace(pg: Any, tmp_path: Path) -> None:
    """A database role with only the rights the service uses (USAGE on the schema, SELECT, INSERT,
    UPDATE and DELETE on its tables) opens the API key store: nothing is created at open."""
    ws, dsn = _pg_workspace(pg, tmp_path)
    role = _dml_only_role(dsn)
    app_dsn = dsn.replace("safeface_test@", f"{role}@")
    keys = _open_keys(app_dsn)
    try:
        assert isinstance(keys.list(), list)
    finally:
        keys.close()



def _dml_only_role(dsn: str) -> str:
    """A new database role with only the rights the service uses on the workspace's tables (USAGE
    on the schema; SELECT, INSERT, UPDATE and DELETE on its tables): its name."""
    import uuid

    import psycopg
    from server_support import PG_PASSWORD

    role = "app_" + uuid.uuid4().hex[:8]
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
        c.execute(f"GRANT USAGE ON SCHEMA safeface TO {role}")
        c.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA safeface TO {role}")
    return role


def _auditor_on_a_dml_only_server_workspace(pg: Any, tmp_path: Path) -> tuple[Any, str, str, Any]:
    """A workspace moved to PostgreSQL whose service connects as a DML-only role: (workspace, an
    auditor's key, the role, a function running SQL as the schema's owner)."""
    import psycopg
    from server_support import PG_PASSWORD

    ws, dsn = make_workspace(tmp_path / "ws"), pg.new_database()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="console")
    role = _service_connects_as_a_dml_only_role(ws, dsn)

    def owner(sql: str) -> None:
        with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute(sql)

    return ws, key, role, owner


def _logged_under(caplog: pytest.LogCaptureFixture, said: str) -> str:
    """What the service's log holds under the reference `said` (a caller's message) gives."""
    found = re.search(r"reference ([0-9a-f]{12})", said)
    assert found, said
    return "\n".join(r.getMessage() for r in caplog.records if found.group(1) in r.getMessage())


def _service_connects_as_a_dml_only_role(ws: Any, dsn: str) -> str:
    """Point the workspace's records at a new _dml_only_role (sealed, as `storage migrate` does):
    the role's name."""
    from policy_support import PASSPHRASE

    from safeface.workspace.passphrase import open_keyring
    from safeface.workspace.storage_seal import sealed_storage

    role = _dml_only_role(dsn)
    raw = json.loads(ws.config.read_text())
    raw["storage"] = sealed_storage(open_keyring(ws, PASSPHRASE), {**raw["storage"], "records": dsn.replace(
        "safeface_test@", f"{role}@")})
    ws.config.write_text(json.dumps(raw))
    return role


def test_a_role_that_may_not_create_the_session_tables_is_refused_at_login_not_a_minute_in(
        pg: Any, tmp_path: Path) -> None:
    """A key store moved to PostgreSQL by an earlier safeface lacks the sessions' tables, and the
    service's role may not create them: the login worked, and each console page failed a minute
    later, when the first use was recorded. The login is refused instead, with a page naming the
    statement to run as the schema's owner (and again while the role may not use the table made);
    once it has run, the login opens the console."""
    import psycopg
    from fastapi.testclient import TestClient
    from server_support import PG_PASSWORD
    from service_support import console_login, in_process_app

    ws, dsn = make_workspace(tmp_path / "ws"), pg.new_database()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="console")
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute("DROP TABLE safeface.service_session_uses")  # as an earlier safeface moved it
    role = _service_connects_as_a_dml_only_role(ws, dsn)
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        statements = []
        for _ in range(2):  # the owner makes the table, but forgets the grant the page names too
            refused = console_login(client, key)
            assert refused.status_code == 503 and "id='missing-table'" in refused.text, refused.status_code
            statements.append(html.unescape(refused.text.split("<code>")[1].split("</code>")[0]))
            with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
                c.execute(statements[-1].split("; ")[0])
        opened = console_login(client, key)
        page = client.get("/audit", follow_redirects=False)
    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS safeface.service_session_uses"), statements
    assert statements[1] == f"GRANT SELECT, INSERT, UPDATE, DELETE ON safeface.service_session_uses TO {role}"
    assert opened.status_code == 303 and page.status_code == 200, (opened.status_code, page.status_code)


def test_a_right_on_the_session_tables_revoked_after_login_is_a_page_naming_the_grant(
        pg: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """On PostgreSQL, a right on a sessions' table revoked from the service's role after a login
    failed every console page (a bare error naming the store) until it was granted again. Each page
    answers 503 saying a right is missing, the logout too, with the GRANT to run as the schema's
    owner in the service's log under the page's reference (the role is the operator's to read),
    with nothing written; once granted, the session reads on. A login form submitted twice gives
    out one session there too (the login forms' table is the store's, shared by every host)."""
    from fastapi.testclient import TestClient
    from service_support import console_login, csrf_of, in_process_app

    ws, key, role, owner = _auditor_on_a_dml_only_server_workspace(pg, tmp_path)

    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        assert console_login(client, key).status_code == 303
        owner(f"REVOKE SELECT ON safeface.service_ended_sessions FROM {role}")
        page = client.get("/audit", follow_redirects=False)
        logout = client.post("/logout", data={"csrf": "x"}, follow_redirects=False)
        owner(f"GRANT SELECT ON safeface.service_ended_sessions TO {role}")
        owner(f"REVOKE SELECT ON safeface.service_apikeys FROM {role}")
        keys_unread = client.get("/consents", follow_redirects=False)
        owner(f"GRANT SELECT ON safeface.service_apikeys TO {role}")
        again = client.get("/audit", follow_redirects=False)
        token = csrf_of(client.get("/login").text)
        form = str(client.cookies.get("__Host-sf_login"))
        twice = [client.post("/login", data={"csrf": token, "api_key": key}, follow_redirects=False)]
        client.cookies.set("__Host-sf_login", form)
        twice.append(client.post("/login", data={"csrf": token, "api_key": key}, follow_redirects=False))
        kept = client.get("/audit", follow_redirects=False)
        client.cookies.set("__Host-sf_session", str(twice[0].cookies.get("__Host-sf_session")))
        left = client.get("/audit", follow_redirects=False)
    for refused in (page, logout):
        assert refused.status_code == 503 and "id='missing-right'" in refused.text, refused.status_code
        assert "Traceback" not in refused.text and role not in refused.text  # the role: the operator's to read
        assert f"GRANT SELECT, INSERT, UPDATE, DELETE ON safeface.service_ended_sessions TO {role}" in \
            _logged_under(caplog, html.unescape(refused.text)), refused.text
    assert keys_unread.status_code == 503 and f"GRANT SELECT ON safeface.service_apikeys TO {role}" in \
        _logged_under(caplog, html.unescape(keys_unread.text)), keys_unread.status_code
    assert again.status_code == 200, again.status_code  # the refused logout ended nothing
    assert [r.status_code for r in twice] == [303, 303], [r.status_code for r in twice]
    assert twice[0].cookies.get("__Host-sf_session") == twice[1].cookies.get("__Host-sf_session")
    assert kept.status_code == 200 and left.status_code == 200, (kept.status_code, left.status_code)
    with open_sf(ws) as sf:
        # The browser's earlier session, ended by its next login; the form's second post ended none.
        assert sum("console session" in (e.note or "") for e in sf.audit_entries()) == 1


def test_a_right_to_record_session_uses_revoked_after_login_is_named_not_an_early_idle_end(
        pg: Any, tmp_path: Path) -> None:
    """INSERT or UPDATE on the sessions' uses revoked from the service's role after a login: no use
    was recorded, unsaid, and every session idled out 30 minutes after its login. The first use
    that cannot be recorded names the right and the GRANT to run instead."""
    import datetime as dt

    import psycopg
    from server_support import PG_PASSWORD

    from safeface.errors import SchemaOwnerNeeded

    _, dsn = _pg_workspace(pg, tmp_path)
    role = _dml_only_role(dsn)
    keys = _open_keys(dsn.replace("safeface_test@", f"{role}@"))
    now = dt.datetime.now(dt.timezone.utc)
    try:
        _, key = keys.issue("auditor", "console", None, None, now)
        _, cookie = keys.open_session(key, now)
        keys.session(cookie, now + dt.timedelta(minutes=2))  # a use recorded
        with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute(f"REVOKE UPDATE ON safeface.service_session_uses FROM {role}")
        with pytest.raises(SchemaOwnerNeeded, match="lacks UPDATE on safeface.service_session_uses") as info:
            keys.session(cookie, now + dt.timedelta(minutes=20))
        want = f"GRANT SELECT, INSERT, UPDATE, DELETE ON safeface.service_session_uses TO {role}"
        assert info.value.statement == want, info.value.statement
    finally:
        keys.close()


def test_a_logout_is_not_undone_by_restoring_the_key_table(tmp_path: Path) -> None:
    """A logged-out console cookie, kept by whoever copied it, opens nothing again after the key
    table (apikeys.db) is restored from a copy taken before the logout: the anchored audit log
    records the logout too, under a hash of the cookie, never the cookie."""
    import shutil

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="console")
        _, cookie = sf.open_session(key)
        _, other = sf.open_session(key)  # a second login in the same second: its own session
        assert other != cookie and sf.session(cookie).role == "auditor"
    backup = tmp_path / "apikeys-before-logout.db"
    shutil.copyfile(ws.apikeys, backup)
    with open_sf(ws) as sf:
        assert sf.end_session(cookie) is True
        assert sf.end_session(cookie) is False  # already ended: nothing more is recorded
        with pytest.raises(AuthenticationError):
            sf.session(cookie)
        kid, exp, nonce, mac = cookie.split(".")
        for variant in (f"{kid}.0{exp}.{nonce}.{mac}", f"{kid}.00{exp}.{nonce}.{mac}", cookie + "\n", " " + cookie):
            with pytest.raises(AuthenticationError):  # another spelling of the ended session opens nothing
                sf.session(variant)
        assert sf.session(other).role == "auditor"  # logging out of one session ends no other
        notes = [e.note or "" for e in sf.audit_entries() if e.operation == "apikey"]
    assert sum("console session" in n and n.endswith("ended") for n in notes) == 1
    assert not any(cookie.split(".")[3] in n or cookie in n for n in notes)
    shutil.copyfile(backup, ws.apikeys)  # the old table, without the ended session
    for extra in ("-wal", "-shm"):
        Path(f"{ws.apikeys}{extra}").unlink(missing_ok=True)
    with open_sf(ws) as sf:
        with pytest.raises(AuthenticationError, match="restored from an older copy"):
            sf.session(cookie)
        _, again = sf.open_session(key)  # the key itself still works: a new login is a new session
        assert sf.session(again).role == "auditor"
        assert sf.audit_verify().entries > 0


def test_a_session_checked_while_its_logout_is_recorded_is_not_called_restored(tmp_path: Path) -> None:
    """A console request checked in the instant between a logout's two records (the audit log's,
    then the key table's) is refused as logged out, never accused of a table restored from an
    older copy."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="console")
        _, cookie = sf.open_session(key)
        real = sf._apikeys.end_session_ref
        between: list[str] = []

        def check_then_end(ref: str, until: int, now: Any, wait: bool = True) -> bool:
            with pytest.raises(AuthenticationError) as info:  # another request, checked right now
                sf.session(cookie)
            between.append(str(info.value))
            return real(ref, until, now, wait)

        sf._apikeys.end_session_ref = check_then_end  # type: ignore[method-assign]
        sf.end_session(cookie)
        assert between and "looks restored" not in between[0] and "logged out" in between[0], between
        with pytest.raises(AuthenticationError, match="logged out"):
            sf.session(cookie)


def test_the_console_keeps_the_keys_rate_and_shows_only_its_own_messages(tmp_path: Path) -> None:
    """A key issued at 1 request a second gets 429 on /v1 past its rate; logged in to the console
    with it, full reports and audits ran at any speed. And the login page printed whatever text a
    link put in `?error=`, so a link to the real console could carry a stranger's instructions."""
    from fastapi.testclient import TestClient
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="rate 1", rate=1)
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as client:
        lure = "Your key was revoked. Mail it to keys@elsewhere.example to restore access."
        assert "elsewhere.example" not in client.get("/login", params={"error": lure}).text
        assert "not valid" in client.get("/login", params={"error": "invalid"}).text
        page = client.get("/login")
        token = page.text.split("name='csrf' value='")[1].split("'")[0]
        r = client.post("/login", data={"csrf": token, "api_key": key}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/audit"
        statuses = [client.get("/audit").status_code for _ in range(4)]
        assert 429 in statuses, statuses


def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(tmp_path: Path) -> None:
    """A client sends part of a body and hangs up. The app answered with an unhandled exception,
    which the server logs as a traceback of some 70 lines: anyone, without a key (at /login),
    could fill the log at 40 bytes of log for each byte sent."""
    from service_support import in_process_app

    ws = make_workspace(tmp_path / "ws")
    app = in_process_app(ws.root, tmp_path)
    sent: list[dict[str, Any]] = []
    parts = [{"type": "http.request", "body": b"csrf=abc&api_", "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/login", "raw_path": b"/login", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"svc"), (b"content-type", b"application/x-www-form-urlencoded"),
                         (b"content-length", b"5000")], "client": ("127.0.0.1", 40000), "server": ("svc", 80)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))  # raised ClientDisconnect before
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [400]


def test_the_console_names_a_failed_audit_check_by_reference_only(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The console's audit page printed the failed check's text, which /v1/audit/verify keeps
    from the caller (it names entries and, on a server workspace, the record store's host, user
    and database): any key holder allowed the report read it. Now both give a reference, and the
    service's log the cause under it."""
    from fastapi.testclient import TestClient
    from service_support import edited_audit_entry, in_process_app

    ws, key, cause = edited_audit_entry(tmp_path, "operator")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as client:
        page = client.get("/login")
        token = page.text.split("name='csrf' value='")[1].split("'")[0]
        client.post("/login", data={"csrf": token, "api_key": key}, follow_redirects=False)
        with caplog.at_level("ERROR", logger="safeface.service"):
            text = client.get("/audit").text
    assert "FAILS verification" in text and "reference" in text, text
    assert cause not in text and "entry" not in text.split("FAILS verification")[1].split("</p>")[0]
    ref = text.split("reference ")[1][:12]
    assert any(ref in r.getMessage() and cause in r.getMessage() for r in caplog.records)


def test_a_console_session_ends_after_its_eight_hours(tmp_path: Path) -> None:
    """A copied console cookie opens the console for the session's 8 hours, not for ever."""
    ws = make_workspace(tmp_path / "ws")
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        _, key = sf.issue_api_key("operator", label="console")
        _, cookie = sf.open_session(key)
        assert sf.session(cookie).role == "operator"
        clock.advance(hours=9)
        with pytest.raises(AuthenticationError):
            sf.session(cookie)


def test_an_expired_key_neither_authenticates_nor_logs_in_and_its_session_ends(tmp_path: Path) -> None:
    """A key valid until today: its console session ends with it, although the session's own 8
    hours are not over, and two days later it neither authenticates nor opens a session."""
    import datetime as dt

    ws = make_workspace(tmp_path / "ws")
    today = dt.datetime.now(dt.timezone.utc).date()
    clock = Clock(dt.datetime.combine(today, dt.time(22, 0), tzinfo=dt.timezone.utc))
    with open_sf(ws, clock=clock) as sf:
        _, key = sf.issue_api_key("operator", label="until today", expires=today)
        assert sf.authenticate(key).role == "operator"
        _, cookie = sf.open_session(key)
        clock.advance(hours=3)  # 01:00 tomorrow
        with pytest.raises(AuthenticationError):
            sf.session(cookie)
        clock.advance(days=2)
        with pytest.raises(AuthenticationError):
            sf.authenticate(key)
        with pytest.raises(AuthenticationError):
            sf.open_session(key)


def test_a_right_revoked_from_the_services_role_is_a_503_naming_the_grant_not_a_restore(
        pg: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """On PostgreSQL, a right revoked from the service's role (SELECT on the key table, or a right
    on the audit log's tables) answered each `/v1` call, and the console's login, 409: the tables
    "were altered or dropped, restore them from a backup", which sent the operator to a restore
    that changes nothing. It is a 503 whose reference finds the right's GRANT in the service's log
    (the caller may be anyone: the key check is what failed); granted again, the calls work."""
    from fastapi.testclient import TestClient
    from service_support import console_login, in_process_app

    ws, key, role, owner = _auditor_on_a_dml_only_server_workspace(pg, tmp_path)

    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        assert client.get("/v1/audit/verify", headers={"X-API-Key": key}).status_code == 200
        answers = {}
        for table in ("service_apikeys", "audit_entries"):
            owner(f"REVOKE SELECT ON safeface.{table} FROM {role}")
            answers[table] = (client.get("/v1/audit/verify", headers={"X-API-Key": key}), console_login(client, key))
            owner(f"GRANT SELECT ON safeface.{table} TO {role}")
        after = client.get("/v1/audit/verify", headers={"X-API-Key": key})
    # The same SQLSTATE for a row-level security policy someone added under an open handle (the
    # open refuses one), which keeps the role from appending: the tables were altered, and a GRANT
    # mends nothing.
    with open_sf(ws) as sf:
        owner("ALTER TABLE safeface.audit_entries ENABLE ROW LEVEL SECURITY")
        owner("CREATE POLICY read_only ON safeface.audit_entries FOR SELECT USING (true)")
        with pytest.raises(IntegrityError, match="altered") as policed:
            sf.issue_api_key("auditor", label="second")
    assert not isinstance(policed.value, SchemaOwnerNeeded)
    for table, (call, login) in answers.items():
        grant = f"GRANT SELECT, INSERT, UPDATE, DELETE ON safeface.{table} TO {role}"
        assert call.status_code == 503 and call.json()["error"] == "SchemaOwnerNeeded", (table, call.text)
        said = call.json()["message"]
        assert role not in said and "backup" not in said and grant in _logged_under(caplog, said), call.text
        assert call.headers.get("Retry-After"), call.headers
        # The login's key check reads both (the log says whether the key was issued and revoked).
        assert login.status_code == 503 and grant in _logged_under(caplog, html.unescape(login.text)), login.text
    assert after.status_code == 200, after.text


def _verify_names_the_revoked_right(client: Any, caplog: pytest.LogCaptureFixture, owner: Callable[[str], object],
                                    role: str, key: str, right: str, table: str) -> None:
    """`/v1/audit/verify` with `right` on safeface.`table` revoked from the service's role: a 503
    SchemaOwnerNeeded whose log entry names the right and the GRANT; granted again, a 200."""
    owner(f"REVOKE {right} ON safeface.{table} FROM {role}")
    try:
        refused = client.get("/v1/audit/verify", headers={"X-API-Key": key})
    finally:
        owner(f"GRANT {right} ON safeface.{table} TO {role}")
    after = client.get("/v1/audit/verify", headers={"X-API-Key": key})
    assert refused.status_code == 503 and refused.json()["error"] == "SchemaOwnerNeeded", refused.text[:300]
    logged = _logged_under(caplog, refused.json()["message"])
    assert f"lacks {right} on safeface.{table}" in logged and f"ON safeface.{table} TO {role}" in logged, logged
    assert after.status_code == 200, after.text[:300]


def test_a_right_revoked_on_the_gallerys_tables_or_met_inside_a_transaction_is_named(
        pg: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """On PostgreSQL, a right revoked from the service's role on the gallery's own tables (SELECT
    on `rows`) let psycopg's error through: a 500 with nothing for the operator to act on. And a
    right refused inside a transaction (INSERT on the audit log's entries, met when a key's issue
    appends its entry) was named as all four rights, no query being possible in the aborted
    transaction. Each is SchemaOwnerNeeded naming the right the role lacks and the GRANT, a 503 in
    the service with both in its log under the answer's reference. So is SELECT on `rows` revoked
    in the instant between an erasure's commit and its check of what it kept (held open here by
    the store's hook), where psycopg's error got through."""
    from fastapi.testclient import TestClient
    from service_support import in_process_app

    ws, key, role, owner = _auditor_on_a_dml_only_server_workspace(pg, tmp_path)
    owner(f"REVOKE INSERT ON safeface.audit_entries FROM {role}")
    with pytest.raises(SchemaOwnerNeeded) as appended, open_sf(ws) as sf:  # the open appends an entry too
        sf.issue_api_key("auditor", label="second")
    owner(f"GRANT INSERT ON safeface.audit_entries TO {role}")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        assert client.get("/v1/audit/verify", headers={"X-API-Key": key}).status_code == 200
        _verify_names_the_revoked_right(client, caplog, owner, role, key, "SELECT", "rows")
    with open_sf(ws) as sf:
        sf._gallery._hook = lambda point: owner(f"REVOKE SELECT ON safeface.rows FROM {role}") \
            if point == "erase:committed" else None
        try:
            with pytest.raises(SchemaOwnerNeeded) as erased:
                sf.erase("alice")
        finally:
            sf._gallery._hook = None
            owner(f"GRANT SELECT ON safeface.rows TO {role}")
    assert "lacks INSERT on safeface.audit_entries" in str(appended.value), str(appended.value)
    assert "lacks SELECT on safeface.rows" in str(erased.value), str(erased.value)
    assert erased.value.statement == f"GRANT SELECT, INSERT, UPDATE, DELETE ON safeface.rows TO {role}", erased.value


def test_a_logouts_row_waits_for_a_key_store_another_host_holds_for_a_bounded_time(
        pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A logout the audit log refuses is recorded in the key store's table, waited for: on
    PostgreSQL that wait, for the store's advisory lock, had no end while another host held the
    lock (a stuck `safeface apikey`), and every login and logout of the worker queued behind it.
    It ends after atomicfile.LOCK_WAIT_S (1 s here) in WorkspaceBusy, as a login's does."""
    import datetime as dt
    import hashlib
    import threading

    import psycopg
    from server_support import PG_PASSWORD

    from safeface import atomicfile
    from safeface.errors import WorkspaceBusy
    from safeface.workspace.apikeys import session_ref, session_until

    monkeypatch.setattr(atomicfile, "LOCK_WAIT_S", 1.0)
    _, dsn = _pg_workspace(pg, tmp_path)
    keys = _open_keys(dsn)
    now = dt.datetime.now(dt.timezone.utc)
    lock = int.from_bytes(hashlib.sha256(b"safeface service lock safeface").digest()[:8], "big", signed=True)
    out: list[object] = []
    try:
        _, key = keys.issue("auditor", "console", None, None, now)
        _, cookie = keys.open_session(key, now)
        with psycopg.connect(dsn, password=PG_PASSWORD) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))  # held until this transaction ends

            def logout() -> None:
                try:
                    out.append(keys.end_session_ref(session_ref(cookie), session_until(cookie), now))
                except WorkspaceBusy as exc:
                    out.append(exc)

            waiter = threading.Thread(target=logout)
            waiter.start()
            waiter.join(20)
            ended_while_held = not waiter.is_alive()
            holder.rollback()
        waiter.join(20)
        assert ended_while_held and isinstance(out[0], WorkspaceBusy), out
        assert keys.end_session_ref(session_ref(cookie), session_until(cookie), now) is True  # once free
    finally:
        keys.close()


def test_a_right_revoked_on_the_gallerys_meta_table_is_named_when_the_write_lock_is_taken_or_a_handle_opens(
        pg: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Taking the gallery's write lock (each enrolment, erasure, purge and `audit verify`) clears
    the handle's own in-flight mark from the `meta` table, outside the store's wrapped paths: a
    SELECT or DELETE revoked there let psycopg's error through, a bare 500 from /v1/audit/verify
    and a BackendError 500 from the others. It is SchemaOwnerNeeded naming the right, a 503.
    Opening the gallery reads `meta` outside those paths too: with SELECT revoked, a worker's
    first console login, which opens the console's own handle, and the first /v1/ready, which
    opens the records check's, answered a bare 500, and `SafeFace.open` (a worker's start too)
    raised InsufficientPrivilege: the login is a 503 page naming the GRANT to run as the schema's
    owner, the probe a 503 whose log entry names it, the open SchemaOwnerNeeded."""
    from fastapi.testclient import TestClient
    from service_support import console_login, in_process_app

    ws, key, role, owner = _auditor_on_a_dml_only_server_workspace(pg, tmp_path)
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        assert client.get("/v1/audit/verify", headers={"X-API-Key": key}).status_code == 200
        _verify_names_the_revoked_right(client, caplog, owner, role, key, "DELETE", "meta")
        owner(f"REVOKE SELECT ON safeface.meta FROM {role}")
        try:
            login = console_login(client, key)  # the worker's first: it opens the console's handle
            ready = client.get("/v1/ready")  # the first probe opens the records check's handle
            with pytest.raises(SchemaOwnerNeeded) as opened:
                open_sf(ws).close()
        finally:
            owner(f"GRANT SELECT ON safeface.meta TO {role}")
        client.cookies.clear()
        after = console_login(client, key)
    assert login.status_code == 503 and f"ON safeface.meta TO {role}" in html.unescape(login.text), login.text[:400]
    assert ready.status_code == 503 and f"ON safeface.meta TO {role}" in _logged_under(caplog, ready.json()["reason"])
    assert "lacks SELECT on safeface.meta" in str(opened.value), str(opened.value)
    assert after.status_code == 303 and after.headers["location"] == "/audit", after.text[:300]


def test_a_first_console_login_waits_for_the_gallerys_write_lock_another_host_holds_for_a_bounded_time(
        pg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's first console login opens the console's own handle, whose opening takes the
    gallery's write lock: on PostgreSQL that wait (pg_advisory_lock) had no end while another
    host held the lock (a rekey of a large gallery, a stuck process), and the login waited with
    it, every login queued behind it too. It waits for the lock LOCK_WAIT_S (1 s here), as a
    local store's open does, then answers 503 to retry; once the lock is free, the login works."""
    import threading

    import psycopg
    from fastapi.testclient import TestClient
    from server_support import PG_PASSWORD
    from service_support import console_login, in_process_app

    from safeface import atomicfile
    from safeface.storage.server import write_lock_keys

    monkeypatch.setattr(atomicfile, "LOCK_WAIT_S", 1.0)
    ws, dsn = make_workspace(tmp_path / "ws"), pg.new_database()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="console")
    answers: list[Any] = []
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver",
                    raise_server_exceptions=False) as client:
        assert client.get("/v1/audit/verify", headers={"X-API-Key": key}).status_code == 200  # the worker is up
        with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as holder:  # another host's
            holder.execute("SELECT pg_advisory_lock(%s)", (write_lock_keys("safeface")[0],))
            login = threading.Thread(target=lambda: answers.append(console_login(client, key)))
            login.start()
            login.join(15)
            answered_while_held = not login.is_alive()
            holder.execute("SELECT pg_advisory_unlock_all()")
        login.join(30)
        client.cookies.clear()
        after = console_login(client, key)
    assert answered_while_held and answers[0].status_code == 503, answers[0].text[:300] if answers else None
    assert after.status_code == 303 and after.headers["location"] == "/audit", after.text[:300]
