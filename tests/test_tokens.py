"""Consent and legal-basis tokens as standard JWS: minted by another JOSE library (PyJWT) and
accepted, minted by safeface and verified by PyJWT, and refused under every trick a hostile
issuer, app developer or replaying thief would try (algorithm swaps, header tricks, edits,
audience and type confusion, times). The guard is real; the keys are fresh Ed25519 keys."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import jwt  # PyJWT: the other JOSE library
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import EmptyStore, authorize  # noqa: E402

from safeface.errors import ConfigError, InvalidArgument, PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment, demo_config  # noqa: E402
from safeface.policy.guard import Guard  # noqa: E402
from safeface.policy.issuer import issue_consent, issue_legal_basis  # noqa: E402
from safeface.policy.tokens import is_whole_token, key_id, verified_token_id  # noqa: E402
from safeface.policy.tokens_sf1 import legacy_key_id  # noqa: E402
from safeface.workspace.state import PolicyState  # noqa: E402
from safeface.workspace.trust import public_jwk  # noqa: E402

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
TS = int(NOW.timestamp())
ID_A, ID_B = "deployment-a-" + "1" * 20, "deployment-b-" + "2" * 20
CONSENT_TYP = "safeface-consent+jwt"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_public(pk: Ed25519PublicKey) -> bytes:
    return pk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(pk: Ed25519PublicKey) -> str:
    """RFC 7638 by hand: SHA-256 of the required members in lexicographic order, no spaces."""
    canon = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64(raw_public(pk))}, separators=(",", ":"),
                       sort_keys=True)
    return b64(hashlib.sha256(canon.encode()).digest())


@pytest.fixture(scope="module")
def keys() -> dict[str, Ed25519PrivateKey]:
    return {k: Ed25519PrivateKey.generate() for k in ("issuer", "authority", "stranger")}


def deployment(dep_id: str = ID_A) -> Deployment:
    return Deployment.from_dict(demo_config(NOW.date() - dt.timedelta(days=10), ("cn-2025",), deployment_id=dep_id))


@pytest.fixture()
def make_guard(tmp_path: Path, keys: dict[str, Ed25519PrivateKey]) -> Iterator[Callable[..., Guard]]:
    states: list[PolicyState] = []

    def make(dep_id: str = ID_A) -> Guard:
        states.append(PolicyState(tmp_path / f"policy{len(states)}.db"))
        trusted = {k: {key_id(keys[k].public_key()): keys[k].public_key()} for k in ("issuer", "authority")}
        return Guard(deployment(dep_id), trusted["issuer"], trusted["authority"], states[-1], lambda s: "p-" + s,
                     lambda tid: "t-" + tid, EmptyStore())

    yield make
    for s in states:
        s.close()


def claims(g: Guard, **over: Any) -> dict[str, Any]:
    """What a payment provider's consent service would put in a consent for deployment A."""
    c = {"iss": "https://consent.pay.example", "aud": ID_A, "sub": "alice", "jti": str(uuid.uuid4()),
         "iat": TS - 3600, "nbf": TS - 3600, "exp": TS + 86400, "purposes": ["demo"],
         "operations": ["enroll", "verify"], "notice_hash": g.deployment.notice_hash,
         "screen_version": "demo-screen-1"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def pyjwt_token(key: Ed25519PrivateKey, body: dict[str, Any], typ: str = CONSENT_TYP, **header: Any) -> str:
    return jwt.encode(body, key, algorithm="EdDSA", headers={"kid": thumbprint(key.public_key()), "typ": typ,
                                                             **header})


def hand_token(header: dict[str, Any], body: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def refused(rule: str, fn: Callable[[], Any], *words: str) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        fn()
    assert info.value.rule == rule, info.value
    for w in words:
        assert w in info.value.message, info.value.message
    return info.value


def enrol(g: Guard, token: str, subject: str = "alice") -> Any:
    return authorize(g, "enroll", "demo", NOW, subject=subject, consent=token)


# -- the key id ------------------------------------------------------------------------------
def test_key_id_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
    pk = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo="))
    assert key_id(pk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    fresh = Ed25519PrivateKey.generate().public_key()
    assert key_id(fresh) == thumbprint(fresh)
    assert public_jwk(fresh) == {"kty": "OKP", "crv": "Ed25519", "x": b64(raw_public(fresh))}


# -- interoperability, both ways ---------------------------------------------------------------
def test_token_minted_with_pyjwt_is_accepted(make_guard) -> None:
    """A consent service on PyJWT, with a fresh key of its own that the deployment trusts."""
    service = Ed25519PrivateKey.generate()
    g = make_guard()
    g._consent_keys[key_id(service.public_key())] = service.public_key()
    body = claims(g, birth_date="1990-01-01", guardian=None)
    t = enrol(g, pyjwt_token(service, body)).consent
    assert (t.subject, t.token_id, t.audience, t.issuer) == ("alice", body["jti"], (ID_A,), body["iss"])
    assert (t.issued_at, t.expires_at, t.not_before, t.birth_date) == (TS - 3600, TS + 86400, TS - 3600, "1990-01-01")
    # NumericDate may be fractional (RFC 7519), and the audience may be a list naming this deployment.
    t = enrol(g, pyjwt_token(service, claims(g, aud=["other-deployment-id", ID_A], exp=TS + 10.5))).consent
    assert t.expires_at == TS + 10 and ID_A in t.audience
    # RFC 9864's fully specified "Ed25519" is the same signature; a newer library may send it.
    from joserfc import jws
    from joserfc.jwk import OKPKey

    t9864 = jws.serialize_compact({"alg": "Ed25519", "kid": key_id(service.public_key()), "typ": CONSENT_TYP},
                                  json.dumps(claims(g)), OKPKey.import_key(service), algorithms=["Ed25519"])
    assert enrol(g, t9864).consent.subject == "alice"


def test_token_minted_by_safeface_verifies_with_pyjwt(keys) -> None:
    dep = deployment()
    wire, tok = issue_consent(keys["issuer"], dep, "alice", ["demo"], now=NOW, birth_date="2012-03-04",
                              guardian="Parent", issuer="https://consent.shop.example")
    header = jwt.get_unverified_header(wire)
    assert header == {"alg": "EdDSA", "kid": thumbprint(keys["issuer"].public_key()), "typ": CONSENT_TYP}
    c = jwt.decode(wire, keys["issuer"].public_key(), algorithms=["EdDSA"], audience=ID_A,
                   issuer="https://consent.shop.example", options={"require": ["exp", "iat", "nbf", "jti"]},
                   leeway=dt.timedelta(days=3650))
    assert (c["sub"], c["jti"], c["purposes"], c["notice_hash"]) == ("alice", tok.token_id, ["demo"], dep.notice_hash)
    assert (c["birth_date"], c["guardian"], c["screen_version"]) == ("2012-03-04", "Parent", "demo-screen-1")
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(wire, keys["issuer"].public_key(), algorithms=["EdDSA"], audience=ID_B,
                   leeway=dt.timedelta(days=3650))
    lb, _ = issue_legal_basis(keys["authority"], audience=ID_A, authority="Bureau", provision="PIPL 13(1)(3)",
                              reference="r1", purposes=["demo"], now=NOW)
    assert jwt.get_unverified_header(lb)["typ"] == "safeface-legal-basis+jwt"
    c = jwt.decode(lb, keys["authority"].public_key(), algorithms=["EdDSA"], audience=ID_A,
                   leeway=dt.timedelta(days=3650))
    assert (c["provision"], c["authority"], c["reference"]) == ("PIPL 13(1)(3)", "Bureau", "r1")


# -- attacks on the signature and the header -------------------------------------------------------
def test_alg_none_refused(make_guard, keys) -> None:
    g = make_guard()
    t = hand_token({"alg": "none", "kid": key_id(keys["issuer"].public_key()), "typ": CONSENT_TYP}, claims(g),
                   lambda _: b"")
    refused("CN-04", lambda: enrol(g, t), "EdDSA")
    refused("CN-04", lambda: enrol(g, t.rstrip(".")))  # and without the empty signature part


def test_hs256_with_the_public_key_as_secret_refused(make_guard, keys) -> None:
    """Key confusion: an HMAC keyed with the public key, which anyone can read."""
    g = make_guard()
    pk = keys["issuer"].public_key()
    header = {"alg": "HS256", "kid": key_id(pk), "typ": CONSENT_TYP}
    for secret in (raw_public(pk), b64(raw_public(pk)).encode(), json.dumps(public_jwk(pk)).encode(),
                   pk.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)):
        t = hand_token(header, claims(g), lambda m, s=secret: hmac.new(s, m, hashlib.sha256).digest())
        refused("CN-04", lambda: enrol(g, t), "EdDSA")


def test_rs256_refused(make_guard, keys) -> None:
    g = make_guard()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    t = jwt.encode(claims(g), rsa_key, algorithm="RS256",
                   headers={"kid": key_id(keys["issuer"].public_key()), "typ": CONSENT_TYP})
    refused("CN-04", lambda: enrol(g, t), "EdDSA")


def test_header_tricks_refused(make_guard, keys) -> None:
    """Embedded or remote keys, critical extensions and unencoded payloads are refused, not read;
    a token is checked only with the trusted key its kid names."""
    g = make_guard()
    attacker = Ed25519PrivateKey.generate()
    jwk = public_jwk(attacker.public_key())
    trusted_kid = key_id(keys["issuer"].public_key())
    for extra in ({"jwk": jwk}, {"jku": "https://evil.example/jwks.json"}, {"x5u": "https://evil.example/c.pem"},
                  {"x5c": ["MIIB"]}, {"crit": ["b64"], "b64": False}, {"cty": "JWT"}):
        refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g), **extra)), "header")
        # Signed by the attacker, with the attacker's key embedded and the trusted kid named.
        forged = jwt.encode(claims(g), attacker, algorithm="EdDSA",
                            headers={"kid": trusted_kid, "typ": CONSENT_TYP, **extra})
        refused("CN-04", lambda: enrol(g, forged))
    # The attacker's key named by its own kid: not trusted.
    refused("CN-04", lambda: enrol(g, pyjwt_token(attacker, claims(g))), "does not trust")
    # The trusted kid on the attacker's signature: the signature fails.
    forged = jwt.encode(claims(g), attacker, algorithm="EdDSA", headers={"kid": trusted_kid, "typ": CONSENT_TYP})
    refused("CN-04", lambda: enrol(g, forged), "signature")
    # No kid at all, or a kid that is not a string.
    refused("CN-04", lambda: enrol(g, jwt.encode(claims(g), keys["issuer"], algorithm="EdDSA",
                                                  headers={"typ": CONSENT_TYP})), "does not trust")
    for kid in (7, [trusted_kid], {"kid": trusted_kid}):
        t = hand_token({"alg": "EdDSA", "kid": kid, "typ": CONSENT_TYP}, claims(g), keys["issuer"].sign)
        refused("CN-04", lambda: enrol(g, t))


