"""A witness path is read where it was written: a relative audit.witness line from the
workspace (restart-witness takes it as that line names it), a relative `--witness` from the
folder the command runs in, so an assessor's own copy is the file checked."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import edit_config  # noqa: E402

from safeface.cli import main  # noqa: E402
from safeface.errors import IntegrityError  # noqa: E402
from safeface.workspace.admin import audit_verify  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402


def _append(paths: WorkspacePaths, n: int, tag: str) -> None:
    with opened(paths) as r:
        for i in range(n):
            r.audit.append("verify", "allowed", purpose="demo", note=f"{tag}{i}")


def test_a_witness_named_relative_to_the_workspace_is_restarted_by_that_name(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Operator lost a witness deployment.json names as "../witness-volume/ws-anchor.json" and
    runs restart-witness with that name from another folder: it is restarted, not refused."""
    (tmp_path / "witness-volume").mkdir()
    witness = tmp_path / "witness-volume" / "ws-anchor.json"
    paths = init_workspace(tmp_path / "ws", demo=True)
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": "../witness-volume/ws-anchor.json"}))
    witness.unlink()
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere" / "deeper")
    try:
        rc = main(["audit", "restart-witness", str(paths.root), "../witness-volume/ws-anchor.json"])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    assert rc == 0
    assert json.loads(witness.read_text())["seq"] == audit_verify(paths.root).report.entries


def test_an_assessors_relative_witness_is_their_own_file_not_one_planted_in_the_workspace(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Assessor keeps a copy of the anchor and runs `audit verify --witness kept/ws.anchor` from
    their folder; the operator rolled the log back and planted WS/kept/ws.anchor: caught."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    _append(paths, 2, "e")
    shutil.copy2(paths.audit, tmp_path / "old.db")
    shutil.copy2(paths.anchor, tmp_path / "old-anchor.json")
    _append(paths, 3, "later")
    (tmp_path / "assessor" / "kept").mkdir(parents=True)
    shutil.copy2(paths.anchor, tmp_path / "assessor" / "kept" / "ws.anchor")  # the assessor's copy
    for suffix in ("-wal", "-shm"):
        Path(str(paths.audit) + suffix).unlink(missing_ok=True)
    shutil.copy2(tmp_path / "old.db", paths.audit)
    shutil.copy2(tmp_path / "old-anchor.json", paths.anchor)
    (paths.root / "kept").mkdir()
    shutil.copy2(paths.anchor, paths.root / "kept" / "ws.anchor")  # planted beside the log
    monkeypatch.chdir(tmp_path / "assessor")
    with pytest.raises(IntegrityError, match="rolled back"):
        audit_verify(paths.root, witnesses=[Path("kept/ws.anchor")])
    assert main(["audit", "verify", str(paths.root), "--witness", "kept/ws.anchor"]) != 0
