"""The HTTP API under /v1. Each route authenticates the API key (its role is the caller's role),
applies the key's rate, then makes one SafeFace call as (role, key id) on a pool thread. The
guard decides every rule; this module only translates HTTP to calls and back.

Images come as a multipart file field `image` or as `image_base64` in a JSON body; consent and
legal-basis tokens as the fields `consent` / `legal_basis` or the headers X-Consent-Token /
X-Legal-Basis; liveness evidence (PA-01, from `safeface liveness check`) as `liveness` or
X-Liveness-Evidence.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.formparsers import MultiPartException, MultiPartParser

from ..errors import AuthenticationError, InvalidArgument
from ..policy.attributes import MAX_ATTRIBUTES
from ..workspace.apikeys import ApiKey
from .answers import liveness_answer, verify_answer
from .bodies import check_json_size, media_type, once_each
from .failures import kept
from .runtime import Runtime

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the key from `safeface apikey new`")
_bearer = HTTPBearer(auto_error=False, description="the same key as a bearer token")

_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_FIELD = 16 * 1024  # tokens and ids are far shorter; a larger field is malformed

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "format": "binary"}, "subject": {"type": "string"},
                "purpose": {"type": "string"}, "consent": {"type": "string"}, "legal_basis": {"type": "string"},
                "liveness": {"type": "string"}, "top_k": {"type": "integer"}, "attributes": {"type": "string"}}}},
            "application/json": {"schema": {"type": "object", "required": ["image_base64"], "properties": {
                "image_base64": {"type": "string", "format": "byte"}, "subject": {"type": "string"},
                "purpose": {"type": "string"}, "consent": {"type": "string"}, "legal_basis": {"type": "string"},
                "liveness": {"type": "string"}, "top_k": {"type": "integer"},
                "attributes": {"type": "array", "items": {"type": "string"}}}}},
        },
    }
}


def _json_body(*props: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"requestBody": {"required": bool(required), "content": {"application/json": {"schema": {
        "type": "object", "required": list(required), "properties": {p: {"type": "string"} for p in props}}}}}}


class Call:
    """One request's fields, whichever way they came."""

    def __init__(self, fields: dict[str, Any], image: Optional[bytes], headers: Any) -> None:
        # Every field this API reads is named in lowercase ASCII: a look-alike beside a real name
        # ("Subject", a Cyrillic letter, a zero-width space) is a second copy a case-insensitive
        # gateway or a reviewer may read as the one acted on.
        odd = next((k for k in fields if not _FIELD_NAME.fullmatch(k)), None)
        if odd is not None:
            raise InvalidArgument(f"the field name {odd[:40]!r} is not one this API uses (its names are lowercase "
                                  "ASCII letters, digits and '_'); send each field under its own name.")
        self.fields = fields
        self.image = image
        self._headers = headers

    def text(self, name: str, required: bool = True) -> Optional[str]:
        v = self.fields.get(name)
        if v is None or v == "":
            if required:
                raise InvalidArgument(f"the field {name!r} is required.")
            return None
        if not isinstance(v, str) or len(v) > MAX_FIELD:
            raise InvalidArgument(f"the field {name!r} must be a string of at most {MAX_FIELD} characters.")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:  # a JSON "\\ud800": no text holds a lone surrogate
            raise InvalidArgument(f"the field {name!r} holds a lone surrogate; send it as UTF-8 text.") from None
        return v

    def token(self, name: str, header: str) -> Optional[str]:
        # One value per credential: a gateway or a log reading the other copy (the header, or a
        # proxy's first or last of two) would see another request than the one acted on.
        copy = _second_copy(self._headers, header)
        if copy is not None:
            raise InvalidArgument(f"{copy}; send it once, as {header}.")
        sent = self._headers.getlist(header)
        field, head = self.text(name, required=False), (sent[0] if sent else None) or None
        if field is not None and head is not None and field != head:
            raise InvalidArgument(f"the field {name!r} and the header {header} give two different values; send "
                                  "one of them.")
        return field or head

    def credentials(self) -> tuple[Optional[str], Optional[str], Optional[str]]:
        """(consent, legal basis, liveness evidence), each from its field or its header."""
        return (self.token("consent", "x-consent-token"), self.token("legal_basis", "x-legal-basis"),
                self.token("liveness", "x-liveness-evidence"))

    def require_image(self) -> bytes:
        if not self.image:
            raise InvalidArgument("an image is required: a multipart file field 'image' or 'image_base64' in JSON.")
        return self.image


