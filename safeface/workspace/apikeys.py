"""The service's API keys (WS/apikeys.db, or the ``service_apikeys`` table of the PostgreSQL
record store when the records are there, so every host of the service sees a revocation at
once). A key decides its caller's role: the role is never
taken from a request.

A key reads ``sfk_<id>_<secret>`` and is shown once, when issued. The file keeps only its id, role,
label, expiry and rate with an HMAC-SHA256 of its id, role, expiry, rate and secret, under a key
derived from the keyring; its issue entry on the audit log binds that hash, its label and issue
time (row_ref). So the file alone cannot authenticate anyone, and editing a key's role, expiry,
rate, label or issue time by hand makes the key stop working rather than gain rights or pass for
another key in a listing. Revocation erases the hash: the
key can never work again, even if someone clears the revocation mark (and a mark set by hand
stops a live key too, so no listing calls a working key revoked). A key works only while the
audit log records its issue (SafeFace._not_revoked): a row written behind `apikey new`, even
under the right hashing key, is refused. Comparisons are constant-time.

The operator console exchanges a key for a session cookie ``<key id>.<expiry>.<HMAC>`` under a
key derived the same way (so every worker process accepts it), checked against the key's row at
each request: revoking the key ends its sessions. A session unused for IDLE_SECONDS ends too (its
last use, MACed, is kept in the same store). A logout that neither the audit log nor this store's
ended sessions can record is kept, in a local workspace, by a MACed file of its own in
WS/console-logouts, which every process reads, and on servers (and by `storage migrate`) as a MACed
end in the session's row of uses, which every host reads. A login form gives out one session per
key, however often it is posted (its row in spent_logins), and one key's session at a time (a row
naming the key it gave out a session to). CSRF tokens are an HMAC of the session.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, Union

from .. import atomicfile
from ..atomicfile import write_atomic
from ..errors import (AuthenticationError, ConfigError, IntegrityError, InvalidArgument, LoginFormTaken,
                      SchemaOwnerNeeded, WorkspaceBusy, WorkspaceUnwritable)
from ..hashing import same_digest
from ..lookalike import not_plain_char
from ..regularfile import read_no_link
from ..sqlite_store import raise_if_unwritable
from ..storage.sqltables import SqliteTables

T = TypeVar("T")
PREFIX = "sfk"
DEFAULT_RATE = 20.0  # requests per second per key and worker process
# The slowest rate a key may have (one request in 10,000 s): the limiter's wait, 1 / rate, stays a
# number a Retry-After header can carry (1e-310 made it infinite, a 500 instead of 429).
MIN_RATE = 0.0001
KEY_ID = re.compile(r"[0-9a-f]{12}")  # a key's id (fullmatch): what listings show and revocation takes
_KEY = re.compile(rf"^{PREFIX}_({KEY_ID.pattern})_([A-Za-z0-9_-]{{43}})$")
# One spelling per session (no leading zero, nothing after it): a logout is recorded under a hash of
# the cookie, so a second spelling that still validated would be a session never logged out.
_SESSION = re.compile(r"([0-9a-f]{12})\.([1-9][0-9]{0,11})\.([0-9a-f]{16})\.([0-9a-f]{64})")
SESSION_SECONDS = 8 * 3600
# A logout kept in the logouts folder: "<the session's end>-<its reference>.json".
_LOGOUT_FILE = re.compile(r"[1-9][0-9]{0,11}-[0-9a-f]{64}\.json")
# A session unused this long ends (each use extends it, up to SESSION_SECONDS from its login): a
# cookie copied from a browser left open, or from a proxy's log, is worth no more than the
# operator's last half hour of work. A use is recorded at most once a USE_EVERY_SECONDS, so a page
# costs no write; the timeout is kept to within that.
IDLE_SECONDS = 30 * 60
USE_EVERY_SECONDS = 60
# A label is shown to operators in listings: plain text only (lookalike.not_plain_char).
LABEL_MAX = 80

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apikeys (
    key_id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    created TEXT NOT NULL,
    expires TEXT,
    rate REAL NOT NULL,
    revoked TEXT,
    digest TEXT NOT NULL
);
"""
# Console sessions ended at logout before their time (a SHA-256 of the cookie; kept until it
# would have expired). A PostgreSQL store moved there by an earlier safeface lacks the table: the
# first login creates it (ApiKeys._table; refused, naming the statement, where the role may not).
_ENDED = "CREATE TABLE IF NOT EXISTS {t}ended_sessions (session TEXT PRIMARY KEY, until BIGINT NOT NULL)"
_SCHEMA += _ENDED.format(t="") + ";\n"
# Each console session's last recorded use (a Unix time, MACed with its session's reference: a row
# written or edited by hand is no use, and a session without one was last used at its login).
# Made at the first use recorded, so opening an older key store writes nothing (a read-only copy);
# on PostgreSQL at the first login, as ended_sessions.
_USES = ("CREATE TABLE IF NOT EXISTS {t}session_uses (session TEXT PRIMARY KEY, used BIGINT NOT NULL, "
         "until BIGINT NOT NULL, mac TEXT NOT NULL)")
