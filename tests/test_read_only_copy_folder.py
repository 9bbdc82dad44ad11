"""`audit verify` of a read-only workspace copies it into a private folder under $TMPDIR. A TMPDIR
another user owns, or may write without the sticky bit, lets them rename that folder away and
put one of theirs at its name: the check then judged their files (a forged workspace found
intact) or copied the sealed templates into their folder. Such a TMPDIR is refused, naming it,
and nothing is copied. A real read-only mount (root and unshare), as test_read_only_copies."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace  # noqa: E402
from test_read_only_copies import _read_only_mount  # noqa: E402

OTHER = 65534  # nobody


@pytest.mark.parametrize("mode", [0o777, 0o755])
def test_a_temporary_folder_another_user_can_change_is_refused(tmp_path: Path, mode: int) -> None:
    """The auditor's TMPDIR is another user's folder (world-writable, or theirs alone): `audit
    verify` of a read-only mount fails naming TMPDIR, and leaves nothing in that folder."""
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    ws = make_workspace(tmp_path / "ws")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, OTHER, OTHER)
    os.chmod(shared, mode)
    ro = tmp_path / "ro" / "ws"
    ro.parent.mkdir()
    done = _read_only_mount(ws.root, ro, [sys.executable, "-m", "safeface.cli", "audit", "verify", str(ro)],
                            TMPDIR=str(shared))
    assert done.returncode != 0 and "TMPDIR" in done.stderr and str(shared) in done.stderr, done.stdout + done.stderr
    assert list(shared.iterdir()) == []
