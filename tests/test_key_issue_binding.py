"""A key's issue entry on the audit log binds its row (role, expiry, rate and a keyed digest of
the stored hash): a passphrase holder who rewrites the row behind `apikey new` gets a dead key."""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, open_sf  # noqa: E402
from service_support import keyed_client  # noqa: E402


def _hashing_keys(ws: Any) -> Any:
    """The key table opened with the keyring, as a passphrase holder can."""
    from safeface.hazmat.templates import PassphraseKeyring
    from safeface.workspace.apikeys import ApiKeys, hashing_key

    kr = PassphraseKeyring.open(ws.keyring, PASSPHRASE)
    return ApiKeys(ws.apikeys, hashing_key(kr.key("pseudonym")))


def _rewrite(ws: Any, key_id: str, secret: str, **change: Any) -> None:
    """Rewrite the row of `key_id` with `secret` and the values in `change` (its digest anew)."""
    keys = _hashing_keys(ws)
    try:
        info = keys.get(key_id)
        role, expires, rate = (change.get("role", info.role), change.get("expires", info.expires),
                               float(change.get("rate", info.rate)))
        digest = keys._digest(key_id, role, expires, rate, secret)
    finally:
        keys.close()
    with sqlite3.connect(str(ws.apikeys)) as db:
        db.execute("UPDATE apikeys SET role = ?, expires = ?, rate = ?, digest = ? WHERE key_id = ?",
                   (role, expires, rate, digest, key_id))


def test_a_live_keys_row_given_a_new_secret_by_hand_does_not_work(tmp_path: Path) -> None:
    """A passphrase holder rewrites Bob's issued key row with a secret of their own (rate raised):
    the log issued Bob's secret, not this one, so the new key is 401 and nobody is erased."""
    client, ws, (bob,) = keyed_client(tmp_path, "operator")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob_id = sf.authenticate(bob).key_id
    secret = secrets.token_urlsafe(32)
    _rewrite(ws, bob_id, secret, rate=100_000.0)
    with client:
        r = client.post("/v1/erase", headers={"X-API-Key": f"sfk_{bob_id}_{secret}"}, json={"subject": "alice"})
    with open_sf(ws) as sf:
        assert r.status_code == 401 and len(sf.records()) == 1, r.text[:200]


def test_a_keys_rate_raised_by_hand_under_the_passphrase_is_refused(tmp_path: Path) -> None:
    """The holder of a rate-1 key and the passphrase rewrites its own row at 100000/s (same secret):
    the rate was never issued on the log, so the key is 401 rather than run unthrottled."""
    client, ws, (slow,) = keyed_client(tmp_path, "operator", rate=1)
    with open_sf(ws) as sf:
        key_id = sf.authenticate(slow).key_id
    _rewrite(ws, key_id, slow[len("sfk_") + 13:], rate=100_000.0)  # sfk_<12 hex>_<secret>
    with client:
        codes = [client.post("/v1/erase", headers={"X-API-Key": slow}, json={}).status_code for _ in range(5)]
    assert set(codes) == {401}, codes


@pytest.mark.parametrize("change", [{"role": "operator"}, {"expires": None}, {"expires": "20991231"},
                                    {"role": "auditor "}])
def test_a_rewritten_row_with_another_role_or_expiry_spelling_is_refused(tmp_path: Path, change: dict) -> None:
    """A passphrase holder rewrites an auditor key's row (new secret) with another role, no
    expiry or another spelling of its expiry: the issue entry names them as issued, so 401."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor", expires=dt.date(2099, 12, 31))
    with open_sf(ws) as sf:
        key_id = sf.authenticate(aud).key_id
    secret = secrets.token_urlsafe(32)
    _rewrite(ws, key_id, secret, **change)
    with client:
        r = client.get("/v1/audit/verify", headers={"X-API-Key": f"sfk_{key_id}_{secret}"})
    assert r.status_code == 401, r.text[:200]


def test_a_key_issued_by_an_earlier_release_keeps_working(tmp_path: Path) -> None:
    """A deployment upgrades: a key whose issue entry has the earlier note (id, role and expiry
    only) still authenticates, so its kiosks do not all stop (it is not bound until reissued)."""
    from safeface.workspace.storecheck import key_issued_note

    _, ws, _ = keyed_client(tmp_path, "auditor")
    keys = _hashing_keys(ws)
    try:
        info, key = keys.issue("operator", "old kiosk", None, None, dt.datetime.now(dt.timezone.utc))
    finally:
        keys.close()
    with open_sf(ws) as sf:  # the entry an earlier release wrote at `apikey new`
        sf._append("apikey", "allowed", note=key_issued_note(info.key_id, info.role, info.expires))
        assert sf.authenticate(key).key_id == info.key_id
