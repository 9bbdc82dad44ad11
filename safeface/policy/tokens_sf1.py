"""The earlier token format, ``sf1.<base64url(JSON payload)>.<base64url(Ed25519 signature)>``,
read only: such tokens are accepted until they expire and never minted again. They name no
audience, so a legacy token is not bound to one deployment (the README says so); every token
minted now is a JWS (tokens.py) that is.

The signature covers the ASCII text ``sf1.<payload>``; the payload names the signing key by
`kid`, looked up among the trusted keys, which tokens.key_id names by RFC 7638 thumbprint, so
the legacy kid (the first 16 hex digits of the SHA-256 of the raw public key) is recomputed here.
"""

from __future__ import annotations

import binascii
import hashlib
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .tokens import ConsentToken, LegalBasisToken, TokenError, b64d, json_object, opt_str, strs, text, whole

PREFIX = "sf1"


def legacy_key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def verify_sf1(token: str, trusted: Mapping[str, Ed25519PublicKey], typ: str) -> dict[str, Any]:
    """The payload of a legacy token once its Ed25519 signature checks against a trusted key."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TokenError("the token is not a safeface token (expected sf1.<payload>.<signature>).")
    try:
        data, sig = b64d(parts[1]), b64d(parts[2])
    except (ValueError, binascii.Error):
        raise TokenError("the token is garbled: its payload or signature does not decode.") from None
    body = json_object(data, "payload")  # as a JWS is read, though before the signature is checked
    kid = body.get("kid")
    key = next((k for k in trusted.values() if legacy_key_id(k) == kid), None) if isinstance(kid, str) else None
    if key is None:
        raise TokenError("the token is signed by a key this deployment does not trust; it may be forged.")
    try:
        key.verify(sig, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise TokenError("the token's signature does not verify: it was altered or forged.") from None
    if body.get("typ") != typ:
        raise TokenError(f"this is a {str(body.get('typ'))[:20]!r} token where a {typ!r} token is needed.")
    return body


def _token_id(body: Mapping[str, Any]) -> str:
    # Any text was taken, the empty one too, whose reference no revocation could name (deriving
    # it failed as a ConfigError, a failed call with no rule, instead of a refusal).
    tid = text(body.get("token_id"), "id")
    if not tid:
        raise TokenError("the token's id is empty: revocation names a token by its id.")
    return tid


def decode_sf1_consent(token: str, trusted: Mapping[str, Ed25519PublicKey]) -> ConsentToken:
    b = verify_sf1(token, trusted, "consent")
    return ConsentToken(
        token_id=_token_id(b), subject=text(b.get("subject"), "subject"),
        purposes=strs(b.get("purposes"), "purposes"), operations=strs(b.get("operations"), "operations"),
        notice_hash=text(b.get("notice_hash"), "notice hash"),
        screen_version=text(b.get("screen_version"), "consent-screen version"),
        issued_at=whole(b.get("issued_at"), "issue time"), expires_at=whole(b.get("expires_at"), "expiry"),
        birth_date=opt_str(b.get("birth_date"), "birth date"), guardian=opt_str(b.get("guardian"), "guardian"),
        kid=text(b.get("kid"), "key id"),
    )


def decode_sf1_legal_basis(token: str, trusted: Mapping[str, Ed25519PublicKey]) -> LegalBasisToken:
    b = verify_sf1(token, trusted, "legal-basis")
    return LegalBasisToken(
        token_id=_token_id(b), authority=text(b.get("authority"), "authority"),
        provision=text(b.get("provision"), "provision"), reference=text(b.get("reference"), "reference"),
        purposes=strs(b.get("purposes"), "purposes"), operations=strs(b.get("operations"), "operations"),
        issued_at=whole(b.get("issued_at"), "issue time"), expires_at=whole(b.get("expires_at"), "expiry"),
        kid=text(b.get("kid"), "key id"),
    )
