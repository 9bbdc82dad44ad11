"""Two processes changing the trust store at once, while a third enrols and erases: the trust
store is read, changed and written under its lock, each change audited; the log, trust.json and
the anchor must agree afterwards whatever the interleaving (no lost change, no false alarm)."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface.workspace.admin import audit_verify, keys_list, keys_new  # noqa: E402


def _trust_many(root: str, tag: str, kind: str, n: int, pf: str) -> None:
    for i in range(n):
        keys_new(Path(root), kind, Path(root).parent / f"{tag}-{i}.pem", label=f"{tag}{i}", passphrase_file=Path(pf))


def _enrol_and_erase(root: str, n: int) -> None:
    from safeface.workspace.paths import WorkspacePaths

    ws = WorkspacePaths(Path(root))
    with open_sf(ws) as sf:
        for i in range(n):
            sf.enroll(images() / "obama.jpg", f"p{i}", "demo", consent(ws, f"p{i}"))
            sf.erase(f"p{i}")


def test_two_processes_trusting_keys_while_a_third_enrols_lose_no_change(tmp_path: Path) -> None:
    """Two processes trust three keys each while a third enrols and erases: all six are listed,
    each recorded, and `audit verify` finds the files in agreement."""
    ws = make_workspace(tmp_path / "ws")
    pf = tmp_path / "passphrase.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    before = len(keys_list(ws.root, pf))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_trust_many, args=(str(ws.root), "A", "consent-issuer", 3, str(pf))),
             ctx.Process(target=_trust_many, args=(str(ws.root), "B", "authority", 3, str(pf))),
             ctx.Process(target=_enrol_and_erase, args=(str(ws.root), 2))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        if p.is_alive():
            p.kill()
        assert p.exitcode == 0, p.exitcode
    listed = keys_list(ws.root, pf)
    assert len(listed) == before + 6, listed
    with open_sf(ws) as sf:
        adds = [e for e in sf.audit_entries() if e.operation == "trust-add"]
        assert len(adds) >= 6
        assert sf.verify_store().ok
    audit_verify(ws.root, pf)
