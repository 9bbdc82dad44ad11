"""The operator console in a real browser: Playwright drives Debian's Chromium against a real
`safeface serve` over TLS on 127.0.0.1. Screenshots are kept under the test's tmp folder."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, masked_image, open_sf  # noqa: E402
from service_support import Server, httpx, self_signed_certificate  # noqa: E402

CHROMIUM = os.environ.get("SAFEFACE_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="the console tests need playwright: pip install '.[test]'")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium; .ci/run installs it)",
                allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("console")
    paths = make_workspace(root / "ws")
    with open_sf(paths) as sf:
        op_info, op = sf.issue_api_key("operator", label="compliance desk")
        kiosk = sf.issue_api_key("kiosk", label="gate 3")[1]
        aud_info, aud = sf.issue_api_key("auditor", label="auditor")
        for subject, img in (("alice", "obama.jpg"), ("bob", "biden.jpg")):
            sf.enroll(images() / img, subject, "demo", consent(paths, subject))
        pseudonyms = {s: sf.pseudonym(s) for s in ("alice", "bob")}
    cert, key = self_signed_certificate(root)
    server = Server(paths.root, root / "server.log", ["--tls-cert", str(cert), "--tls-key", str(key)])
    server.url = server.url.replace("http://", "https://")
    _wait_tls(server)
    shots = root / "screenshots"
    shots.mkdir()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield {"paths": paths, "url": server.url, "op": op, "op_id": op_info.key_id, "kiosk": kiosk, "aud": aud,
                   "browser": browser, "shots": shots, "pseudonyms": pseudonyms}
        finally:
            browser.close()
            server.stop()


def _wait_tls(server: Server) -> None:
    import time

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(server.log())
        try:
            if httpx.get(server.url + "/v1/ready", verify=False, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the TLS server was not ready: " + server.log())


def login(c: dict[str, Any], key: str) -> Any:
    ctx = c["browser"].new_context(ignore_https_errors=True)
    page = ctx.new_page()
    page.goto(c["url"] + "/login")
    page.fill("#api_key", key)
    page.click("#login")
    # The click returns once the redirect's navigation commits; under load the page's content
    # could still be empty then.
    page.wait_for_load_state()
    return ctx, page


def test_pages_without_a_session_redirect_to_login(console: dict[str, Any]) -> None:
    ctx = console["browser"].new_context(ignore_https_errors=True)
    page = ctx.new_page()
    for path in ("/", "/audit", "/subjects", "/consents", "/keys", "/report"):
        page.goto(console["url"] + path)
        assert page.url.endswith("/login"), path
    page.screenshot(path=str(console["shots"] / "login.png"))
    # A forged session cookie is no session either.
    ctx.add_cookies([{"name": "__Host-sf_session", "value": f"{console['op_id']}.9999999999.{'0' * 64}",
                      "url": console["url"]}])
    page.goto(console["url"] + "/audit")
    assert page.url.endswith("/login")
    ctx.close()


def test_login_sets_a_strict_secure_httponly_session_and_kiosk_keys_stay_out(console: dict[str, Any]) -> None:
    ctx, page = login(console, console["kiosk"])
    assert page.url.split("?")[0].endswith("/login") and "may not use the console" in page.content()
    ctx.close()
    ctx, page = login(console, "sfk_000000000000_" + "C" * 43)
    assert "not valid" in page.content()
    ctx.close()
    ctx, page = login(console, console["op"])
    assert page.url.endswith("/audit")
    cookie = {c["name"]: c for c in ctx.cookies()}["__Host-sf_session"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert console["op"] not in cookie["value"] and console["op"].split("_", 2)[2] not in page.content()
    assert "Verified" in page.inner_text("#verify")
    page.screenshot(path=str(console["shots"] / "audit.png"), full_page=True)
    ctx.close()


def test_revoke_a_consent_then_download_its_receipt(console: dict[str, Any]) -> None:
    from safeface.policy.receipts import verify_receipt
    from safeface.policy.tokens import public_key_from_text

    ctx, page = login(console, console["op"])
    page.click("text=Consents")
    assert page.url.endswith("/consents") and page.locator("button.revoke").count() == 2
    page.screenshot(path=str(console["shots"] / "consents.png"), full_page=True)
    page.locator("button.revoke").first.click()
    assert "/receipts/" in page.url and "revoke: 1 template(s) removed" in page.inner_text("#done")
    with page.expect_download() as dl:
        page.click("#download")
    receipt = json.loads(Path(dl.value.path()).read_text())
    verify_receipt(receipt, public_key_from_text(console["paths"].receipt_public.read_text().strip()))
    assert receipt["reason"] == "revoke" and receipt["templates_removed"] == 1
    page.screenshot(path=str(console["shots"] / "receipt.png"), full_page=True)
    page.goto(console["url"] + "/consents")
    assert page.locator("button.revoke").count() == 1
    # The audit log names the console's key as the actor.
    page.goto(console["url"] + "/audit")
    assert console["op_id"] in page.inner_text("#audit")
    ctx.close()


def test_subjects_show_the_templates_a_masked_probe_meets(console: dict[str, Any]) -> None:
    # One subject enrolled once bare and once from a masked image: both rows hold a visible-region
    # template, one of them from the masked image (met with the both-masked threshold). Another
    # enrolled bare only.
    with open_sf(console["paths"]) as sf:
        t, t2 = consent(console["paths"], "dora"), consent(console["paths"], "erin")
        sf.enroll(images() / "obama2.jpg", "dora", "demo", t)
        sf.enroll(masked_image(images() / "obama.jpg", "cloth", 3), "dora", "demo", t)
        sf.enroll(images() / "biden.jpg", "erin", "demo", t2)
        assert [r.masked_enrolment for r in sf.records("dora")] == [False, True]
        dora, erin = sf.pseudonym("dora"), sf.pseudonym("erin")
    ctx, page = login(console, console["op"])
    try:
        page.goto(console["url"] + "/subjects")

        def cell(pseudonym: str) -> str:
            row = page.locator("#subjects tr", has=page.locator(f"code:text-is('{pseudonym}')"))
            return str(row.locator("td.masked").inner_text())

        assert cell(dora) == "2 (1 from a masked image)"
        assert cell(erin) == "1"
    finally:
        ctx.close()
        with open_sf(console["paths"]) as sf:  # the other tests count the fixture's subjects
            sf.erase(pseudonym=dora)
            sf.erase(pseudonym=erin)


def test_erase_a_subject_by_pseudonym(console: dict[str, Any]) -> None:
    ctx, page = login(console, console["op"])
    page.click("text=Subjects")
    before = page.locator("button.erase").count()
    assert before >= 1
    target = page.locator("#subjects code").first.inner_text()
    assert target in console["pseudonyms"].values()
    page.locator("button.erase").first.click()
    assert "erase: 1 template(s) removed" in page.inner_text("#done")
    assert target in page.inner_text("#receipt")
    page.goto(console["url"] + "/subjects")
    assert page.locator("button.erase").count() == before - 1 and target not in page.content()
    page.screenshot(path=str(console["shots"] / "subjects.png"), full_page=True)
    with open_sf(console["paths"]) as sf:
        assert not any(r.pseudonym == target for r in sf.records())
        e = [x for x in sf.audit_entries() if x.operation == "erase"][-1]
        assert e.actor.split(" ")[0] == console["op_id"] and e.subjects == (target,)
    ctx.close()


def test_forms_without_the_csrf_token_do_nothing(console: dict[str, Any]) -> None:
    ctx, page = login(console, console["op"])
    session = {c["name"]: c["value"] for c in ctx.cookies()}["__Host-sf_session"]
    with open_sf(console["paths"]) as sf:
        before = len(sf.records())
        victim = sf.records()[0].pseudonym if before else "0" * 64
    for csrf in ("", "forged"):
        r = httpx.post(console["url"] + "/subjects/erase", data={"pseudonym": victim, "csrf": csrf},
                       cookies={"__Host-sf_session": session}, verify=False)
        assert r.status_code == 401
    with open_sf(console["paths"]) as sf:
        assert len(sf.records()) == before
    ctx.close()


def test_report_page_and_keys_page(console: dict[str, Any]) -> None:
    ctx, page = login(console, console["aud"])  # an auditor may read the report
    page.click("text=Report")
    page.click("#generate")  # a GET only shows the last report; the page's form (a POST) runs one
    page.wait_for_url("**/report")
    assert "may process" in page.inner_text("#status")
    assert page.locator("#rules tr").count() > 5
    page.screenshot(path=str(console["shots"] / "report.png"), full_page=True)
    page.click("text=Keys")
    table = page.inner_text("#apikeys")
    assert "compliance desk" in table and "gate 3" in table and "sfk_" not in page.content()
    assert "consent_issuers" in page.inner_text("#trusted")
    # An auditor's erasure is refused by the guard (CN-16) and shown as such.
    page.click("text=Subjects")
    if page.locator("button.erase").count():
        page.locator("button.erase").first.click()
        assert "CN-16" in page.content()
    ctx.close()


def test_no_face_image_or_template_is_ever_shown_and_the_csp_is_strict(console: dict[str, Any]) -> None:
    ctx, page = login(console, console["op"])
    for path in ("/audit", "/subjects", "/consents", "/keys", "/report"):
        resp = page.goto(console["url"] + path)
        assert resp is not None
        csp = resp.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe" not in csp
        html = page.content()
        assert "data:image" not in html and "<script" not in html.lower()
        srcs = page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src'))")
        assert all(s.startswith("/report/assessment/") for s in srcs), srcs
    ctx.close()


def test_revoking_the_key_ends_its_sessions(console: dict[str, Any]) -> None:
    with open_sf(console["paths"]) as sf:
        info, key = sf.issue_api_key("operator", label="to revoke")
    ctx, page = login(console, key)
    assert page.url.endswith("/audit")
    page.click("text=Keys")
    page.locator(f"tr:has-text('{info.key_id}') button.revoke-key").click()
    page.wait_for_url("**/login")  # its own session ended with it
    page.wait_for_load_state("load")  # the redirect's page, whole, before the screenshot
    assert page.url.endswith("/login")
    page.screenshot(path=str(console["shots"] / "revoked.png"))
    ctx.close()


def test_logging_out_ends_the_session_for_every_copy_of_its_cookie(console: dict[str, Any]) -> None:
    """Logout ends the session on the server: a copy of the cookie taken before (a shared kiosk
    browser, a proxy's log) opens nothing afterwards, in another browser context."""
    ctx, page = login(console, console["op"])
    assert page.url.endswith("/audit")
    cookie = {c["name"]: c for c in ctx.cookies()}["__Host-sf_session"]
    page.click("nav button:has-text('Log out')")
    page.wait_for_url("**/login")
    other = console["browser"].new_context(ignore_https_errors=True)
    other.add_cookies([{"name": "__Host-sf_session", "value": cookie["value"], "url": console["url"]}])
    copy = other.new_page()
    copy.goto(console["url"] + "/audit")
    assert copy.url.endswith("/login")
    other.close()
    ctx.close()
    ctx, page = login(console, console["op"])  # the key itself still logs in afresh
    assert page.url.endswith("/audit")
    ctx.close()


def _form_token(html: str) -> str:
    m = re.search(r"name='csrf' value='([^']+)'", html)
    return m.group(1) if m else ""


def _ended_sessions(paths: Any) -> int:
    """The logouts the audit log records (each one an "apikey" entry)."""
    with open_sf(paths) as sf:
        return sum(e.operation == "apikey" and "console session" in (e.note or "") for e in sf.audit_entries())


def test_logging_in_and_out_keeps_to_the_keys_rate(console: dict[str, Any]) -> None:
    """Login and logout were outside the key's rate: a holder of a key that may read the report,
    at 1 request a second, looped GET /login, POST /login, POST /logout and logged in and out 182
    times in 6 s, each logout an audit entry and a row of ended sessions, while its pages were
    answered 429. Now a login takes from the key's rate as every page does: past it, 429 and no
    cookie; a logout of a live session is not limited (each was a rate-limited login, and is
    recorded ended once), so the log grows by no more than the rate allows."""
    rate = 0.5  # one request every 2 s: a burst of 1
    with open_sf(console["paths"]) as sf:
        key = sf.issue_api_key("auditor", label="rate 0.5", rate=rate)[1]
    before = _ended_sessions(console["paths"])
    logins: list[int] = []
    logouts: list[int] = []
    with httpx.Client(base_url=console["url"], verify=False) as c:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4:
            r = c.post("/login", data={"csrf": _form_token(c.get("/login").text), "api_key": key})
            logins.append(r.status_code)
            page = c.get("/audit")  # the logout form's token, when the rate lets the page through
            logouts.append(c.post("/logout", data={"csrf": _form_token(page.text)} if page.status_code == 200
                                  else {}).status_code)
        elapsed = time.monotonic() - t0
        assert _ended_sessions(console["paths"]) - before <= 1 + rate * elapsed, (logins, logouts)
        assert 429 in logins and logins.count(303) <= 1 + rate * elapsed, logins

        # A logout with its form's token, past the rate, still ends the session (a thief with a
        # copy of the cookie must not keep its owner from logging out), recorded once: a second
        # logout of it ends nothing more.
        time.sleep(1.2 / rate)
        assert c.post("/login", data={"csrf": _form_token(c.get("/login").text), "api_key": key}).status_code == 303
        time.sleep(1.2 / rate)
        ended = _ended_sessions(console["paths"])  # read first: nothing may sit between page and logout
        page = c.get("/keys")
        assert page.status_code == 200
        cookie = c.cookies.get("__Host-sf_session")
        out = c.post("/logout", data={"csrf": _form_token(page.text)})
        assert out.status_code == 303
        assert _ended_sessions(console["paths"]) == ended + 1
        c.post("/logout", data={"csrf": _form_token(page.text)}, cookies={"__Host-sf_session": str(cookie)})
        assert _ended_sessions(console["paths"]) == ended + 1
        time.sleep(1.2 / rate)
        assert c.get("/keys", cookies={"__Host-sf_session": str(cookie)}).status_code == 303  # logged out


def test_a_logout_without_the_forms_csrf_token_ends_nothing(console: dict[str, Any]) -> None:
    """POST /logout never read the form's CSRF token: a page on another origin of the same site
    (another port of the host, a sibling subdomain: SameSite=Strict is per site, not per origin)
    posted to it with the operator's cookie and the session was ended on the server. Now it is
    refused (401) as every form without its token is, nothing is recorded, and the session goes
    on; the console's own Log out button, which carries the token, still ends it."""
    ctx, page = login(console, console["op"])
    assert page.url.endswith("/audit")
    session = {c["name"]: c["value"] for c in ctx.cookies()}["__Host-sf_session"]
    before = _ended_sessions(console["paths"])
    for form in ({}, {"csrf": ""}, {"csrf": "forged"}):
        r = httpx.post(console["url"] + "/logout", data=form, cookies={"__Host-sf_session": session}, verify=False)
        assert r.status_code == 401 and "__Host-sf_session" not in r.headers.get("set-cookie", ""), form
    assert _ended_sessions(console["paths"]) == before
    page.goto(console["url"] + "/keys")
    assert page.url.endswith("/keys")  # the session still works
    page.click("nav button:has-text('Log out')")
    page.wait_for_url("**/login")
    assert _ended_sessions(console["paths"]) == before + 1
    ctx.close()


def test_a_double_click_on_log_in_and_two_tabs_logging_in_at_once_leave_the_browser_logged_in(
        console: dict[str, Any]) -> None:
    """A login form gives out one session for its key however often it is posted, so Chromium,
    double-clicking "Log in", or two tabs of one browser (which share the form's cookie) submitting
    at once, hold that session whichever answer they keep; two browsers at once each get their own.
    No login here ends a session."""
    before = _ended_sessions(console["paths"])
    ctx = console["browser"].new_context(ignore_https_errors=True)
    page = ctx.new_page()
    page.goto(console["url"] + "/login")
    page.fill("#api_key", console["aud"])
    page.dblclick("#login")
    # The second click's post aborts the first's navigation (net::ERR_ABORTED), which ends a
    # wait begun before it: wait again for the navigation that stays.
    for attempt in range(3):
        try:
            page.wait_for_url(re.compile(r"/audit$"))  # the answer kept: the form's one session
            break
        except sync_api.Error as exc:
            if "ERR_ABORTED" not in str(exc) or attempt == 2:
                raise
    page.goto(console["url"] + "/audit")
    assert page.url.endswith("/audit"), page.url
    ctx.close()
    for tabs_in_one_browser in (True, False):
        contexts = [console["browser"].new_context(ignore_https_errors=True) for _ in range(1 if tabs_in_one_browser
                                                                                          else 2)]
        pages = [contexts[0].new_page(), contexts[-1].new_page()]
        for p in pages:
            p.goto(console["url"] + "/login")
            p.fill("#api_key", console["aud"])
        for p in pages:
            p.click("#login", no_wait_after=True)
        for p in pages:  # a tab whose post went after the other's answer is told its form expired
            p.wait_for_url(re.compile(r"/audit$|/login\?error=expired$"))
        for p in pages:
            p.goto(console["url"] + "/audit")
            assert p.url.endswith("/audit"), (tabs_in_one_browser, p.url)
        for c in contexts:
            c.close()
    assert _ended_sessions(console["paths"]) == before
