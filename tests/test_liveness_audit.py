"""Liveness evidence the log cannot account for: made with the workspace's keys outside a check,
or spent long after its check. The guard cannot tell such evidence from a check's (the keys
sign both); `audit verify` names the calls it let in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, Clock, consent, images, make_workspace, open_sf  # noqa: E402

from safeface.capture.evidence import EvidenceKeys  # noqa: E402
from safeface.errors import IntegrityError  # noqa: E402
from safeface.hazmat.templates.keyring import PassphraseKeyring  # noqa: E402
from safeface.sdk.nonces import nonce_ref  # noqa: E402
from safeface.workspace.audit import AuditEntry  # noqa: E402
from safeface.workspace.storecheck import read_log  # noqa: E402


def test_evidence_made_with_the_keys_outside_a_check_is_named_by_the_audit(tmp_path: Path) -> None:
    """A host holding the keyring signed "live" evidence from a photo's embedding, with no
    challenge and no clip: a liveness-required enrolment and verification were let in, the log
    held no liveness check at all, and `audit verify` passed."""
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].__setitem__("liveness", "required"))
    imgs = images()
    keys = EvidenceKeys(PassphraseKeyring.open(ws.keyring, PASSPHRASE).key("pseudonym"))
    vec = CachedPipeline().embed(imgs / "obama.jpg").embedding
    clock = Clock()
    with open_sf(ws, clock=clock) as sf:
        t = consent(ws, "alice", now=clock.now)
        minted = keys.issue(nonce="minted", clip_sha256="00" * 32, now=clock.now.timestamp(), decision="live",
                            score=0.99, challenge=("left", "right"), embedding=vec)
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t, liveness=minted)
        assert not [e for e in sf.audit_entries() if e.operation == "liveness"]
        named = f"spent liveness evidence {nonce_ref('minted')} that no liveness check"
        with pytest.raises(IntegrityError, match=named):
            sf.audit_verify()


def _entry(seq: int, time: str, operation: str, note: str) -> AuditEntry:
    return AuditEntry(seq, time, operation, None, None, None, (), "allowed", "PA-01", note)


def test_evidence_is_spent_within_its_checks_validity_by_the_logs_clock() -> None:
    """The guard judges evidence's age by the handle's clock, which a demo host can set back; the
    log's own times of the check and of the spending must agree with the validity too."""
    ref = nonce_ref("n")
    check = _entry(1, "2026-12-01T10:00:00+00:00", "liveness", f"live; score 0.91; steps left,right; clip sha256 "
                                                               f"0011; liveness {ref}")
    on_time = _entry(2, "2026-12-01T10:00:50+00:00", "liveness-spent", f"evidence spent; liveness {ref}")
    late = _entry(2, "2026-12-01T12:00:00+00:00", "liveness-spent", f"evidence spent; liveness {ref}")
    assert read_log([check, on_time]).late == []
    assert [p for p in read_log([check, late]).late if "outside its 60 s validity" in p]
    other = _entry(2, "2026-12-01T10:00:10+00:00", "liveness-spent", f"evidence spent; liveness {nonce_ref('x')}")
    assert [p for p in read_log([check, other]).late if "no liveness check in this log issued" in p]


def test_evidence_signed_anew_for_a_checked_challenge_is_named() -> None:
    """A host holding the keys passed a genuine check with an accomplice, threw that evidence
    away and signed new evidence for the same challenge carrying the victim's face: the spending
    paired with the honest check by its nonce and the audit passed. Both entries now name the
    signed evidence itself."""
    ref = nonce_ref("n")
    check = _entry(1, "2026-12-01T10:00:00+00:00", "liveness", f"live; score 0.91; steps left,right; clip sha256 "
                                                               f"0011; evidence {'a' * 16}; liveness {ref}")
    same = _entry(2, "2026-12-01T10:00:20+00:00", "liveness-spent", f"evidence spent; evidence {'a' * 16}; "
                                                                     f"liveness {ref}")
    other = _entry(2, "2026-12-01T10:00:20+00:00", "liveness-spent", f"evidence spent; evidence {'b' * 16}; "
                                                                      f"liveness {ref}")
    assert read_log([check, same]).late == []
    assert [p for p in read_log([check, other]).late if "other than the one its check issued" in p]