async def read_call(request: Request, image: bool) -> Call:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        media_type(request)  # its parts are decoded in the charset it names: UTF-8 only
        parser = MultiPartParser(request.headers, request.stream(), max_files=1, max_fields=16)
        # Every part stays in memory: by default a part over 1 MiB (a phone photo, any liveness
        # clip) goes to a temporary file, and the face would reach the disk in the clear. The
        # body is bounded already (`max_body`, checked at the edge).
        parser.spool_max_size = sys.maxsize
        try:
            form = await parser.parse()
        except MultiPartException as exc:  # request.form() made these a 400; here they are ours
            raise InvalidArgument(f"malformed multipart body ({exc.message}).") from None
        try:
            data: Optional[bytes] = None
            for k, v in form.multi_items():
                if hasattr(v, "read"):
                    if k not in ("image", "clip"):
                        raise InvalidArgument(f"unexpected file field {k!r}; the image (or a liveness clip) goes "
                                              "in 'image' (or 'clip').")
                    data = await v.read()
            fields = once_each(((k, v) for k, v in form.multi_items() if not hasattr(v, "read")), "the form")
            return Call(fields, data, request.headers)
        finally:
            await form.close()
    if ctype == "application/json" or (ctype == "" and not image):
        raw = await request.body()
        check_json_size(raw)
        try:
            body = json.loads(raw, parse_constant=_no_constant, object_pairs_hook=_json_object) if raw else {}
        except InvalidArgument:
            raise
        except (ValueError, RecursionError):  # RecursionError: arrays nested past the parser's depth
            raise InvalidArgument("the body is not valid JSON (NaN, Infinity and deeply nested values are "
                                  "refused).") from None
        if not isinstance(body, dict):
            raise InvalidArgument("the JSON body must be an object.")
        data = None
        if "image_base64" in body:
            b64 = body.pop("image_base64")
            try:
                data = base64.b64decode(b64 if isinstance(b64, str) else "", validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument("image_base64 is not valid base64.") from None
        return Call(body, data, request.headers)
    raise InvalidArgument("send multipart/form-data or application/json.")


def build_router(rt: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1")

    async def caller(request: Request, key: Optional[str] = Security(_key_header),
                     bearer: Optional[HTTPAuthorizationCredentials] = Security(_bearer)) -> ApiKey:
        # One caller per request: a gateway that authorizes or rate-limits by the other key (or
        # the other copy of a header) must not see another caller than the one acted as.
        copy = next(filter(None, (_second_copy(request.headers, h) for h in ("x-api-key", "authorization"))), None)
        if copy is not None:
            raise AuthenticationError(f"{copy}; send one key, once, as X-API-Key or a Bearer token.")
        if key and bearer is not None and bearer.credentials != key:
            raise AuthenticationError("the request sends two different API keys (X-API-Key and a Bearer token); "
                                      "send one.")
        presented = key or (bearer.credentials if bearer is not None else None)
        info: ApiKey = rt.light(lambda sf: sf.authenticate(presented))
        rt.limit(info.key_id, info.rate)
        request.state.key_id = info.key_id
        return info

    def as_(info: ApiKey, sf: Any) -> Any:
        return sf.acting_as_key(info)

    @router.post("/enroll", openapi_extra=_IMAGE_BODY, summary="Enrol a face (stored and audited before 200)")
    async def enroll(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        c = await read_call(request, image=True)
        img, subject, purpose = c.require_image(), c.text("subject"), c.text("purpose")
        consent, basis, live = c.credentials()
        r = await rt.call(lambda sf: as_(info, sf).enroll(img, subject, purpose, consent, legal_basis=basis,
                                                          liveness=live))
        if r.commit_mark == "pending":  # stored, but the disk refused the mark: out of ready until it takes writes
            rt.refused_disk()
        return dict(r.to_dict())

    @router.post("/verify", openapi_extra=_IMAGE_BODY, summary="Verify a face against a subject's templates")
    async def verify(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        c = await read_call(request, image=True)
        img, subject, purpose = c.require_image(), c.text("subject"), c.text("purpose")
        consent, basis, live = c.credentials()
        r = await rt.call(lambda sf: as_(info, sf).verify(img, subject, purpose, consent, legal_basis=basis,
                                                          liveness=live))
        return verify_answer(r)

    @router.post("/identify", openapi_extra=_IMAGE_BODY, summary="Identify a face (pseudonyms, best first)")
    async def identify(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        c = await read_call(request, image=True)
        img, purpose = c.require_image(), c.text("purpose")
        consent, basis, live = c.credentials()
        top_k = _int(c.fields.get("top_k", 5), "top_k")
        r = await rt.call(lambda sf: as_(info, sf).identify(img, purpose, consent, basis, top_k=top_k, liveness=live))
        return {"candidates": [{"subject": x.subject, "score": round(x.score, 4),
                                "path": x.path} for x in r]}

    @router.post("/liveness/challenge", summary="Issue a liveness challenge (head turns; answered once, within seconds)")
    async def liveness_challenge(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        # No body, or JSON / a form with `mirrored`: whether the answering clip will be recorded
        # mirrored is fixed here, with the steps, not by the check.
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("", "application/json", "multipart/form-data") or await request.body():
            fields = (await read_call(request, image=False)).fields  # (another type with a body: refused there)
        else:
            fields = {}  # an empty body of another type, as clients sent before the field existed
        mirrored = bool(_flag(fields.get("mirrored"), "mirrored"))
        ch = await rt.call(lambda sf: as_(info, sf).liveness_challenge(mirrored=mirrored))
        return dict(ch.to_dict())

    @router.post("/liveness/check", openapi_extra=_IMAGE_BODY,
                 summary="Check a 1-3 s clip (file field 'clip' or 'image', or image_base64) answering a challenge")
    async def liveness_check(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        c = await read_call(request, image=True)
        if not c.image:
            raise InvalidArgument("a clip is required: a multipart file field 'clip' (or 'image_base64' in JSON).")
        clip, challenge = c.image, c.text("challenge")
        # As the challenge was issued; a differing value is refused (InvalidArgument, 422).
        mirrored = _flag(c.fields.get("mirrored"), "mirrored")
        r = await rt.call(lambda sf: as_(info, sf).liveness_check(clip, challenge, mirrored=mirrored))
        return liveness_answer(r)

    @router.post("/analyze", openapi_extra=_IMAGE_BODY, summary="Technical facts about the faces (no attributes)")
    async def analyze(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        c = await read_call(request, image=True)
        img = c.require_image()
        attrs = c.fields.get("attributes", ["faces"])
        if isinstance(attrs, str):
            attrs = [a.strip() for a in (c.text("attributes") or "").split(",") if a.strip()]  # bounded as a field
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs) or len(attrs) > MAX_ATTRIBUTES:
            raise InvalidArgument(f"attributes must be a list of at most {MAX_ATTRIBUTES} strings (or comma-separated "
                                  "in a form).")
        return dict(await rt.call(lambda sf: as_(info, sf).analyze(img, attrs)))

    @router.post("/export", openapi_extra=_json_body("subject", "purpose", "recipient", "consent", "legal_basis",
                                                     required=("subject", "purpose", "recipient")),
                 summary="Disclose a subject's record descriptions to a recipient")
    async def export(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        c = await read_call(request, image=False)
        subject, purpose, recipient = c.text("subject"), c.text("purpose"), c.text("recipient")
        consent, basis = c.token("consent", "x-consent-token"), c.token("legal_basis", "x-legal-basis")
        r = await rt.call(lambda sf: as_(info, sf).export(subject, purpose, recipient, consent, legal_basis=basis))
        return dict(r.to_dict())

    @router.post("/erase", openapi_extra=_json_body("subject", "pseudonym"),
                 summary="Erase a subject (by id or pseudonym); a signed receipt")
    async def erase(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        c = await read_call(request, image=False)
        subject, pseud = c.text("subject", False), c.text("pseudonym", False)
        r = await rt.call(lambda sf: as_(info, sf).erase(subject, pseudonym=pseud))
        return dict(r.to_dict())

    @router.post("/consent/revoke", openapi_extra=_json_body("token_id", "token_ref", "subject"),
                 summary="Withdraw a consent (by token id or reference) or all of a subject's")
    async def revoke(request: Request, info: ApiKey = Depends(caller)) -> dict[str, Any]:
        c = await read_call(request, image=False)
        tid, ref, subject = c.text("token_id", False), c.text("token_ref", False), c.text("subject", False)
        r = await rt.call(lambda sf: as_(info, sf).revoke(tid, subject, token_ref=ref))
        return dict(r.to_dict())

    @router.post("/purge", summary="Remove expired templates now")
    async def purge(info: ApiKey = Depends(caller)) -> dict[str, Any]:
        r = await rt.call(lambda sf: as_(info, sf).purge())
        return {"removed": 0} if r is None else {"removed": r.templates_removed, "receipt": r.to_dict()}

    @router.get("/audit/verify", summary="Check the audit chain and the store against it")
    async def audit_verify(info: ApiKey = Depends(caller)) -> dict[str, Any]:
        r = await rt.call(lambda sf: as_(info, sf).audit_verify())
        return {"ok": True, "entries": r.entries, "head_seq": r.head_seq, "head_hash": r.head_hash}

    @router.get("/report", summary="The compliance report (JSON, or HTML with ?format=html)",
                response_model=None)
    async def report(format: str = "json", info: ApiKey = Depends(caller)) -> Any:
        if format not in ("json", "html"):
            raise InvalidArgument("format is json or html.")

        def run(sf: Any) -> str:
            with tempfile.TemporaryDirectory(prefix="safeface-report-") as d:
                files = as_(info, sf).report(d, quote=kept)
                return Path(files[format]).read_text(encoding="utf-8")

        text = await rt.call(run)
        if format == "html":
            return HTMLResponse(text)
        return JSONResponse(json.loads(text))

    @router.get("/health", summary="The process is up (no key needed)")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", summary="Ready to serve: workspace open and pipelines loaded (no key needed)",
                response_model=None)
    async def ready() -> Any:
        if not rt.ready:
            why = rt.start_problem
            return JSONResponse({"status": "starting", **({"reason": f"the workspace does not open yet; {why}"}
                                                           if why else {})},
                                status_code=503, headers={"Retry-After": "1"})
        if rt.files_replaced:
            return JSONResponse({"status": "refusing", "reason": "a workspace file was replaced under this process's "
                                 "open handles, which refuse every call; restore the file if need be, run `safeface "
                                 "audit verify`, then restart the service."}, status_code=503)
        # Calls that write are refused (503) while the workspace's disk is full or read-only, and
        # every call while it fails reads.
        def refusing_disk(problem: str) -> JSONResponse:
            return JSONResponse({"status": "refusing", "reason": "the workspace's disk refuses writes or fails reads "
                                 f"(it is full, read-only or failing), so calls are refused; {problem} Free space, "
                                 "remount it read-write or see to the device."},
                                status_code=503, headers={"Retry-After": "1"})

        problem = await asyncio.to_thread(rt.disk_problem)
        if problem is not None:
            return refusing_disk(problem)
        # Unlike a replaced file, this passes again once the witness is mounted or restored.
        problem = await asyncio.to_thread(rt.records_problem)
        if problem is not None:
            if rt.disk_refused:  # the check met a failing disk (records_problem): a disk's answer, to retry
                disk = await asyncio.to_thread(rt.disk_problem)
                if disk is not None:
                    return refusing_disk(disk)
            return JSONResponse({"status": "refusing", "reason": "the workspace's records fail the check every call "
                                 f"makes, so every call is refused; {problem} Mount or restore what it names, then run "
                                 "`safeface audit verify`."}, status_code=503)
        # Still ready while the store's index is out of reach: searches answer from the records,
        # and every replica shares that index, so a 503 here would take all of them out of a
        # balancer at once. "index" tells an operator (and a probe that wants enrolments).
        return {"status": "ready", "in_flight": rt.in_flight, "index": rt.index_state}

    return router


def metrics_route(rt: Runtime) -> Any:
    async def metrics() -> PlainTextResponse:
        # 1 while searches use the index, 0 while the records answer them (opening or down).
        rt.metrics.gauge("safeface_index_up", 1 if rt.index_state in ("up", "local") else 0)
        return PlainTextResponse(rt.metrics.render(), media_type="text/plain; version=0.0.4")

    return metrics


def _second_copy(headers: Any, name: str) -> Optional[str]:
    """Why the request holds a second copy of the header `name`, if it does: the header sent twice
    (a proxy keeping the first or the last sees another value), or also sent spelled with '_' for
    '-' (X_API_Key for X-API-Key), which a CGI or WSGI gateway reads as the same header
    (HTTP_X_API_KEY) and may act on (authorize, rate-limit or log by it) while this service reads
    the other."""
    sent = len(headers.getlist(name))
    if sent > 1:
        return f"the header {name} is sent {sent} times"
    odd = next((k for k in headers.keys() if "_" in k and k.replace("_", "-") == name), None)
    if odd is not None:
        return (f"the header {name} is also sent as {odd[:40]!r}, spelled with '_' for '-', which a gateway may read "
                "as it")
    return None


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259), though Python's parser takes them."""
    raise ValueError(f"{name} is not a JSON value")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return once_each(pairs, "an object of the JSON body")


def _flag(v: Any, name: str) -> Optional[bool]:
    """A yes/no field (JSON true/false, or a form's 1/0, true/false, yes/no, on/off); None when absent."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return v
    word = str(v).strip().lower() if isinstance(v, (str, int)) else None
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"{name} is true or false (or 1 or 0).")


def _int(v: Any, name: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(f"{name} must be an integer.") from None
