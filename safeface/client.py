"""The HTTP client of `safeface serve`: the same calls and errors as SafeFace.

    from safeface.client import Client
    with Client("http://127.0.0.1:8080", api_key) as c:
        c.enroll("me.jpg", "alice", "demo", consent=token)
        c.verify("me2.jpg", "alice", "demo", consent=token).match

A refusal raises PolicyViolation with the rule, as in-process; 401 raises AuthenticationError,
422 InvalidArgument (or ImageError), 409 IntegrityError, 429 and 503 ServiceBusy with
`retry_after` (IndexUnavailable, with it too, where the service's Milvus cannot be asked now).
Needs httpx (the `service` extra).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .errors import (AuthenticationError, BackendError, ConfigError, ImageError, IndexUnavailable, IntegrityError,
                     InvalidArgument, PolicyViolation, SafeFaceError, ServiceBusy)
from .policy.receipts import ErasureReceipt
from .sdk.results import Candidate, Enrollment, Export, LivenessCheck, Verification
from .workspace.audit import AuditReport

ImageLike = Union[str, Path, bytes]
_BY_NAME: dict[str, type[SafeFaceError]] = {
    "AuthenticationError": AuthenticationError, "InvalidArgument": InvalidArgument, "ImageError": ImageError,
    "IntegrityError": IntegrityError, "ConfigError": ConfigError, "BackendError": BackendError,
}


class Client:
    def __init__(self, url: str, api_key: str, *, timeout: float = 60.0, verify_tls: Union[bool, str] = True) -> None:
        try:
            import httpx
        except ImportError:
            raise ConfigError("safeface.client needs httpx: pip install 'safeface[service]'.") from None
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, verify=verify_tls,
                                  headers={"X-API-Key": api_key})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never the key
        return f"Client({str(self._http.base_url)!r})"

    # -- the guarded calls ------------------------------------------------------------------
    def enroll(self, image: ImageLike, subject: str, purpose: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None, liveness: Optional[str] = None) -> Enrollment:
        d = self._image_call("/v1/enroll", image, subject=subject, purpose=purpose, consent=consent,
                             legal_basis=legal_basis, liveness=liveness)
        return Enrollment(d["subject"], int(d["row_id"]), d["purpose"], dt.datetime.fromisoformat(d["expires_at"]),
                          d["token_id"])

    def verify(self, image: ImageLike, subject: str, purpose: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None, liveness: Optional[str] = None) -> Verification:
        d = self._image_call("/v1/verify", image, subject=subject, purpose=purpose, consent=consent,
                             legal_basis=legal_basis, liveness=liveness)
        threshold = d["threshold"]
        return Verification(bool(d["match"]), d["score"], None if threshold is None else float(threshold), d["subject"])

    def identify(self, image: ImageLike, purpose: str, consent: Optional[str] = None,
                 legal_basis: Optional[str] = None, top_k: int = 5, *, liveness: Optional[str] = None
                 ) -> list[Candidate]:
        d = self._image_call("/v1/identify", image, purpose=purpose, consent=consent, legal_basis=legal_basis,
                             top_k=str(top_k), liveness=liveness)
        return [Candidate(c["subject"], float(c["score"])) for c in d["candidates"]]

    def liveness_challenge(self, *, mirrored: bool = False) -> dict[str, Any]:
        """A challenge issued by the service's workspace: {"challenge", "steps", "instruction",
        "mirrored", ...}. `mirrored`: the clip answering it will be recorded mirrored (a selfie
        preview); the check reads the clip as the challenge says."""
        return self._json("/v1/liveness/challenge", mirrored="true" if mirrored else None)

    def liveness_check(self, clip: ImageLike, challenge: str, *, mirrored: Optional[bool] = None) -> LivenessCheck:
        """Check a 1-3 s clip answering `challenge`; when live, the result carries the evidence.
        The clip is read as mirrored or not as the challenge was issued; a `mirrored` given here
        that differs is refused (InvalidArgument)."""
        flag = None if mirrored is None else ("1" if mirrored else "0")
        d = self._image_call("/v1/liveness/check", clip, challenge=challenge, mirrored=flag)
        expires = d.get("expires_at")
        score = None if d.get("score") is None else float(d["score"])
        return LivenessCheck(d["decision"], score, dict(d["checks"]), d["clip_sha256"], d.get("evidence"),
                             dt.datetime.fromisoformat(expires) if expires else None)

    def analyze(self, image: ImageLike, attributes: Sequence[str] = ("faces",)) -> dict[str, Any]:
        if isinstance(attributes, str):
            attributes = (attributes,)
        return dict(self._image_call("/v1/analyze", image, attributes=",".join(attributes)))

    def export(self, subject: str, purpose: str, recipient: str, consent: Optional[str] = None, *,
               legal_basis: Optional[str] = None) -> Export:
        d = self._json("/v1/export", subject=subject, purpose=purpose, recipient=recipient, consent=consent,
                       legal_basis=legal_basis)
        return Export(d["recipient"], d["basis"], list(d["records"]))

    def erase(self, subject: Optional[str] = None, *, pseudonym: Optional[str] = None) -> ErasureReceipt:
        return _receipt(self._json("/v1/erase", subject=subject, pseudonym=pseudonym))

    def revoke(self, token_id: Optional[str] = None, subject: Optional[str] = None, *,
               token_ref: Optional[str] = None) -> ErasureReceipt:
        return _receipt(self._json("/v1/consent/revoke", token_id=token_id, subject=subject, token_ref=token_ref))

    def purge(self) -> Optional[ErasureReceipt]:
        d = self._json("/v1/purge")
        return _receipt(d["receipt"]) if d.get("receipt") else None

    def audit_verify(self) -> AuditReport:
        d = self._send("GET", "/v1/audit/verify")
        return AuditReport(int(d["entries"]), int(d["head_seq"]), str(d["head_hash"]))

    def report(self) -> dict[str, Any]:
        """The compliance report as JSON (SafeFace.report writes it to a folder instead)."""
        return dict(self._send("GET", "/v1/report"))

    def health(self) -> bool:
        return bool(self._send("GET", "/v1/health").get("status") == "ok")

    # -- transport --------------------------------------------------------------------------
    def _image_call(self, path: str, image: ImageLike, **fields: Optional[str]) -> dict[str, Any]:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        form = {k: v for k, v in fields.items() if v is not None}
        return dict(self._send("POST", path, files={"image": ("image", data, "application/octet-stream")}, data=form))

    def _json(self, path: str, **fields: Optional[str]) -> dict[str, Any]:
        return dict(self._send("POST", path, json={k: v for k, v in fields.items() if v is not None}))

    def _send(self, method: str, path: str, **kw: Any) -> Any:
        r = self._http.request(method, path, **kw)
        if r.status_code == 200:
            return r.json()
        raise _error(r.status_code, r.headers, _body(r))


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


def _receipt(d: dict[str, Any]) -> ErasureReceipt:
    return ErasureReceipt(d["receipt_id"], d["time"], d["reason"], tuple(d["subjects"]), d.get("token_id"),
                          int(d["templates_removed"]), tuple(d["rows"]), d["deployment"], d["kid"], d["signature"])
