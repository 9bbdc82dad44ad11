"""A workspace whose keys the host holds (a HostKeyring: a KMS, a secure element) has no
passphrase for `safeface audit restart-witness` to open: a lost witness must still be restartable
by its host, on record, through the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, make_workspace  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.hazmat.templates import PURPOSES, HostKeyring, PassphraseKeyring, StaticKeyProvider  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace.admin import restart_witness  # noqa: E402


def test_a_host_holding_the_keys_restarts_a_lost_witness_on_record(tmp_path: Path) -> None:
    """Host with keys in its KMS (no passphrase) loses the witness: every open is refused (CN-10);
    `restart_witness(..., keyring=)` writes it again with an entry, and the workspace opens."""
    (tmp_path / "volume").mkdir()
    witness = tmp_path / "volume" / "ws-anchor.json"
    ws = make_workspace(tmp_path / "ws", edit=lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    kr = PassphraseKeyring.open(ws.keyring, PASSPHRASE)
    held = {p: {v: kr.key(p, v) for v in kr.versions(p)} for p in PURPOSES}  # the host's secrets manager
    witness.unlink()
    with pytest.raises(IntegrityError, match=r"\[CN-10\] the audit witness .* is missing"):
        SafeFace.open(ws.root, keyring=HostKeyring(StaticKeyProvider(held)))
    seq = restart_witness(ws.root, witness, keyring=HostKeyring(StaticKeyProvider(held)))
    with SafeFace.open(ws.root, keyring=HostKeyring(StaticKeyProvider(held))) as sf:
        restarted = [e for e in sf.audit_entries() if e.operation == "witness" and e.seq == seq]
    assert restarted and "witness restarted" in str(restarted[0].note)
    assert json.loads(witness.read_text())["seq"] >= seq