def test_edited_payload_or_header_refused(make_guard, keys) -> None:
    g = make_guard()
    t = pyjwt_token(keys["issuer"], claims(g))
    head, payload, sig = t.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    for change in ({"sub": "mallory"}, {"aud": ID_B}, {"exp": TS + 10 ** 8}, {"purposes": ["demo", "marketing"]}):
        edited = ".".join([head, b64(json.dumps({**body, **change}).encode()), sig])
        refused("CN-04", lambda: enrol(g, edited, subject=str(change.get("sub", "alice"))), "signature")
    hdr = json.loads(base64.urlsafe_b64decode(head + "=="))
    retyped = ".".join([b64(json.dumps({**hdr, "typ": "safeface-legal-basis+jwt"}).encode()), payload, sig])
    refused("CN-16b", lambda: authorize(g, "identify", "demo", NOW, legal_basis=retyped))
    refused("CN-04", lambda: enrol(g, ".".join([head, payload, b64(b"\0" * 64)])), "signature")
    for garbage in ("not a token", "a.b.c", "", "x" * 9000, f"{head}.{payload}", f"{head}..{sig}"):
        refused("CN-04", lambda: enrol(g, garbage))


def test_duplicate_claim_names_refused(make_guard, keys) -> None:
    """Two values for `sub` in one signed text: parsers disagree on which counts, so neither does."""
    g = make_guard()
    body = json.dumps(claims(g))[:-1] + ', "sub": "mallory"}'
    header = {"alg": "EdDSA", "kid": key_id(keys["issuer"].public_key()), "typ": CONSENT_TYP}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(body.encode())}"
    t = f"{signing_input}.{b64(keys['issuer'].sign(signing_input.encode()))}"
    refused("CN-04", lambda: enrol(g, t, subject="mallory"), "twice")



