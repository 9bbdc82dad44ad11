"""A lock file deleted while held together with its guard replaced (a copy of keys/keyring.json
renamed over it, a copy of gallery.db): a second process made a new lock file, locked the new
guard and wrote beside the holder. Each holder also marks the lock file's folder, which no rename
inside it can swap, so the second one is refused before it writes anything."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402

_HOLD = ("import sys\n"
         "from safeface.atomicfile import exclusive_lock\n"
         "with exclusive_lock(sys.argv[1], sys.argv[2]):\n"
         "    print('held', flush=True)\n"
         "    sys.stdin.readline()\n")


def _entries(audit: Path) -> int:
    with closing(sqlite3.connect(audit)) as db:
        return int(db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])


def _swap_for_a_copy(path: Path) -> None:
    copy = path.with_name(path.name + ".copy")
    shutil.copy2(path, copy)
    os.replace(copy, path)


def test_a_trust_change_beside_one_whose_lock_and_keyring_were_replaced_is_refused(tmp_path: Path) -> None:
    """Operator A holds the trust lock; trust.json.lock is deleted and a copy of keyring.json renamed
    over it; operator B adds a key: B must be refused before writing trust.json or the log."""
    from policy_support import PASSPHRASE, make_workspace

    from safeface.workspace.admin import keys_new

    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)  # passphrase files must be private
    a = subprocess.Popen([sys.executable, "-c", _HOLD, str(ws.trust_lock), str(ws.keyring)], env=child_env(),
                         cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert a.stdout is not None and a.stdout.readline() == "held\n"
        trust, log = ws.trust.read_bytes(), _entries(ws.audit)
        ws.trust_lock.unlink()
        _swap_for_a_copy(ws.keyring)
        with pytest.raises(IntegrityError, match="trust.json.lock"):
            keys_new(ws.root, "consent-issuer", tmp_path / "b.pem", passphrase_file=secret)
        assert ws.trust.read_bytes() == trust and _entries(ws.audit) == log
    finally:
        a.communicate("\n", timeout=30)
