"""Legacy sf1 tokens read the way JWS tokens are: a payload that names a member twice is
refused, whatever value a reader of the first or of the last copy would act on."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import EmptyStore, authorize  # noqa: E402

from safeface.errors import PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment, demo_config  # noqa: E402
from safeface.policy.guard import Guard  # noqa: E402
from safeface.policy.tokens import key_id  # noqa: E402
from safeface.policy.tokens_sf1 import legacy_key_id  # noqa: E402
from safeface.workspace.state import PolicyState  # noqa: E402

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
TS = int(NOW.timestamp())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture()
def guard(tmp_path: Path) -> Iterator[tuple[Guard, Ed25519PrivateKey]]:
    key = Ed25519PrivateKey.generate()
    state = PolicyState(tmp_path / "policy.db")
    dep = Deployment.from_dict(demo_config(NOW.date() - dt.timedelta(days=10), ("cn-2025",)))
    yield Guard(dep, {key_id(key.public_key()): key.public_key()}, {}, state, lambda s: "p-" + s,
                lambda t: "t-" + t, EmptyStore()), key
    state.close()


def test_a_legacy_token_naming_its_subject_twice_is_refused(guard: tuple[Guard, Ed25519PrivateKey]) -> None:
    """A consent service that writes the subject into an sf1 payload as text lets a user type
    `alice", "subject": "bob`: signed, the payload names alice first and bob last. A JWS naming
    a member twice is refused; the legacy form read the last copy and enrolled bob."""
    g, key = guard
    members = {"token_id": "a1b2c3d4e5f6", "purposes": ["demo"], "operations": ["enroll"],
               "notice_hash": g.deployment.notice_hash, "screen_version": "s1", "issued_at": TS - 60,
               "expires_at": TS + 3600, "typ": "consent", "kid": legacy_key_id(key.public_key())}
    text = json.dumps(members)[:-1] + ', "subject": "alice", "subject": "bob"}'
    data = _b64(text.encode())
    token = f"sf1.{data}.{_b64(key.sign(f'sf1.{data}'.encode()))}"
    for subject in ("alice", "bob"):
        with pytest.raises(PolicyViolation) as info:
            authorize(g, "enroll", "demo", NOW, subject=subject, consent=token)
        assert info.value.rule == "CN-04" and "twice" in info.value.message, info.value
    once = json.dumps({**members, "subject": "bob"})
    data = _b64(once.encode())
    assert authorize(g, "enroll", "demo", NOW, subject="bob",
                     consent=f"sf1.{data}.{_b64(key.sign(f'sf1.{data}'.encode()))}").consent


@pytest.mark.parametrize("token_id", ["", None])
def test_a_legacy_token_with_an_empty_id_is_refused_under_its_rule(guard: tuple[Guard, Ed25519PrivateKey],
                                                                   token_id: object) -> None:
    """An sf1 token id was any text, the empty one too: the guard then failed deriving its
    reference (a ConfigError, recorded as a failed call with no rule) instead of refusing it."""
    g, key = guard
    members = {"token_id": token_id, "subject": "alice", "purposes": ["demo"], "operations": ["enroll"],
               "notice_hash": g.deployment.notice_hash, "screen_version": "s1", "issued_at": TS - 60,
               "expires_at": TS + 3600, "typ": "consent", "kid": legacy_key_id(key.public_key())}
    data = _b64(json.dumps(members).encode())
    token = f"sf1.{data}.{_b64(key.sign(f'sf1.{data}'.encode()))}"
    with pytest.raises(PolicyViolation) as info:
        authorize(g, "enroll", "demo", NOW, subject="alice", consent=token)
    assert info.value.rule == "CN-04" and "id" in info.value.message, info.value
