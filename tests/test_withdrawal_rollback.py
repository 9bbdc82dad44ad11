"""A withdrawn consent stays withdrawn when the policy state forgets it. Someone who can write
the workspace but holds no key puts back a copy of policy.db taken before a revocation or an
erasure, or deletes the file; the anchored audit log still records the withdrawal, so the
withdrawn token is refused, while a consent given after an erasure still works."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, images, issued_consent, make_workspace  # noqa: E402

from safeface import PolicyViolation  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402


def _open(ws: object) -> SafeFace:
    return SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline())  # type: ignore[attr-defined]


@pytest.mark.parametrize("withdrawal", ["revoke-token", "revoke-subject", "erase-subject"])
@pytest.mark.parametrize("how", ["restore-older-copy", "delete"])
def test_a_withdrawn_consent_stays_withdrawn_when_policy_db_is_rolled_back(tmp_path: Path, how: str,
                                                                            withdrawal: str) -> None:
    img = images()
    ws = make_workspace(tmp_path / "ws")
    token, tok = issued_consent(ws, "alice")
    other, _ = issued_consent(ws, "bob")
    with _open(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", token)
        sf.enroll(img / "biden.jpg", "bob", "demo", other)
    backup = tmp_path / "policy-before.db"
    shutil.copyfile(ws.policy, backup)
    with _open(ws) as sf:
        if withdrawal == "revoke-token":
            sf.revoke(token_id=tok.token_id)
        elif withdrawal == "revoke-subject":
            sf.revoke(subject="alice")
        else:
            sf.erase("alice")
    if how == "delete":
        ws.policy.unlink()
    else:
        shutil.copyfile(backup, ws.policy)
    with _open(ws) as sf:
        for call in (lambda: sf.enroll(img / "obama.jpg", "alice", "demo", token),
                     lambda: sf.verify(img / "obama2.jpg", "alice", "demo", token)):
            with pytest.raises(PolicyViolation, match="withdrawn|revoked"):
                call()
        assert not sf.records("alice")
        # Only the withdrawn consent: bob's still works, and so does one alice gives afterwards.
        assert sf.verify(img / "biden.jpg", "bob", "demo", other).match
        time.sleep(1.1)  # issued in a later second than the withdrawal
        again, _ = issued_consent(ws, "alice")
        if withdrawal != "revoke-token":
            assert sf.enroll(img / "obama.jpg", "alice", "demo", again).row_id > 0
            assert len(sf.records("alice")) == 1
