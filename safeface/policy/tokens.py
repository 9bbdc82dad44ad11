"""Consent and legal-basis tokens: JWS compact serialisation (RFC 7515) signed with EdDSA over
Ed25519 (RFC 8037), carrying JWT claims (RFC 7519), so that a consent service can mint them with
the JOSE library it already uses, in any language. The README's "Tokens" section is the format.

    header   {"alg": "EdDSA", "kid": <RFC 7638 thumbprint of the signing key>,
              "typ": "safeface-consent+jwt" | "safeface-legal-basis+jwt"}
    claims   iss, aud (= the deployment's id), sub, jti, iat, nbf, exp, purposes, operations, ...

The `typ` header is signed, so a consent token can never be presented as a legal basis or the
reverse. Verification (joserfc) is pinned to Ed25519 signatures and to the key named by `kid`
among the keys this deployment trusts; any other header field (jwk, jku, x5c, crit, b64, ...)
is refused rather than interpreted. The SDK verifies with public keys only; the private key
belongs to the operator's consent service (or, for legal-basis tokens, to an authority).

Tokens of the earlier ``sf1.`` format (tokens_sf1.py) are still accepted until they expire, and
never minted. Checking what a token says against a call (audience, times, subject, purpose,
operation, notice, guardian) is the guard's job (guard.py); this module only proves who signed
what and that every claim has its type.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
import secrets
from typing import Any, Mapping, Optional, Sequence, Union

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwk import OKPKey

from ..errors import ConfigError
from ..jsondepth import nests_deeper_than
from ..jsonnum import finite_number

OPERATIONS = ("enroll", "verify", "identify", "transmit")
MAX_TOKEN_CHARS = 8192
SIGNING_ALG = "EdDSA"
# "Ed25519" is RFC 9864's fully specified name for the same signature; both verify only against
# the trusted Ed25519 key chosen by kid, so accepting it lets a consent service move on.
ACCEPTED_ALGS = ("EdDSA", "Ed25519")
TYP = {"consent": "safeface-consent+jwt", "legal-basis": "safeface-legal-basis+jwt"}
HEADER_FIELDS = frozenset({"alg", "kid", "typ"})
MIN_JTI_CHARS, MAX_JTI_CHARS = 16, 128
MAX_CLAIM_CHARS = 1024
# No header or claim set nests past a few levels (an object holding lists); deeper is garbled.
MAX_JSON_DEPTH = 16


class TokenError(Exception):
    """A token failed to parse or verify. The guard turns it into a PolicyViolation with the rule
    that the failing token served (consent or legal basis)."""


class _Registry(jws.JWSRegistry):
    """Ed25519 signatures only. joserfc warns that `EdDSA` is deprecated by RFC 9864 because the
    name does not fix the curve; here the curve is fixed by the trusted key, always Ed25519."""

    def get_alg(self, name: str) -> Any:
        if name not in ACCEPTED_ALGS or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


_REGISTRY = _Registry(algorithms=ACCEPTED_ALGS)


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


# -- keys ----------------------------------------------------------------------------------------
def key_id(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key: the `kid` of
    every token it signs and the key's name in the trust store."""
    return str(OKPKey.import_key(public_key).thumbprint())


def public_key_text(public_key: Ed25519PublicKey) -> str:
    return b64e(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(b64d(text))
    except (ValueError, binascii.Error) as exc:
        raise ConfigError(f"a trusted public key is not a valid Ed25519 key ({exc}).") from None


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    pem: bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return pem


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except UnsupportedAlgorithm:  # a key of an algorithm this cryptography does not know (its OID): a traceback
        raise ConfigError("the signing key is a private key of an algorithm safeface does not sign with; give an "
                          "Ed25519 key (safeface keys new).") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"the signing key is not a readable unencrypted PEM private key ({exc}).") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the signing key is not an Ed25519 key.")
    return key


# -- what a token says ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConsentToken:
    """What a person agreed to. Times are Unix seconds (UTC). `audience` is empty only for a
    legacy sf1 token, which names no deployment."""

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
    typ: str = dataclasses.field(default="consent")
    audience: tuple[str, ...] = ()
    issuer: str = ""
    not_before: Optional[int] = None


@dataclasses.dataclass(frozen=True)
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
    typ: str = dataclasses.field(default="legal-basis")
    audience: tuple[str, ...] = ()
    issuer: str = ""
    not_before: Optional[int] = None


Token = Union[ConsentToken, LegalBasisToken]


def new_token_id() -> str:
    return secrets.token_hex(12)


def default_issuer(public_key: Ed25519PublicKey) -> str:
    """An issuer named by its key (RFC 9278 JWK thumbprint URI), when no other name is given."""
    return f"urn:ietf:params:oauth:jwk-thumbprint:sha-256:{key_id(public_key)}"


