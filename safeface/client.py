"""The HTTP client of `safeface serve`: the same calls and errors as SafeFace.

    from safeface.client import Client
    with Client("http://127.0.0.1:8080", api_key) as c:
        c.enroll("me.jpg", "alice", "demo", consent=token)
        c.verify("me2.jpg", "alice", "demo", consent=token).match

A refusal raises PolicyViolation with the rule, as in-process; 401 raises AuthenticationError,
422 InvalidArgument (or ImageError), 409 IntegrityError, 429 and 503 ServiceBusy with
`retry_after` (IndexUnavailable, with it too, where the service's Milvus cannot be asked now).
A service that cannot be reached, or an answer that is not the service's (a proxy's page, a
field of another type), raises BackendError: no result is ever built from it. Plain http:// is
for this machine only (as `safeface serve` listens): elsewhere the photo, the consent token and
the key would cross the network in the clear, so it needs `plain_http=True` (a proxy on the
path that terminates TLS). Needs httpx (the `service` extra).
"""

from __future__ import annotations

import datetime as dt
import math
import ssl
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .errors import (AuthenticationError, BackendError, ConfigError, EyesCovered, ImageError, IndexUnavailable, IntegrityError,
                     InvalidArgument, PolicyViolation, ReplacedFile, SafeFaceError, ServiceBusy)
from .netaddr import is_loopback
from .policy.receipts import ErasureReceipt
from .sdk.results import Candidate, Enrollment, Export, LivenessCheck, Verification
from .workspace.audit import AuditReport

ImageLike = Union[str, Path, bytes]
_BY_NAME: dict[str, type[SafeFaceError]] = {
    "AuthenticationError": AuthenticationError, "InvalidArgument": InvalidArgument, "ImageError": ImageError,
    "IntegrityError": IntegrityError, "ConfigError": ConfigError, "BackendError": BackendError,
    "ReplacedFile": ReplacedFile, "EyesCovered": EyesCovered,
}