def test_duplicate_header_members_refused(make_guard, keys) -> None:
    """Two values for `typ` (or `alg`, or `kid`) in one signed header: as with claims, a reader
    taking the first would see another token than one taking the last, so neither counts."""
    g = make_guard()
    kid = key_id(keys["issuer"].public_key())
    for header in (f'{{"alg":"EdDSA","kid":"{kid}","typ":"safeface-legal-basis+jwt","typ":"{CONSENT_TYP}"}}',
                   f'{{"alg":"none","alg":"EdDSA","kid":"{kid}","typ":"{CONSENT_TYP}"}}',
                   f'{{"alg":"EdDSA","kid":"someone else","kid":"{kid}","typ":"{CONSENT_TYP}"}}'):
        signing_input = f"{b64(header.encode())}.{b64(json.dumps(claims(g)).encode())}"
        t = f"{signing_input}.{b64(keys['issuer'].sign(signing_input.encode()))}"
        refused("CN-04", lambda: enrol(g, t), "twice")


@pytest.mark.parametrize("signed", ["sf1 payload, unsigned", "JWS payload, signed"])
def test_deeply_nested_json_is_a_refusal_not_a_crash(make_guard, keys, signed: str) -> None:
    """Thousands of nested brackets fit in a token's 8,192 characters and exhausted Python's
    recursion limit while the payload was read: an sf1 payload is read before its signature is
    checked, so anyone could make the guard raise RecursionError instead of refusing (CN-04)."""
    g = make_guard()
    nested = "[" * 3000 + "]" * 3000
    if signed.startswith("sf1"):
        t = f"sf1.{b64(nested.encode())}.{b64(bytes(64))}"
    else:
        body = json.dumps(claims(g))[:-1] + f', "deep": {nested[:1800]}{nested[-1800:]}}}'
        header = {"alg": "EdDSA", "kid": key_id(keys["issuer"].public_key()), "typ": CONSENT_TYP}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(body.encode())}"
        t = f"{signing_input}.{b64(keys['issuer'].sign(signing_input.encode()))}"
        assert len(t) <= 8192
    refused("CN-04", lambda: enrol(g, t), "garbled")
    assert verified_token_id(t, g._consent_keys, "consent") is None


