"""Where OFD locks are unavailable (an old kernel, some sandboxes and network file systems), the
locks go on without their guard bytes and folder marks: the plain lock file must still keep a
second process out while one holds it. `safeface.atomicfile._OFD_LOCKS`, set False in each child,
runs them as such a system would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_lock_waits import _ENROL as _ENROL_BODY, _holding, _run  # noqa: E402

_NO_OFD = ("import safeface.atomicfile as af\n"
           "af._OFD_LOCKS = False\n"
           "af.LOCK_WAIT_S = 1.0\n"
           "import sys\n")
_HOLD = _NO_OFD + ("from safeface.atomicfile import exclusive_lock\n"
                   "with exclusive_lock(sys.argv[1], sys.argv[2]):\n"
                   "    print('held', flush=True)\n"
                   "    sys.stdin.readline()\n")
_ADD = _NO_OFD + ("from pathlib import Path\n"
                  "from safeface.workspace.admin import keys_new\n"
                  "keys_new(Path(sys.argv[1]), 'consent-issuer', Path(sys.argv[2]),\n"
                  "         passphrase_file=Path(sys.argv[3]))\n")


def _ofd_locks_on(*paths: Path) -> list[str]:
    """The OFD locks /proc/locks lists on the files at `paths`."""
    idents = []
    for path in paths:
        st = os.stat(path)
        idents.append(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} ")
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if "OFDLCK" in line and any(i in line for i in idents)]


def test_without_ofd_locks_the_lock_file_alone_keeps_a_second_trust_change_out(tmp_path: Path) -> None:
    """Operator A holds the trust lock on a system without OFD locks; operator B adds a key: B must
    wait on the plain lock file and give up with WorkspaceBusy naming it; trust.json unchanged."""
    from policy_support import PASSPHRASE, make_workspace

    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)  # passphrase files must be private
    before = ws.trust.read_bytes()
    a = _holding(_HOLD, str(ws.trust_lock), str(ws.keyring))
    try:
        assert _ofd_locks_on(ws.keyring, ws.keys) == []  # no guard byte, no folder mark: the lock file alone
        code, err = _run(_ADD, str(ws.root), str(tmp_path / "b.pem"), str(secret))
    finally:
        a.communicate("\n", timeout=30)
    assert code != 0 and "WorkspaceBusy" in err and str(ws.trust_lock) in err, err
    assert "byte" not in err.splitlines()[-1]  # no guard was taken
    assert ws.trust.read_bytes() == before


_HOLD_STORE = _NO_OFD + ("from pathlib import Path\n"
                         "from safeface.storage.gallery import write_lock\n"
                         "with write_lock(Path(sys.argv[1])).held():\n"
                         "    print('held', flush=True)\n"
                         "    sys.stdin.readline()\n")
_ENROL = _NO_OFD + _ENROL_BODY


def test_without_ofd_locks_the_lock_file_alone_keeps_an_enrolment_out_of_an_erasure(tmp_path: Path) -> None:
    """A process holds the gallery's write lock (an erasure) on a system without OFD locks; another
    enrols: it must wait on gallery.db.lock and give up with WorkspaceBusy, storing nothing."""
    from test_gallery_open_handles import DIM, PASS, _fresh

    from safeface.storage.gallery import Gallery

    keys, keyring, db = _fresh(tmp_path)
    Gallery.open(db, keyring, DIM).close()
    a = _holding(_HOLD_STORE, str(db))
    try:
        assert _ofd_locks_on(db, tmp_path) == []
        code, err = _run(_ENROL, str(keys), PASS, str(db))
    finally:
        a.communicate("\n", timeout=30)
    assert code != 0 and "WorkspaceBusy" in err and "gallery.db.lock" in err, err
    with Gallery.open(db, keyring, DIM) as g:
        assert g.subject_count() == 0
