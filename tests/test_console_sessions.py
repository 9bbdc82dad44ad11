"""Console sessions against someone else's cookie: a copy held by a thief, a cookie planted before
login, one key's rate shared by its console session and both of its header spellings, and a
logout that ends every copy even while the key table cannot be written."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import open_sf  # noqa: E402
from service_support import console_login, csrf_of, keyed_client  # noqa: E402


def test_a_thief_holding_a_copied_cookie_cannot_stop_its_owner_logging_out(tmp_path: Path) -> None:
    """A thief spends the key's rate through a copied cookie: the owner's logout still ends it."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1)
    with client:
        assert console_login(client, op).status_code == 303
        cookie = str(client.cookies.get("__Host-sf_session"))
        time.sleep(1.1)
        page = client.get("/keys")  # the owner's page, with the logout form's token
        assert page.status_code == 200
        # The thief, with the copy, spends the key's rate until it is answered 429.
        spent = any(client.get("/", cookies={"__Host-sf_session": cookie}, follow_redirects=False).status_code == 429
                    for _ in range(50))
        out = client.post("/logout", data={"csrf": csrf_of(page.text)}, cookies={"__Host-sf_session": cookie},
                          follow_redirects=False)
        time.sleep(1.1)  # the rate lets the thief's next page through, if the session lives
        later = client.get("/audit", cookies={"__Host-sf_session": cookie}, follow_redirects=False)
    assert spent and out.status_code == 303
    assert later.status_code == 303 and later.headers["location"] == "/login", later.status_code
    with open_sf(ws) as sf:
        assert sum("console session" in (e.note or "") for e in sf.audit_entries()) == 1


def test_a_session_planted_before_login_is_never_given_the_victims_key(tmp_path: Path) -> None:
    """An attacker plants their auditor session cookie; the victim's login gets a new one (and
    ends the planted one, as any earlier session of the browser)."""
    client, ws, (aud, op) = keyed_client(tmp_path, "auditor", "operator", rate=1000)
    with open_sf(ws) as sf:
        op_id = sf.authenticate(op).key_id
    with client:
        assert console_login(client, aud).status_code == 303
        planted = client.cookies.get("__Host-sf_session")
        assert planted
        r = console_login(client, op)  # the victim, carrying the planted cookie
        assert r.status_code == 303
        fresh = client.cookies.get("__Host-sf_session")
        assert fresh and fresh != planted
        client.cookies.set("__Host-sf_session", planted)  # the attacker keeps using the planted cookie
        assert client.get("/keys", follow_redirects=False).headers.get("location") == "/login"
        client.cookies.clear()
        assert console_login(client, aud).status_code == 303  # and logs in again, as themselves
        page = client.get("/keys")
        assert page.status_code == 200 and "(auditor)" in page.text
        out = client.post("/keys/revoke", data={"csrf": csrf_of(page.text), "key_id": op_id},
                          follow_redirects=False)
    assert out.status_code == 403, out.status_code
    with open_sf(ws) as sf:
        assert sf.authenticate(op).key_id == op_id


