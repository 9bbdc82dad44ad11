"""Consent and legal-basis tokens: compact, signed with Ed25519.

Wire form: ``sf1.<base64url(JSON payload)>.<base64url(signature)>``; the signature covers the
ASCII text ``sf1.<payload>``. The payload names the signing key by `kid` (the first 16 hex digits
of the SHA-256 of its raw public key). The SDK verifies with public keys only; the private key
belongs to the operator's consent service (or, for legal-basis tokens, to an authority).

Checking what a token says against a call (subject, purpose, operation, notice, guardian) is the
guard's job (guard.py); this module only proves who signed what.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import ConfigError

PREFIX = "sf1"
OPERATIONS = ("enroll", "verify", "identify", "transmit")
MAX_TOKEN_CHARS = 8192


class TokenError(Exception):
    """A token failed to parse or verify. The guard turns it into a PolicyViolation with the rule
    that the failing token served (consent or legal basis)."""


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_text(public_key: Ed25519PublicKey) -> str:
    return b64e(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(b64d(text))
    except (ValueError, binascii.Error) as exc:
        raise ConfigError(f"a trusted public key is not a valid Ed25519 key ({exc}).") from None


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"the signing key is not a readable unencrypted PEM private key ({exc}).") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the signing key is not an Ed25519 key.")
    return key


@dataclass(frozen=True)
class ConsentToken:
    """What a person agreed to. Times are Unix seconds (UTC)."""

    token_id: str
    subject: str
    purposes: tuple[str, ...]
    operations: tuple[str, ...]
    notice_hash: str
    screen_version: str
    issued_at: int
    expires_at: int
    birth_date: Optional[str] = None  # YYYY-MM-DD, as declared by the person; never inferred
    guardian: Optional[str] = None  # who gave guardian consent for a child
    kid: str = ""
    typ: str = field(default="consent")


@dataclass(frozen=True)
class LegalBasisToken:
    """A processing order without consent, signed by an authority naming the legal provision."""

    token_id: str
    authority: str
    provision: str
    reference: str
    purposes: tuple[str, ...]
    operations: tuple[str, ...]
    issued_at: int
    expires_at: int
    kid: str = ""
    typ: str = field(default="legal-basis")


def new_token_id() -> str:
    return secrets.token_hex(12)


def sign(payload: ConsentToken | LegalBasisToken, key: Ed25519PrivateKey) -> str:
    body = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(payload).items()}
    body["kid"] = key_id(key.public_key())
    data = b64e(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    signed = f"{PREFIX}.{data}"
    return f"{signed}.{b64e(key.sign(signed.encode('ascii')))}"


def _parse(token: str) -> tuple[dict[str, Any], bytes, bytes]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("the token is not a safeface token (wrong type or too long).")
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TokenError("the token is not a safeface token (expected sf1.<payload>.<signature>).")
    try:
        body = json.loads(b64d(parts[1]).decode("utf-8"))
        sig = b64d(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise TokenError("the token is garbled: its payload or signature does not decode.") from None
    if not isinstance(body, dict):
        raise TokenError("the token is garbled: its payload is not an object.")
    return body, f"{parts[0]}.{parts[1]}".encode("ascii"), sig


def verify_signature(token: str, trusted: Mapping[str, Ed25519PublicKey], typ: str) -> dict[str, Any]:
    """The payload of `token` once its Ed25519 signature checks against a trusted key."""
    body, signed, sig = _parse(token)
    kid = body.get("kid")
    key = trusted.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenError("the token is signed by a key this deployment does not trust; it may be forged.")
    try:
        key.verify(sig, signed)
    except InvalidSignature:
        raise TokenError("the token's signature does not verify: it was altered or forged.") from None
    if body.get("typ") != typ:
        raise TokenError(f"this is a {body.get('typ')!r} token where a {typ!r} token is needed.")
    return body


def verified_token_id(token: Optional[str], trusted: Mapping[str, Ed25519PublicKey], typ: str) -> Optional[str]:
    """The id of a token whose signature checks, else None: refusals are audited with the token
    id only when a trusted key vouches for it, so a forger cannot write text into the log."""
    if not token:
        return None
    try:
        tid = verify_signature(token, trusted, typ).get("token_id")
    except TokenError:
        return None
    return tid if isinstance(tid, str) and len(tid) <= 64 else None


def _strs(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TokenError(f"the token's {name} are malformed.")
    return tuple(value)


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError(f"the token's {name} is malformed.")
    return value


def _opt_str(value: Any, name: str) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise TokenError(f"the token's {name} is malformed.")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TokenError(f"the token's {name} is malformed.")
    return value


def decode_consent(token: str, trusted: Mapping[str, Ed25519PublicKey]) -> ConsentToken:
    b = verify_signature(token, trusted, "consent")
    return ConsentToken(
        token_id=_str(b.get("token_id"), "id"), subject=_str(b.get("subject"), "subject"),
        purposes=_strs(b.get("purposes"), "purposes"), operations=_strs(b.get("operations"), "operations"),
        notice_hash=_str(b.get("notice_hash"), "notice hash"),
        screen_version=_str(b.get("screen_version"), "consent-screen version"),
        issued_at=_int(b.get("issued_at"), "issue time"), expires_at=_int(b.get("expires_at"), "expiry"),
        birth_date=_opt_str(b.get("birth_date"), "birth date"), guardian=_opt_str(b.get("guardian"), "guardian"),
        kid=_str(b.get("kid"), "key id"),
    )


def decode_legal_basis(token: str, trusted: Mapping[str, Ed25519PublicKey]) -> LegalBasisToken:
    b = verify_signature(token, trusted, "legal-basis")
    return LegalBasisToken(
        token_id=_str(b.get("token_id"), "id"), authority=_str(b.get("authority"), "authority"),
        provision=_str(b.get("provision"), "provision"), reference=_str(b.get("reference"), "reference"),
        purposes=_strs(b.get("purposes"), "purposes"), operations=_strs(b.get("operations"), "operations"),
        issued_at=_int(b.get("issued_at"), "issue time"), expires_at=_int(b.get("expires_at"), "expiry"),
        kid=_str(b.get("kid"), "key id"),
    )


def check_operations(ops: Sequence[str]) -> tuple[str, ...]:
    bad = [o for o in ops if o not in OPERATIONS]
    if bad or not ops:
        raise ConfigError(f"operations must be some of {', '.join(OPERATIONS)}; got {list(ops)}.")
    return tuple(dict.fromkeys(ops))
