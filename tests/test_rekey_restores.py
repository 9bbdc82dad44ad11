"""Undoing a re-key: gallery.db and keys/keyring.json put back together from a copy made before
it (no key is needed, both files are genuine), so that the templates, and every new one, are
sealed again under the keys the re-key retired, perhaps because they leaked."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring  # noqa: E402

# A re-key killed after it moved the rows and retired the old keys, before its audit entry.
_KILLED_BEFORE_ENTRY = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from policy_support import open_sf
from safeface.sdk.facade import SafeFace
from safeface.workspace.paths import WorkspacePaths

record = SafeFace._record

def die_at_the_rekey_entry(self, d, outcome, subjects, note):
    if d.operation.value == "rekey":
        os._exit(137)
    return record(self, d, outcome, subjects, note)

SafeFace._record = die_at_the_rekey_entry
open_sf(WorkspacePaths(sys.argv[2])).rekey()
"""


def _backup(ws: Any, to: Path) -> None:
    to.mkdir()
    shutil.copy(ws.keyring, to / "keyring.json")
    shutil.copy(ws.gallery, to / "gallery.db")


def _put_back(ws: Any, backup: Path) -> None:
    for extra in ("-wal", "-shm"):
        Path(f"{ws.gallery}{extra}").unlink(missing_ok=True)
    shutil.copy(backup / "keyring.json", ws.keyring)
    shutil.copy(backup / "gallery.db", ws.gallery)


@pytest.mark.parametrize("edit_entry", [False, True])
def test_a_store_and_keyring_put_back_from_before_a_rekey_are_refused_at_open(tmp_path: Path,
                                                                              edit_entry: bool) -> None:
    """An insider puts back gallery.db and keyring.json copied before a re-key (and may rewrite the
    re-key's entry to name the old versions): the workspace must refuse to open, so nothing is
    enrolled or matched under the retired keys."""
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    _backup(ws, tmp_path / "backup")
    with open_sf(ws) as sf:
        sf.rekey()
    assert list(PassphraseKeyring.open(ws.keyring, PASSPHRASE).versions("seal")) == [2]
    newest = tmp_path / "newest"
    _backup(ws, newest)
    _put_back(ws, tmp_path / "backup")
    if edit_entry:
        with sqlite3.connect(ws.audit) as db:
            db.execute("UPDATE entries SET note = replace(note, ': 2', ': 1') WHERE operation = 'rekey'")
    with pytest.raises(IntegrityError, match="before that re-key" if not edit_entry else "edited or renamed by hand"):
        open_sf(ws)
    if edit_entry:
        return
    _put_back(ws, newest)  # the newest copies open again
    with open_sf(ws) as sf:
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", consent(ws, "alice")).match


def test_a_rekey_killed_before_its_entry_is_recorded_so_its_undoing_is_still_refused(tmp_path: Path) -> None:
    """A re-key killed after moving the rows and retiring the old keys, before its audit entry: the
    next open records it, and the copies from before it, put back, are refused at open."""
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    _backup(ws, tmp_path / "backup")
    tests = Path(__file__).resolve().parent
    child = subprocess.run([sys.executable, "-c", _KILLED_BEFORE_ENTRY, str(tests), str(ws.root)], env=child_env(),
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert child.returncode == 137, child.stderr[-1000:]
    assert list(PassphraseKeyring.open(ws.keyring, PASSPHRASE).versions("seal")) == [2]
    with open_sf(ws) as sf:
        assert [e.note for e in sf.audit_entries() if e.operation == "rekey"] == [
            "an interrupted re-key finished: templates under keys {'transform': 2, 'seal': 2}; 0 old key version(s) "
            "retired"]
        sf.audit_verify()
    _put_back(ws, tmp_path / "backup")
    with pytest.raises(IntegrityError, match="before that re-key"):
        open_sf(ws)