def test_a_token_nested_deep_is_refused_whatever_the_callers_depth(make_guard, keys) -> None:
    """How deep a payload could nest was Python's stack: at some 940 levels a signed consent was let
    in at the call's start and refused at the store's write, a few frames deeper, as signed by a key
    no longer trusted. No claim nests past a few levels; deeper is garbled, read from any depth."""
    g = make_guard()
    for depth in (65, 940):
        nested = "[" * depth + "]" * depth
        body = json.dumps(claims(g))[:-1] + f', "deep": {nested}}}'
        header = {"alg": "EdDSA", "kid": key_id(keys["issuer"].public_key()), "typ": CONSENT_TYP}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(body.encode())}"
        t = f"{signing_input}.{b64(keys['issuer'].sign(signing_input.encode()))}"
        refused("CN-04", lambda: enrol(g, t), "nested")
    shallow = json.dumps(claims(g))[:-1] + ', "deep": [[[{"a": [1]}]]]}'
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(shallow.encode())}"
    assert enrol(g, f"{signing_input}.{b64(keys['issuer'].sign(signing_input.encode()))}").consent is not None


# -- attacks on what the token says ----------------------------------------------------------------
def test_wrong_or_missing_audience_refused(make_guard, keys) -> None:
    g = make_guard()
    e = refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, aud=ID_B))), "another deployment")
    assert ID_A in e.message
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, aud=[ID_B, "x"]))), "another deployment")
    for aud in (None, "", []):
        refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, aud=aud))), "audience")


