"""The compliance report checks what `audit verify` checks: a workspace that command fails must
not have its records called verified, whichever of its checks fails."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import edit_config, make_workspace, open_sf  # noqa: E402

from safeface.errors import IntegrityError

_OTHER_KEY = "MCowBQYDK2VwAyEA" + "A" * 43 + "=\n"


def _swap_receipt_key(ws: Any, tmp_path: Path) -> None:
    (ws.root / "keys" / "receipt_public.txt").write_text(_OTHER_KEY)


def _point_the_witness_away(ws: Any, tmp_path: Path) -> None:
    # At a copy of the anchor: a witness not yet written is first written only under the assessed
    # audit section, so a line pointed at nothing stops the open itself (test_witness_start.py).
    shutil.copy2(ws.anchor, tmp_path / "w.json")
    edit_config(ws, lambda raw: raw.setdefault("audit", {}).__setitem__("witness", str(tmp_path / "w.json")),
                reassess=False)


@pytest.mark.parametrize("edit", [_swap_receipt_key, _point_the_witness_away])
def test_a_report_fails_the_records_rule_where_audit_verify_fails(tmp_path: Path, edit: Callable[..., None]) -> None:
    """The receipt key swapped, or the log's witnesses changed by hand: both made `audit verify`
    fail while the report said the records were verified."""
    ws = make_workspace(tmp_path / "ws")
    edit(ws, tmp_path)
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError):
            sf.audit_verify()
        files = sf.report(tmp_path / "report")
    doc = json.loads(Path(files["json"]).read_text(encoding="utf-8"))
    assert doc["records_verified"] is False
    cn10 = next(r for r in doc["rules"] if r["id"] == "CN-10")
    assert cn10["state"] == "failing", cn10
    assert "THE RECORDS FAIL" in Path(files["html"]).read_text(encoding="utf-8")


def test_a_report_over_a_rolled_back_log_whose_witness_was_deleted_fails_the_records_rule(tmp_path: Path) -> None:
    """audit.db and its anchor put back to an older copy, the witness that holds the newer head
    deleted: `audit verify` named the missing witness, the report called the records verified.
    The log records the witness's start, so such a workspace no longer opens, and a handle opened
    before the witness was deleted refuses the report instead of writing the witness again."""
    from safeface.sdk import SafeFace
    from safeface.workspace.admin import audit_verify
    from safeface.workspace.init import init_workspace
    from safeface.workspace.session import opened

    witness = tmp_path / "witness-volume" / "ws-anchor.json"
    witness.parent.mkdir()
    paths = init_workspace(tmp_path / "ws", demo=True)
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    shutil.copy2(paths.audit, tmp_path / "old.db")
    shutil.copy2(paths.anchor, tmp_path / "old-anchor.json")
    with opened(paths) as r:
        r.audit.append("verify", "allowed", purpose="demo", note="later")
    missing = r"\[CN-10\] the audit witness .* is missing"
    with SafeFace.open(paths.root) as sf:
        witness.unlink()
        with pytest.raises(IntegrityError, match="witness .*missing"):
            sf.audit_verify()
        with pytest.raises(IntegrityError, match=missing):
            sf.report(tmp_path / "report")
    assert not witness.exists()
    for suffix in ("-wal", "-shm"):
        Path(str(paths.audit) + suffix).unlink(missing_ok=True)
    shutil.copy2(tmp_path / "old.db", paths.audit)
    shutil.copy2(tmp_path / "old-anchor.json", paths.anchor)
    with pytest.raises(IntegrityError, match="witness is missing"):
        audit_verify(paths.root)
    with pytest.raises(IntegrityError, match=missing):
        SafeFace.open(paths.root)