class Client:
    def __init__(self, url: str, api_key: str, *, timeout: float = 60.0, verify_tls: Union[bool, str] = True,
                 plain_http: bool = False) -> None:
        try:
            import httpx
        except ImportError:
            raise ConfigError("safeface.client needs httpx: pip install 'safeface[service]'.") from None
        # Judged on the URL as httpx parses it, the host it will connect to; shown without its
        # user and password, which a proxy's URL may carry and an error would repeat into logs.
        try:
            parsed = httpx.URL(str(url))
        except (httpx.InvalidURL, TypeError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError("the service URL is no http:// or https:// URL of a service.")
        self._shown = str(parsed.copy_with(userinfo=b"")).rstrip("/")
        if parsed.scheme == "http" and not plain_http and not is_loopback(parsed.host):
            raise ConfigError(f"{self._shown}: plain http to another machine would send faces, consent tokens and "
                              "the API key in the clear; use https://, or plain_http=True behind a proxy that "
                              "terminates TLS.")
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, verify=verify_tls,
                                  headers={"X-API-Key": api_key})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never the key, nor a password in the URL
        return f"Client({self._shown!r})"

    # -- the guarded calls ------------------------------------------------------------------
    def enroll(self, image: ImageLike, subject: str, purpose: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None, liveness: Optional[str] = None) -> Enrollment:
        d = self._image_call("/v1/enroll", image, subject=subject, purpose=purpose, consent=consent,
                             legal_basis=legal_basis, liveness=liveness)
        return Enrollment(d.text("subject"), d.integer("row_id"), d.text("purpose"), d.time("expires_at"),
                          d.text("token_id"), d.text("commit_mark", optional=True) or "written")

    def verify(self, image: ImageLike, subject: str, purpose: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None, liveness: Optional[str] = None) -> Verification:
        d = self._image_call("/v1/verify", image, subject=subject, purpose=purpose, consent=consent,
                             legal_basis=legal_basis, liveness=liveness)
        return Verification(d.flag("match"), d.number("score", optional=True), d.number("threshold", optional=True),
                            d.text("subject"))

    def identify(self, image: ImageLike, purpose: str, consent: Optional[str] = None,
                 legal_basis: Optional[str] = None, top_k: int = 5, *, liveness: Optional[str] = None
                 ) -> list[Candidate]:
        d = self._image_call("/v1/identify", image, purpose=purpose, consent=consent, legal_basis=legal_basis,
                             top_k=str(top_k), liveness=liveness)
        return [Candidate(c.text("subject"), c.number("score")) for c in d.answers("candidates")]

    def liveness_challenge(self, *, mirrored: bool = False) -> dict[str, Any]:
        """A challenge issued by the service's workspace: {"challenge", "steps", "instruction",
        "mirrored", ...}. `mirrored`: the clip answering it will be recorded mirrored (a selfie
        preview); the check reads the clip as the challenge says."""
        d = self._json("/v1/liveness/challenge", mirrored="true" if mirrored else None)
        # Read as the service writes it: a proxy's "{}" is a BackendError, not a challenge.
        d.text("challenge")
        d.texts("steps")
        d.flag("mirrored")
        return d.fields

    def liveness_check(self, clip: ImageLike, challenge: str, *, mirrored: Optional[bool] = None) -> LivenessCheck:
        """Check a 1-3 s clip answering `challenge`; when live, the result carries the evidence.
        The clip is read as mirrored or not as the challenge was issued; a `mirrored` given here
        that differs is refused (InvalidArgument)."""
        flag = None if mirrored is None else ("1" if mirrored else "0")
        d = self._image_call("/v1/liveness/check", clip, challenge=challenge, mirrored=flag)
        return LivenessCheck(d.text("decision"), d.number("score", optional=True), d.answer("checks").fields,
                             d.text("clip_sha256"), d.text("evidence", optional=True),
                             d.time("expires_at", optional=True))

    def analyze(self, image: ImageLike, attributes: Sequence[str] = ("faces",)) -> dict[str, Any]:
        if isinstance(attributes, str):
            attributes = (attributes,)
        return self._image_call("/v1/analyze", image, attributes=",".join(attributes)).fields

    def export(self, subject: str, purpose: str, recipient: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None) -> Export:
        d = self._json("/v1/export", subject=subject, purpose=purpose, recipient=recipient, consent=consent,
                       legal_basis=legal_basis)
        return Export(d.text("recipient"), d.text("basis"), [r.fields for r in d.answers("records")])

    def erase(self, subject: Optional[str] = None, *, pseudonym: Optional[str] = None) -> ErasureReceipt:
        return _receipt(self._json("/v1/erase", subject=subject, pseudonym=pseudonym))

    def revoke(self, token_id: Optional[str] = None, subject: Optional[str] = None, *,
               token_ref: Optional[str] = None) -> ErasureReceipt:
        return _receipt(self._json("/v1/consent/revoke", token_id=token_id, subject=subject, token_ref=token_ref))

    def purge(self) -> Optional[ErasureReceipt]:
        d = self._json("/v1/purge")
        return _receipt(d.answer("receipt")) if d.integer("removed") else None

    def audit_verify(self) -> AuditReport:
        d = self._send("GET", "/v1/audit/verify")
        return AuditReport(d.integer("entries"), d.integer("head_seq"), d.text("head_hash"))

    def report(self) -> dict[str, Any]:
        """The compliance report as JSON (SafeFace.report writes it to a folder instead)."""
        return self._send("GET", "/v1/report").fields

    def health(self) -> bool:
        return self._send("GET", "/v1/health").fields.get("status") == "ok"

    # -- transport --------------------------------------------------------------------------
    def _image_call(self, path: str, image: ImageLike, **fields: Optional[str]) -> "_Answer":
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        form = {k: v for k, v in fields.items() if v is not None}
        return self._send("POST", path, files={"image": ("image", data, "application/octet-stream")}, data=form)

    def _json(self, path: str, **fields: Optional[str]) -> "_Answer":
        return self._send("POST", path, json={k: v for k, v in fields.items() if v is not None})

    def _send(self, method: str, path: str, **kw: Any) -> "_Answer":
        import httpx

        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:  # refused, timed out, TLS failed: named by kind, never the request
            why = ("its TLS certificate did not verify: check verify_tls" if _tls_failure(exc)
                   else type(exc).__name__)
            raise BackendError(f"the service at {self._shown} could not be reached ({why}); "
                               "check that it runs and the URL, then try again.") from None
        if r.status_code == 200:
            try:
                body = r.json()
            except ValueError:
                body = None
            return _Answer(body, path)
        raise _error(r.status_code, r.headers, _body(r))