def test_token_for_workspace_a_refused_in_workspace_b(make_guard, keys) -> None:
    """The same consent service and authority serve two deployments; each token works only in its own."""
    a, b = make_guard(ID_A), make_guard(ID_B)
    wire, _ = issue_consent(keys["issuer"], a.deployment, "alice", ["demo"], now=NOW - dt.timedelta(hours=1))
    assert enrol(a, wire).consent.audience == (ID_A,)
    refused("CN-04", lambda: enrol(b, wire), "another deployment", ID_B)
    lb, _ = issue_legal_basis(keys["authority"], audience=ID_A, authority="Bureau", provision="PIPL 13",
                              reference="r", purposes=["demo"], now=NOW - dt.timedelta(hours=1))
    assert authorize(a, "identify", "demo", NOW, legal_basis=lb).legal_basis is not None
    refused("CN-16b", lambda: authorize(b, "identify", "demo", NOW, legal_basis=lb), "another deployment")


def test_legal_basis_and_consent_cannot_stand_in_for_each_other(make_guard, keys) -> None:
    """Signed by a key trusted for the other role too, so that only the signed typ tells them apart."""
    g = make_guard()
    both = Ed25519PrivateKey.generate()
    g._consent_keys[key_id(both.public_key())] = both.public_key()
    g._authority_keys[key_id(both.public_key())] = both.public_key()
    lb, _ = issue_legal_basis(both, audience=ID_A, authority="Bureau", provision="PIPL 13", reference="r",
                              purposes=["demo"], operations=["enroll", "identify"], now=NOW - dt.timedelta(hours=1))
    refused("CN-04", lambda: enrol(g, lb), "'legal-basis' token where a 'consent' token")
    consent, _ = issue_consent(both, g.deployment, "alice", ["demo"], operations=["identify"],
                               now=NOW - dt.timedelta(hours=1))
    refused("CN-16b", lambda: authorize(g, "identify", "demo", NOW, legal_basis=consent), "'consent' token")
    # A plain JWT the same service mints for something else (a login, say) is no consent.
    for typ in ("JWT", "at+jwt", None):
        t = jwt.encode(claims(g), both, algorithm="EdDSA", headers={"kid": key_id(both.public_key()), "typ": typ})
        refused("CN-04", lambda: enrol(g, t), "typ")
    # The typ compares as a media type: case and an "application/" prefix do not matter.
    assert enrol(g, pyjwt_token(both, claims(g), typ="application/Safeface-Consent+JWT")).consent


