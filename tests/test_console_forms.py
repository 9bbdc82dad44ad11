"""The operator console through its ASGI app (FastAPI TestClient): login CSRF, cookies, CSRF
tokens per session, role checks on actions, the bodies it reads and the files it serves."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402
from service_support import console_login, console_report, csrf_of, in_process_app  # noqa: E402

TestClient = pytest.importorskip("fastapi.testclient").TestClient


def _set_cookies(r: Any) -> list[str]:
    return [v for k, v in r.headers.multi_items() if k.lower() == "set-cookie"]


def test_a_login_post_without_the_login_forms_cookie_logs_nobody_in(tmp_path: Path) -> None:
    """A login post that lacks the login form's cookie (a form on another site, an empty token)
    opens no session."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="console")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        r = c.post("/login", data={"csrf": "", "api_key": key}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?error=expired"
        assert not any(v.startswith("__Host-sf_session=") for v in _set_cookies(r))
        assert c.get("/audit", follow_redirects=False).headers["location"] == "/login"


def test_the_login_forms_cookie_is_strict_secure_and_httponly(tmp_path: Path) -> None:
    """The login form's double-submit cookie is HttpOnly, Secure and SameSite=Strict, as the
    session's is."""
    ws = make_workspace(tmp_path / "ws")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        r = c.get("/login")
        (cookie,) = [v for v in _set_cookies(r) if v.startswith("__Host-sf_login=")]
        attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
        assert "httponly" in attrs and "secure" in attrs, cookie
        assert attrs.get("samesite", "").lower() == "samesite=strict", cookie
        assert csrf_of(r.text) == cookie.split(";")[0].split("=", 1)[1]


def test_logout_tells_the_browser_to_forget_the_session_cookie(tmp_path: Path) -> None:
    """A logout clears the session cookie in the browser as well as ending the session on the
    server; the clearing carries Secure, without which a browser keeps a __Host- cookie."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="console")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        assert console_login(c, key).headers["location"] == "/audit"
        token = csrf_of(c.get("/keys").text)
        r = c.post("/logout", data={"csrf": token}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        cleared = [v for v in _set_cookies(r) if v.startswith("__Host-sf_session=")]
        assert cleared and ("max-age=0" in cleared[0].lower() or '__Host-sf_session=""' in cleared[0]), \
            _set_cookies(r)
        assert "; secure" in cleared[0].lower(), cleared
        assert "__Host-sf_session" not in c.cookies


def test_an_auditors_console_erasure_is_refused_and_erases_nothing(tmp_path: Path) -> None:
    """An erasure posted from an auditor's console session is judged as that key's role: refused by
    CN-16, nothing erased."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="auditor console")
        pseudonym = sf.pseudonym("alice")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        assert console_login(c, key).headers["location"] == "/audit"
        token = csrf_of(c.get("/subjects").text)
        r = c.post("/subjects/erase", data={"csrf": token, "pseudonym": pseudonym}, follow_redirects=False)
        assert r.status_code == 403 and "CN-16" in r.text
    with open_sf(ws) as sf:
        assert not [e for e in sf.audit_entries() if e.operation == "erase" and e.decision == "allowed"]


def test_the_report_folder_serves_no_file_outside_its_plots(tmp_path: Path) -> None:
    """/report/... serves compliance.json and the assessment plots only: a path that climbs out of
    the folder is 404."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="console")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        assert console_login(c, key).headers["location"] == "/audit"
        assert console_report(c).status_code == 303  # the folder exists
        (ws.root / "reports" / "console" / "assessment").mkdir(parents=True, exist_ok=True)
        r = c.get("/report/assessment/..%2F..%2F..%2Fdeployment.json", follow_redirects=False)
        assert r.status_code == 404 and b"deployment_id" not in r.content


def test_a_forms_csrf_token_works_only_with_its_own_session(tmp_path: Path) -> None:
    """Each console session has its own CSRF token: a token read from another session (another
    key's, or another login of the same key) is refused."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, op = sf.issue_api_key("operator", label="victim")
        _, aud = sf.issue_api_key("auditor", label="other desk")
        pseudonym = sf.pseudonym("alice")
    app = in_process_app(ws.root, tmp_path)
    with TestClient(app, base_url="https://testserver") as victim, \
            TestClient(app, base_url="https://testserver") as other, \
            TestClient(app, base_url="https://testserver") as again:
        for client, key in ((victim, op), (other, aud), (again, op)):
            assert console_login(client, key).headers["location"] == "/audit"
        tokens = [csrf_of(client.get("/subjects").text) for client in (victim, other, again)]
        assert len(set(tokens)) == 3, tokens
        for stranger in tokens[1:]:
            r = victim.post("/subjects/erase", data={"csrf": stranger, "pseudonym": pseudonym}, follow_redirects=False)
            assert r.status_code == 401, r.text
    with open_sf(ws) as sf:
        assert not [e for e in sf.audit_entries() if e.operation == "erase"]


def test_console_forms_read_only_url_encoded_bodies(tmp_path: Path) -> None:
    """The console reads only URL-encoded forms: a multipart login, even with the right token and
    key, is an empty form and logs nobody in."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="console")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        token = csrf_of(c.get("/login").text)
        body = "".join(f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                       for k, v in (("csrf", token), ("api_key", key))) + "--b--\r\n"
        r = c.post("/login", content=body.encode(), headers={"content-type": "multipart/form-data; boundary=b"},
                   follow_redirects=False)
        assert r.headers["location"] == "/login?error=expired"
        assert not any(v.startswith("__Host-sf_session=") for v in _set_cookies(r))
        assert console_login(c, key).headers["location"] == "/audit"  # the same login, URL-encoded, works


def test_a_report_is_generated_only_by_the_pages_form(tmp_path: Path) -> None:
    """GET /report ran the report, which writes reports/console and an audit entry: a page on
    another host of the same site (whose requests carry the SameSite=Strict cookie) made a
    logged-in browser run it again and again. A GET now only shows the last report; a POST without
    the session's CSRF token generates nothing; the page's own form does."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("auditor", label="console")

    def reports_run() -> int:
        with open_sf(ws) as sf:
            return sum(e.operation == "report" and e.decision == "allowed" for e in sf.audit_entries())

    saved = ws.root / "reports" / "console" / "compliance.json"
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c:
        assert console_login(c, key).headers["location"] == "/audit"
        before = reports_run()
        shown = c.get("/report")
        forged = c.post("/report", data={"csrf": "0" * 40}, follow_redirects=False)
        bare = c.post("/report", follow_redirects=False)
        assert shown.status_code == 200 and "No report has been generated" in shown.text, shown.text[:300]
        assert forged.status_code == 401 and bare.status_code == 401, (forged.status_code, bare.status_code)
        assert not saved.exists() and reports_run() == before
        r = console_report(c)
        assert r.status_code == 303 and r.headers["location"] == "/report"
        assert saved.exists() and reports_run() == before + 1
        again = c.get("/report")
        assert "may process" in again.text and "id='generate'" in again.text, again.text[:300]
        assert reports_run() == before + 1