# How long a console login form (its double-submit token) may be used: the login cookie's life.
LOGIN_FORM_SECONDS = 10 * 60
# The session each login form gave out, by key (a keyed hash of the form's token and the key's id):
# its end and nonce, from which the same cookie is made again (the MAC needs the service's key), so
# that a form submitted twice gives out one session. Kept for LOGIN_FORM_SECONDS, the form's life;
# made at the first login, as session_uses. A second row per form (a keyed hash of its token alone,
# session_until 0) holds in its nonce column the id of the key it last gave out a session to.
_SPENT = ("CREATE TABLE IF NOT EXISTS {t}spent_logins (form TEXT PRIMARY KEY, until BIGINT NOT NULL, "
          "session_until BIGINT NOT NULL, nonce TEXT NOT NULL)")
# The tables a console session reads and writes, with the statements that make them, and the
# rights it needs on them.
_SESSION_TABLES = (("ended_sessions", _ENDED), ("session_uses", _USES), ("spent_logins", _SPENT))
_RIGHTS = ("SELECT", "INSERT", "UPDATE", "DELETE")


def _described(r: Any) -> "ApiKey":
    # A row edited by hand (SQLite keeps any value: a rate of 'fast' stays text) is tampering,
    # named as such, never a bare ValueError deep in a listing or the report.
    # An infinite or NaN rate (a REAL, so of its type) is no rate either: the report would hold a
    # value JSON cannot carry.
    if (isinstance(r[5], bool) or not isinstance(r[5], (int, float)) or not math.isfinite(r[5]) or not all(
            v is None or isinstance(v, str) for v in (r[4], r[6]))):
        raise IntegrityError(f"the API key table's row for key {str(r[0])[:64]} was edited by hand (its rate, expiry "
                             "or revocation is not of its type), so the key works no more; restore the table from a "
                             "backup or delete that row.")
    return ApiKey(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], float(r[5]), r[6])


def session_ref(cookie: str) -> str:
    """A console session's reference (a hash: the cookie cannot be rebuilt from it)."""
    return hashlib.sha256(b"safeface console session|" + cookie.encode("utf-8")).hexdigest()


def session_until(cookie: str) -> int:
    """When a console session ends at the latest (Unix seconds): its cookie's second field, for a
    cookie that `ApiKeys.session` has accepted."""
    return int(cookie.split(".")[1])


def hashing_key(pseudonym_key: bytes) -> bytes:
    """The key under which API keys are hashed, derived from the keyring (its own label)."""
    return hmac.new(pseudonym_key, b"safeface api key hashing v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class ApiKey:
    """A key described: never its secret."""

    key_id: str
    role: str
    label: str
    created: str
    expires: Optional[str]  # ISO date: the key works until the end of that day (UTC)
    rate: float
    revoked: Optional[str]
    # The audit log's last entry when this key was found unrevoked there (SafeFace._not_revoked):
    # each entry made under the key names it, so a use after the revocation is told from one in flight.
    checked_after: Optional[int] = field(default=None, compare=False)
    # Whether the audit log records the key's revocation (SafeFace.api_keys fills it in): the
    # `revoked` mark is the table's, which a hand edit sets or a restored copy clears.
    revocation_logged: Optional[bool] = field(default=None, compare=False)

    def expired(self, now: dt.datetime) -> bool:
        return self.expires is not None and now.date() > dt.date.fromisoformat(self.expires)

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "role": self.role, "label": self.label, "created": self.created,
                "expires": self.expires, "rate": self.rate, "revoked": self.revoked,
                "revocation_logged": self.revocation_logged}


_COLS = "key_id, role, label, created, expires, rate, revoked"


def _given_out(rows: list[tuple[Any, ...]], now: int) -> Optional[tuple[int, str]]:
    """The end and nonce of a login form's session row (`rows`: its query's answer), if a login
    could have given it out at `now`: a row edited by hand must not have the service sign a
    cookie past SESSION_SECONDS."""
    if not rows or not isinstance(rows[0][0], int) or not now < rows[0][0] <= now + SESSION_SECONDS \
            or not re.fullmatch(r"[0-9a-f]{16}", str(rows[0][1])):
        return None
    return int(rows[0][0]), str(rows[0][1])


