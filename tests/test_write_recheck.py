"""The store's write judges the purpose and the signer's trust as the guard reads them then,
also when another call of the same handle (a service's other worker) published the change
while this enrolment was processed: a purpose an assessed change stopped declaring, or a key
`safeface keys remove` took away, stores nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, edit_config, enrol_while, make_workspace, open_sf  # noqa: E402

from safeface import PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.policy.issuer import issue_consent  # noqa: E402
from safeface.workspace.admin import audit_verify, keys_new, keys_remove  # noqa: E402
from safeface.workspace.keys import read_signing_key  # noqa: E402


def test_a_purpose_undeclared_while_an_enrolment_is_processed_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"].__setitem__("other", dict(r["purposes"]["demo"])))

    def reassess_without_demo(handle: Any) -> None:
        edit_config(ws, lambda raw: raw["purposes"].pop("demo"))  # `safeface assess` of a deployment without it
        with handle._root._judge_lock:  # the handle's next call publishes it
            handle._sync_deployment()

    outcome = enrol_while(ws, reassess_without_demo, monkeypatch, token=consent(ws, "alice"))[0]
    assert isinstance(outcome, PolicyViolation) and "stopped being declared" in str(outcome), outcome
    with open_sf(ws) as sf:
        assert sf.records() == []


def test_a_removal_another_call_of_the_handle_read_mid_enrolment_still_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    b = keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", label="consent service B")
    minted, _ = issue_consent(read_signing_key(tmp_path / "b.pem"), Deployment.load(ws.config), "alice", ["demo"])

    def remove_and_read(handle: Any) -> None:
        keys_remove(ws.root, "consent-issuer", b.thumbprint)
        with handle._root._judge_lock:
            handle._sync_trust()

    outcome = enrol_while(ws, remove_and_read, monkeypatch, token=minted)[0]
    assert isinstance(outcome, PolicyViolation) and "stopped being trusted" in str(outcome), outcome
    assert audit_verify(ws.root).store.rows == 0


@pytest.mark.parametrize("basis", ["consent", "legal basis"])
def test_a_token_that_expires_while_an_enrolment_is_processed_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, basis: str) -> None:
    """The purpose's end was judged at the write's time, the token's expiry only at the call's
    start: a consent (or legal basis) expiring while the image was embedded still stored a row."""
    import datetime as dt

    from policy_support import Clock, issued_legal_basis

    ws = make_workspace(tmp_path / "ws")
    clock = Clock()
    start = clock.now - dt.timedelta(days=1)
    days = 1 + 30 / 86400  # expires 30 s after the call starts
    if basis == "consent":
        tokens = {"token": consent(ws, "alice", now=start, days=days)}
    else:
        tokens = {"legal_basis": issued_legal_basis(ws, operations=("enroll",), now=start, days=days)[0]}
    outcome, rows = enrol_while(ws, lambda handle: clock.advance(seconds=60), monkeypatch, clock=clock, **tokens)
    assert isinstance(outcome, PolicyViolation) and "expired" in str(outcome), outcome
    assert outcome.rule == ("CN-04" if basis == "consent" else "CN-16b") and rows == 0