def test_one_key_has_one_rate_whichever_way_it_is_presented(tmp_path: Path) -> None:
    """A key holder spreads requests over X-API-Key, Bearer and a console session: one rate, 429."""
    client, ws, (key,) = keyed_client(tmp_path, "operator", rate=0.01)
    with client:
        assert console_login(client, key).status_code == 303  # spends the key's one token
        statuses = [client.post("/v1/purge", headers=h).status_code
                    for h in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"})]
        statuses.append(client.get("/audit", follow_redirects=False).status_code)
    assert statuses == [429, 429, 429], statuses


def test_a_logout_while_another_process_holds_the_key_table_ends_every_copy_of_the_cookie(tmp_path: Path) -> None:
    """Another process (a `safeface apikey` command, a rekey) holds apikeys.db's write lock: the
    owner's logout waited out the busy timeout on the worker's event loop (every other request of
    the worker with it), then said "logged out here only", and a copy of the cookie stayed live
    until the key was revoked. The end is on the audit log at once, which every worker checks, and
    the key table is not waited for: the copy is refused while the table is still held."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        cookie = str(client.cookies.get("__Host-sf_session"))
        form = {"csrf": csrf_of(client.get("/keys").text)}
        with closing(sqlite3.connect(ws.apikeys, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            out = client.post("/logout", data=form, follow_redirects=False)
            copy = client.get("/", cookies={"__Host-sf_session": cookie}, follow_redirects=False)
            holder.execute("ROLLBACK")
    assert out.status_code == 303, out.text[:300]
    assert copy.status_code == 303 and copy.headers["location"] == "/login", copy.headers.get("location")


@pytest.mark.parametrize("store, table", [("apikeys", "ended_sessions"), ("audit", "entries")])
def test_a_logout_one_store_refuses_still_ends_every_copy_of_the_cookie(tmp_path: Path, store: str, table: str) -> None:
    """Whoever may write apikeys.db adds a trigger to it (each write of the table is then refused):
    the owner's logout said "logged out here only" and a thief's copy of the cookie read on. The
    audit log refusing writes instead (a trigger in audit.db; a full witness volume would too):
    the logout's row in the key table still ends the session for every copy."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        cookie = str(client.cookies.get("__Host-sf_session"))
        form = {"csrf": csrf_of(client.get("/keys").text)}
        with closing(sqlite3.connect(getattr(ws, store))) as db, db:
            db.execute(f"CREATE TRIGGER keep BEFORE INSERT ON {table} BEGIN SELECT 1; END")
        out = client.post("/logout", data=form, follow_redirects=False)
        copy = client.get("/audit", cookies={"__Host-sf_session": cookie}, follow_redirects=False)
    assert out.status_code == 303, out.text[:300]
    assert copy.status_code == 303 and copy.headers["location"] == "/login", copy.status_code


def test_a_session_cookie_planted_for_the_whole_site_is_not_read(tmp_path: Path) -> None:
    """A page on another host of the same site (a sibling subdomain the attacker runs) sets its own
    console session for the whole domain (`Domain=example.com`): the browser sends both, and the
    console read the later one, so the operator worked in the planter's session, its actions on
    record under the planter's key. The console's cookies carry the __Host- prefix, which a browser
    lets no other host and no Domain attribute set, and a cookie of another name is not read."""
    client, ws, (aud, op) = keyed_client(tmp_path, "auditor", "operator", rate=1000)
    with client:
        assert console_login(client, aud).status_code == 303
        planted = client.cookies.get("__Host-sf_session")  # (the login form's cookie stays beside it)
        client.cookies.clear()
        r = console_login(client, op)
        (set_session,) = [v for v in r.headers.get_list("set-cookie") if "max-age=0" not in v.lower()
                          and "=;" not in v and '=""' not in v]
        name, victim = set_session.split(";")[0].split("=", 1)
        client.cookies.clear()
        page = client.get("/keys", headers={"cookie": f"{name}={victim}; sf_session={planted}"})
    assert "(operator)" in page.text, page.text[:300]
    attributes = [a.strip().lower() for a in set_session.split(";")[1:]]
    assert name.startswith("__Host-") and "secure" in attributes and "path=/" in attributes, set_session
    assert not any(a.startswith("domain=") for a in attributes), set_session


def test_a_session_left_unused_ends_and_each_use_extends_it_up_to_its_last_hour(tmp_path: Path) -> None:
    """A console cookie was a bearer token for its whole 8 hours: one copied from a browser left
    open (or a proxy's log) worked all day. A session unused for 30 minutes ends now; each use
    extends it, but never past 8 hours from its login."""
    from policy_support import Clock, make_workspace

    from safeface.errors import AuthenticationError
    from safeface.workspace.apikeys import IDLE_SECONDS, SESSION_SECONDS

    ws = make_workspace(tmp_path / "ws")
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        _, key = sf.issue_api_key("operator", label="console")
        _, left = sf.open_session(key)
        _, kept = sf.open_session(key)
        used = 0
        while used + 25 * 60 < SESSION_SECONDS:  # the operator at work: a page every 25 minutes
            clock.advance(minutes=25)
            used += 25 * 60
            sf.session(kept)
        with pytest.raises(AuthenticationError, match="not used for 30 minutes"):
            sf.session(left)
        clock.advance(seconds=SESSION_SECONDS - used + 1)
        with pytest.raises(AuthenticationError, match="expired"):
            sf.session(kept)
        _, fresh = sf.open_session(key)
        clock.advance(seconds=IDLE_SECONDS - 1)
        sf.session(fresh)  # within the idle time: still open
        clock.advance(seconds=IDLE_SECONDS + 1)
        with pytest.raises(AuthenticationError, match="not used for 30 minutes"):
            sf.session(fresh)


def test_a_session_use_edited_into_the_key_table_by_hand_revives_nothing(tmp_path: Path) -> None:
    """Whoever may write apikeys.db (no passphrase needed) moves an idle session's last use to now,
    to bring a copied cookie back: the use is MACed under the keyring, so the edit counts for
    nothing, and deleting the use only makes the session idle sooner."""
    from policy_support import Clock, make_workspace

    from safeface.errors import AuthenticationError

    ws = make_workspace(tmp_path / "ws")
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        _, key = sf.issue_api_key("operator", label="console")
        _, cookie = sf.open_session(key)
        clock.advance(minutes=20)
        sf.session(cookie)  # a use, recorded
        clock.advance(minutes=45)
        with closing(sqlite3.connect(ws.apikeys)) as db, db:
            assert db.execute("UPDATE session_uses SET used = ?", (int(clock.now.timestamp()),)).rowcount == 1
        with pytest.raises(AuthenticationError, match="not used for 30 minutes"):
            sf.session(cookie)


def test_a_session_under_the_cookies_old_name_can_be_ended(tmp_path: Path) -> None:
    """Sessions opened before the cookie's rename (sf_session) showed the login page and no logout
    button, so a copy of one, sent under the new name, stayed valid for hours. The login page now
    offers to end it, and a logout ends it too, with the session under the new name."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        old = str(client.cookies.get("__Host-sf_session"))
        client.cookies.clear()
        client.cookies.set("sf_session", old)  # the browser, from before the upgrade
        offered = client.get("/login")
        assert "id='end-session'" in offered.text, offered.text[:400]
        end_form = offered.text.split("id='still-open'")[1]
        out = client.post("/logout", data={"csrf": csrf_of(end_form)}, follow_redirects=False)
        copy = client.get("/audit", cookies={"__Host-sf_session": old}, follow_redirects=False)
        # The same from a logged-in browser that still holds the old cookie: one logout, both ended.
        client.cookies.clear()
        assert console_login(client, op).status_code == 303
        before = str(client.cookies.get("__Host-sf_session"))  # opened before the upgrade
        client.cookies.clear()
        assert console_login(client, op).status_code == 303  # and a login since
        after = str(client.cookies.get("__Host-sf_session"))
        client.cookies.set("sf_session", before)
        both = client.post("/logout", data={"csrf": csrf_of(client.get("/keys").text)}, follow_redirects=False)
        left = [client.get("/audit", cookies={"__Host-sf_session": c}, follow_redirects=False).headers.get("location")
                for c in (before, after)]
    assert out.status_code == 303 and copy.status_code == 303 and copy.headers["location"] == "/login"
    assert both.status_code == 303 and left == ["/login", "/login"], left


def test_a_logout_neither_store_can_record_still_ends_the_session_in_this_process(tmp_path: Path) -> None:
    """With the audit log, the key table and the logouts folder refusing writes, a logout ended nothing, and a
    copy of the cookie went on reading pages and downloading receipts. The service process that
    was asked refuses the session from then on, as do the other processes of its host while it
    runs (processes on other hosts cannot know: the page says so),
    and the browser keeps its cookie and a form to log out again once the stores work."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        cookie = str(client.cookies.get("__Host-sf_session"))
        form = {"csrf": csrf_of(client.get("/keys").text)}
        for db_path, table in ((ws.apikeys, "ended_sessions"), (ws.audit, "entries")):
            with closing(sqlite3.connect(db_path)) as db, db:
                db.execute(f"CREATE TRIGGER keep BEFORE INSERT ON {table} BEGIN SELECT 1; END")
        (ws.root / "console-logouts").write_text("")  # nor can the logouts folder be made
        out = client.post("/logout", data=form, follow_redirects=False)
        copies = [client.get(p, cookies={"__Host-sf_session": cookie}, follow_redirects=False)
                  for p in ("/audit", "/receipts/aaaaaaaaaaaa.json", "/report/compliance.json")]
        for db_path in (ws.apikeys, ws.audit):
            with closing(sqlite3.connect(db_path)) as db, db:
                db.execute("DROP TRIGGER keep")
        again = client.post("/logout", data={"csrf": csrf_of(out.text)}, follow_redirects=False)
    assert out.status_code == 503 and "processes on other hosts" in out.text, out.text[:400]
    assert [(r.status_code, r.headers.get("location")) for r in copies] == [(303, "/login")] * 3
    assert again.status_code == 303, again.text[:300]
    with open_sf(ws) as sf:
        assert sum("console session" in (e.note or "") for e in sf.audit_entries()) == 1


def test_an_old_name_cookie_planted_by_another_host_cannot_log_the_operator_out(tmp_path: Path) -> None:
    """Any host of the site may set a cookie named sf_session (no prefix), which a logout now reads:
    a sibling host plants its own session under it, and posts /logout from its page with that
    session's token (the operator's browser sends both cookies). Only the planter's session ends;
    the operator's goes on, its cookie not cleared."""
    client, ws, (aud, op) = keyed_client(tmp_path, "auditor", "operator", rate=1000)
    with client:
        assert console_login(client, aud).status_code == 303
        planted = str(client.cookies.get("__Host-sf_session"))
        token = csrf_of(client.get("/keys").text)  # the planter reads its own session's token
        client.cookies.clear()
        assert console_login(client, op).status_code == 303
        client.cookies.set("sf_session", planted)
        r = client.post("/logout", data={"csrf": token}, follow_redirects=False)
        still = client.get("/keys", follow_redirects=False)
        gone = client.get("/keys", cookies={"__Host-sf_session": planted}, follow_redirects=False)
    assert r.status_code == 303 and "__Host-sf_session" not in r.headers.get("set-cookie", ""), r.headers
    assert still.status_code == 200 and "(operator)" in still.text, still.status_code
    assert gone.status_code == 303


def test_a_page_on_another_host_of_the_site_cannot_use_the_session_behind_the_operators_back(
        tmp_path: Path) -> None:
    """SameSite=Strict lets the requests of a sibling host's page carry the session (one site): a
    page there loading console addresses as images every few minutes kept an unattended session
    from ever idling out, and spent its key's rate (429s for the operator). Browsers name such
    requests (Sec-Fetch-Site: same-site), which are answered as without a session; a link followed
    from there (a top-level navigation) still opens the console, and the console's own requests
    still work."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    sibling = {"sec-fetch-site": "same-site", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}
    link = {"sec-fetch-site": "same-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    framed = {**link, "sec-fetch-dest": "iframe"}
    own = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}
    with client:
        assert console_login(client, op).status_code == 303
        got = {name: client.get("/audit", headers=h, follow_redirects=False)
               for name, h in (("sibling", sibling), ("link", link), ("framed", framed), ("own", own))}
    assert [got[n].headers.get("location") for n in ("sibling", "framed")] == ["/login", "/login"]
    assert got["link"].status_code == 200 and got["own"].status_code == 200, (got["link"], got["own"])


def test_a_key_store_that_refuses_the_use_record_leaves_the_session_working(tmp_path: Path) -> None:
    """A trigger added to apikeys.db by hand makes each of its writes refused: the first use to
    record (a minute after the login) then failed the page with an error about PostgreSQL. The use
    goes unrecorded instead, and the session works on until it idles out from its last recorded use."""
    from policy_support import Clock, make_workspace

    from safeface.errors import AuthenticationError

    ws = make_workspace(tmp_path / "ws")
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        _, key = sf.issue_api_key("operator", label="console")
        _, cookie = sf.open_session(key)
        with closing(sqlite3.connect(ws.apikeys)) as db, db:
            db.execute("CREATE TRIGGER keep BEFORE INSERT ON ended_sessions BEGIN SELECT 1; END")
        clock.advance(minutes=20)
        assert sf.session(cookie).role == "operator"
        clock.advance(minutes=20)  # 40 minutes after the login, the only use on record
        with pytest.raises(AuthenticationError, match="not used for 30 minutes"):
            sf.session(cookie)


def test_requests_that_open_no_page_do_not_keep_a_session_from_idling_out(tmp_path: Path) -> None:
    """A sibling host's page posts /logout without the form's token (refused: 401), or loads
    /login with the session under the cookie's old name, every few minutes: each read the session
    and recorded a use, so an unattended session (or a copy of it) never idled out."""
    import datetime as dt

    from policy_support import Clock

    from safeface.errors import AuthenticationError

    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    past = Clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=29))
    with open_sf(ws, clock=past) as sf:
        _, cookie = sf.open_session(op)  # the operator's last page: 29 minutes ago
    with client:
        refused = client.post("/logout", data={"csrf": "x"}, cookies={"__Host-sf_session": cookie},
                              follow_redirects=False)
        client.get("/login", cookies={"sf_session": cookie})
    assert refused.status_code == 401, refused.status_code
    later = Clock(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5))
    with open_sf(ws, clock=later) as sf, pytest.raises(AuthenticationError, match="not used for 30 minutes"):
        sf.session(cookie)



def test_a_sibling_hosts_page_cannot_use_the_session_through_a_prefetch(tmp_path: Path) -> None:
    """A sibling host's page lists console addresses in its speculation rules: the browser fetches
    them ahead (Sec-Purpose: prefetch, or prefetch;prerender), with the session, as a top-level
    navigation from there, with no one following a link. Re-listed every few minutes, they kept an
    unattended session from idling out and spent its key's rate; they use no session now."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    link = {"sec-fetch-site": "same-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    with client:
        assert console_login(client, op).status_code == 303
        got = [client.get("/audit", headers={**link, "sec-purpose": p}, follow_redirects=False)
               for p in ("prefetch", "prefetch;prerender")]
        followed = client.get("/audit", headers=link, follow_redirects=False)
    assert [r.headers.get("location") for r in got] == ["/login", "/login"], [r.status_code for r in got]
    assert followed.status_code == 200


@pytest.mark.parametrize("used", [10 ** 11, "'later'"])
def test_a_session_use_edited_far_ahead_does_not_stop_later_uses_being_recorded(tmp_path: Path, used: object) -> None:
    """Whoever may write apikeys.db sets a session's last use far ahead (its MAC then fails, so it
    counts as no use): the record of each later use kept only a later value, so none was recorded
    again and the operator was logged out 30 minutes after each login however busy. A use that
    fails its MAC is replaced by the next use."""
    from policy_support import Clock, make_workspace

    ws = make_workspace(tmp_path / "ws")
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        _, key = sf.issue_api_key("operator", label="console")
        _, cookie = sf.open_session(key)
        clock.advance(minutes=5)
        sf.session(cookie)  # a use, recorded
        with closing(sqlite3.connect(ws.apikeys)) as db, db:
            assert db.execute(f"UPDATE session_uses SET used = {used}").rowcount == 1
        for _ in range(4):  # the operator at work: a page every 20 minutes
            clock.advance(minutes=20)
            assert sf.session(cookie).role == "operator"


def test_navigations_a_sibling_hosts_page_makes_do_not_keep_a_session_from_idling_out(tmp_path: Path) -> None:
    """A link followed from a sibling host's page opens the console, but such a navigation can be
    made with no one there: a page that opened a window once keeps navigating it to console
    addresses, or navigates itself to a receipt's download (a download leaves the page where it
    is), every few minutes, and the browser sends no Sec-Fetch-User that every browser would set
    for a click. Each navigation from there is answered, but is not a use: only the console's own
    pages (and addresses typed or bookmarked) keep the session from idling out."""
    import datetime as dt

    from policy_support import Clock

    from safeface.errors import AuthenticationError

    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    past = Clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=29))
    with open_sf(ws, clock=past) as sf:
        _, cookie = sf.open_session(op)  # the operator's last page: 29 minutes ago
    link = {"sec-fetch-site": "same-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    with client:
        followed = client.get("/audit", headers=link, cookies={"__Host-sf_session": cookie}, follow_redirects=False)
    assert followed.status_code == 200, followed.status_code
    later = Clock(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5))
    with open_sf(ws, clock=later) as sf, pytest.raises(AuthenticationError, match="not used for 30 minutes"):
        sf.session(cookie)


