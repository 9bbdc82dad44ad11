"""A witness is written where nothing was only on record and on purpose: by `safeface init`,
by `safeface assess` once it records the section naming it, or by `safeface audit
restart-witness`. A missing witness the log has no start for (a log restored from before the
start) is refused, as one it has a start for is."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import _passphrase, edit_config  # noqa: E402

from safeface.errors import ConfigError, IntegrityError  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace import admin, session  # noqa: E402
from safeface.workspace.admin import audit_verify, record_assessment  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402


def _witness(tmp_path: Path) -> Path:
    (tmp_path / "witness-volume").mkdir()
    return tmp_path / "witness-volume" / "ws-anchor.json"


def _append(paths: WorkspacePaths, n: int, tag: str) -> None:
    with opened(paths) as r:
        for i in range(n):
            r.audit.append("verify", "allowed", purpose="demo", note=f"{tag}{i}")


def _operations(paths: WorkspacePaths) -> list[str]:
    """The log's operations, read without opening the workspace (an open records starts)."""
    with closing(sqlite3.connect(f"file:{paths.audit}?mode=ro", uri=True)) as db:
        return [op for (op,) in db.execute("SELECT operation FROM entries ORDER BY seq")]


def test_a_log_restored_from_before_the_witness_start_does_not_have_it_written_afresh(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Someone without a key restores audit.db and its anchor from a backup the previous release
    wrote (its assessment names the witness, the log no start) and deletes the witness: refused."""
    witness = _witness(tmp_path)
    paths = init_workspace(tmp_path / "ws", demo=True)
    with monkeypatch.context() as m:  # the previous release, which recorded no witness start
        for module in (session, admin):
            m.setattr(module, "start_witnesses", lambda *a, **k: None, raising=False)
        edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
        _append(paths, 2, "old")
    assert witness.exists() and "witness" not in _operations(paths)
    shutil.copy2(paths.audit, tmp_path / "old.db")
    shutil.copy2(paths.anchor, tmp_path / "old-anchor.json")
    with SafeFace.open(paths.root):  # upgraded: the witness present, its start is recorded
        pass
    assert "witness" in _operations(paths)
    _append(paths, 3, "later")
    for suffix in ("-wal", "-shm"):
        Path(str(paths.audit) + suffix).unlink(missing_ok=True)
    shutil.copy2(tmp_path / "old.db", paths.audit)
    shutil.copy2(tmp_path / "old-anchor.json", paths.anchor)
    witness.unlink()
    with pytest.raises(IntegrityError, match=r"\[CN-10\] the audit witness .* is missing.*restart-witness"):
        SafeFace.open(paths.root)
    with pytest.raises(IntegrityError, match="missing"):
        _append(paths, 1, "x")
    assert not witness.exists()


def test_an_assess_that_records_nothing_starts_no_witness(tmp_path: Path) -> None:
    """Operator names a witness and runs `safeface assess` without accepting the listed changes:
    it says nothing was recorded, so it must neither write the witness nor log its start."""
    witness = _witness(tmp_path)
    paths = init_workspace(tmp_path / "ws", demo=True)
    log = paths.audit.read_bytes()
    raw = json.loads(paths.config.read_text())
    raw["audit"] = {"witness": str(witness)}
    paths.config.write_text(json.dumps(raw, indent=2))
    a = raw["assessment"]
    with pytest.raises(ConfigError, match="Nothing was recorded"):
        record_assessment(paths.root, a["reference"], a["date"], passphrase=_passphrase(paths))
    assert not witness.exists()
    assert paths.audit.read_bytes() == log
    record_assessment(paths.root, a["reference"], a["date"], passphrase=_passphrase(paths), accept_changes=True)
    assert json.loads(witness.read_text())["seq"] == audit_verify(paths.root).report.entries
