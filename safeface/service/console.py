"""The operator console: server-rendered pages, no JavaScript.

Login exchanges an API key whose role may read the report for a session cookie (HttpOnly,
SameSite=Strict, Secure, named __Host-); each page re-checks the session, so revoking the key ends
it, and so does a logout, for every copy of the cookie (recorded on the audit log first).
Every form carries a CSRF token (an HMAC of the session; the login form a double-submit cookie).
Every action is a SafeFace call made as the session's (role, key id): the guard decides it and the
audit log names the key. Pages show pseudonyms, token references and counts, never a face image
or a template.
"""

from __future__ import annotations

import hmac
import html
import json
import os
import re
import secrets
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, cast

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from ..atomicfile import MAX_COPY_BYTES, write_atomic
from ..errors import (AuthenticationError, ConfigError, ImageError, IntegrityError, PolicyViolation, SafeFaceError,
                      ServiceBusy)
from ..regularfile import folder_below, read_no_link
from ..sqlite_store import raise_if_unwritable
from ..workspace.apikeys import SESSION_SECONDS, ApiKey, session_ref
from ..workspace.report import RECORDS_FAIL
from .bodies import media_type, once_each
from .failures import kept, told
from .runtime import Runtime

# The __Host- prefix: a browser keeps such a cookie only when Secure, for Path=/ and without a
# Domain, so no other host of the site (a sibling subdomain) can set one. A plain name let such a
# host plant its own session for the whole domain; sent after the operator's, it was the one read,
# and the operator worked in the planter's session (or logged in through its login token).
SESSION = "__Host-sf_session"
LOGIN = "__Host-sf_login"
# The session cookie's name before the prefix: read by the logout alone (and the login page, to
# offer one), so a session opened before the rename can still be ended. Any host of the site can
# set a cookie of this name, but all it can get ended that way is a session of its own.
OLD_SESSION = "sf_session"
_LOGIN_ERRORS = {"expired": "The login form expired; try again.", "invalid": "That API key is not valid.",
                 "role": "That key's role may not use the console."}
_UNSIGNED = ("This file among the receipts is not signed by this workspace's receipt key: it was altered or "
             "written by hand. Check who may write the workspace's reports folder.")
_UNSAFE_FOLDER = ("The workspace's reports folder or its receipts folder, reports/receipts, is a link, or is owned or "
                  "writable by another user (an older release made it under the host's umask), so no receipt is read "
                  "from it: make each a real folder of this service user's (not a link) and chmod go-w it.")