class ApiKeys:
    """Open with a SQLite file's path or the record store's PgTables, and the hashing key."""

    def __init__(self, where: Union[Path, str, Any], key: bytes, logouts: Optional[Path] = None) -> None:
        self._key = key
        self._logouts = logouts  # the folder of logouts no store took (end_session_in_file); None: none kept
        self._t = SqliteTables(Path(where), "API key store", _SCHEMA) if isinstance(where, (str, Path)) else where
        # The tables known to exist (ended_sessions is in every SQLite key store's schema).
        self._tables: set[str] = {"ended_sessions"} if getattr(self._t, "dialect", None) != "postgresql" else set()

    def close(self) -> None:
        self._t.close()

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """The rows as stored (hashes only), by their table's name in PostgreSQL, for a migration;
        with the ended sessions, the sessions' uses, and the logouts kept in the logouts folder as
        ends among them (end_session_in_uses): other hosts read no file, and a session logged out
        only there was live again on the server."""
        # A row edited out of its types by hand is no use (_used) and would fail the copy: left out.
        uses = {str(r[0]): tuple(r) for r in self._t.q("SELECT session, used, until, mac FROM {t}session_uses")
                if isinstance(r[1], int) and isinstance(r[2], int) and all(isinstance(v, str) for v in (r[0], r[3]))} \
            if self._table("session_uses", _USES, create=False) else {}
        for path in self._logout_files():
            try:
                doc = json.loads(read_no_link(path, 4096, within=path.parent.parent, one_name=False))
                ref, until = str(doc["session"]), doc["until"]
            except (ConfigError, ValueError, RecursionError, TypeError, KeyError):
                continue  # not a logout this keyring wrote: it ends nothing here either
            if isinstance(until, int) and same_digest(str(doc.get("mac")),
                                                              self._mac("console logout", f"{ref}|{until}")):
                uses[ref] = (ref, until, until, self._ended_mac(ref, until))
        # The logouts the ended sessions' table alone took (the audit log refused them): left
        # behind, each session was live again on the server.
        ended = [tuple(r) for r in self._t.q("SELECT session, until FROM {t}ended_sessions")
                 if isinstance(r[0], str) and isinstance(r[1], int)] \
            if self._table("ended_sessions", _ENDED, create=False) else []
        return {"service_apikeys": self._t.q("SELECT * FROM {t}apikeys"),
                "service_ended_sessions": sorted(ended),
                "service_session_uses": sorted(uses.values())}

    def move_to(self, where: Any) -> None:
        old, self._t = self._t, where
        old.close()
        self._tables = set()

    def _digest(self, key_id: str, role: str, expires: Optional[str], rate: float, secret: str) -> str:
        msg = f"safeface-apikey|{key_id}|{role}|{expires or ''}|{rate!r}|{secret}".encode("utf-8")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def issue(self, role: str, label: str, expires: Optional[dt.date], rate: Optional[float],
              now: dt.datetime) -> tuple[ApiKey, str]:
        """A new key for `role`: (its description, the key itself, to be shown once)."""
        if not isinstance(label, str) or len(label) > LABEL_MAX or not_plain_char(label) is not None:
            raise InvalidArgument("an API key label is at most 80 printable characters.")
        rate_v = DEFAULT_RATE if rate is None else float(rate)
        if not (MIN_RATE <= rate_v <= 100_000):
            raise InvalidArgument(f"the rate must be between {MIN_RATE:g} and 100000 requests per second, "
                                  f"got {rate!r}.")
        if expires is not None and expires < now.date():
            raise InvalidArgument(f"the expiry date {expires.isoformat()} is in the past.")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        exp = expires.isoformat() if expires is not None else None
        info = ApiKey(key_id, role, label, now.isoformat(timespec="seconds"), exp, rate_v, None)
        self._t.run("INSERT INTO {t}apikeys VALUES (?,?,?,?,?,?,?,?)",
                    (key_id, role, label, info.created, exp, rate_v, None, self._digest(key_id, role, exp, rate_v, secret)))
        return info, f"{PREFIX}_{key_id}_{secret}"

    def row_ref(self, key_id: str, *, described: bool = True) -> str:
        """A keyed digest of the hash the row of `key_id` stores and of the label and issue time it
        shows, for its issue entry on the log (storecheck.key_issued_note): a row rewritten since
        (another secret, rate, role or expiry), or relabelled (two keys' labels swapped, so that an
        admin revokes the wrong one), no longer matches it. The key cannot be rebuilt from it, nor
        the stored hash. `described=False`: the digest of the hash alone, which the issue entries
        of earlier releases hold (keys issued then are not bound to their label until reissued)."""
        rows = self._t.q("SELECT digest, label, created FROM {t}apikeys WHERE key_id = ?", (key_id,))
        digest, label, created = (str(v) for v in rows[0]) if rows else ("", "", "")
        return self._mac("issued row", json.dumps([digest, label, created]) if described else digest)[:32]

    def listed(self, key_id: str) -> bool:
        """Whether a row has the id `key_id`, whatever its other values."""
        try:
            key_id.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (bytes a command line could not decode) names no row
            return False
        return bool(self._t.q("SELECT 1 FROM {t}apikeys WHERE key_id = ?", (key_id,)))

    def revoke(self, key_id: str, now: dt.datetime) -> None:
        """Mark the key `key_id` revoked and erase its hash (no row with that id: nothing to mark).
        By id alone, never through the row's other values: a row edited out of its types (by a
        thief holding the key, just before) must not block the revocation."""
        self._t.run("UPDATE {t}apikeys SET revoked = COALESCE(revoked, ?), digest = '' WHERE key_id = ?",
                    (now.isoformat(timespec="seconds"), key_id))

    def get(self, key_id: str) -> Optional[ApiKey]:
        rows = self._t.q(f"SELECT {_COLS} FROM {{t}}apikeys WHERE key_id = ?", (key_id,))
        return _described(rows[0]) if rows else None

    def list(self) -> list[ApiKey]:
        return [_described(r) for r in self._t.q(f"SELECT {_COLS} FROM {{t}}apikeys ORDER BY created, key_id")]

    def authenticate(self, presented: Optional[str], now: dt.datetime) -> ApiKey:
        """The key's description if `presented` is a genuine, unrevoked, unexpired key; else
        AuthenticationError (whose message never repeats the key)."""
        m = _KEY.fullmatch(presented) if isinstance(presented, str) else None
        if m is None:
            raise AuthenticationError("a valid API key is required (header X-API-Key or Authorization: Bearer).")
        key_id, secret = m.group(1), m.group(2)
        rows = self._t.q(f"SELECT {_COLS}, digest FROM {{t}}apikeys WHERE key_id = ?", (key_id,))
        r = rows[0] if rows else None
        # Compare against a dummy digest for unknown ids too, so timing does not tell ids apart.
        info = self._checked(r)
        stored = str(r[7]) if r else ""
        want = self._digest(key_id, info.role if info else "", info.expires if info else None,
                            info.rate if info else 0.0, secret)
        # A revocation mark set by hand on a live row stops the key too: no listing calls a
        # working key revoked (the mark is all a listing shows).
        if info is None or info.revoked is not None or not stored or not same_digest(want, stored):
            raise AuthenticationError("the API key is unknown or revoked.")
        if info.expired(now):
            raise AuthenticationError(f"the API key {key_id} expired on {info.expires}.")
        return info

    @staticmethod
    def _checked(r: Any) -> Optional[ApiKey]:
        """A row described for authentication, None for none: a row edited out of its types is
        a key that works no more (the listing and the report name it; a caller is told no more)."""
        try:
            return _described(r) if r else None
        except IntegrityError:
            return None

    # -- console sessions ---------------------------------------------------------------------
    def _mac(self, label: str, text: str) -> str:
        return hmac.new(self._key, f"safeface-{label}|{text}".encode("utf-8"), hashlib.sha256).hexdigest()

    def open_session(self, presented: Optional[str], now: dt.datetime, form: Optional[str] = None,
                     ended: Optional[str] = None, replaces: Optional[str] = None,
                     until: Optional[float] = None) -> tuple[ApiKey, str]:
        """A session for the key `presented`: (its description, the cookie). `form`: the token of
        the login form it came from, which gives out one session (_form_session); `ended`: the
        session that form gave out, found logged out since, which a new one replaces; `replaces`:
        the other key whose session from this form is over or held by the posting browser
        (LoginFormTaken names it otherwise). `until`: a time.monotonic() past which the form's record
        waits no more for a store another process holds (WorkspaceBusy), sooner than LOCK_WAIT_S."""
        info = self.authenticate(presented, now)
        if getattr(self._t, "dialect", None) == "postgresql":
            # A store moved there by an earlier safeface lacks the sessions' tables: made now, or
            # the login refused (SchemaOwnerNeeded) where the role may not. Made at the first use
            # instead, each console page failed a minute into every session; a session without
            # them would have no logout for other hosts and no idle timeout.
            for name, ddl in _SESSION_TABLES:
                self._table(name, ddl, create=True)
                self._usable(name)
        # Each login its own session, even two in one second: logging out of one ends no other;
        # but one login form gives out one session (_form_session).
        exp, nonce = self._form_session(form, info.key_id, now, ended, replaces, until) if form is not None else (
            int(now.timestamp()) + SESSION_SECONDS, secrets.token_hex(8))
        rows = self._t.q("SELECT digest FROM {t}apikeys WHERE key_id = ?", (info.key_id,))
        mac = self._session_mac(info, exp, nonce, str(rows[0][0]) if rows else "")
        return info, f"{info.key_id}.{exp}.{nonce}.{mac}"

    def _form_session(self, form: str, key_id: str, now: dt.datetime, ended: Optional[str] = None,
                      replaces: Optional[str] = None, until: Optional[float] = None) -> tuple[int, str]:
        """The end and nonce of the session that the login form whose token is `form` gives out
        for the key `key_id`: the one it gave out before, while that is live, else a new one,
        recorded. A form submitted twice with one key (a double click; two tabs of one browser,
        which share the form's cookie, at once) gives out one session, whichever answer the
        browser keeps: each used to open its own, and the one whose cookie the browser dropped
        stayed live, held by no browser, until it idled out. Two browsers have two forms. Once
        its session is logged out (`ended`, that session's cookie), the form gives out one new
        session in its place, the same to posts racing: each opened a session of its own before.
        The form gives out sessions of one key at a time: posted by two tabs with two keys at once,
        each key had its session, the browser kept one cookie, and the other session stayed live,
        held by no browser. A post with another key while the form's session is live is refused
        (LoginFormTaken) unless the caller found that session over or held by the posting browser
        (`replaces`: its key's id)."""
        ref, t = self._mac("login form", f"{form}|{key_id}"), int(now.timestamp())
        fresh = (t + SESSION_SECONDS, secrets.token_hex(8))
        m = _SESSION.fullmatch(ended) if isinstance(ended, str) else None  # no cookie's shape: replaces nothing
        gone = (int(m.group(2)), m.group(3)) if m is not None else None
        # A full or read-only disk (WorkspaceUnwritable) refuses the login: a session given out
        # unrecorded let the same form, posted again, give out a second one, held by no browser.
        return self._spend_form(ref, t, fresh, gone, (self._mac("login form key", form), key_id, replaces), until)

    def _spend_form(self, ref: str, t: int, fresh: tuple[int, str], gone: Optional[tuple[int, str]],
                    owner: tuple[str, str, Optional[str]], until: Optional[float] = None) -> tuple[int, str]:
        """_form_session's record: the session the form `ref` gave out unless it is `gone` (its
        end and nonce), else `fresh`, recorded. `owner`: the form's row naming the key it gave
        out a session to last, this key's id, and the key it may replace (LoginFormTaken else)."""
        self._table("spent_logins", _SPENT, create=True)
        owner_ref, key_id, replaces = owner
        # Waited for (the service runs a login off its event loop, Runtime.aside, so the wait holds
        # no other request of the worker), but not for ever: `until`, where the caller has others
        # waiting behind this one.
        return self._tried_until_free(lambda: self._spend_form_once(ref, t, fresh, gone, owner_ref, key_id, replaces),
                                      until)

    @staticmethod
    def _tried_until_free(write: Callable[[], T], until: Optional[float] = None) -> T:
        """`write()`, a transaction that gives up at once while another process holds the store's
        write lock, tried again 20 ms apart for up to LOCK_WAIT_S (or until the time.monotonic()
        `until`, if sooner; tried once all the same), then WorkspaceBusy (a 503). A wait inside
        PostgreSQL for its advisory lock has no end while another host holds it."""
        deadline = time.monotonic() + atomicfile.LOCK_WAIT_S  # read now, as the workspace's locks read it
        if until is not None:
            deadline = min(deadline, until)
        while True:
            try:
                return write()
            except WorkspaceBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _spend_form_once(self, ref: str, t: int, fresh: tuple[int, str], gone: Optional[tuple[int, str]],
                         owner_ref: str, key_id: str, replaces: Optional[str]) -> tuple[int, str]:
        with self._t.write(wait=False):
            self._t.run("DELETE FROM {t}spent_logins WHERE until < ?", (t,))
            # The key the form gave out its session to, in a row of the same table (its nonce
            # column holds the key's id; no session is made from it): checked and moved inside
            # this transaction, so of two keys posting at once one is refused.
            named = self._t.q("SELECT nonce FROM {t}spent_logins WHERE form = ?", (owner_ref,))
            other = str(named[0][0]) if named else None
            if other is not None and other != key_id and other != replaces:
                raise LoginFormTaken("this login form has just opened a console session for another API key (another "
                                     "tab of this browser?); log in again to change keys.", other)
            rows = self._t.q("SELECT session_until, nonce FROM {t}spent_logins WHERE form = ?", (ref,))
            recorded = _given_out(rows, t)
            again = recorded is not None and recorded != gone
            if not again or other != key_id:  # kept as long as the form's row of the session it names
                self._t.run("INSERT INTO {t}spent_logins AS s VALUES (?, ?, 0, ?) ON CONFLICT (form) DO UPDATE "
                            "SET until = excluded.until, nonce = excluded.nonce",
                            (owner_ref, t + LOGIN_FORM_SECONDS, key_id))
            if recorded is not None and again:
                return recorded
            self._t.run("INSERT INTO {t}spent_logins AS s VALUES (?, ?, ?, ?) ON CONFLICT (form) DO UPDATE "
                        "SET until = excluded.until, session_until = excluded.session_until, "
                        "nonce = excluded.nonce", (ref, t + LOGIN_FORM_SECONDS, *fresh))
        return fresh

    def form_cookie(self, form: str, key_id: str, now: dt.datetime) -> Optional[str]:
        """The cookie of the session the login form `form` gave out for the key `key_id`, made
        again from its row; None when there is none (pruned, edited by hand, or its key gone, or no
        form has given out a session yet: the table is made at the first)."""
        if not self._table("spent_logins", _SPENT, create=False):
            return None
        t = int(now.timestamp())
        rows = self._t.q("SELECT session_until, nonce FROM {t}spent_logins WHERE form = ?",
                         (self._mac("login form", f"{form}|{key_id}"),))
        key = self._t.q(f"SELECT {_COLS}, digest FROM {{t}}apikeys WHERE key_id = ?", (key_id,))
        info, recorded = self._checked(key[0] if key else None), _given_out(rows, t)
        if info is None or recorded is None:
            return None
        exp, nonce = recorded
        return f"{key_id}.{exp}.{nonce}.{self._session_mac(info, exp, nonce, str(key[0][7] or ''))}"

    def _session_mac(self, info: ApiKey, exp: int, nonce: str, digest: str) -> str:
        # Bound to the row's role, expiry, rate and digest as they were at login: a session
        # outlives no hand edit of its key's row (the key's own check needs its secret, which a
        # session does not carry).
        return self._mac("session", f"{info.key_id}.{exp}.{nonce}|{info.role}|{info.expires or ''}|{info.rate!r}|"
                                    f"{digest}")

    def session(self, cookie: Optional[str], now: dt.datetime, *, use: bool = True) -> ApiKey:
        """The key behind a genuine, unexpired session whose key is still valid. `use`: False for a
        request that opens no page (a logout's check before its token, the login page's offer to
        end a session): it must not keep the session from idling out. SchemaOwnerNeeded where the
        store's role lost a right on the sessions' tables since the login."""
        try:
            return self._session(cookie, now, use)
        except (IntegrityError, SchemaOwnerNeeded):
            self._rights()  # the rights missing named, each with the statement that mends it
            raise

    def _session(self, cookie: Optional[str], now: dt.datetime, use: bool) -> ApiKey:
        m = _SESSION.fullmatch(cookie) if isinstance(cookie, str) else None
        rows = self._t.q(f"SELECT {_COLS}, digest FROM {{t}}apikeys WHERE key_id = ?", (m.group(1),)) if m else []
        info = self._checked(rows[0] if rows else None)
        if m is None or info is None or not same_digest(
                self._session_mac(info, int(m.group(2)), m.group(3), str(rows[0][7] or "")), m.group(4)):
            raise AuthenticationError("no valid console session (or its key was changed); log in with an API key.")
        if int(m.group(2)) < now.timestamp():
            raise AuthenticationError("the console session expired; log in again.")
        if self._table("ended_sessions", _ENDED, create=False) and self._t.q(
                "SELECT 1 FROM {t}ended_sessions WHERE session = ?", (session_ref(str(cookie)),)):
            raise AuthenticationError("the console session was ended (logged out); log in again.")
        if self._logged_out_in_file(str(cookie)):
            raise AuthenticationError("the console session was ended (logged out; kept in the workspace's "
                                      "console-logouts folder, as neither the audit log nor the key table took it); "
                                      "log in again.")
        if not rows[0][7] or info.revoked is not None:
            raise AuthenticationError("the API key behind this session was revoked; log in again.")
        if info.expired(now):
            raise AuthenticationError(f"the API key behind this session expired on {info.expires}.")
        self._used(session_ref(str(cookie)), int(m.group(2)), int(now.timestamp()), record=use)
        return info

    def _used(self, ref: str, until: int, now: int, record: bool = True) -> None:
        """Refuse the session `ref` (ending at `until`) if unused for IDLE_SECONDS, else (with
        `record`) record this use when the last one recorded is a USE_EVERY_SECONDS old. A row
        whose MAC fails counts as no use (a hand edit cannot revive an idle session; deleting the
        row, or restoring an older table, only makes it idle sooner)."""
        last = until - SESSION_SECONDS  # its login
        rows = self._t.q("SELECT used, mac FROM {t}session_uses WHERE session = ?", (ref,)) \
            if self._table("session_uses", _USES, create=False) else []
        if rows and same_digest(str(rows[0][1]), self._ended_mac(ref, until)):
            raise AuthenticationError("the console session was ended (logged out; kept in the key store's session "
                                      "uses, as neither the audit log nor the ended sessions' table took it); log in "
                                      "again.")
        genuine = bool(rows) and isinstance(rows[0][0], int) and same_digest(
            str(rows[0][1]), self._use_mac(ref, rows[0][0], until))
        if genuine:
            last = max(last, rows[0][0])
        if now - last > IDLE_SECONDS:
            raise AuthenticationError(f"the console session was not used for {IDLE_SECONDS // 60} minutes, so it "
                                      "ended; log in again.")
        if not record or now - last < USE_EVERY_SECONDS:
            return
        try:
            # Not waited for (the service checks sessions on its event loop): a use not recorded
            # now is recorded at the next page, and at worst the session ends a little sooner.
            self._table("session_uses", _USES, create=True, wait=False)
        except SchemaOwnerNeeded as exc:  # dropped since the login (which makes it): no idle timeout, no session
            raise AuthenticationError(f"the console session cannot be kept: {exc}") from exc
        except (WorkspaceBusy, WorkspaceUnwritable, IntegrityError):
            return
        try:
            with self._t.write(wait=False):
                self._t.run("DELETE FROM {t}session_uses WHERE until < ?", (now,))
                if rows and not genuine:  # one set far ahead by hand kept every later use from being recorded
                    self._t.run("DELETE FROM {t}session_uses WHERE session = ? AND mac = ?", (ref, rows[0][1]))
                self._t.run("INSERT INTO {t}session_uses AS u VALUES (?, ?, ?, ?) ON CONFLICT (session) DO UPDATE "
                            "SET used = excluded.used, mac = excluded.mac WHERE u.used < excluded.used",
                            (ref, now, until, self._use_mac(ref, now, until)))
        except SchemaOwnerNeeded:
            # A right revoked (no INSERT, UPDATE or DELETE) would end every session 30 minutes
            # after its login, unsaid: named instead, the rights missing first.
            self._rights()
            raise
        except IntegrityError:  # a trigger, a file replaced: at worst the session ends sooner
            self._rights()
        except (WorkspaceBusy, WorkspaceUnwritable):  # held, full
            pass

    def _use_mac(self, ref: str, used: int, until: int) -> str:
        return self._mac("session use", f"{ref}|{used}|{until}")

    def _ended_mac(self, ref: str, until: int) -> str:
        return self._mac("session ended in uses", f"{ref}|{until}")

    def end_session_in_uses(self, ref: str, until: int, now: dt.datetime) -> bool:
        """End the session `ref` (ending at `until`) by its row of session uses, for a logout that
        neither the audit log nor the ended sessions' table could record (a trigger on each; a
        right revoked on one, the witness volume full): on a server workspace it ended in the
        process asked alone, and a copy of the cookie sent to another worker or host read on. The
        row, MACed as an end (one written by hand ends nothing; deleting it, or restoring the table
        from an older copy, revives the session, as for the logouts folder), is read by every
        process's session check; no later use replaces it. False when the table is not there."""
        if not self._table("session_uses", _USES, create=False):
            return False
        with self._t.write():
            self._t.run("INSERT INTO {t}session_uses AS u VALUES (?, ?, ?, ?) ON CONFLICT (session) DO UPDATE "
                        "SET used = excluded.used, mac = excluded.mac",
                        (ref, until, until, self._ended_mac(ref, until)))
        return True

    def end_session(self, cookie: Optional[str], now: dt.datetime, wait: bool = True) -> bool:
        """End a console session before its time (logout): a copy of the cookie opens nothing
        afterwards. Only a live session is recorded, until its own end (8 hours at most), so the
        table holds no more than the sessions opened in that time; False when there was none.
        `wait`: False to give up at once (WorkspaceBusy) while another process writes the table
        (SafeFace.end_session has recorded the end on the audit log already)."""
        try:
            self.session(cookie, now, use=False)
        except AuthenticationError:
            return False
        return self.end_session_ref(session_ref(str(cookie)), session_until(str(cookie)), now, wait)

    def end_session_ref(self, ref: str, until: int, now: dt.datetime, wait: bool = True) -> bool:
        """Record the session `ref` (ending at `until`) ended; False when it was already. `wait`:
        for the store's write lock, up to LOCK_WAIT_S (on PostgreSQL it was waited for with no end
        while another host held it); False to give up at once (WorkspaceBusy)."""
        self._table("ended_sessions", _ENDED, create=True)

        def record() -> int:
            with self._t.write(wait=False):
                self._t.run("DELETE FROM {t}ended_sessions WHERE until < ?", (int(now.timestamp()),))
                # The insert is the arbiter: of two logouts racing past the check above, only the
                # one whose row went in ended the session (the other changed nothing).
                return self._t.run("INSERT INTO {t}ended_sessions VALUES (?, ?) ON CONFLICT DO NOTHING",
                                   (ref, until))

        return (self._tried_until_free(record) if wait else record()) > 0

    def end_session_in_file(self, cookie: Optional[str], now: dt.datetime) -> bool:
        """End a live console session by a file of its own in the logouts folder, for a logout that
        neither the audit log nor the key table could record (a trigger added to each, a handle on
        a replaced file, the witness volume full while another process holds the key table): it
        ended in the process asked alone, and a copy of the cookie sent to another worker read on.
        One file per session, written whole, so two processes ending sessions at once need no lock;
        MACed, so one written by hand ends nothing. Restoring the folder from an older copy (or
        deleting the file) revives the session: no anchor outside the workspace records it. False
        when there is no such folder or no live session; ConfigError when the file cannot be made."""
        if self._logouts is None:
            return False
        try:
            self.session(cookie, now, use=False)
        except AuthenticationError:
            return False
        for old in self._logout_files():  # those of sessions over anyway: the folder stays small
            if int(old.name.split("-")[0]) < now.timestamp():
                with contextlib.suppress(OSError):  # a folder of that name, put there by hand: left
                    old.unlink(missing_ok=True)
        until, ref = session_until(str(cookie)), session_ref(str(cookie))
        body = json.dumps({"session": ref, "until": until, "mac": self._mac("console logout", f"{ref}|{until}")})
        try:
            write_atomic(self._logout_file(self._logouts, str(cookie)), body, mode=0o600, within=self._logouts.parent)
        except OSError as exc:  # a full or failing disk, typed
            raise_if_unwritable(exc, "the console's logouts folder")
            raise
        return True

    @staticmethod
    def _logout_file(folder: Path, cookie: str) -> Path:
        return folder / f"{session_until(cookie)}-{session_ref(cookie)}.json"

    def _logout_files(self) -> tuple[Path, ...]:  # a tuple: `list` is a method of this class
        try:
            return tuple(p for p in self._logouts.iterdir() if _LOGOUT_FILE.fullmatch(p.name)) if self._logouts else ()
        except OSError:  # none yet, or not a folder
            return ()

    def _logged_out_in_file(self, cookie: str) -> bool:
        """Whether the logouts folder holds a genuine logout of `cookie` (one whose MAC fails, or a
        link, ends nothing; one with a second name ends it). A stat per check while there is none."""
        if self._logouts is None:
            return False
        path = self._logout_file(self._logouts, cookie)
        try:
            os.lstat(path)
        except OSError:
            return False
        try:
            # A second name (a snapshot by hard links, or one any local user may add where the
            # kernel allows it) does not make it less genuine: its MAC is what is checked.
            doc = json.loads(read_no_link(path, 4096, within=self._logouts.parent, one_name=False))
        except (ConfigError, ValueError, RecursionError):
            return False
        ref, until = session_ref(cookie), session_until(cookie)
        return (isinstance(doc, dict) and doc.get("session") == ref and doc.get("until") == until
                and same_digest(str(doc.get("mac")), self._mac("console logout", f"{ref}|{until}")))

    def _table(self, name: str, ddl: str, *, create: bool, wait: bool = True) -> bool:
        """Whether the table `name` (made by `ddl`) exists (asked until it does); with `create`,
        made when missing: a key store an earlier safeface made (on PostgreSQL, moved there).
        `wait`: as for the store's write."""
        if name in self._tables:
            return True
        if getattr(self._t, "dialect", None) == "postgresql":
            found = self._t.q("SELECT to_regclass(?) IS NOT NULL", (self._t.prefix + name,))[0][0]
        else:
            found = self._t.q("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        if not found and create:
            try:
                with self._t.write(wait=wait):  # the key store's lock: two first writers take turns
                    self._t.run(ddl)
            except (IntegrityError, SchemaOwnerNeeded) as exc:  # on PostgreSQL, no right to create in the schema
                if getattr(self._t, "dialect", None) != "postgresql":  # a trigger, a file replaced: as any write
                    raise
                statement = f"{ddl.format(t=self._t.prefix)}; {self._grant(name)}"
                raise SchemaOwnerNeeded("the console's sessions need a table the API key store lacks (it was moved "
                                        "to PostgreSQL by an earlier safeface), and this database role may not create "
                                        f"it. Run `{statement}` once as the schema's owner.", statement) from exc
            found = True
        if found:
            self._tables.add(name)
        return bool(found)

    def _grant(self, name: str, rights: tuple[str, ...] = _RIGHTS) -> str:
        """The statement that gives the role connected now the `rights` a session needs on `name`."""
        role = str(self._t.q("SELECT quote_ident(current_user)")[0][0])
        return f"GRANT {', '.join(rights)} ON {self._t.prefix}{name} TO {role}"

    def _usable(self, name: str, rights: tuple[str, ...] = _RIGHTS) -> None:
        """On PostgreSQL, SchemaOwnerNeeded unless the role connected has the `rights` on the table
        `name`: a table the owner made without granting it failed every page (no SELECT), or
        recorded no use, so that each session idled out 30 minutes after its login (no INSERT)."""
        table = self._t.prefix + name
        missing = [right for right in rights if not self._t.q("SELECT has_table_privilege(?, ?)", (table, right))[0][0]]
        if missing:
            statement = self._grant(name, rights)
            raise SchemaOwnerNeeded(f"this database role lacks {', '.join(missing)} on {table}, which the console's "
                                    f"sessions need. Run `{statement}` once as the schema's owner.", statement)

    def _rights(self) -> None:
        """On PostgreSQL, after a statement of a session's check failed: SchemaOwnerNeeded if the
        role connected lost a right it needs there since the login (it read as tables altered or
        dropped, to be restored from a backup): reading the key table, and using the sessions'."""
        if getattr(self._t, "dialect", None) == "postgresql":
            self._usable("apikeys", ("SELECT",))
            for name, _ in _SESSION_TABLES:
                if name in self._tables:
                    self._usable(name)

    def csrf_token(self, cookie: str) -> str:
        return self._mac("csrf", cookie)[:40]