def test_expired_and_not_yet_valid_refused(make_guard, keys) -> None:
    g = make_guard()
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, exp=TS - 1))), "expired")
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, nbf=TS + 3600))), "not valid yet")
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, iat=TS + 3600))), "not valid yet")
    # Within the clock skew allowed between the consent service and this host.
    assert enrol(g, pyjwt_token(keys["issuer"], claims(g, nbf=TS + 60))).consent
    for name in ("exp", "iat"):
        refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, **{name: None}))), name)
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, exp="tomorrow"))), "exp")
    lb = jwt.encode({"iss": "court", "aud": ID_A, "jti": str(uuid.uuid4()), "iat": TS - 10, "nbf": TS + 3600,
                     "exp": TS + 7200, "purposes": ["demo"], "operations": ["identify"], "authority": "Bureau",
                     "provision": "PIPL 13", "reference": "r"}, keys["authority"], algorithm="EdDSA",
                    headers={"kid": key_id(keys["authority"].public_key()), "typ": "safeface-legal-basis+jwt"})
    refused("CN-16b", lambda: authorize(g, "identify", "demo", NOW, legal_basis=lb), "validity")


def test_the_validity_window_is_exact_at_its_edges(make_guard, keys) -> None:
    """Refused before nbf (or iat) less 120 s of skew, and from exp on; a fractional nbf counts
    as the next second."""
    g = make_guard()
    assert enrol(g, pyjwt_token(keys["issuer"], claims(g, nbf=TS + 120))).consent
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, nbf=TS + 121))), "not valid yet")
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, iat=TS + 121, nbf=None))), "not valid yet")
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, nbf=TS + 120.5))), "not valid yet")
    assert enrol(g, pyjwt_token(keys["issuer"], claims(g, exp=TS + 1))).consent
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, exp=TS))), "expired")
    lb = jwt.encode({"iss": "court", "aud": ID_A, "jti": str(uuid.uuid4()), "iat": TS - 10, "exp": TS,
                     "purposes": ["demo"], "operations": ["identify"], "authority": "Bureau",
                     "provision": "PIPL 13", "reference": "r"}, keys["authority"], algorithm="EdDSA",
                    headers={"kid": key_id(keys["authority"].public_key()), "typ": "safeface-legal-basis+jwt"})
    refused("CN-16b", lambda: authorize(g, "identify", "demo", NOW, legal_basis=lb), "validity")


def test_a_token_dated_within_the_skew_after_its_subjects_withdrawal_counts_as_withdrawn(make_guard, keys) -> None:
    """An issuer whose clock runs 100 s ahead (tolerated) dates a consent, given before alice's
    erasure and never used, after it: it enrolled her again. A consent dated within the 120 s
    skew after its subject's withdrawal counts as withdrawn (CN-05), at the call and at the write
    (a legal basis too, CN-16b); the error says from when a new one is taken, and one issued
    after that is."""
    g = make_guard()
    g._state.revoke_subject("p-alice", NOW)  # alice erased at TS
    for iat in (TS, TS + 100, TS + 120):
        err = refused("CN-05", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, iat=iat, nbf=None))))
        if iat > TS:
            assert "less than 120 s after" in err.message and str(dt.datetime.fromtimestamp(
                iat + 120, dt.timezone.utc).isoformat(timespec="seconds")) in err.message, err.message
    later = NOW + dt.timedelta(seconds=2)
    fresh = pyjwt_token(keys["issuer"], claims(g, iat=TS + 121, nbf=None))
    assert authorize(g, "enroll", "demo", later, subject="alice", consent=fresh).consent
    assert enrol(g, pyjwt_token(keys["issuer"], claims(g, sub="bob", iat=TS + 100, nbf=None)), "bob").consent

    def lb(iat: int) -> str:
        return jwt.encode({"iss": "court", "aud": ID_A, "jti": str(uuid.uuid4()), "iat": iat, "exp": TS + 7200,
                           "purposes": ["demo"], "operations": ["enroll"], "authority": "Bureau",
                           "provision": "PIPL 13", "reference": "r"}, keys["authority"], algorithm="EdDSA",
                          headers={"kid": key_id(keys["authority"].public_key()), "typ": "safeface-legal-basis+jwt"})
    for iat, ok in ((TS + 100, False), (TS + 121, True)):
        d = authorize(g, "enroll", "demo", later, subject="alice", legal_basis=lb(iat))
        if ok:
            g.recheck_at_write(d, ["alice"], later)
        else:
            refused("CN-16b", lambda: g.recheck_at_write(d, ["alice"], later), "less than 120 s after")