_RECEIPT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}\Z")
_PLOT = re.compile(r"^[A-Za-z0-9_.-]{1,80}\.(png|svg)\Z")
_CSS = """body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top;font-size:90%}.ok{color:#060}.bad{color:#a00;font-weight:bold}
code{font-size:85%}form.inline{display:inline}.msg{background:#eef;padding:.5em}img{max-width:640px}"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _revocation(k: ApiKey) -> str:
    """The key's revoked column: the table's mark and the log's record can disagree (a mark set
    by hand, a table restored from before the revocation), and the page says which."""
    if k.revocation_logged:
        return k.revoked or "on the audit log (the key table lost its mark)"
    return f"{k.revoked}: marked in the key table only; revoke it to record it" if k.revoked else ""


def _forget(resp: Response, name: str) -> None:
    """Tell the browser to drop the cookie `name`, with the attributes it was set with: a __Host-
    cookie cleared without Secure is refused, and the browser would keep it."""
    resp.delete_cookie(name, secure=True, httponly=True, samesite="strict")


class Session:
    def __init__(self, key: ApiKey, cookie: str, csrf: str) -> None:
        self.key, self.cookie, self.csrf = key, cookie, csrf


def build_console(rt: Runtime) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # Sessions whose logout neither the audit log nor the key table could record (session_ref ->
    # the session's end, a Unix time): refused by this process's pages and downloads all the same,
    # until it restarts. Other processes of the service cannot know of it.
    ended_here: dict[str, int] = {}

    def page(title: str, body: str, s: Optional[Session] = None, status: int = 200) -> HTMLResponse:
        nav = ""
        if s is not None:
            nav = ("<nav><a href='/audit'>Audit log</a><a href='/consents'>Consents</a><a href='/subjects'>Subjects</a>"
                   "<a href='/keys'>Keys</a><a href='/report'>Report</a>"
                   f"<form class='inline' method='post' action='/logout'>{_csrf(s)}<button>Log out</button></form>"
                   f" <small>key {_e(s.key.key_id)} ({_e(s.key.role)})</small></nav>")
        return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)} - safeface</title>"
                            f"<link rel='stylesheet' href='/console.css'></head><body>{nav}<h1>{_e(title)}</h1>{body}"
                            "</body></html>", status_code=status)

    def _csrf(s: Session) -> str:
        return f"<input type='hidden' name='csrf' value='{_e(s.csrf)}'>"

    def session(request: Request) -> Optional[Session]:
        cookie = request.cookies.get(SESSION)
        if cookie is not None and session_ref(cookie) in ended_here:
            return None
        try:
            key: ApiKey = rt.light(lambda sf: sf.session(cookie))
        except AuthenticationError:
            return None
        if not rt.light(lambda sf: sf.acting_as_key(key).may("report")):
            return None
        return Session(key, str(cookie), rt.light(lambda sf: sf.csrf_token(cookie)))

    async def form_of(request: Request, s: Session) -> dict[str, str]:
        return await form_with(request, s.csrf)

    async def form_with(request: Request, *csrf: str) -> dict[str, str]:
        """The form, if it carries one of the CSRF tokens `csrf`; AuthenticationError (401) else."""
        form = await request.form(max_files=0, max_fields=8) if plain_form(request) else FormData()
        got = str(form.get("csrf") or "").encode()
        if not any([hmac.compare_digest(got, want.encode()) for want in csrf]):  # a list: each compared
            raise AuthenticationError("the form's CSRF token is missing or wrong; reload the page and try again.")
        return {k: str(v) for k, v in once_each(form.multi_items(), "the form").items()}

    def plain_form(request: Request) -> bool:
        """Whether the body is what the console's forms send (URL-encoded, UTF-8); any other is
        read as an empty form, never parsed (a multipart field is decoded in a charset the
        request names, however slow: service/bodies.py)."""
        return media_type(request) == "application/x-www-form-urlencoded"

    def limited(request: Request) -> Optional[Session]:
        """The session, with its key's rate spent (429 past it), as every console page spends it."""
        s = session(request)
        if s is not None:
            rt.limit(s.key.key_id, s.key.rate)
        return s

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    async def as_session(request: Request, fn: Any) -> Any:
        s = session(request)
        if s is None:
            return None, to_login()
        rt.limit(s.key.key_id, s.key.rate)  # the key's rate holds in the console as on /v1
        try:
            return s, await rt.call(lambda sf: fn(sf.acting_as_key(s.key)))
        except PolicyViolation as exc:
            return s, page("Refused", f"<p class='bad'>Refused by rule {_e(exc.rule)}: {_e(exc.message)}</p>", s, 403)

    @router.get("/console.css")
    async def css() -> Response:
        return Response(_CSS, media_type="text/css")

    @router.get("/login")
    async def login_form(request: Request, error: str = "") -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        # The link names one of our own messages, never text: a link to the real console could
        # otherwise show a stranger's words in its error box ("mail your key to ...").
        msg = f"<p class='bad'>{_e(_LOGIN_ERRORS[error])}</p>" if error in _LOGIN_ERRORS else ""
        msg += still_open(request)
        resp = page("Operator console", f"""{msg}<form method='post' action='/login'>
<input type='hidden' name='csrf' value='{token}'>
<label>API key <input type='password' name='api_key' id='api_key' autocomplete='off' size='70'></label>
<button type='submit' id='login'>Log in</button></form>
<p>Use a key from <code>safeface apikey new WS --role operator</code>; it is exchanged for a session cookie.</p>""")
        # Secure whatever the listener: behind a proxy that terminates TLS (--plain-http) the
        # browser is on HTTPS, and an http:// request to the host (a redirect listener, a planted
        # image) must not carry the session; browsers keep Secure cookies from http://localhost.
        resp.set_cookie(LOGIN, token, httponly=True, samesite="strict", secure=True, max_age=600)
        return resp

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=4) if plain_form(request) else {}
        want = request.cookies.get(LOGIN) or ""
        if not want or not hmac.compare_digest(str(form.get("csrf") or "").encode(), want.encode()):
            return RedirectResponse("/login?error=expired", status_code=303)
        try:
            key, cookie = rt.light(lambda sf: sf.open_session(str(form.get("api_key") or "").strip()))
        except AuthenticationError:
            return RedirectResponse("/login?error=invalid", status_code=303)
        # The key's rate holds for logins too (429, no cookie): each session opened is one more
        # logout for the audit log to record.
        rt.limit(key.key_id, key.rate)
        if not rt.light(lambda sf: sf.acting_as_key(key).may("report")):
            return RedirectResponse("/login?error=role", status_code=303)
        resp = RedirectResponse("/audit", status_code=303)
        resp.set_cookie(SESSION, cookie, httponly=True, samesite="strict", secure=True, max_age=SESSION_SECONDS)
        _forget(resp, LOGIN)
        return resp

    def still_open(request: Request) -> str:
        """A logout form for a session this browser holds that is live on the service though no
        page opens it here: one under the cookie's name from before the rename (no page showed a
        logout for it), or one whose logout could not be recorded (ended in this process only)."""
        for name in (SESSION, OLD_SESSION):
            cookie = request.cookies.get(name)
            try:
                live = cookie is not None and rt.light(lambda sf: live_key(sf, cookie)) is not None
            except SafeFaceError:  # the service starting, a store failing: the login form still shows
                live = False
            if live:
                return (f"<form method='post' action='/logout'><p class='bad' id='still-open'>This browser holds a "
                        "console session that is still open on the service (from before an upgrade, or one whose "
                        "logout could not be recorded). <input type='hidden' name='csrf' value='"
                        f"{_e(rt.light(lambda sf: sf.csrf_token(str(cookie))))}'><button id='end-session'>"
                        "End it</button></p></form>")
        return ""

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        """End every live session the request presents (under the cookie's name, and under its
        name from before the rename), if the form carries one of their CSRF tokens."""
        live: dict[str, ApiKey] = {}
        for name in (SESSION, OLD_SESSION):
            cookie = request.cookies.get(name)
            key = rt.light(lambda sf: live_key(sf, cookie)) if cookie is not None and cookie not in live else None
            if cookie is not None and key is not None:
                live[cookie] = key
        resp: Response = to_login()
        _forget(resp, SESSION)
        _forget(resp, OLD_SESSION)
        if not live:  # nothing live to end (and no work for the pool from a caller without a session)
            return resp
        # A live session is ended only by its own form (a post from another origin of the site
        # carries the cookie, not the token: 401, nothing ended). Not within its key's rate: a
        # thief with a copy of the cookie would keep the rate spent and the owner from ending it.
        # The log stays bounded: a session is recorded ended once, and each came from a login,
        # which the rate limits.
        await form_with(request, *[rt.light(lambda sf: sf.csrf_token(c)) for c in live])
        for cookie, key in live.items():
            failed = end(cookie, key)
            if failed is not None:
                return failed
        return resp

    def end(cookie: str, key: ApiKey) -> Optional[Response]:
        """End the live session `cookie` on the server; the page to show instead of the login
        page when that failed, else None."""
        try:
            # Ended on the server, not only in this browser. Not through the worker's queue, which a
            # thief's copy of the cookie could keep full, answering the owner 503.
            ended = rt.light(lambda sf: sf.end_session(cookie))
        except ServiceBusy:
            raise  # 503 with Retry-After, the cookie kept: nothing ended yet
        except SafeFaceError as exc:
            reason = told(exc)[0]
            if not ended_anyway(cookie):  # nothing recorded it: the session lives on
                # Ended for this process at least, so a copy of the cookie reads nothing more
                # here; the browser keeps it (and the form below its token) to log out again.
                forget_ended(time.time())
                ended_here[session_ref(cookie)] = int(cookie.split(".")[1])
                retry = (f"<form method='post' action='/logout'><input type='hidden' name='csrf' value='"
                         f"{_e(rt.light(lambda sf: sf.csrf_token(cookie)))}'><button id='logout-again'>Log out "
                         "again</button></form>")
                return page("Not logged out", f"<p class='bad'>The session was not ended on record: {_e(reason)} "
                            "This process of the service refuses it from now on, until it restarts, but other "
                            "processes of the service may still accept a copy of the cookie. Log out again once the "
                            f"service works; revoke the key if a copy of the cookie may be elsewhere.</p>{retry}",
                            None, 503)
            resp = page("Logged out", f"<p class='bad'>The session is ended everywhere, but the service met a "
                        f"problem doing it: {_e(reason)}</p><p><a href='/login'>Log in</a></p>", None, 500)
            _forget(resp, SESSION)
            _forget(resp, OLD_SESSION)
            return resp
        if not ended:  # it ended nothing (another logout came first): a request like any other
            rt.limit(key.key_id, key.rate)
        return None

    def forget_ended(now: float) -> None:
        """Drop the sessions ended in this process that have expired anyway: the set holds no more
        than the sessions opened in SESSION_SECONDS."""
        for ref in [r for r, until in ended_here.items() if until < now]:
            del ended_here[ref]

    def ended_anyway(cookie: Optional[str]) -> bool:
        """After a logout that failed: whether the session is over all the same (a check that
        fails itself is taken as a live session: the browser keeps its cookie to log out again)."""
        try:
            return rt.light(lambda sf: live_key(sf, cookie)) is None
        except SafeFaceError:
            return False

    def live_key(sf: Any, cookie: Optional[str]) -> Optional[ApiKey]:
        """The key behind `cookie` if it is a live session (whatever its role may do now), else
        None: nothing to end (end_session checks again and records only a live one)."""
        try:
            return cast(ApiKey, sf.session(cookie))
        except AuthenticationError:
            return None

    @router.get("/")
    async def root(request: Request) -> Response:
        return RedirectResponse("/audit" if limited(request) else "/login", status_code=303)

    @router.get("/audit")
    async def audit(request: Request) -> Response:
        def read(sf: Any) -> tuple[str, list[Any]]:
            try:
                r = sf.audit_verify()
                state = f"<p class='ok' id='verify'>Verified: {r.entries} entries, head {r.head_hash[:16]}...</p>"
            except IntegrityError as exc:
                # What failed names entries and, on a server workspace, the record store's host,
                # user and database: the operator's to read in the service's log, as for /v1.
                state = f"<p class='bad' id='verify'>FAILS verification: {_e(told(exc)[0])}</p>"
            return state, sf.audit_entries()[-300:]

        s, out = await as_session(request, read)
        if not isinstance(out, tuple):
            return cast(Response, out)
        state, entries = out
        rows = "".join(f"<tr><td>{e.seq}</td><td>{_e(e.time[:19])}</td><td>{_e(e.operation)}</td>"
                       f"<td>{_e(e.decision)}</td><td>{_e(e.rule)}</td><td>{_e(e.purpose)}</td><td>{_e(e.actor)}</td>"
                       f"<td>{_e(', '.join(x[:12] for x in e.subjects))}</td><td>{_e(e.note)}</td></tr>"
                       for e in reversed(entries))
        return page("Audit log", f"{state}<table id='audit'><tr><th>#</th><th>time (UTC)</th><th>operation</th>"
                    f"<th>decision</th><th>rule</th><th>purpose</th><th>key</th><th>subjects</th><th>note</th></tr>"
                    f"{rows}</table>", s)

    async def grouped(request: Request, attr: str) -> tuple[Optional[Session], Any]:
        """The stored records grouped by `attr` (descriptions only), or the response to send."""
        s, recs = await as_session(request, lambda sf: sf.records())
        if s is None or not isinstance(recs, list):
            return None, recs
        by: dict[str, list[Any]] = defaultdict(list)
        for r in recs:
            by[getattr(r, attr)].append(r)
        return s, sorted(by.items())

    def purposes(rs: list[Any]) -> str:
        return _e(", ".join(sorted({p for r in rs for p in r.purposes})))

    def masked_path(rs: list[Any]) -> str:
        """How many of the subject's templates a masked probe can meet (a visible-region template),
        and how many of those came from a masked image (met with the both-masked threshold)."""
        n, m = sum(bool(r.masked_template) for r in rs), sum(bool(r.masked_enrolment) for r in rs)
        return f"{n} ({m} from a masked image)" if m else str(n)

    async def act(request: Request, fn: Any) -> Any:
        """A console form: session, CSRF token, then fn(view, form) as the session's key."""
        s = session(request)
        if s is None:
            return to_login()
        f = await form_of(request, s)
        return (await as_session(request, lambda sf: fn(sf, f)))[1]

    @router.get("/consents")
    async def consents(request: Request) -> Response:
        s, groups = await grouped(request, "token_ref")
        if s is None:
            return cast(Response, groups)
        rows = "".join(
            f"<tr><td><code>{_e(ref)}</code></td><td>{_e(rs[0].provenance)}</td><td>{purposes(rs)}</td><td>{len(rs)}</td>"
            f"<td><form method='post' action='/consents/revoke'>{_csrf(s)}<input type='hidden' name='token_ref' "
            f"value='{_e(ref)}'><button class='revoke'>Revoke</button></form></td></tr>" for ref, rs in groups)
        return page("Consents", f"""<table id='consents'><tr><th>token reference</th><th>basis</th><th>purposes</th>
<th>templates</th><th></th></tr>{rows or "<tr><td colspan=5>no stored consents</td></tr>"}</table>
<h2>Revoke by token id</h2><form method='post' action='/consents/revoke'>{_csrf(s)}
<input name='token_id' id='token_id' size='40'><button id='revoke_id'>Revoke</button></form>""", s)

    @router.post("/consents/revoke")
    async def revoke(request: Request) -> Response:
        return _receipt_saved(await act(request, lambda sf, f: sf.revoke(
            token_id=f.get("token_id") or None, token_ref=None if f.get("token_id") else (f.get("token_ref") or None))))

    @router.get("/subjects")
    async def subjects(request: Request) -> Response:
        s, groups = await grouped(request, "pseudonym")
        if s is None:
            return cast(Response, groups)
        rows = "".join(
            f"<tr><td><code>{_e(p)}</code></td><td>{len(rs)}</td><td class='masked'>{masked_path(rs)}</td>"
            f"<td>{purposes(rs)}</td><td>{_e(min(r.expires_at for r in rs).date())}</td>"
            f"<td><form method='post' action='/subjects/erase'>{_csrf(s)}<input type='hidden' name='pseudonym' "
            f"value='{_e(p)}'><button class='erase'>Erase</button></form></td></tr>" for p, rs in groups)
        return page("Subjects", f"<table id='subjects'><tr><th>pseudonym</th><th>templates</th>"
                    f"<th>for masked probes</th><th>purposes</th><th>first expiry</th><th></th></tr>"
                    f"{rows or '<tr><td colspan=6>no subjects</td></tr>'}</table>", s)

    @router.post("/subjects/erase")
    async def erase(request: Request) -> Response:
        return _receipt_saved(await act(request, lambda sf, f: sf.erase(pseudonym=f.get("pseudonym", ""))))

    def _receipt_saved(out: Any) -> Response:
        if isinstance(out, Response):
            return out
        text = json.dumps(out.to_dict(), indent=2) + "\n"
        try:
            try:  # written as the copies are read: through no link below reports/ (atomicfile._write_below)
                write_atomic(reports() / "receipts" / f"{out.receipt_id}.json", text, within=reports())
            except OSError as exc:  # a full or failing disk, typed (it was a 500 with a traceback)
                raise_if_unwritable(exc, "the console's receipts folder")
                raise
        except ConfigError as exc:
            # Done and on the audit log, but not saved (a link in the way, a full disk; the cause is
            # in the service's log): shown once here, so the signed receipt is not lost.
            return page("Erasure receipt (not saved)", f"<p class='bad' id='not-saved'>Done, but the receipt could not "
                        f"be saved under reports/receipts (the service's log says why, under reference "
                        f"{_e(told(exc)[1])}): keep this copy.</p><pre id='receipt'>{_e(text)}</pre>", None, 500)
        return RedirectResponse(f"/receipts/{out.receipt_id}", status_code=303)

    def reports() -> Path:
        """The folder below which the console writes and reads its files, following no link."""
        return rt.config.workspace / "reports"

    @router.get("/receipts/{receipt_id}.json")
    async def receipt_file(request: Request, receipt_id: str) -> Response:
        if limited(request) is None:
            return to_login()
        data, doc = _receipt(receipt_id)
        if data is None or doc is None:
            if _receipts_unsafe():
                return PlainTextResponse(_UNSAFE_FOLDER, status_code=409)
            return PlainTextResponse("no such receipt", status_code=404)
        if not _signed(doc):
            return PlainTextResponse(_UNSIGNED, status_code=409)
        return Response(data, media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="receipt-{receipt_id}.json"'})

    @router.get("/receipts/{receipt_id}")
    async def receipt(request: Request, receipt_id: str) -> Response:
        s = limited(request)
        if s is None:
            return to_login()
        _, doc = _receipt(receipt_id)
        if doc is None:
            if _receipts_unsafe():
                return page("Receipts not read", f"<p class='bad' id='unsafe'>{_e(_UNSAFE_FOLDER)}</p>", s, 409)
            return page("No such receipt", "<p>No receipt has that id.</p>", s, 404)
        if not _signed(doc):
            return page("Receipt does not verify", f"<p class='bad' id='unsigned'>{_e(_UNSIGNED)}</p>", s, 409)
        return page("Erasure receipt", f"<p class='msg' id='done'>{_e(doc['reason'])}: {_e(doc['templates_removed'])} "
                    f"template(s) removed.</p><pre id='receipt'>{_e(json.dumps(doc, indent=2))}</pre>"
                    f"<p><a id='download' href='/receipts/{_e(receipt_id)}.json'>Download the signed receipt</a></p>", s)

    def _receipt(receipt_id: str) -> tuple[Optional[bytes], Optional[dict[str, Any]]]:
        """The saved receipt's bytes and content; (None, None) for none or no receipt object."""
        data = _saved(reports() / "receipts" / f"{receipt_id}.json") if _RECEIPT_ID.match(receipt_id) else None
        try:
            doc = json.loads(data) if data is not None else None
        except (ValueError, RecursionError):  # a file edited by hand (arrays nested past the parser's depth too)
            doc = None
        if not isinstance(doc, dict) or not {"reason", "templates_removed"} <= doc.keys():
            return None, None
        return data, doc

    def _receipts_unsafe() -> bool:
        """Whether reports/receipts is there but refused (a link; another user's, or writable by
        others): every receipt in it read as none, and the page said "no such receipt" of each."""
        try:
            os.close(folder_below(reports(), reports() / "receipts"))
        except FileNotFoundError:
            return False
        except (ImageError, OSError):
            return True
        return False

    def _signed(doc: dict[str, Any]) -> bool:
        """Whether the workspace's receipt key signed `doc`: whoever may write reports/ could
        otherwise put an erasure that never happened among the receipts, shown as one."""
        try:
            rt.light(lambda sf: sf.check_receipt(doc))
        except IntegrityError:
            return False
        return True

    def _saved(path: Path) -> Optional[bytes]:
        """A file the console saved under reports/ (a receipt, a report's copy): a regular file in
        folders below reports/ none of which is a link, read without following one; None otherwise.
        A link planted there by whoever may write reports/ (to a key or passphrase file, or in
        place of a folder: to a folder of face photos; a hard link too) was served to every session
        that may read the report. The folders are opened one by one (read_no_link's `within`): a
        folder checked and then swapped for a link before the open was followed."""
        try:
            return read_no_link(path, MAX_COPY_BYTES, within=reports())
        except ConfigError:
            return None

    @router.get("/keys")
    async def keys(request: Request, issued: str = "") -> Response:
        s, out = await as_session(request, lambda sf: (sf.trusted_keys(), sf.api_keys()))
        if s is None or not isinstance(out, tuple):
            return cast(Response, out)
        trusted, api = out
        trows = "".join(f"<tr><td>{_e(kind)}</td><td><code>{_e(k)}</code></td></tr>"
                        for kind, ks in trusted.items() for k in ks)
        arows = "".join(
            f"<tr><td><code>{_e(k.key_id)}</code></td><td>{_e(k.role)}</td><td>{_e(k.label)}</td><td>{_e(k.created)}</td>"
            f"<td>{_e(k.expires or 'never')}</td><td>{k.rate:g}/s</td><td>{_e(_revocation(k))}</td><td>"
            + ("" if k.revocation_logged else f"<form method='post' action='/keys/revoke'>{_csrf(s)}<input type='hidden' "
               f"name='key_id' value='{_e(k.key_id)}'><button class='revoke-key'>Revoke</button></form>")
            + "</td></tr>" for k in api)
        return page("Keys", f"<h2>Trusted signing keys</h2><table id='trusted'><tr><th>kind</th><th>key id</th></tr>"
                    f"{trows}</table><h2>API keys</h2><table id='apikeys'><tr><th>id</th><th>role</th><th>label</th>"
                    f"<th>created</th><th>expires</th><th>rate</th><th>revoked</th><th></th></tr>{arows}</table>"
                    "<p>New keys: <code>safeface apikey new WS --role ROLE</code> (the key is shown once).</p>", s)

    @router.post("/keys/revoke")
    async def revoke_key(request: Request) -> Response:
        out = await act(request, lambda sf, f: sf.revoke_api_key(f.get("key_id", "")))
        return out if isinstance(out, Response) else RedirectResponse("/keys", status_code=303)

    def generate_form(s: Session, label: str) -> str:
        return (f"<form method='post' action='/report'>{_csrf(s)}<button id='generate'>{_e(label)}</button></form>")

    @router.get("/report")
    async def report(request: Request) -> Response:
        """The last report the console generated, as saved under reports/console (read as the
        copies are: no link followed). A GET writes nothing: it ran the report, which writes files
        and an audit entry, so a page on another host of the same site could make a logged-in
        browser run it (SameSite lets a same-site request carry the cookie); POST /report, with
        the form's CSRF token, generates one."""
        s = limited(request)
        if s is None:
            return to_login()
        data = _saved(reports() / "console" / "compliance.json")
        try:
            body = report_body(json.loads(data)) if data is not None else None
        except (ValueError, RecursionError, KeyError, TypeError, AttributeError):  # a file edited by hand
            body = "<p class='bad' id='status'>The last report saved under reports/console cannot be read.</p>"
        if body is None:
            body = "<p id='status'>No report has been generated here yet.</p>"
        return page("Compliance report", generate_form(s, "Generate a new report") + body, s)

    @router.post("/report")
    async def generate_report(request: Request) -> Response:
        out_dir = reports() / "console"

        def run(sf: Any, _form: dict[str, str]) -> bool:
            files = sf.report(out_dir, quote=kept, within=reports())
            # Read back as the copies are served: through a folder linked elsewhere, whoever may
            # write reports/ rewrote the file between its write and this read, and the page showed
            # their report ("may process") in place of the one failing.
            data = _saved(Path(files["json"]))
            if data is None:
                raise ConfigError(f"the report written to {out_dir} cannot be read back there (a link, or a file "
                                  "with another name, in its place); remove what is in the way and try again.")
            return True

        out = await act(request, run)
        return out if isinstance(out, Response) else RedirectResponse("/report", status_code=303)

    def report_body(r: dict[str, Any]) -> str:
        status = "may process" if r["can_process"] else "CANNOT PROCESS: a rule is failing"
        if not r["records_verified"]:
            status += f"; {RECORDS_FAIL}"
        rules = "".join(f"<tr class='{'bad' if x['state'] == 'failing' else ''}'><td>{_e(x['id'])}</td>"
                        f"<td>{_e(x['title'])}</td><td>{_e(x['state'])}</td><td>{_e(x['detail'])}</td>"
                        f"<td>{_e(x['refusals'])}</td></tr>" for x in r["rules"])
        counts = "".join(f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v) if isinstance(v, dict) else v)}</td></tr>"
                         for k, v in r["counts"].items())
        plots = "".join(f"<p><img src='/report/{_e(p)}' alt='{_e(p)}'></p>" for p in r.get("assessment_plots", []))
        return (f"<p id='status'>Deployment <b>{_e(r['deployment'])}</b>, profiles "
                f"{_e(', '.join(r['profiles']))}: <b>{_e(status)}</b>; generated {_e(r['generated'])}.</p>"
                f"<h2>Counts</h2><table>{counts}</table><h2>Rules</h2><table id='rules'><tr><th>rule</th>"
                f"<th>title</th><th>state</th><th>detail</th><th>refusals</th></tr>{rules}</table>"
                f"<h2>Evaluation</h2>{plots or '<p>No evaluation plots yet (safeface eval ... --workspace WS).</p>'}"
                "<p><a href='/report/compliance.json'>compliance.json</a></p>")

    @router.get("/report/{name:path}")
    async def report_file(request: Request, name: str) -> Response:
        if limited(request) is None:
            return to_login()
        base = reports() / "console"
        if name == "compliance.json":
            path = base / name
        elif name.startswith("assessment/") and _PLOT.match(name[len("assessment/"):]):
            path = base / "assessment" / name[len("assessment/"):]
        else:
            return PlainTextResponse("not found", status_code=404)
        data = _saved(path)  # not followed: a link planted among the copies was served, its target too
        if data is None:
            return PlainTextResponse("not found", status_code=404)
        media = {".json": "application/json", ".png": "image/png", ".svg": "image/svg+xml"}[path.suffix]
        return Response(data, media_type=media)

    return router
