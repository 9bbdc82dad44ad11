"""An auditor runs `audit verify` on a read-only mount of a live workspace while one of its writers
holds the store's lock file for ever (stuck or hostile): the copy waited for it with no end. The
wait is bounded now (atomicfile.LOCK_WAIT_S, 1 s here) and ends in WorkspaceBusy naming the lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import make_workspace  # noqa: E402
from test_lock_waits import _HOLD_FILE  # noqa: E402
from test_read_only_copies import _read_only_mount  # noqa: E402

_VERIFY = ("import sys\n"
           "import safeface.atomicfile\n"
           "safeface.atomicfile.LOCK_WAIT_S = 1.0\n"
           "from safeface.cli import main\n"
           "sys.exit(main([\"audit\", \"verify\", sys.argv[1]]))\n")


def test_audit_verify_of_a_read_only_copy_gives_up_on_a_lock_held_for_ever(tmp_path: Path) -> None:
    """A writer of the live workspace holds gallery.db.lock for ever while an auditor verifies a
    read-only mount of it: the verification must end, saying the workspace is busy, not hang."""
    paths = make_workspace(tmp_path / "ws")
    ro = tmp_path / "ro" / paths.root.name
    ro.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_FILE, str(paths.root / "gallery.db.lock")],
                              env=child_env(), cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        done = _read_only_mount(paths.root, ro, [sys.executable, "-c", _VERIFY, str(ro)])
    finally:
        holder.communicate("\n", timeout=30)
    assert done.returncode != 0 and "gallery.db.lock" in done.stderr and "not free" in done.stderr, \
        done.stdout + done.stderr
