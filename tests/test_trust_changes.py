"""A trust change recorded while a workspace is open (a stolen issuer key removed from another
process) takes effect at the open handle's next call: a running service's workers open the
workspace once, and judged by the keys trusted at that moment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface import PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.policy.issuer import issue_consent  # noqa: E402
from safeface.workspace.admin import keys_new, keys_remove  # noqa: E402
from safeface.workspace.keys import read_signing_key  # noqa: E402


def test_a_key_removed_while_a_handle_is_open_is_refused_at_its_next_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator removed a leaked consent-issuer key with `safeface keys remove`; a handle
    opened before (a service worker) went on verifying and identifying under consents minted with
    it, until it was opened again. Now the handle reads the trust store again at its next call,
    and refuses them (CN-04) as a fresh handle does; consents of the keys still trusted work."""
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    key_b = read_signing_key(tmp_path / "b.pem")
    dep = Deployment.load(ws.config)
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        minted, _ = issue_consent(key_b, dep, "alice", ["demo"], operations=["verify", "identify"])
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", minted).match  # trusted: it works
        keys_remove(ws.root, "consent-issuer", b.thumbprint)
        with pytest.raises(PolicyViolation) as refused:
            sf.verify(imgs / "obama2.jpg", "alice", "demo", minted)
        assert refused.value.rule == "CN-04"
        with pytest.raises(PolicyViolation):
            sf.identify(imgs / "obama2.jpg", "demo", minted)
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice")).match
        view = sf.acting_as("operator", "console")  # views judge by the same reading
        with pytest.raises(PolicyViolation):
            view.verify(imgs / "obama2.jpg", "alice", "demo", minted)


def test_rows_enrolled_under_a_key_before_its_removal_stay_explained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an honest `safeface keys remove`, every row enrolled under the removed key before
    the removal failed the store check ("does not verify against the trusted keys"), a false
    alarm for each, for as long as they were kept. The check now explains them by the key's
    trusted period in the log; a key never trusted still explains nothing."""
    from safeface.workspace.admin import audit_verify

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    minted, _ = issue_consent(read_signing_key(tmp_path / "b.pem"), Deployment.load(ws.config), "alice", ["demo"])
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", minted)
    keys_remove(ws.root, "consent-issuer", b.thumbprint)
    with open_sf(ws) as sf:
        assert sf.verify_store().ok
    assert audit_verify(ws.root).store.ok


def test_the_trusted_keys_listing_follows_a_removal_made_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An open handle (the console's /keys page) listed a key removed from another process until
    some guarded call ran; the listing reads the trust store again."""
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    with open_sf(ws) as sf:
        before = sum(len(v) for v in sf.trusted_keys().values())
        keys_remove(ws.root, "consent-issuer", b.thumbprint)
        assert sum(len(v) for v in sf.trusted_keys().values()) == before - 1