def _tls_failure(exc: BaseException) -> bool:
    """Whether the TLS handshake failed somewhere in `exc`'s chain (a certificate that did not
    verify, most often): the caller then checks verify_tls, not whether the service runs."""
    seen: Optional[BaseException] = exc
    for _ in range(8):  # httpx wraps httpcore wraps ssl: a short chain
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _body(r: Any) -> dict[str, Any]:
    try:
        d = r.json()
    except ValueError:
        return {"message": r.text[:200]}
    return d if isinstance(d, dict) else {"message": str(d)[:200]}


def _error(status: int, headers: Any, d: dict[str, Any]) -> SafeFaceError:
    msg = str(d.get("message") or d.get("detail") or f"HTTP {status}")
    if status == 403 and d.get("rule"):
        return PolicyViolation(str(d["rule"]), msg)
    if status in (429, 503):
        try:
            after = float(headers.get("retry-after", "1"))
        except ValueError:
            after = 1.0
        if status == 503 and d.get("error") == "IndexUnavailable":  # as in-process: Milvus cannot be asked now
            down = IndexUnavailable(msg)
            down.retry_after = after
            return down
        return ServiceBusy(msg, after)
    if status == 413:
        return InvalidArgument(msg)
    kind = _BY_NAME.get(str(d.get("error")))
    if kind is not None:
        return kind(msg)
    if status == 401:
        return AuthenticationError(msg)
    if status == 422:
        return InvalidArgument(msg)
    return SafeFaceError(f"the service answered {status}: {msg}")


def _receipt(d: "_Answer") -> ErasureReceipt:
    return ErasureReceipt(d.text("receipt_id"), d.text("time"), d.text("reason"), tuple(d.texts("subjects")),
                          d.text("token_id", optional=True), d.integer("templates_removed"),
                          tuple(d.integers("rows")), d.text("deployment"), d.text("kid"), d.text("signature"),
                          d.text("vectors", optional=True))  # signed with the rest, where Milvus holds vectors


class _Answer:
    """A 200 answer's JSON object, read field by field as `safeface serve` writes it: anything
    else (a proxy's or a captive portal's page, a field missing or of another type, a "match"
    that is the string "yes") is a BackendError, never a result built from it."""

    def __init__(self, body: Any, path: str) -> None:
        if not isinstance(body, dict):
            raise BackendError(f"the answer to {path} is not the service's (no JSON object); check the URL.")
        self.fields: dict[str, Any] = body
        self._path = path

    def _field(self, key: str, kinds: tuple[type, ...], what: str, optional: bool) -> Any:
        value = self.fields.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise BackendError(f"the answer to {self._path} is not the service's: {key!r} is no {what}.")
        return value

    def text(self, key: str, *, optional: bool = False) -> Any:
        return self._field(key, (str,), "text", optional)

    def flag(self, key: str) -> bool:
        return bool(self._field(key, (bool,), "true or false", False))

    def integer(self, key: str) -> int:
        return int(self._field(key, (int,), "whole number", False))

    def number(self, key: str, *, optional: bool = False) -> Any:
        value = self._field(key, (int, float), "number", optional)
        if value is not None and not math.isfinite(value):
            raise BackendError(f"the answer to {self._path} is not the service's: {key!r} is not finite.")
        return None if value is None else float(value)

    def time(self, key: str, *, optional: bool = False) -> Any:
        value = self.text(key, optional=optional)
        if value is None or (optional and not value):
            return None
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise BackendError(f"the answer to {self._path} is not the service's: {key!r} is no time.") from None

    def answer(self, key: str) -> "_Answer":
        return _Answer(self._field(key, (dict,), "object", False), self._path)

    def answers(self, key: str) -> list["_Answer"]:
        return [_Answer(item, self._path) for item in self._field(key, (list,), "list", False)]

    def texts(self, key: str) -> list[str]:
        items = self._field(key, (list,), "list", False)
        if not all(isinstance(i, str) for i in items):
            raise BackendError(f"the answer to {self._path} is not the service's: {key!r} holds no text.")
        return list(items)

    def integers(self, key: str) -> list[int]:
        items = self._field(key, (list,), "list", False)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise BackendError(f"the answer to {self._path} is not the service's: {key!r} holds no whole numbers.")
        return list(items)
