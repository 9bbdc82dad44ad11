"""An auditor given a read-only copy of a workspace (a read-only mount) runs `audit verify` on it.

safeface cannot read a workspace it may not write (SQLite keeps its -wal and -shm files beside
each database even to read it), and said only that audit.db was "not a usable audit log
database": the auditor went looking for damage in a file that was whole. The error must say
that the folder is read-only and what to do instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

from safeface.workspace.init import init_workspace  # noqa: E402


def _read_only_mount(source: Path, mount: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """`command` run in a mount namespace of its own where `mount` is `source` mounted read-only."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a read-only mount needs root and unshare(1)")
    mount.mkdir()
    script = (f"mount --bind '{source}' '{mount}' && mount -o remount,ro,bind '{mount}' && "
              + " ".join(f"'{c}'" for c in command))
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=child_env(), capture_output=True, text=True,
                          timeout=120)
    if "mount" in done.stderr and "safeface" not in done.stderr:
        pytest.skip(f"this host cannot make a read-only mount: {done.stderr.strip()[:200]}")
    return done


def test_audit_verify_on_a_read_only_copy_says_the_folder_is_read_only(tmp_path: Path) -> None:
    """An auditor runs `safeface audit verify` on a read-only mount of a workspace copy: exit 1
    with a message naming the read-only folder and saying to verify a writable copy."""
    ws = init_workspace(tmp_path / "ws", demo=True)
    done = _read_only_mount(ws.root, tmp_path / "ro",
                            [sys.executable, "-m", "safeface.cli", "audit", "verify", str(tmp_path / "ro")])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "read-only" in done.stderr and "copy the whole workspace folder" in done.stderr, done.stderr
