"""What makes a workspace a demo is authenticated. A demo keeps its passphrase and its issuers'
private keys in its folder, and lets a caller set its clock and choose liveness challenges; so:
- someone who can write the folder but holds no passphrase swaps in a demo workspace of their own,
  made to look like the real one, for an app that gets its passphrase from $SAFEFACE_PASSPHRASE:
  the app must not open it (it would seal new templates under keys the swapper holds);
- an app developer plants a demo file in a real workspace (an issuer key, the mark itself, or a
  mark copied from a demo) to set the clock back past a consent's expiry, forward past a
  retention, or to pick the moves of a liveness challenge: all refused."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, images, make_workspace  # noqa: E402

from safeface import ConfigError, IntegrityError  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.policy.issuer import issue_consent  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace.admin import keys_import, record_assessment  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.keys import read_signing_key  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.trust import public_jwk  # noqa: E402


def _real(tmp_path: Path) -> tuple[WorkspacePaths, Any]:
    """A workspace as a real deployment keeps it: no demo mark, no private key inside."""
    ws = make_workspace(tmp_path / "ws")
    issuer = read_signing_key(ws.demo_issuer)  # the consent service's key, held outside from here on
    for p in (ws.demo_issuer, ws.demo_authority, ws.demo_mark):
        p.unlink()
    return ws, issuer


def test_a_swapped_in_demo_workspace_does_not_open_with_the_apps_passphrase(tmp_path: Path, monkeypatch: Any) -> None:
    real, issuer = _real(tmp_path)
    # The swapper, with file access and no passphrase: a demo (its passphrase stored inside),
    # the real deployment.json, an assessment of it, the real issuer's public key trusted.
    monkeypatch.delenv("SAFEFACE_PASSPHRASE", raising=False)
    evil = init_workspace(tmp_path / "evil", demo=True)
    assert evil.demo_passphrase.is_file()
    raw = json.loads(real.config.read_text())
    evil.config.write_text(json.dumps(raw, indent=2))
    record_assessment(evil.root, raw["assessment"]["reference"], raw["assessment"]["date"], accept_changes=True)
    jwks = tmp_path / "issuer.jwks.json"
    jwks.write_text(json.dumps({"keys": [public_jwk(issuer.public_key())]}))
    keys_import(evil.root, "consent-issuer", jwks)
    shutil.move(str(real.root), str(tmp_path / "ws.orig"))
    shutil.move(str(evil.root), str(real.root))
    # The app, unchanged: its passphrase in the environment.
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    token, _ = issue_consent(issuer, Deployment.from_dict(raw), "alice", ["demo"])
    with pytest.raises(IntegrityError) as e:
        with SafeFace.open(real.root, pipeline=CachedPipeline()) as sf:
            sf.enroll(images() / "obama.jpg", "alice", "demo", token)
    assert PASSPHRASE not in str(e.value)
    # The real workspace, put back, opens as before.
    shutil.move(str(real.root), str(tmp_path / "evil.moved"))
    shutil.move(str(tmp_path / "ws.orig"), str(real.root))
    with SafeFace.open(real.root, pipeline=CachedPipeline()) as sf:
        assert sf.audit_verify().entries > 0


@pytest.mark.parametrize("plant", ["issuer-key", "empty-mark", "forged-mark", "copied-mark"])
def test_a_planted_demo_file_sets_no_clock_and_picks_no_challenge(tmp_path: Path, plant: str) -> None:
    ws, _ = _real(tmp_path)
    other = make_workspace(tmp_path / "other")  # a genuine demo, for its mark
    if plant == "issuer-key":
        ws.demo_issuer.write_bytes(b"")
    elif plant == "empty-mark":
        ws.demo_mark.write_bytes(b"")
    elif plant == "forged-mark":
        ws.demo_mark.write_text("00" * 32 + "\n")
    else:
        shutil.copy(other.demo_mark, ws.demo_mark)
    now = dt.datetime.now(dt.timezone.utc)
    for shift in (-20, 60):  # back past a consent's expiry; forward past a retention
        with pytest.raises(ConfigError, match="--demo"):
            SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline(), clock=lambda: now + dt.timedelta(days=shift))
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
        with pytest.raises(ConfigError, match="random"):
            sf.liveness_challenge(steps=("left", "right"))
        assert sf.liveness_challenge().steps  # a random one is still issued
    # The genuine demo keeps both.
    with SafeFace.open(other.root, PASSPHRASE, pipeline=CachedPipeline(),
                       clock=lambda: now + dt.timedelta(days=1)) as sf:
        assert sf.liveness_challenge(steps=("left", "right")).steps == ("left", "right")


def test_a_swapped_receipt_key_file_is_never_published_and_fails_the_audit(tmp_path: Path) -> None:
    """keys/receipt_public.txt is what others check erasure receipts with; someone who can write
    the folder puts their own key there, so that receipts they forge would check out."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from safeface.policy.receipts import receipt_key
    from safeface.policy.tokens import public_key_text
    from safeface.workspace.admin import audit_verify
    from safeface.workspace.passphrase import open_keyring

    ws, _ = _real(tmp_path)
    true_key = public_key_text(receipt_key(open_keyring(ws, PASSPHRASE).key("pseudonym")).public_key())
    assert ws.receipt_public.read_text().strip() == true_key
    fake = public_key_text(Ed25519PrivateKey.generate().public_key())
    for swap in (fake, None):
        if swap is None:
            ws.receipt_public.unlink()
        else:
            ws.receipt_public.write_text(swap + "\n")
        with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
            with pytest.raises(IntegrityError, match="receipt public key"):
                sf.audit_verify()
            report = json.loads(sf.report(tmp_path / "report")["json"].read_text())
        assert true_key in report["security_measures"]["receipts"] and fake not in json.dumps(report)
        with pytest.raises(IntegrityError, match="receipt public key"):
            audit_verify(ws.root, passphrase_file=_passphrase_file(tmp_path))
    ws.receipt_public.write_text(true_key + "\n")
    assert audit_verify(ws.root, passphrase_file=_passphrase_file(tmp_path)).report.entries > 0


def _passphrase_file(tmp_path: Path) -> Path:
    f = tmp_path / "passphrase.txt"
    f.write_text(PASSPHRASE)
    f.chmod(0o600)  # passphrase files must be private
    return f


def test_an_empty_passphrase_is_refused_not_taken_as_none(tmp_path: Path, monkeypatch: Any) -> None:
    """An app passing "" (a missing setting) must not fall through to a stored demo passphrase."""
    monkeypatch.delenv("SAFEFACE_PASSPHRASE", raising=False)
    ws = init_workspace(tmp_path / "ws", demo=True)
    assert ws.demo_passphrase.is_file()
    with pytest.raises(ConfigError, match="empty"):
        SafeFace.open(ws.root, "")
    with SafeFace.open(ws.root) as sf:  # none given: the demo's own
        assert sf.audit_verify().entries > 0
