"""Older copies of SQLite side files put back beside the current files (a -wal a backup took
while a handle was open), or a database file deleted: each must be named or refused."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface.errors import SafeFaceError  # noqa: E402
from safeface.workspace.admin import audit_verify  # noqa: E402

IMG = images()


def _wal(db: Path) -> Path:
    return Path(str(db) + "-wal")


def test_an_older_gallery_wal_put_back_after_an_erasure_is_named(tmp_path: Path) -> None:
    """An older gallery.db-wal holding alice's row is put back after her erasure: the store check
    and `audit verify` name it (or open refuses it), never a clean report."""
    ws = make_workspace(tmp_path / "ws")
    sf = open_sf(ws)
    try:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(IMG / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        assert _wal(ws.gallery).stat().st_size > 0
        shutil.copyfile(_wal(ws.gallery), tmp_path / "gallery.db-wal.bak")
        sf.erase("alice")
        assert sf.verify_store().ok
    finally:
        sf.close()
    for p in (Path(str(ws.gallery) + "-shm"), _wal(ws.gallery)):
        p.unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "gallery.db-wal.bak", _wal(ws.gallery))
    try:
        with open_sf(ws) as sf2:
            report = sf2.verify_store()
            assert not report.ok and any("erasure" in p for p in report.problems), report.problems
    except SafeFaceError:
        pass  # refused at open with a typed error: held as well
    pf = tmp_path / "passphrase.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    with pytest.raises(SafeFaceError, match="(?i)erasure|restored|rolled back|head|anchor"):
        audit_verify(ws.root, pf)


def test_an_older_audit_wal_put_back_is_caught(tmp_path: Path) -> None:
    """An older audit.db-wal from before alice's erasure entry is put back: open and `audit verify`
    refuse it with a typed error."""
    ws = make_workspace(tmp_path / "ws")
    sf = open_sf(ws)
    try:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        assert _wal(ws.audit).stat().st_size > 0
        shutil.copyfile(_wal(ws.audit), tmp_path / "audit.db-wal.bak")
        sf.erase("alice")
    finally:
        sf.close()
    for p in (Path(str(ws.audit) + "-shm"), _wal(ws.audit)):
        p.unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "audit.db-wal.bak", _wal(ws.audit))
    with pytest.raises(SafeFaceError):
        with open_sf(ws):
            pass
    pf = tmp_path / "passphrase.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    with pytest.raises(SafeFaceError, match="(?i)erasure|restored|rolled back|head|anchor"):
        audit_verify(ws.root, pf)


def test_a_deleted_gallery_recreated_empty_at_open_is_named_not_settled(tmp_path: Path) -> None:
    """gallery.db is deleted and made anew at the next open: the lost rows stay named missing by
    `audit verify`, never settled as enrolments that did not commit."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(IMG / "biden.jpg", "joe", "demo", consent(ws, "joe"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(ws.gallery) + suffix).unlink(missing_ok=True)
    pf = tmp_path / "passphrase.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    with pytest.raises(SafeFaceError, match="missing"):
        audit_verify(ws.root, pf)
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
        assert not [e for e in sf.audit_entries() if e.operation == "uncommitted"]
        problems = sf.verify_store().problems
    assert sum("missing" in p for p in problems) >= 2, problems
    with pytest.raises(SafeFaceError, match="missing"):
        audit_verify(ws.root, pf)
