"""An auditor given a read-only copy of a workspace (a read-only mount) runs `audit verify` on it.

safeface could not read a workspace it may not write (SQLite keeps its -wal and -shm files beside
each database even to read it, and the locks are files beside what they guard): `audit verify`
was refused, and the auditor was told to make a writable copy first. It now checks such a
workspace on a private copy of its files, removed afterwards, with every check the writable
path makes: an edit, a deleted row or a rolled-back log must still be named (exit 4), and
nothing may be left behind or written."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import (PASSPHRASE, consent, images, link_gallery_to_another_programs_database,  # noqa: E402
                            make_workspace, open_sf)

from safeface.workspace.paths import WorkspacePaths  # noqa: E402

IMG = images()


def _read_only_mount(source: Path, mount: Path, command: list[str],
                     **env: str) -> subprocess.CompletedProcess[str]:
    """`command` run in a mount namespace of its own where `mount` is `source` mounted read-only."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only mount needs root and unshare(1)")
    mount.mkdir(exist_ok=True)
    script = (f"mount --bind '{source}' '{mount}' && mount -o remount,ro,bind '{mount}' && "
              + " ".join(f"'{c}'" for c in command))
    # Run from outside the checkout (child_process): `-m` puts the working folder first on the
    # path, and a fresh checkout's own package has no built C++ core.
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env=child_env(SAFEFACE_PASSPHRASE=PASSPHRASE, **env), cwd=str(mount.parent))
    if done.stderr.startswith(("mount:", "unshare:")):
        pytest.skip(f"this host cannot make a read-only mount: {done.stderr.strip()[:200]}")
    return done


