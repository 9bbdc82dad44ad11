"""A lock file given a second name: someone who can write the workspace's folders hard-links
gallery.db.lock to keys/trust.json.lock, making the store's lock and the trust lock one file.
`keys remove` (stopping trust in a stolen key) holds the first and then waited on itself for the
second, for ever. A lock file with another name is refused, naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

_REMOVE = ("import sys; from pathlib import Path\n"
           "from safeface.workspace.admin import keys_remove\n"
           "keys_remove(Path(sys.argv[1]), 'consent-issuer', sys.argv[2], passphrase_file=Path(sys.argv[3]))\n")


def test_a_key_removal_whose_lock_files_were_hard_linked_is_refused_not_stuck(tmp_path: Path) -> None:
    """gallery.db.lock is hard-linked to keys/trust.json.lock, then an operator removes a stolen key:
    the removal must be refused at once with a ConfigError naming the link, not wait on itself."""
    from policy_support import PASSPHRASE, make_workspace

    from safeface.workspace.admin import keys_new

    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)  # passphrase files must be private
    stolen = keys_new(ws.root, "consent-issuer", tmp_path / "stolen.pem", passphrase_file=secret)
    store_lock = ws.root / "gallery.db.lock"
    store_lock.touch()
    ws.trust_lock.unlink(missing_ok=True)
    os.link(store_lock, ws.trust_lock)
    child = subprocess.Popen([sys.executable, "-c", _REMOVE, str(ws.root), stolen.thumbprint, str(secret)],
                             env=child_env(), cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0 and "ConfigError" in err and "hard link" in err, err