def test_weak_token_ids_and_claim_types_refused(make_guard, keys) -> None:
    g = make_guard()
    for over, word in (({"jti": "1"}, "jti"), ({"jti": None}, "jti"), ({"jti": "j" * 129}, "jti"),
                       ({"iss": None}, "iss"), ({"iss": ""}, "iss"), ({"iat": False}, "iat"),
                       ({"sub": ["alice"]}, "sub"), ({"purposes": "demo"}, "purposes"),
                       ({"birth_date": 20120304}, "birth date")):
        refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, **over))), word)
    assert enrol(g, pyjwt_token(keys["issuer"], claims(g, jti="j" * 128))).consent
    # Signed and well formed, but over 8,192 characters: refused before it is parsed.
    refused("CN-04", lambda: enrol(g, pyjwt_token(keys["issuer"], claims(g, padding="p" * 9000))), "too long")


def test_refusals_log_token_ids_only_when_signed(make_guard, keys) -> None:
    g = make_guard()
    body = claims(g)
    good = pyjwt_token(keys["issuer"], body)
    assert verified_token_id(good, g._consent_keys, "consent") == body["jti"]
    assert verified_token_id(pyjwt_token(keys["stranger"], claims(g)), g._consent_keys, "consent") is None
    assert g.token_ref_of(good, None) == "t-" + body["jti"]



def test_a_whole_token_is_told_from_a_token_id(make_guard, keys) -> None:
    """What `revoke` refuses where a token id is asked for; ids, dotted ones too, pass."""
    g = make_guard()
    body = claims(g)
    assert is_whole_token(pyjwt_token(keys["issuer"], body)) and is_whole_token(" sf1.e30.AAAA\n")
    for tid in (body["jti"], "a1b2c3", "order.2026.17", "sf1", "", None):
        assert not is_whole_token(tid), tid


def test_a_whole_token_quoted_wrapped_or_labelled_is_still_a_whole_token(make_guard, keys) -> None:
    """Pasted from JSON, a shell, an HTTP header or a wrapped terminal line: each went through as an
    id, withdrew a reference no token has, got a receipt, and the consent went on working."""
    t = pyjwt_token(keys["issuer"], claims(make_guard()))
    for pasted in (f'"{t}"', f"'{t}'", f"`{t}`", f"<{t}>", f"Bearer {t}", f"token={t}", f'{{"token": "{t}"}}',
                   t[:20] + "\n" + t[20:], f"{t[:40]}\r\n  {t[40:]}", '"sf1.e30.AAAA"', "'sf1.e30.AAAA'\n"):
        assert is_whole_token(pasted), pasted[:30]
    for tid in ("order.2026.17", "v1.2.3", "a.b.c", "my id. with. dots"):
        assert not is_whole_token(tid), tid


