"""Signed token claims that name no one: a child's guardian, a legal basis's authority or
provision, a consent's subject, written empty or in characters that print nothing (a zero-width
space, a Hangul filler, a braille blank), and times no float holds. A consent service or an
authority that checks only for "not empty" signs them; the guard must still refuse each, by its
rule, and say what to fix."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import jwt  # PyJWT: what another party's minting code would use
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import EmptyStore, authorize, images, last_call, make_workspace, open_sf  # noqa: E402
from policy_support import consent, issued_consent, resigned  # noqa: E402

from safeface.errors import PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment, demo_config  # noqa: E402
from safeface.policy.guard import Guard  # noqa: E402
from safeface.policy.tokens import key_id  # noqa: E402
from safeface.workspace.state import PolicyState  # noqa: E402

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
TS = int(NOW.timestamp())
DEP_ID = "deployment-blank-" + "7" * 20
# Each prints as nothing at all: zero-width space, word joiner, soft hyphen, byte-order mark,
# Hangul filler, braille blank, a tag space, a NUL, a lone surrogate, and a mix with spaces.
SHOW_NOTHING = ("\u200b", "\u2060", "\u00ad", "\ufeff", "\u3164", "\u2800", "\U000e0020", "\x00", "\ud800",
                " \u200b\u3000\u2800 ")


@pytest.fixture(scope="module")
def keys() -> dict[str, Ed25519PrivateKey]:
    return {k: Ed25519PrivateKey.generate() for k in ("issuer", "authority")}


@pytest.fixture()
def guard(tmp_path: Path, keys: dict[str, Ed25519PrivateKey]) -> Iterator[Guard]:
    state = PolicyState(tmp_path / "policy.db")
    dep = Deployment.from_dict(demo_config(NOW.date() - dt.timedelta(days=10), ("cn-2025",), deployment_id=DEP_ID))
    trusted = {k: {key_id(keys[k].public_key()): keys[k].public_key()} for k in keys}
    yield Guard(dep, trusted["issuer"], trusted["authority"], state, lambda s: "p-" + s, lambda t: "t-" + t,
                EmptyStore())
    state.close()


def _signed(key: Ed25519PrivateKey, typ: str, body: dict[str, Any]) -> str:
    return jwt.encode(body, key, algorithm="EdDSA", headers={"kid": key_id(key.public_key()), "typ": typ})


def _consent(g: Guard, key: Ed25519PrivateKey, **over: Any) -> str:
    body = {"iss": "https://consent.example", "aud": DEP_ID, "sub": "alice", "jti": str(uuid.uuid4()),
            "iat": TS - 3600, "exp": TS + 86400, "purposes": ["demo"], "operations": ["enroll", "identify"],
            "notice_hash": g.deployment.notice_hash, "screen_version": "s1", **over}
    return _signed(key, "safeface-consent+jwt", body)


def _legal_basis(key: Ed25519PrivateKey, **over: Any) -> str:
    body = {"iss": "court", "aud": DEP_ID, "jti": str(uuid.uuid4()), "iat": TS - 60, "exp": TS + 3600,
            "purposes": ["demo"], "operations": ["identify"], "authority": "Test Bureau",
            "provision": "PIPL art. 13(1)(3)", "reference": "case 17", **over}
    return _signed(key, "safeface-legal-basis+jwt", body)


def _refused(rule: str, fn: Callable[[], Any], word: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        fn()
    assert info.value.rule == rule, info.value
    assert word in info.value.message, info.value.message


@pytest.mark.parametrize("blank", SHOW_NOTHING)
def test_a_childs_consent_whose_guardian_prints_nothing_is_refused(guard: Guard, keys: Any, blank: str) -> None:
    """A child fills the guardian field with an invisible character and the consent service,
    which checks only for an empty field, signs it: CN-06 must still ask for a guardian."""
    child = (NOW.date() - dt.timedelta(days=365 * 10)).isoformat()
    token = _consent(guard, keys["issuer"], birth_date=child, guardian=blank)
    _refused("CN-06", lambda: authorize(guard, "enroll", "demo", NOW, subject="alice", consent=token), "guardian")
    named = _consent(guard, keys["issuer"], birth_date=child, guardian="Parent Name")
    assert authorize(guard, "enroll", "demo", NOW, subject="alice", consent=named).consent


@pytest.mark.parametrize("blank", SHOW_NOTHING)
def test_a_legal_basis_whose_authority_or_provision_prints_nothing_is_refused(guard: Guard, keys: Any,
                                                                             blank: str) -> None:
    """An authority's tool signs a legal basis whose provision (or authority) is an invisible
    character: it names no law, and CN-16b must refuse it as it refuses an empty one."""
    for field in ("provision", "authority"):
        token = _legal_basis(keys["authority"], **{field: blank})
        _refused("CN-16b", lambda: authorize(guard, "identify", "demo", NOW, legal_basis=token),
                 "authority and the legal provision")
    assert authorize(guard, "identify", "demo", NOW, legal_basis=_legal_basis(keys["authority"])).legal_basis


@pytest.mark.parametrize("sub", ["", *SHOW_NOTHING])
def test_a_consent_naming_no_subject_lets_no_identify_in(guard: Guard, keys: Any, sub: str) -> None:
    """A consent service mints "sub": "" (or an invisible one): a consent of nobody, which no
    erasure of a person could ever withdraw; identify (which names no subject) took it."""
    token = _consent(guard, keys["issuer"], sub=sub)
    _refused("CN-04", lambda: authorize(guard, "identify", "demo", NOW, consent=token), "subject")


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_a_time_past_any_float_is_a_refusal_not_a_crash(guard: Guard, keys: Any, claim: str) -> None:
    """A signed consent whose exp, iat or nbf is an integer of 400 digits made the guard raise
    OverflowError (a "backend error" to the caller): it must be a CN-04 refusal naming the claim."""
    token = _consent(guard, keys["issuer"], **{claim: 10 ** 400})
    _refused("CN-04", lambda: authorize(guard, "enroll", "demo", NOW, subject="alice", consent=token), claim)
    token = _consent(guard, keys["issuer"], **{claim: -10 ** 400})
    _refused("CN-04", lambda: authorize(guard, "enroll", "demo", NOW, subject="alice", consent=token), claim)


def test_an_identify_under_a_consent_of_nobody_is_refused_on_record(tmp_path: Path) -> None:
    """Through the SDK: alice enrolled, then an app identifies her face under a consent whose
    sub is "" (signed by the workspace's trusted issuer). Refused CN-04, and the refusal is on
    record; an honest consent still identifies."""
    imgs = images()
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        _, tok = issued_consent(ws, "placeholder", operations=["identify"])
        nobody = resigned(ws, tok, subject="")
        with pytest.raises(PolicyViolation) as info:
            sf.identify(imgs / "obama2.jpg", "demo", nobody)
        assert info.value.rule == "CN-04"
        e = last_call(sf)
        assert (e.operation, e.decision, e.rule) == ("identify", "refused", "CN-04")
        found = sf.identify(imgs / "obama2.jpg", "demo", consent(ws, "bob", operations=["identify"]))
        assert [c.subject for c in found] == [sf.pseudonym("alice")]