def _claims(t: Token) -> dict[str, Any]:
    c: dict[str, Any] = {"iss": t.issuer, "aud": t.audience[0] if len(t.audience) == 1 else list(t.audience),
                         "jti": t.token_id, "iat": t.issued_at,
                         "nbf": t.issued_at if t.not_before is None else t.not_before, "exp": t.expires_at,
                         "purposes": list(t.purposes), "operations": list(t.operations)}
    if isinstance(t, ConsentToken):
        c.update(sub=t.subject, notice_hash=t.notice_hash, screen_version=t.screen_version)
        c.update({k: v for k, v in (("birth_date", t.birth_date), ("guardian", t.guardian)) if v is not None})
    else:
        c.update(authority=t.authority, provision=t.provision, reference=t.reference)
    return c


def sign(token: Token, key: Ed25519PrivateKey) -> str:
    """The JWS compact serialisation of `token`, signed by `key`."""
    if not token.audience or not all(isinstance(a, str) and a for a in token.audience):
        raise ConfigError("a token names the deployment it is for (its audience, the deployment's id).")
    if not token.issuer:
        token = dataclasses.replace(token, issuer=default_issuer(key.public_key()))
    header = {"alg": SIGNING_ALG, "kid": key_id(key.public_key()), "typ": TYP[token.typ]}
    payload = json.dumps(_claims(token), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    compact: str = jws.serialize_compact(header, payload, OKPKey.import_key(key), algorithms=[SIGNING_ALG],
                                         registry=_REGISTRY)
    return compact


# -- verifying -----------------------------------------------------------------------------------
def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers reading different values from one signed text is how confusion attacks start.
    out = dict(pairs)
    if len(out) != len(pairs):
        raise TokenError("the token is garbled: a member name appears twice.")
    return out


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """`data` (a header or payload) as one JSON object whose members each appear once. Nesting
    past MAX_JSON_DEPTH is garbled too, counted before parsing: a few thousand brackets fit in a
    token, an sf1 payload is read before its signature is checked, and how deep Python's parser
    gets depends on the caller's stack (a consent nested 940 deep was let in at a call's start and
    refused at its write, a few frames deeper, as signed by a key no longer trusted)."""
    try:
        text = data.decode("utf-8")
        if nests_deeper_than(text, MAX_JSON_DEPTH):
            raise ValueError("nested too deep")
        value = json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenError(f"the token is garbled: its {what} is not JSON (or is nested too deep).") from None
    if not isinstance(value, dict):
        raise TokenError(f"the token is garbled: its {what} is not a JSON object.")
    return value


def _typ_name(value: Any) -> Optional[str]:
    """"consent" or "legal-basis" for a `typ` header (compared as RFC 7515 says: case-insensitive,
    with or without "application/"), else None."""
    if not isinstance(value, str):
        return None
    v = value.lower().removeprefix("application/")
    return next((name for name, media in TYP.items() if media == v), None)


def _check_type(token: Any) -> str:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("the token is not a safeface token (wrong type or too long).")
    return token.strip()


def verify_jws(token: str, trusted: Mapping[str, Ed25519PublicKey], typ: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWS whose signature checks against the trusted key its kid names."""
    try:
        obj = jws.extract_compact(token.encode("ascii"), registry=_REGISTRY)
        protected = b64d(token.partition(".")[0])
    except (JoseError, ValueError, binascii.Error, UnicodeError):
        raise TokenError("the token is garbled: expected a JWS compact serialisation (header.payload.signature).") from None
    # Read again here, as the claims are: joserfc keeps the last of two `typ` (or `alg`, `kid`)
    # members, where another reader of the same signed header may take the first.
    header = json_object(protected, "header")
    if set(header) - HEADER_FIELDS:
        raise TokenError("the token's header carries fields safeface does not accept; only alg, kid and typ.")
    if header.get("alg") not in ACCEPTED_ALGS:
        raise TokenError("the token is not signed with EdDSA (Ed25519), the only algorithm accepted.")
    kind = _typ_name(header.get("typ"))
    if kind is None:
        raise TokenError(f"the token's typ header is not {TYP[typ]!r}.")
    if kind != typ:
        raise TokenError(f"this is a {kind!r} token where a {typ!r} token is needed.")
    kid = header.get("kid")
    key = trusted.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenError("the token is signed by a key this deployment does not trust; it may be forged.")
    try:
        ok = jws.validate_compact(obj, OKPKey.import_key(key), registry=_REGISTRY)
    except JoseError:
        ok = False
    if not ok:
        raise TokenError("the token's signature does not verify: it was altered or forged.")
    return header, json_object(obj.payload, "payload")


# A token's three parts anywhere in what was pasted (quoted, labelled "Bearer ...", inside a JSON
# document), looked for as written and with its whitespace taken out (a wrapped line).
_PASTED_TOKEN = re.compile(r"(?<![A-Za-z0-9_.-])([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")


def is_whole_token(text: object) -> bool:
    """Whether `text` holds a whole token (JWS compact or sf1 form), not a token id: what an
    operator may paste where the id (jti) is asked for, also with quotes, a label or line breaks
    around or inside it. A dotted id ("order.2026.17") is no token: its first part is no header."""
    if not isinstance(text, str):
        return False
    for m in (*_PASTED_TOKEN.finditer(text), *_PASTED_TOKEN.finditer("".join(text.split()))):
        if m[1] == "sf1":
            return True
        try:
            if "alg" in json_object(b64d(m[1]), "header"):
                return True
        except (TokenError, ValueError, binascii.Error):
            pass
    return False


def _legacy(token: str) -> bool:
    return token.startswith("sf1.")


def verified_token_id(token: Optional[str], trusted: Mapping[str, Ed25519PublicKey], typ: str) -> Optional[str]:
    """The id of a token whose signature checks, else None: refusals are audited with the token
    id only when a trusted key vouches for it, so a forger cannot write text into the log."""
    if not token:
        return None
    try:
        token = _check_type(token)
        if _legacy(token):
            from .tokens_sf1 import verify_sf1

            tid = verify_sf1(token, trusted, typ).get("token_id")
        else:
            tid = verify_jws(token, trusted, typ)[1].get("jti")
    except TokenError:
        return None
    return tid if isinstance(tid, str) and len(tid) <= MAX_JTI_CHARS else None


# -- claims, typed -------------------------------------------------------------------------------
def strs(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TokenError(f"the token's {name} are malformed.")
    return tuple(value)


def whole(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError(f"the token's {name} is malformed.")
    return value


def opt_str(value: Any, name: str) -> Optional[str]:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_CLAIM_CHARS):
        raise TokenError(f"the token's {name} is malformed.")
    return value


def text(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_CLAIM_CHARS:
        raise TokenError(f"the token's {name} is malformed.")
    return value


def _numeric_date(claims: Mapping[str, Any], name: str, what: str, rounding: Any) -> int:
    """RFC 7519 NumericDate: seconds, possibly fractional; rounded towards the stricter side."""
    v = claims.get(name)
    if not finite_number(v):  # also an integer of hundreds of digits, which no float (or calendar) holds
        raise TokenError(f"the token's {what} ({name}) is missing or not a number of seconds.")
    return int(rounding(v))


def _registered(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The registered claims, checked: the fields every token dataclass shares."""
    aud = claims.get("aud")
    audience = (aud,) if isinstance(aud, str) else strs(aud, "audiences") if isinstance(aud, list) else ()
    if not audience or not all(audience):
        raise TokenError("the token names no audience (aud): it must name the deployment it is for.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not MIN_JTI_CHARS <= len(jti) <= MAX_JTI_CHARS:
        raise TokenError(f"the token's id (jti) must be a unique string of {MIN_JTI_CHARS} to {MAX_JTI_CHARS} "
                         "characters (a random UUID, say).")
    issuer = text(claims.get("iss"), "issuer (iss)")
    if not issuer:
        raise TokenError("the token names no issuer (iss).")
    nbf = _numeric_date(claims, "nbf", "start of validity", math.ceil) if "nbf" in claims else None
    return {"token_id": jti, "audience": audience, "issuer": issuer, "not_before": nbf,
            "issued_at": _numeric_date(claims, "iat", "issue time", math.floor),
            "expires_at": _numeric_date(claims, "exp", "expiry", math.floor),
            "purposes": strs(claims.get("purposes"), "purposes"),
            "operations": strs(claims.get("operations"), "operations")}


def decode_consent(token: str, trusted: Mapping[str, Ed25519PublicKey]) -> ConsentToken:
    token = _check_type(token)
    if _legacy(token):
        from .tokens_sf1 import decode_sf1_consent

        return decode_sf1_consent(token, trusted)
    header, c = verify_jws(token, trusted, "consent")
    return ConsentToken(
        subject=text(c.get("sub"), "subject (sub)"), notice_hash=text(c.get("notice_hash"), "notice hash"),
        screen_version=text(c.get("screen_version"), "consent-screen version"),
        birth_date=opt_str(c.get("birth_date"), "birth date"), guardian=opt_str(c.get("guardian"), "guardian"),
        kid=header["kid"], **_registered(c))


def decode_legal_basis(token: str, trusted: Mapping[str, Ed25519PublicKey]) -> LegalBasisToken:
    token = _check_type(token)
    if _legacy(token):
        from .tokens_sf1 import decode_sf1_legal_basis

        return decode_sf1_legal_basis(token, trusted)
    header, c = verify_jws(token, trusted, "legal-basis")
    return LegalBasisToken(
        authority=text(c.get("authority"), "authority"), provision=text(c.get("provision"), "provision"),
        reference=text(c.get("reference", ""), "reference"), kid=header["kid"], **_registered(c))


def check_operations(ops: Sequence[str]) -> tuple[str, ...]:
    bad = [o for o in ops if o not in OPERATIONS]
    if bad or not ops:
        raise ConfigError(f"operations must be some of {', '.join(OPERATIONS)}; got {list(ops)}.")
    return tuple(dict.fromkeys(ops))