def _verify_read_only(paths: WorkspacePaths, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`safeface audit verify` of a read-only mount of `paths.root`; its private copies go to
    tmp_path/tmp, which must be empty afterwards."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    ro = tmp_path / "ro" / paths.root.name
    ro.parent.mkdir(exist_ok=True)
    done = _read_only_mount(paths.root, ro, [sys.executable, "-m", "safeface.cli", "audit", "verify", str(ro),
                                             *extra], TMPDIR=str(scratch))
    assert list(scratch.iterdir()) == [], "the private copy was left behind"
    return done


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _enrolled(tmp_path: Path) -> WorkspacePaths:
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        sf.enroll(IMG / "obama.jpg", subject="alice", purpose="demo", consent=consent(paths, "alice"))
    return paths


def test_audit_verify_checks_a_read_only_copy_and_writes_nothing(tmp_path: Path) -> None:
    """An auditor runs `audit verify` on a read-only mount of an honest workspace: exit 0, the
    log and store found intact, nothing written in the workspace and no copy left behind."""
    paths = _enrolled(tmp_path)
    before = _files(paths.root)
    done = _verify_read_only(paths, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit log intact" in done.stdout and "1 row(s)" in done.stdout, done.stdout
    assert _files(paths.root) == before


def test_a_read_only_copy_taken_while_open_is_read_with_its_write_ahead_log(tmp_path: Path) -> None:
    """A workspace copied while a handle was open (its newest entries only in audit.db-wal) and
    mounted read-only: the check reads the -wal too (exit 0), where the log alone looks rolled back."""
    paths = make_workspace(tmp_path / "ws")
    copy = tmp_path / "copy" / "ws"
    with open_sf(paths) as sf:
        sf.enroll(IMG / "obama.jpg", subject="alice", purpose="demo", consent=consent(paths, "alice"))
        shutil.copytree(paths.root, copy, symlinks=True)
    assert Path(f"{copy / 'audit.db'}-wal").stat().st_size > 0
    done = _verify_read_only(WorkspacePaths(copy), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_entry_edited_in_a_read_only_copy_is_named(tmp_path: Path) -> None:
    """Someone edits an audit entry by hand and hands the auditor a read-only copy: exit 4, naming
    the entry and the workspace's own audit.db, never the private copy."""
    paths = _enrolled(tmp_path)
    with sqlite3.connect(paths.audit) as db:
        db.execute("UPDATE entries SET note = 'edited' WHERE seq = 2")
    db.close()
    done = _verify_read_only(paths, tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "safeface-verify-" not in done.stderr, done.stderr


def test_a_row_deleted_from_a_read_only_copy_is_named(tmp_path: Path) -> None:
    """Someone deletes an enrolled row from gallery.db by hand before handing over a read-only
    copy: the store check still names the missing row (exit 4)."""
    paths = _enrolled(tmp_path)
    with sqlite3.connect(paths.gallery) as db:
        db.execute("DELETE FROM rows")
    db.close()
    done = _verify_read_only(paths, tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "row" in done.stderr, done.stderr


def test_a_rolled_back_log_in_a_read_only_copy_is_named_by_its_relative_witness(tmp_path: Path) -> None:
    """The log and its keyring anchor are restored together from an older backup and mounted
    read-only; the witness deployment.json names relatively ("../witness.json") is read from
    beside the workspace, not beside the private copy: the rollback is named (exit 4)."""
    paths = make_workspace(tmp_path / "ws",
                           edit=lambda raw: raw.setdefault("audit", {}).update(witness="../witness.json"))
    with open_sf(paths) as sf:
        sf.enroll(IMG / "obama.jpg", subject="alice", purpose="demo", consent=consent(paths, "alice"))
    older = {p: p.read_bytes() for p in (paths.audit, paths.anchor)}
    with open_sf(paths) as sf:
        sf.erase("alice")
    assert json.loads((tmp_path / "witness.json").read_text())
    for p, data in older.items():
        p.write_bytes(data)
    (tmp_path / "ro").mkdir()  # the auditor is given the witness too, beside the mounted copy
    shutil.copy(tmp_path / "witness.json", tmp_path / "ro" / "witness.json")
    done = _verify_read_only(paths, tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "witness" in done.stderr and "missing" not in done.stderr, done.stderr


def test_a_command_that_writes_on_a_read_only_copy_says_audit_verify_can_check_it(tmp_path: Path) -> None:
    """`safeface report` (which records itself in the log) on a read-only mount: exit 1, saying
    the folder is read-only and that `audit verify` checks it as it is."""
    paths = _enrolled(tmp_path)
    done = _read_only_mount(paths.root, tmp_path / "ro",
                            [sys.executable, "-m", "safeface.cli", "report", str(tmp_path / "ro"),
                             "--out", str(tmp_path / "out")])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "read-only" in done.stderr and "audit verify" in done.stderr, done.stderr



_VERIFY_BESIDE_AN_OPEN_HANDLE = r"""
import sqlite3, subprocess, sys
from pathlib import Path
from safeface.workspace import admin
audit, ro = Path(sys.argv[1]), Path(sys.argv[2])
other = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.execute('SELECT 1 FROM sqlite_master'); db.close()"
app = sqlite3.connect(str(audit))  # as an open handle's connection: its -wal and -shm are open
app.execute("SELECT count(*) FROM sqlite_master").fetchall()
admin.audit_verify(ro)  # the app checks the read-only view (a copy of its files) meanwhile
subprocess.run([sys.executable, "-c", other, str(audit)], check=True)  # another process opens and closes
print("RESULT", Path(f"{audit}-wal").exists())
"""


def test_verifying_a_read_only_view_beside_an_open_handle_leaves_the_wal_to_it(tmp_path: Path) -> None:
    """An app holding the workspace open checks a read-only view of it (admin.audit_verify, which
    copies the files). The copy read audit.db through a descriptor of this process's own and
    closed it, which dropped every lock the app's connections held on it: another process's
    close then checkpointed and deleted the -wal the app was still writing to."""
    paths = make_workspace(tmp_path / "ws")
    ro = tmp_path / "ro" / "ws"
    ro.parent.mkdir()
    script = tmp_path / "child.py"
    script.write_text(_VERIFY_BESIDE_AN_OPEN_HANDLE)
    done = _read_only_mount(paths.root, ro, [sys.executable, str(script), str(paths.audit), str(ro)],
                            TMPDIR=str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "RESULT True" in done.stdout, "another process's close deleted the -wal the app uses"


def test_a_read_only_workspace_named_through_a_link_and_dotdot_is_the_one_verified(tmp_path: Path) -> None:
    """The auditor names the read-only mount `x/link/../ws`, `link` leading to a folder beside
    it: the system reads that as the mount. The copy was taken of `x/ws` (the `..` taken off the
    text), another folder: the mount was never checked, and a workspace put at `x/ws` was the
    one found intact."""
    paths = _enrolled(tmp_path)
    ro = tmp_path / "ro" / "ws"
    (tmp_path / "ro" / "beside").mkdir(parents=True)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "link").symlink_to(tmp_path / "ro" / "beside")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = _read_only_mount(paths.root, ro, [sys.executable, "-m", "safeface.cli", "audit", "verify",
                                             str(tmp_path / "x" / "link" / ".." / "ws")], TMPDIR=str(scratch))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit log intact" in done.stdout and "1 row(s)" in done.stdout, done.stdout


def test_a_database_link_another_user_made_in_a_read_only_workspace_is_not_followed_in_its_copy(
        tmp_path: Path) -> None:
    """In a read-only workspace, gallery.db is a link another user made to a database of another
    program's. Opened in place such a link is refused; the private copy made the link again as
    the auditor's own, which was then followed: root's `audit verify` turned that database to
    write-ahead logging and wrote the gallery's tables into it. The copy refuses it the same way,
    and the other file is left as it was."""
    if os.geteuid() != 0:
        pytest.skip("a link of another user's needs root to make")
    paths = _enrolled(tmp_path)
    other, before = link_gallery_to_another_programs_database(paths, tmp_path / "outside")
    done = _verify_read_only(paths, tmp_path)
    assert done.returncode != 0 and "another user" in done.stderr, done.stdout + done.stderr
    assert other.read_bytes() == before and sorted(os.listdir(other.parent)) == ["app.db"]