def test_a_second_login_in_the_same_browser_ends_its_earlier_session(tmp_path: Path) -> None:
    """A browser that holds a live session logs in again (another key, or the same one): the
    earlier session stayed live until it idled out, so a copy of its cookie (a proxy's log, a
    shared machine's profile) read on for half an hour after its owner had moved on. The login
    ends it first, on the audit log as a logout; a login with a wrong key ends nothing."""
    client, ws, (op, aud) = keyed_client(tmp_path, "operator", "auditor", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        first = str(client.cookies.get("__Host-sf_session"))
        wrong = console_login(client, "sfk_000000000000_" + "x" * 43)
        kept = client.get("/audit", follow_redirects=False)
        assert console_login(client, aud).status_code == 303
        second = str(client.cookies.get("__Host-sf_session"))
        new = client.get("/audit", follow_redirects=False)
        client.cookies.set("__Host-sf_session", first)  # a copy of the earlier cookie
        old = client.get("/audit", follow_redirects=False)
    assert wrong.headers["location"] == "/login?error=invalid" and kept.status_code == 200, kept.status_code
    assert second != first and new.status_code == 200 and "(auditor)" in new.text
    assert old.status_code == 303 and old.headers["location"] == "/login", old.status_code
    with open_sf(ws) as sf:
        assert sum("console session" in (e.note or "") for e in sf.audit_entries()) == 1


def test_without_sec_fetch_headers_a_request_from_another_host_uses_no_session(tmp_path: Path) -> None:
    """A browser that sends no Sec-Fetch headers (Safari before 16.4) let a page on another host of
    the site load console addresses as images or frames, with the session (SameSite=Strict lets a
    same-site request carry it): an unattended session never idled out and its key's rate was
    spent. Such a request names that host in its Referer (or Origin) and uses no session now; the
    console's own requests (its Referer the console's host, or that a proxy forwards as
    X-Forwarded-Host) and those with neither header (an address typed, a script) still do."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    foreign = [{"referer": "https://wiki.example.test/page"}, {"origin": "https://wiki.example.test"},
               {"origin": "null"}, {"referer": "https://testserver.example.test/"}]
    honest = [{}, {"referer": "https://testserver/audit"},
              {"origin": "https://testserver", "referer": "https://testserver/keys"},
              {"host": "10.0.0.5:8000", "x-forwarded-host": "console.example.test",
               "referer": "https://console.example.test/audit"},
              {"host": "10.0.0.5:8000", "forwarded": 'for=192.0.2.7;proto=https;host="console.example.test"',
               "origin": "https://console.example.test"}]
    with client:
        assert console_login(client, op).status_code == 303
        refused = [client.get("/audit", headers=h, follow_redirects=False) for h in foreign]
        served = [client.get("/audit", headers=h, follow_redirects=False) for h in honest]
    assert [r.headers.get("location") for r in refused] == ["/login"] * len(foreign), [r.status_code for r in refused]
    assert [r.status_code for r in served] == [200] * len(honest)


def test_a_logout_neither_store_can_record_ends_the_session_for_every_process_of_the_workspace(
        tmp_path: Path) -> None:
    """With both the audit log and the key table refusing writes, a logout ended the session only
    in the process that was asked: a copy of the cookie, sent to another worker of the service,
    read on. The logout is kept in a small file of its own in the workspace (MACed, written whole),
    which every process reads, and which still ends it once the stores work again; one written by
    hand, without the keyring, ends nothing."""
    from safeface.errors import AuthenticationError
    from safeface.workspace.apikeys import session_ref

    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        cookie = str(client.cookies.get("__Host-sf_session"))
        with open_sf(ws) as sf:
            _, other = sf.open_session(op)  # a second session, whose logout is forged below
        form = {"csrf": csrf_of(client.get("/keys").text)}
        for db_path, table in ((ws.apikeys, "ended_sessions"), (ws.audit, "entries")):
            with closing(sqlite3.connect(db_path)) as db, db:
                db.execute(f"CREATE TRIGGER keep BEFORE INSERT ON {table} BEGIN SELECT 1; END")
        (ws.root / "console-logouts" / f"1-{'0' * 64}.json").mkdir(parents=True)  # a folder of a past logout's name
        out = client.post("/logout", data=form, follow_redirects=False)
    for db_path in (ws.apikeys, ws.audit):  # the stores repaired: nothing on them ended the session
        with closing(sqlite3.connect(db_path)) as db, db:
            db.execute("DROP TRIGGER keep")
    assert out.status_code == 303, out.text[:400]
    (written,) = (p for p in (ws.root / "console-logouts").iterdir() if p.is_file())
    doc = {**json.loads(written.read_text()), "session": session_ref(other), "until": int(other.split(".")[1])}
    (written.parent / f"{doc['until']}-{doc['session']}.json").write_text(json.dumps(doc))  # the MAC is the other's
    with open_sf(ws) as sf:  # another process of the service
        with pytest.raises(AuthenticationError, match="logged out"):
            sf.session(cookie)
        assert sf.session(other).role == "operator"


def test_without_sec_fetch_headers_a_request_naming_no_page_of_the_console_keeps_no_session_alive(
        tmp_path: Path) -> None:
    """A sibling host's page in a browser without Sec-Fetch headers loads console addresses with
    its Referer withheld (referrerpolicy="no-referrer"): such a request looks like an address typed
    and is answered with the session, but it is no use of it, so it no longer keeps an unattended
    session from idling out. A request whose Referer is a console page (a link or form there) is
    a use, as before."""
    import datetime as dt

    from policy_support import Clock

    from safeface.errors import AuthenticationError

    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    past = Clock(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=29))
    with open_sf(ws, clock=past) as sf:
        _, idle = sf.open_session(op)  # the operator's last page: 29 minutes ago
        _, busy = sf.open_session(op)
    with client:
        client.cookies.set("__Host-sf_session", idle)
        withheld = client.get("/audit", follow_redirects=False)
        client.cookies.set("__Host-sf_session", busy)
        clicked = client.get("/audit", headers={"referer": "https://testserver/keys"}, follow_redirects=False)
    assert withheld.status_code == 200 and clicked.status_code == 200, (withheld.status_code, clicked.status_code)
    later = Clock(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5))
    with open_sf(ws, clock=later) as sf:
        assert sf.session(busy).role == "operator"
        with pytest.raises(AuthenticationError, match="not used for 30 minutes"):
            sf.session(idle)


def test_a_login_form_still_works_after_the_login_page_is_loaded_again(tmp_path: Path) -> None:
    """The login page set a new form token each time it was loaded: a second tab's login page (or
    a sibling host's page loading /login as an image, over and over) made the form already open
    answer "the login form expired", so the operator could not log in. A token the browser holds
    is kept for every form it shows."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        first = csrf_of(client.get("/login").text)  # the first tab
        # a second tab's login page, or a sibling host's image of it
        client.get("/login", headers={"sec-fetch-site": "same-site", "sec-fetch-dest": "image"})
        out = client.post("/login", data={"csrf": first, "api_key": op}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/audit", out.headers.get("location")


def test_a_logout_kept_in_a_file_still_ends_the_session_once_the_file_has_a_second_name(tmp_path: Path) -> None:
    """A logout kept in the logouts folder was refused as soon as its file had a second name, and
    the session lived again: a snapshot of the workspace made with hard links (cp -al, rsnapshot),
    or a hard link any local user may make where the kernel allows it (the folder is searchable by
    all). Its MAC, not its one name, says it is genuine: a second name ends the session still."""
    import datetime as dt
    import os

    from safeface.errors import AuthenticationError

    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with open_sf(ws) as sf:
        _, cookie = sf.open_session(op)
        assert sf._apikeys.end_session_in_file(cookie, dt.datetime.now(dt.timezone.utc))
    (written,) = (ws.root / "console-logouts").iterdir()
    os.link(written, tmp_path / "snapshot.json")
    with open_sf(ws) as sf, pytest.raises(AuthenticationError, match="logged out"):
        sf.session(cookie)


def test_without_sec_fetch_headers_a_malformed_referer_or_origin_is_another_hosts(tmp_path: Path) -> None:
    """A Referer or Origin that is no URL (an unclosed IPv6 bracket) failed every console page
    with a server error, the exception in the service's log, whoever sent it. It names no host of
    the console's: the request uses no session, as one from another host."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        out = [client.get("/audit", headers=h, follow_redirects=False)
               for h in ({"referer": "https://[testserver/audit"}, {"origin": "https://[::1"})]
    assert [(r.status_code, r.headers.get("location")) for r in out] == [(303, "/login")] * 2


def test_without_sec_fetch_headers_a_plain_http_page_of_the_consoles_host_uses_no_session(tmp_path: Path) -> None:
    """The console's host over plain HTTP is another origin (one a network attacker may write,
    before any redirect to HTTPS), and a browser without Sec-Fetch headers sends it the session
    cookie all the same (same-site, the scheme aside): its Referer or Origin, naming the
    console's host, was taken as the console's own, and its images kept an unattended session
    from idling out. Only an https page is the console's, or an http one on the loopback host."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        out = [client.get("/audit", headers=h, follow_redirects=False)
               for h in ({"referer": "http://testserver/audit"}, {"origin": "http://testserver"},
                         {"host": "localhost:8000", "referer": "http://localhost:8000/keys"},
                         {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"})]
    assert [r.headers.get("location") for r in out[:2]] == ["/login"] * 2, [r.status_code for r in out]
    assert [r.status_code for r in out[2:]] == [200] * 2


def test_a_login_posted_from_another_origin_cannot_end_the_operators_session(tmp_path: Path) -> None:
    """Cookies are not kept apart by port: a page on another port of the console's host (another
    service there, one page of it an attacker's) may set the console's __Host- login token, then
    post the login form with it and its own key. The operator's session was ended (a logout on
    record) and the browser logged in as the attacker's key. A login is taken only from the
    console's own origin (Sec-Fetch-Site, or without it the Origin and Referer)."""
    client, ws, (op, other) = keyed_client(tmp_path, "operator", "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303
        mine = str(client.cookies.get("__Host-sf_session"))
        planted = "A" * 32
        client.cookies.set("__Host-sf_login", planted)
        out = [client.post("/login", data={"csrf": planted, "api_key": other}, headers=h, follow_redirects=False)
               for h in ({"sec-fetch-site": "same-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"},
                         {"origin": "https://testserver:9443"})]
        after = client.get("/audit", follow_redirects=False)
    assert [r.headers.get("location") for r in out] == ["/login?error=expired"] * 2, [r.status_code for r in out]
    assert str(client.cookies.get("__Host-sf_session")) == mine and after.status_code == 200
    with open_sf(ws) as sf:
        assert not any("console session" in (e.note or "") for e in sf.audit_entries())


def test_a_login_form_submitted_twice_leaves_no_session_held_by_no_browser(tmp_path: Path) -> None:
    """A double click posts one login form twice at the same instant, both with the browser's
    cookies as they were before either answer: each opened a session, the browser kept one
    answer's cookie, and the other session stayed live, held by no browser, until it idled out. A
    form gives out one session for its key now, however often it is posted, so the browser holds it
    whichever answer it keeps; one logged out since is not given out again. Two browsers logging in
    at once, each with its own form, get a session each."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        token = csrf_of(client.get("/login").text)
        form = str(client.cookies.get("__Host-sf_login"))
        answers = []
        for _ in range(2):  # each click with the cookies of before the first answer
            client.cookies.clear()
            client.cookies.set("__Host-sf_login", form)
            answers.append(client.post("/login", data={"csrf": token, "api_key": op}, follow_redirects=False))
        opened = [a.cookies.get("__Host-sf_session") for a in answers]
        browsers = []
        for _ in range(2):  # two browsers, each with its own login form open
            client.cookies.clear()
            browsers.append((csrf_of(client.get("/login").text), str(client.cookies.get("__Host-sf_login"))))
        for token_b, form_b in browsers:  # submitted one after the other, neither answer seen by the other
            client.cookies.clear()
            client.cookies.set("__Host-sf_login", form_b)
            assert client.post("/login", data={"csrf": token_b, "api_key": op},
                               follow_redirects=False).status_code == 303
            opened.append(client.cookies.get("__Host-sf_session"))
        pages = []
        for cookie in opened:
            client.cookies.clear()
            client.cookies.set("__Host-sf_session", str(cookie))
            pages.append(client.get("/audit", follow_redirects=False).status_code)
        client.post("/logout", data={"csrf": csrf_of(client.get("/audit").text)}, follow_redirects=False)
        client.cookies.clear()
        client.cookies.set("__Host-sf_login", browsers[1][1])  # that browser's form, posted again after its logout
        again = client.post("/login", data={"csrf": browsers[1][0], "api_key": op}, follow_redirects=False)
    assert [a.status_code for a in answers] == [303, 303] and None not in opened, [a.status_code for a in answers]
    assert opened[0] == opened[1] and len(set(opened)) == 3 and pages == [200] * 4, pages
    assert again.status_code == 303 and again.cookies.get("__Host-sf_session") not in (None, opened[3])
    with open_sf(ws) as sf:
        assert sum("console session" in (e.note or "") for e in sf.audit_entries()) == 1  # the logout's


def test_one_login_form_racing_on_two_handles_gives_out_one_session_and_two_forms_two(tmp_path: Path) -> None:
    """Two submissions of one login form reach two processes of the service at the same instant
    (two handles on the key store, each its own connection): both give out the same session. Two
    browsers' forms racing the same way get a session each."""
    import datetime as dt
    import threading

    from safeface.workspace.apikeys import ApiKeys

    now = dt.datetime.now(dt.timezone.utc)
    handles = [ApiKeys(tmp_path / "apikeys.db", b"k" * 32) for _ in range(2)]
    try:
        _, key = handles[0].issue("operator", "console", None, None, now)
        for forms in (("one form", "one form"), ("browser a", "browser b")):
            start, cookies = threading.Barrier(2), ["", ""]

            def submit(i: int) -> None:
                start.wait()
                cookies[i] = handles[i].open_session(key, now, forms[i])[1]

            threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert all(cookies) and (cookies[0] == cookies[1]) == (forms[0] == forms[1]), cookies
    finally:
        for h in handles:
            h.close()


def test_logins_past_the_keys_rate_record_no_login_form(tmp_path: Path) -> None:
    """Each login form that gives out a session is recorded for its life (so a second post of it
    gives out the same one): a holder of a key at 1 request a second, posting logins with forms of
    its own making as fast as it liked, added a row at each post, the 429s' too. Only a login the
    rate lets in records its form."""
    import secrets

    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1)
    answers = []
    with client:
        for _ in range(12):
            token = secrets.token_urlsafe(24)
            client.cookies.clear()
            client.cookies.set("__Host-sf_login", token)
            answers.append(client.post("/login", data={"csrf": token, "api_key": op},
                                       follow_redirects=False).status_code)
    with closing(sqlite3.connect(ws.apikeys)) as db:
        rows = db.execute("SELECT COUNT(*) FROM spent_logins WHERE session_until > 0").fetchone()[0]  # not the
        forms = db.execute("SELECT COUNT(*) FROM spent_logins WHERE session_until = 0").fetchone()[0]  # keys' rows
    assert 429 in answers and rows == forms == answers.count(303), (answers, rows, forms)


def test_a_login_forms_row_edited_by_hand_gives_out_no_session_past_its_hours(tmp_path: Path) -> None:
    """The session a login form gave out is made again from its row (its end and nonce) when the
    form is posted again. Whoever may write apikeys.db sets that end years ahead, or to garbage:
    the service must not sign a cookie past SESSION_SECONDS from now; the post gets a new session."""
    import datetime as dt

    from safeface.workspace.apikeys import SESSION_SECONDS, ApiKeys, session_until

    now = dt.datetime.now(dt.timezone.utc)
    keys = ApiKeys(tmp_path / "apikeys.db", b"k" * 32)
    try:
        _, key = keys.issue("operator", "console", None, None, now)
        first = keys.open_session(key, now, "form")[1]
        assert keys.open_session(key, now, "form")[1] == first  # posted again: the same session
        for end in (session_until(first) + 10 * 365 * 86400, "soon", -1):
            with closing(sqlite3.connect(tmp_path / "apikeys.db")) as db, db:
                db.execute("UPDATE spent_logins SET session_until = ?", (end,))
            cookie = keys.open_session(key, now, "form")[1]
            assert cookie != first and session_until(cookie) <= now.timestamp() + SESSION_SECONDS, (end, cookie)
            assert keys.session(cookie, now).key_id == first.split(".")[0]
    finally:
        keys.close()


_LOGIN_ON_A_FULL_DISK = textwrap.dedent("""
    import json, sqlite3, sys
    from pathlib import Path
    sys.path.insert(0, TESTS)
    import disk_support
    from service_support import console_login

    disk = Path(DISK)
    ws, op, _, _ = disk_support.operator_workspace(disk / "ws")
    with disk_support.started_service(ws.root, Path(SCRATCH)) as client:
        first = console_login(client, op).status_code  # the login forms' table made
        for db_path in (ws.apikeys, ws.audit):  # their write-ahead logs emptied: nothing left to write into
            with sqlite3.connect(db_path, isolation_level=None) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        disk_support.fill(disk)
        client.cookies.clear()
        token = client.get("/login").text.split("name='csrf' value='")[1].split("'")[0]
        logins = [client.post("/login", data={"csrf": token, "api_key": op}, follow_redirects=False)
                  for _ in range(2)]  # a double click
        page = client.get("/audit", follow_redirects=False)
    print("RESULT " + json.dumps({"first": first, "logins": [r.status_code for r in logins],
                                  "cookies": [r.cookies.get("__Host-sf_session") for r in logins],
                                  "page": page.status_code, "text": logins[0].text}))
""")


def test_a_login_on_a_full_disk_is_refused_rather_than_given_out_unrecorded(tmp_path: Path) -> None:
    """A login writes its form's row in the key store (one session per form); on a full disk the
    login opened a session all the same, unrecorded, and the form posted twice (a double click)
    gave out two, one held by no browser. The login is refused (503) with a page saying why, and
    no session is given out."""
    from disk_support import run_on_small_disk

    (tmp_path / "scratch").mkdir()
    out = run_on_small_disk(tmp_path, _LOGIN_ON_A_FULL_DISK, SCRATCH=str(tmp_path / "scratch"))
    assert out["first"] == 303 and out["logins"] == [503, 503], out
    assert out["cookies"] == [None, None] and out["page"] == 303, out
    assert "full or read-only" in out["text"] and "not-recorded" in out["text"], out["text"][:600]


def test_a_login_form_posted_again_after_its_logout_gives_out_one_new_session(tmp_path: Path) -> None:
    """A login form gives out one session per key, however often it is posted; once that session
    was logged out, each later post of the form opened a session of its own, recorded nowhere, so
    a double click (or a script posting the form in a loop) left sessions held by no browser. The
    form gives out one new session then, and the logged-out one never again."""
    from policy_support import make_workspace

    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _, key = sf.issue_api_key("operator", label="console")
        _, first = sf.open_session(key, "form")
        assert sf.end_session(first) is True
        again = [sf.open_session(key, "form")[1] for _ in range(3)]
        assert first not in again and len(set(again)) == 1, again
        assert sf.session(again[0]).role == "operator"


def test_a_second_click_on_log_in_sent_after_the_first_answer_keeps_the_browser_logged_in(tmp_path: Path) -> None:
    """A person's double click on "Log in" is 100 to 300 ms apart, and the first answer (a cookie
    set, the login form's cookie dropped) is often in before the second post leaves: that post,
    with the form's token but without its cookie, was told "the login form expired", and the
    browser showed the login page though it held a session. The form's cookie stays for its 10
    minutes, so the second post gets the same session."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        token = csrf_of(client.get("/login").text)
        first = client.post("/login", data={"csrf": token, "api_key": op}, follow_redirects=False)
        held = client.cookies.get("__Host-sf_session")
        second = client.post("/login", data={"csrf": token, "api_key": op}, follow_redirects=False)
        page = client.get("/audit", follow_redirects=False)
        same = client.cookies.get("__Host-sf_session")
        with open_sf(ws) as sf:  # the second post ended no session
            ended = sum("console session" in (e.note or "") for e in sf.audit_entries())
        # The login page loaded afresh is a new login (a new form), which ends the session held.
        assert console_login(client, op).status_code == 303
        fresh = client.cookies.get("__Host-sf_session")
    assert first.status_code == 303 and second.status_code == 303, (first.status_code, second.status_code)
    assert second.headers["location"] == "/audit", second.headers["location"]
    assert same == held and page.status_code == 200 and ended == 0, ended
    assert fresh != held
    with open_sf(ws) as sf:
        assert sum("console session" in (e.note or "") for e in sf.audit_entries()) == 1


def test_a_logged_out_session_named_in_no_cookies_shape_replaces_nothing(tmp_path: Path) -> None:
    """`ApiKeys.open_session(..., ended=...)` replaces a login form's session found logged out; a
    value of no cookie's shape (an app passing what it was given) was a bare ValueError."""
    import datetime as dt

    from safeface.workspace.apikeys import ApiKeys

    now = dt.datetime.now(dt.timezone.utc)
    keys = ApiKeys(tmp_path / "apikeys.db", b"k" * 32)
    try:
        _, key = keys.issue("operator", "console", None, None, now)
        first = keys.open_session(key, now, "form")[1]
        assert [keys.open_session(key, now, "form", ended=v)[1] for v in ("garbage", "", "a.b")] == [first] * 3
        assert keys.open_session(key, now, "form", ended=first)[1] != first
    finally:
        keys.close()


def test_two_tabs_posting_one_login_form_with_two_keys_leave_no_session_held_by_no_browser(tmp_path: Path) -> None:
    """Two tabs of one browser share the login form's cookie; posted at the same instant with two
    different keys, each key got its session, the browser kept one answer's cookie, and the other
    key's session stayed live, held by no browser, until it idled out. The form gives out one
    key's session at a time: the other post is refused ("taken"). Changing keys still works: the
    same form posted with another key by the browser holding the first session ends that one,
    and once a session is logged out, the form may give out another key's."""
    client, ws, (first, second) = keyed_client(tmp_path, "operator", "operator", rate=1000)
    with client:
        token = csrf_of(client.get("/login").text)
        form = str(client.cookies.get("__Host-sf_login"))
        answers = []
        for key in (first, second):  # each tab with the browser's cookies of before either answer
            client.cookies.clear()
            client.cookies.set("__Host-sf_login", form)
            answers.append(client.post("/login", data={"csrf": token, "api_key": key}, follow_redirects=False))
        opened = [a.cookies.get("__Host-sf_session") for a in answers]
        # The browser holds the first tab's session: the form posted with the second key changes keys.
        client.cookies.clear()
        client.cookies.set("__Host-sf_login", form)
        client.cookies.set("__Host-sf_session", str(opened[0]))
        changed = client.post("/login", data={"csrf": token, "api_key": second}, follow_redirects=False)
        now = changed.cookies.get("__Host-sf_session")
        pages = []
        for cookie in (opened[0], now):
            client.cookies.clear()
            client.cookies.set("__Host-sf_session", str(cookie))
            pages.append(client.get("/audit", follow_redirects=False).status_code)
        client.post("/logout", data={"csrf": csrf_of(client.get("/audit").text)}, follow_redirects=False)
        client.cookies.clear()
        client.cookies.set("__Host-sf_login", form)  # logged out: the form may give out the first key's again
        again = client.post("/login", data={"csrf": token, "api_key": first}, follow_redirects=False)
    assert [a.status_code for a in answers] == [303, 303], [a.status_code for a in answers]
    assert opened[0] is not None and opened[1] is None, opened
    assert answers[1].headers["location"] == "/login?error=taken", answers[1].headers["location"]
    assert changed.headers["location"] == "/audit" and now not in (None, opened[0]), changed.headers["location"]
    assert pages == [303, 200], pages  # the first key's session ended by the change, on record
    assert again.headers["location"] == "/audit" and again.cookies.get("__Host-sf_session"), again.headers
    with open_sf(ws) as sf:
        assert sum("console session" in (e.note or "") for e in sf.audit_entries()) == 2


def test_one_login_form_racing_with_two_keys_on_two_handles_gives_out_one_session(tmp_path: Path) -> None:
    """The two tabs' posts reach two processes at the same instant (two handles on the key store):
    one key gets its session, the other is refused, whichever wins."""
    import datetime as dt
    import threading

    from safeface.errors import LoginFormTaken
    from safeface.workspace.apikeys import ApiKeys

    now = dt.datetime.now(dt.timezone.utc)
    handles = [ApiKeys(tmp_path / "apikeys.db", b"k" * 32) for _ in range(2)]
    try:
        keys = [handles[0].issue("operator", "console", None, None, now)[1] for _ in range(2)]
        start, got = threading.Barrier(2), ["", ""]

        def submit(i: int) -> None:
            start.wait()
            try:
                got[i] = handles[i].open_session(keys[i], now, "one form")[1]
            except LoginFormTaken as exc:
                got[i] = f"taken {exc.key_id}"

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        won = [c for c in got if not c.startswith("taken")]
        assert len(won) == 1 and f"taken {won[0].split('.')[0]}" in got, got
    finally:
        for h in handles:
            h.close()


def _waiting_in(name: str, deadline_s: float = 30.0) -> bool:
    """Whether a thread of this process reaches the function `name` (its frame on the stack)
    before the deadline: the in-process service's login waiting for the key store's lock."""
    import threading

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for ident, frame in sys._current_frames().items():
            f = frame
            while f is not None and ident != threading.get_ident():
                if f.f_code.co_name == name:
                    return True
                f = f.f_back
        time.sleep(0.005)
    return False


def _posted_while_the_key_store_is_held(client: Any, ws: Any, theirs: str, waits_in: str,
                                        post: Callable[[], Any]) -> object:
    """`post` made on a thread while another connection holds apikeys.db's write lock: once it
    waits in `waits_in`, another operator's page (session `theirs`) must be answered before it;
    then the lock is released and the post's answer returned."""
    import threading

    done: dict[str, object] = {}
    with closing(sqlite3.connect(ws.apikeys, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        posting = threading.Thread(target=lambda: done.update(answer=post()))
        posting.start()
        try:
            waiting = _waiting_in(waits_in)
            page = client.get("/keys", cookies={"__Host-sf_session": theirs}, follow_redirects=False)
            answered_first = "answer" not in done
        finally:
            holder.execute("ROLLBACK")
            posting.join(60)
    assert waiting and page.status_code == 200 and answered_first, (waiting, page.status_code, answered_first)
    return done.get("answer")


def test_a_login_waiting_for_a_key_store_another_process_holds_leaves_the_worker_answering(tmp_path: Path) -> None:
    """Another process (a `safeface apikey` command, a rekey) holds apikeys.db's write lock while
    an operator logs in: the login's record of its form waited on the worker's event loop, and
    every other request of the worker (another operator's page) waited with it, then the login
    gave up after 200 ms (503). The login waits off the event loop: the other page is answered
    while it waits, and the login goes through once the lock is released."""

    client, ws, (op, other) = keyed_client(tmp_path, "operator", "operator", rate=1000)
    with client:
        assert console_login(client, other).status_code == 303  # another operator's session (and the tables)
        theirs = str(client.cookies.get("__Host-sf_session"))
        client.cookies.clear()
        token = csrf_of(client.get("/login").text)
        form = str(client.cookies.get("__Host-sf_login"))
        client.cookies.clear()
        answer = _posted_while_the_key_store_is_held(client, ws, theirs, "_spend_form", lambda: client.post(
            "/login", data={"csrf": token, "api_key": op}, cookies={"__Host-sf_login": form}, follow_redirects=False))
    assert getattr(answer, "status_code", None) == 303 and getattr(answer, "headers")["location"] == "/audit"


def test_a_logout_waiting_for_a_key_store_another_process_holds_leaves_the_worker_answering(tmp_path: Path) -> None:
    """A logout the audit log refuses (a trigger in audit.db; a full witness volume would too) is
    recorded in the key table, waited for: while another process held apikeys.db, that wait (up to
    the busy timeout, 30 s) held the worker's event loop, and another operator's page with it. It
    waits off the loop now: the page is answered meanwhile, and the logout ends the session once
    the lock is released."""

    client, ws, (op, other) = keyed_client(tmp_path, "operator", "operator", rate=1000)
    with client:
        assert console_login(client, other).status_code == 303
        theirs = str(client.cookies.get("__Host-sf_session"))
        client.cookies.clear()
        assert console_login(client, op).status_code == 303
        mine = str(client.cookies.get("__Host-sf_session"))
        form = {"csrf": csrf_of(client.get("/keys").text)}
        client.cookies.clear()
        with closing(sqlite3.connect(ws.audit)) as db, db:
            db.execute("CREATE TRIGGER keep BEFORE INSERT ON entries BEGIN SELECT 1; END")
        answer = _posted_while_the_key_store_is_held(client, ws, theirs, "end_session_ref", lambda: client.post(
            "/logout", data=form, cookies={"__Host-sf_session": mine}, follow_redirects=False))
        copy = client.get("/keys", cookies={"__Host-sf_session": mine}, follow_redirects=False)
    assert getattr(answer, "status_code", None) == 303 and copy.status_code == 303, copy.status_code


def test_a_login_forms_key_is_kept_as_long_as_the_session_it_gave_out_last(tmp_path: Path) -> None:
    """The row naming the key a form gave out its session to is kept for the form's 10 minutes
    from the last session it gave out: logged out and logged in again on the same form, the row
    lapsed with the first session's form row, and another key posting the form then (a second
    tab) was let in beside the new session."""
    import datetime as dt

    from safeface.errors import LoginFormTaken
    from safeface.workspace.apikeys import ApiKeys

    t0 = dt.datetime.now(dt.timezone.utc)
    keys = ApiKeys(tmp_path / "apikeys.db", b"k" * 32)
    try:
        first, second = (keys.issue("operator", "console", None, None, t0)[1] for _ in range(2))
        cookie = keys.open_session(first, t0, "form")[1]
        assert keys.end_session(cookie, t0 + dt.timedelta(minutes=1)) is True
        again = keys.open_session(first, t0 + dt.timedelta(minutes=5), "form", ended=cookie)[1]
        assert again != cookie
        with pytest.raises(LoginFormTaken):
            keys.open_session(second, t0 + dt.timedelta(minutes=11), "form")
    finally:
        keys.close()


def test_logins_queued_behind_a_key_store_another_process_holds_do_not_wait_one_after_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's logins and logouts run one at a time off the event loop, each waiting up to
    LOCK_WAIT_S (30 s) for a key store another process holds: logins queued behind it (one client
    posting its forms over and over, at its key's rate) each waited their 30 s in turn, and an
    operator's login or logout behind them waited minutes. A login or logout queued longer than
    that wait is answered 503 (ServiceBusy, Retry-After) without trying the store, and the forms
    it refused still work once the store is free."""
    import threading

    from safeface import atomicfile

    monkeypatch.setattr(atomicfile, "LOCK_WAIT_S", 0.5)
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    with client:
        assert console_login(client, op).status_code == 303  # the login forms' table made
        forms = []
        for _ in range(4):
            client.cookies.clear()
            forms.append((csrf_of(client.get("/login").text), str(client.cookies.get("__Host-sf_login"))))
        client.cookies.clear()
        answers: dict[int, object] = {}

        def post(i: int) -> None:
            token, form = forms[i]
            answers[i] = client.post("/login", data={"csrf": token, "api_key": op},
                                     cookies={"__Host-sf_login": form}, follow_redirects=False)

        with closing(sqlite3.connect(ws.apikeys, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            threads = [threading.Thread(target=post, args=(i,)) for i in range(len(forms))]
            try:
                for th in threads:
                    th.start()
            finally:
                for th in threads:
                    th.join(60)
                holder.execute("ROLLBACK")
        token, form = forms[-1]
        later = client.post("/login", data={"csrf": token, "api_key": op}, cookies={"__Host-sf_login": form},
                            follow_redirects=False)
    said = [getattr(answers.get(i), "status_code", None) for i in range(len(forms))]
    errors = sorted(getattr(answers[i], "json")()["error"] for i in range(len(forms)))
    assert said == [503] * len(forms), said
    # At most the login running when the others came, and one that came while it began, tried the store.
    assert errors.count("WorkspaceBusy") <= 2 and errors.count("ServiceBusy") >= 2, errors
    assert later.status_code == 303 and later.headers["location"] == "/audit", later.headers


def test_a_login_form_refused_as_taken_is_not_refused_again_at_the_next_login(tmp_path: Path) -> None:
    """A login form posted with a key while the session it gave out to another key is live, and
    not held by the posting browser, is refused ("taken"), and the page says to log in again. The
    login page gave that browser the same form again (its cookie outlives the login), so every
    later login was refused too, for as long as the other key's session lived: a browser whose
    session on the form was taken over by a copy of its cookies (a thief logging in as another
    key there) could not reach the console again. A refused form is dropped: the next login page
    is a new form."""
    from fastapi.testclient import TestClient

    client, ws, (mine, theirs) = keyed_client(tmp_path, "operator", "operator", rate=1000)
    with client:
        assert console_login(client, mine).status_code == 303
        form = str(client.cookies.get("__Host-sf_login"))  # also the form's token (a double submit)
        held = str(client.cookies.get("__Host-sf_session"))
        # The thief: a copy of the browser's cookies, posting the same form with a key of its own.
        thief = TestClient(client.app, base_url="https://testserver", raise_server_exceptions=False)
        thief.cookies.set("__Host-sf_login", form)
        thief.cookies.set("__Host-sf_session", held)
        took = thief.post("/login", data={"csrf": form, "api_key": theirs}, follow_redirects=False)
        assert took.headers["location"] == "/audit", took.headers
        # The owner's browser, its session ended by the thief's login, logs in again.
        refused = console_login(client, mine)
        again = console_login(client, mine)  # as the page says: log in again
    assert refused.headers["location"] == "/login?error=taken", refused.headers
    assert again.status_code == 303 and again.headers["location"] == "/audit", again.headers


def _refuse_every_logout(ws: Any) -> None:
    """The key table refuses an end (its two tables of ends given a column more by hand; a login
    writes neither), the audit log every entry, and the logouts folder cannot be made."""
    with closing(sqlite3.connect(ws.apikeys)) as db, db:
        db.execute("ALTER TABLE ended_sessions RENAME TO ended_sessions_kept")
        db.execute("DROP TABLE IF EXISTS session_uses")
        for table in ("ended_sessions", "session_uses"):
            db.execute(f"CREATE TABLE {table} (session TEXT PRIMARY KEY, until BIGINT, used BIGINT, mac TEXT, x)")
    with closing(sqlite3.connect(ws.audit)) as db, db:
        db.execute("CREATE TRIGGER keep BEFORE INSERT ON entries BEGIN SELECT 1; END")
    (ws.root / "console-logouts").write_text("")


def _take_logouts_again(ws: Any) -> None:
    """Undo _refuse_every_logout: the stores take a logout again."""
    with closing(sqlite3.connect(ws.apikeys)) as db, db:
        db.execute("DROP TABLE ended_sessions")
        db.execute("ALTER TABLE ended_sessions_kept RENAME TO ended_sessions")
    with closing(sqlite3.connect(ws.audit)) as db, db:
        db.execute("DROP TRIGGER keep")
    (ws.root / "console-logouts").unlink()


# Another process of the service (a second uvicorn worker, a second `safeface serve`), running
# since before the stores broke (they refuse a new open): each cookie read from stdin is checked
# as its pages check a session, and the answer printed.
_SESSIONS_IN_ANOTHER_PROCESS = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from policy_support import open_sf
    from safeface.errors import AuthenticationError
    from safeface.workspace.paths import WorkspacePaths
    with open_sf(WorkspacePaths(sys.argv[2])) as sf:
        print("open", flush=True)
        for line in sys.stdin:
            try:
                print("live", sf.session(line.strip(), use=False).key_id, flush=True)
            except AuthenticationError as exc:
                print("refused", exc, flush=True)
""")


def test_a_session_whose_end_no_store_took_is_refused_by_the_other_processes_too(tmp_path: Path) -> None:
    """A login refused because the browser's earlier session could not be ended on record (every
    store refused the logout) left that session refused by the process asked alone: another
    worker process, or a second `safeface serve` on the workspace, still opened its pages with a
    copy of the cookie. The process asked holds the session's end as owed (a lock, which needs
    no write) while it runs, and every process's session check refuses it meanwhile; once the
    stores take writes again, its close records the end (its lock goes with it)."""
    import subprocess

    from child_process import child_env

    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    tests = str(Path(__file__).resolve().parent)
    other = subprocess.Popen([sys.executable, "-c", _SESSIONS_IN_ANOTHER_PROCESS, tests, str(ws.root)],
                             env=child_env(), cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert other.stdin is not None and other.stdout is not None

    def elsewhere(cookie: str) -> str:
        assert other.stdin is not None and other.stdout is not None
        other.stdin.write(cookie + "\n")
        other.stdin.flush()
        return other.stdout.readline()

    try:
        assert other.stdout.readline().strip() == "open"
        with client:
            assert console_login(client, op).status_code == 303
            earlier = str(client.cookies.get("__Host-sf_session"))
            token = csrf_of(client.get("/login").text)
            before = elsewhere(earlier)
            _refuse_every_logout(ws)
            refused = client.post("/login", data={"csrf": token, "api_key": op}, follow_redirects=False)
            after = elsewhere(earlier)
            _take_logouts_again(ws)
        recorded = elsewhere(earlier)  # the service closed (restarted)
    finally:
        other.stdin.close()
        other.wait(60)
    assert before.startswith("live"), before
    assert refused.status_code == 503 and "earlier-not-ended" in refused.text, refused.text[:400]
    assert after.startswith("refused"), after
    assert recorded.startswith("refused") and "logged out" in recorded, recorded
    with open_sf(ws) as sf:  # the earlier session's end is on record now, for every host
        assert sum("console session" in (e.note or "") for e in sf.audit_entries()) == 1


def test_a_login_that_cannot_end_the_browsers_earlier_session_opens_no_new_one(tmp_path: Path) -> None:
    """A browser holding a live session logs in again while neither store (nor the logouts
    folder) can record a logout: the new session was opened first and the earlier one's end
    failed after it, so the page said "not logged out", the browser kept its earlier cookie, and
    the new session stayed live, held by no browser, until it idled out. The earlier session is
    ended first now: while that cannot be recorded the login is refused with a page saying why,
    and no session is given out; once the stores work, the same form logs in."""
    client, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)

    def given_out() -> int:
        with closing(sqlite3.connect(ws.apikeys)) as db:
            return int(db.execute("SELECT count(*) FROM spent_logins WHERE session_until > 0").fetchone()[0])

    with client:
        assert console_login(client, op).status_code == 303
        earlier = str(client.cookies.get("__Host-sf_session"))
        token = csrf_of(client.get("/login").text)  # a new form: the browser holds a live session
        before = given_out()
        _refuse_every_logout(ws)
        refused = client.post("/login", data={"csrf": token, "api_key": op}, follow_redirects=False)
        opened = given_out()
        _take_logouts_again(ws)
        held = str(client.cookies.get("__Host-sf_session"))
        again = client.post("/login", data={"csrf": token, "api_key": op}, follow_redirects=False)
        old = client.get("/audit", cookies={"__Host-sf_session": earlier}, follow_redirects=False)
    assert refused.status_code == 503 and "not logged in" in refused.text.lower(), refused.text[:400]
    assert "earlier session" in refused.text and refused.cookies.get("__Host-sf_session") is None, refused.text[:400]
    assert opened == before and held == earlier, (before, opened)
    assert again.status_code == 303 and again.headers["location"] == "/audit", again.text[:300]
    assert old.status_code == 303 and old.headers["location"] == "/login", old.status_code


def test_one_keys_logins_queued_behind_a_held_key_store_keep_no_logout_waiting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While another process holds the key store, a client posting logins with its key at the
    key's rate kept a worker's one line of logins and logouts full: another operator's logout
    (which needs only the audit log) waited behind each of them, up to about 60 s, or was refused.
    Logouts go first now, each key's logins take turns with other keys', and a key holding two
    logins in the line (a double click's) is refused a third at once (503, Retry-After)."""
    import threading

    from safeface.service import runtime

    # The two logins that wait get their sessions once the store is free, however slow the host:
    # their bound (runtime.LOGIN_WAIT_S) is the store's own wait here.
    monkeypatch.setattr(runtime, "LOGIN_WAIT_S", 30.0, raising=False)
    client, ws, (theirs, mine) = keyed_client(tmp_path, "operator", "operator", rate=1000)
    with client:
        assert console_login(client, mine).status_code == 303  # the operator's session (and the tables)
        session = str(client.cookies.get("__Host-sf_session"))
        logout_form = {"csrf": csrf_of(client.get("/keys").text)}
        forms = []
        for _ in range(3):
            client.cookies.clear()
            forms.append((csrf_of(client.get("/login").text), str(client.cookies.get("__Host-sf_login"))))
        client.cookies.clear()
        answers: dict[str, Any] = {}

        def post(name: str, *args: Any, **kw: Any) -> threading.Thread:
            th = threading.Thread(target=lambda: answers.update({name: client.post(*args, follow_redirects=False,
                                                                                   **kw)}))
            th.start()
            return th

        with closing(sqlite3.connect(ws.apikeys, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            try:
                logins = [post(f"login{i}", "/login", data={"csrf": token, "api_key": theirs},
                               cookies={"__Host-sf_login": form}) for i, (token, form) in enumerate(forms)]
                assert _waiting_in("_spend_form")
                logout = post("logout", "/logout", data=logout_form, cookies={"__Host-sf_session": session})
                logout.join(10)
                end = time.monotonic() + 10
                while not any(n.startswith("login") for n in answers) and time.monotonic() < end:
                    time.sleep(0.01)  # the third login, answered at once
                held = dict(answers)
            finally:
                holder.execute("ROLLBACK")
        for th in (*logins, logout):
            th.join(60)
        copy = client.get("/keys", cookies={"__Host-sf_session": session}, follow_redirects=False)
    assert "logout" in held and held["logout"].status_code == 303, held.keys()  # answered while the store was held
    assert copy.status_code == 303 and copy.headers["location"] == "/login", copy.status_code
    refused = [n for n, a in held.items() if n.startswith("login") and a.status_code == 503]
    assert len(refused) == 1 and answers[refused[0]].headers.get("Retry-After"), {n: a.status_code for n, a in held.items()}
    assert sorted(a.headers.get("location") for n, a in answers.items() if n.startswith("login") and n not in refused) \
        == ["/audit", "/audit"], {n: a.status_code for n, a in answers.items()}


def test_a_keys_second_login_in_a_workers_line_waits_behind_every_other_keys_first() -> None:
    """The worker's line of console logins (one thread, a line per key): a key's second login
    waited ahead of another key's first that came after it was queued, so one client posting
    two logins at a time while the key store was held kept each other operator waiting for both
    of its waits. The next login is the first of the line served longest ago; a third login of a
    key holding two is refused at once."""
    import threading

    from safeface.errors import ServiceBusy
    from safeface.service.runtime import _FairLane

    lane, order, gate = _FairLane("test-line", 2), [], threading.Event()

    def login(tag: str, wait: bool = False) -> Callable[[], str]:
        def run() -> str:
            if wait:
                gate.wait(10)  # the first login, waiting for the key store
            order.append(tag)
            return tag
        return run

    try:
        first = lane.submit("A", login("a1", wait=True), "busy", 1)
        while first.running() is False:  # the line's thread has it
            time.sleep(0.001)
        queued = [lane.submit("A", login("a2"), "busy", 1)]
        with pytest.raises(ServiceBusy):
            lane.submit("A", login("a3"), "busy", 1)
        queued += [lane.submit("B", login("b1"), "busy", 1), lane.submit("C", login("c1"), "busy", 1)]
        gate.set()
        assert [f.result(10) for f in (first, *queued)] == ["a1", "a2", "b1", "c1"]
    finally:
        gate.set()
        lane.close()
    assert order == ["a1", "b1", "c1", "a2"], order


# Another process writing the key store (a `safeface apikey`, a rekey): holds its write lock
# from "held" until its stdin closes.
_HOLD_THE_KEY_STORE = textwrap.dedent("""
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    print("held", flush=True)
    sys.stdin.read()
    db.execute("ROLLBACK")
""")


def test_a_login_waiting_for_a_key_store_another_process_holds_keeps_other_logins_waiting_briefly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While another process held the key store's write lock, a login already running waited
    for it up to LOCK_WAIT_S (30 s), and another key's login waited behind it that long before
    its own turn. Each login waits, in the worker's line and for the store together, at most
    runtime.LOGIN_WAIT_S (0.5 s here, 3 s by default), then is answered 503 with Retry-After;
    once the store is free, the next login works."""
    import subprocess
    import threading

    from safeface.service import runtime

    monkeypatch.setattr(runtime, "LOGIN_WAIT_S", 0.5, raising=False)
    client, ws, (first, second) = keyed_client(tmp_path, "operator", "operator", rate=1000)
    answers: dict[str, Any] = {}
    with client:
        assert console_login(client, first).status_code == 303  # the sessions' tables made
        forms = []
        for _ in range(2):
            client.cookies.clear()
            forms.append((csrf_of(client.get("/login").text), str(client.cookies.get("__Host-sf_login"))))
        client.cookies.clear()
        holder = subprocess.Popen([sys.executable, "-c", _HOLD_THE_KEY_STORE, str(ws.apikeys)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "held"
            logins = [threading.Thread(target=lambda n=n, key=key, token=token, form=form: answers.update(
                {n: client.post("/login", data={"csrf": token, "api_key": key}, cookies={"__Host-sf_login": form},
                                follow_redirects=False)}))
                for n, key, (token, form) in (("first", first, forms[0]), ("second", second, forms[1]))]
            for th in logins:
                th.start()
            for th in logins:
                th.join(10)  # 30 s and more each, before
            held = dict(answers)
        finally:
            holder.stdin.close()
            holder.wait(30)
        for th in logins:
            th.join(60)
        client.cookies.clear()
        after = console_login(client, second)
    assert sorted(held) == ["first", "second"], sorted(held)
    for name, answer in held.items():
        assert answer.status_code == 503 and answer.headers.get("Retry-After"), (name, answer.status_code)
        assert answer.cookies.get("__Host-sf_session") is None, name
    assert after.status_code == 303 and after.headers["location"] == "/audit", after.status_code


def test_a_login_queued_behind_a_long_call_of_its_workers_line_is_answered_by_its_deadline(tmp_path: Path) -> None:
    """A login waits in its worker's line of logins and logouts at most until its deadline
    (runtime.login_deadline), whatever runs ahead of it: it was refused there only once the call
    ahead ended, so a logout waiting up to 30 s for the audit log and the key store (both held
    by other processes) kept every login of the worker waiting that long first."""
    import asyncio
    import threading

    from policy_support import PASSPHRASE, make_workspace

    from safeface.errors import ServiceBusy
    from safeface.service.runtime import Runtime, ServiceConfig

    ws = make_workspace(tmp_path / "ws")
    pf = tmp_path / "pass"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)
    rt = Runtime(ServiceConfig(workspace=ws.root, passphrase_file=pf, threads=1, queue=1))
    started, release, ahead_over = threading.Event(), threading.Event(), threading.Event()

    def long_logout(_sf: Any) -> None:  # a logout waiting for stores other processes hold
        started.set()
        release.wait(20)
        ahead_over.set()

    async def main() -> tuple[object, bool]:
        ahead = asyncio.ensure_future(rt.aside(long_logout))
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, 60)
        try:
            await rt.aside(lambda sf: "logged in", "0123456789ab", until=time.monotonic() + 0.2)
            answer: object = "served"
        except ServiceBusy as exc:
            answer = exc
        over = ahead_over.is_set()
        release.set()
        await ahead
        return answer, over

    try:
        answer, over = asyncio.run(main())
    finally:
        release.set()
        rt.close()
    assert isinstance(answer, ServiceBusy) and answer.retry_after, answer
    assert not over  # answered while the call ahead still ran