# -- legacy tokens -----------------------------------------------------------------------------
def sf1(key: Ed25519PrivateKey, body: dict[str, Any]) -> str:
    """A token in the earlier wire form, as `safeface consent issue` minted them before."""
    body = {**body, "kid": legacy_key_id(key.public_key())}
    data = b64(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return f"sf1.{data}.{b64(key.sign(f'sf1.{data}'.encode()))}"


def test_sf1_tokens_accepted_until_they_expire(make_guard, keys) -> None:
    g, other = make_guard(), make_guard(ID_B)
    body = {"token_id": "a1b2c3", "subject": "alice", "purposes": ["demo"], "operations": ["enroll"],
            "notice_hash": g.deployment.notice_hash, "screen_version": "demo-screen-1", "issued_at": TS - 60,
            "expires_at": TS + 3600, "birth_date": None, "guardian": None, "typ": "consent"}
    t = enrol(g, sf1(keys["issuer"], body)).consent
    assert t.token_id == "a1b2c3" and t.audience == ()
    assert enrol(other, sf1(keys["issuer"], body)).consent  # no audience: not bound (documented)
    refused("CN-04", lambda: enrol(g, sf1(keys["issuer"], {**body, "expires_at": TS - 1})), "expired")
    refused("CN-04", lambda: enrol(g, sf1(keys["stranger"], body)), "does not trust")
    refused("CN-16b", lambda: authorize(g, "enroll", "demo", NOW, legal_basis=sf1(keys["authority"], body)),
            "'consent' token")
    head, payload, sig = sf1(keys["issuer"], body).split(".")
    refused("CN-04", lambda: enrol(g, f"{head}.{payload[:-4]}AAAA.{sig}"))


# -- minting ---------------------------------------------------------------------------------
def test_minting_needs_a_deployment_id(keys) -> None:
    raw = demo_config(NOW.date(), ("cn-2025",))
    assert uuid.UUID(raw["id"]).version == 4
    for bad in (None, "", " padded ", 7, "x" * 200):
        raw["id"] = bad
        if bad is None:
            raw.pop("id")
        with pytest.raises(ConfigError, match='"id"'):
            issue_consent(keys["issuer"], Deployment.from_dict(raw), "alice", ["demo"])
    assert demo_config(NOW.date())["id"] != demo_config(NOW.date())["id"]


def test_minting_refuses_a_purpose_the_deployment_does_not_declare(keys) -> None:
    """A typo, or a look-alike of a declared name: the person would be shown a consent to a
    purpose no call can use."""
    dep = Deployment.from_dict(demo_config(NOW.date(), ("cn-2025",)))
    for bad in ("dem0", "Demo", "d\u0435mo"):
        with pytest.raises(ConfigError, match="declares no purpose"):
            issue_consent(keys["issuer"], dep, "alice", ["demo", bad])
    assert issue_consent(keys["issuer"], dep, "alice", ["demo"])[1].purposes == ("demo",)


def test_minting_with_one_purpose_passed_as_a_string_says_so(keys) -> None:
    """`issue_consent(key, dep, "alice", "demo")` was read letter by letter: the deployment
    "declares no purpose 'd'", a refusal that points at the deployment, not at the call."""
    dep = Deployment.from_dict(demo_config(NOW.date(), ("cn-2025",)))
    with pytest.raises(InvalidArgument, match=r"\['demo'\]"):
        issue_consent(keys["issuer"], dep, "alice", "demo")  # type: ignore[arg-type]


def test_readme_pyjwt_example_mints_an_accepted_token(tmp_path: Path, monkeypatch) -> None:
    """The README's PyJWT snippet, run as written (it reads the clock), against a guard that
    trusts its key."""
    from safeface.policy.tokens import private_key_pem

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme[readme.index("Minting a consent with PyJWT"):]
    code = code[code.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    service = Ed25519PrivateKey.generate()
    (tmp_path / "issuer.pem").write_bytes(private_key_pem(service))
    monkeypatch.chdir(tmp_path)
    now = dt.datetime.now(dt.timezone.utc)
    raw = demo_config(now.date() - dt.timedelta(days=10), ("cn-2025",), deployment_id=ID_A)
    raw["purposes"]["checkout"] = raw["purposes"]["demo"]
    raw["assessment"]["covers"] = Deployment.from_dict(raw).config_digest()
    dep = Deployment.from_dict(raw)
    state = PolicyState(tmp_path / "policy.db")
    g = Guard(dep, {key_id(service.public_key()): service.public_key()}, {}, state, lambda s: "p-" + s,
              lambda tid: "t-" + tid, EmptyStore())
    ns = {"DEPLOYMENT_ID": ID_A, "NOTICE_HASH": dep.notice_hash, "KEY_ID": key_id(service.public_key())}
    exec(compile(code, "README.md", "exec"), ns)
    try:
        d = authorize(g, "enroll", "checkout", now, subject="alice", consent=ns["token"])
    finally:
        state.close()
    assert d.consent.screen_version == "pay-screen-3" and d.consent.audience == (ID_A,)
