"""A process that holds one of the workspace's locks for ever (the keyring's guard byte for the trust
or assessment lock, the gallery's lock file), stuck or hostile: trust changes, assessments and
enrolments waited on it with no end. Each wait is bounded now (atomicfile.LOCK_WAIT_S, set to 1 s
in these children) and ends in WorkspaceBusy naming the lock and the file, never a key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from test_lock_guard_files import _HOLD_BYTE  # noqa: E402

from safeface.atomicfile import guard_offset  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402

# Run one call of safeface.workspace.admin in a child that waits 1 s for a lock.
_CALL = ("import sys; from pathlib import Path\n"
         "import safeface.atomicfile\n"
         "safeface.atomicfile.LOCK_WAIT_S = 1.0\n"
         "from safeface.workspace import admin\n"
         "root, secret = Path(sys.argv[2]), Path(sys.argv[3])\n"
         "if sys.argv[1] == 'trust':\n"
         "    admin.keys_new(root, 'consent-issuer', root.parent / 'b.pem', passphrase_file=secret)\n"
         "elif sys.argv[1] == 'assess':\n"
         "    import datetime as dt\n"
         "    admin.record_assessment(root, 'PIA-B', dt.date.today().isoformat(), passphrase_file=secret)\n")

_ENROL = ("import sys, datetime as dt, numpy as np\n"
          "import safeface.atomicfile\n"
          "safeface.atomicfile.LOCK_WAIT_S = 1.0\n"
          "from safeface.hazmat.templates import PassphraseKeyring\n"
          "from safeface.storage.gallery import Gallery\n"
          "k = PassphraseKeyring.open(sys.argv[1], sys.argv[2])\n"
          "v = np.random.default_rng(7).standard_normal(128)\n"
          "with Gallery.open(sys.argv[3], k, 128) as g:\n"
          "    g.add('bob', v / np.linalg.norm(v), ['demo'], 'tok-x',\n"
          "          dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))\n")

_HOLD_FILE = ("import fcntl, os, sys\n"
              "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
              "fcntl.flock(fd, fcntl.LOCK_EX)\n"
              "print('held', flush=True)\n"
              "sys.stdin.readline()\n")


def _holding(code: str, *args: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", code, *args], env=child_env(), cwd="/", stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def _run(*args: str) -> tuple[int, str]:
    """A child's exit status and its stderr; one still waiting after 20 s is killed (a failure)."""
    child = subprocess.Popen([sys.executable, "-c", *args], env=child_env(), cwd="/", stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _, err = child.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise AssertionError("still waiting for the lock after 20 s") from None
    return child.returncode, err


def _workspace(tmp_path: Path) -> tuple[WorkspacePaths, Path, str]:
    from policy_support import PASSPHRASE, make_workspace

    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)  # passphrase files must be private
    return ws, secret, PASSPHRASE


def test_a_trust_change_held_up_by_the_keyrings_guard_byte_ends_busy(tmp_path: Path) -> None:
    """A hostile process holds the trust lock's byte in keys/keyring.json for ever: `keys add` must
    end in WorkspaceBusy naming that byte and file, not wait for ever; trust.json is unchanged."""
    ws, secret, passphrase = _workspace(tmp_path)
    before = ws.trust.read_bytes()
    holder = _holding(_HOLD_BYTE, str(ws.keyring), str(guard_offset(ws.trust_lock)))
    try:
        code, err = _run(_CALL, "trust", str(ws.root), str(secret))
    finally:
        holder.communicate("\n", timeout=30)
    assert code != 0 and "WorkspaceBusy" in err, err
    assert f"byte {guard_offset(ws.trust_lock)} of {ws.keyring}" in err and passphrase not in err
    assert ws.trust.read_bytes() == before


def test_an_assessment_held_up_by_a_held_lock_file_ends_busy(tmp_path: Path) -> None:
    """A hostile process flocks keys/assessment.lock for ever: `assess` must end in WorkspaceBusy
    naming that lock file, not wait for ever, and record nothing."""
    ws, secret, _ = _workspace(tmp_path)
    before = ws.config.read_bytes()
    holder = _holding(_HOLD_FILE, str(ws.config_lock))
    try:
        code, err = _run(_CALL, "assess", str(ws.root), str(secret))
    finally:
        holder.communicate("\n", timeout=30)
    assert code != 0 and "WorkspaceBusy" in err and str(ws.config_lock) in err, err
    assert ws.config.read_bytes() == before


def test_an_enrolment_held_up_by_the_gallerys_lock_file_ends_busy(tmp_path: Path) -> None:
    """A hostile process flocks gallery.db.lock for ever: an enrolment must end in WorkspaceBusy
    naming the store's write lock, not wait for ever (a service's workers all hung)."""
    from test_gallery_open_handles import DIM, PASS, _fresh

    from safeface.storage.gallery import Gallery

    keys, keyring, db = _fresh(tmp_path)
    Gallery.open(db, keyring, DIM).close()
    holder = _holding(_HOLD_FILE, str(tmp_path / "gallery.db.lock"))
    try:
        code, err = _run(_ENROL, str(keys), PASS, str(db))
    finally:
        holder.communicate("\n", timeout=30)
    assert code != 0 and "WorkspaceBusy" in err and "gallery.db.lock" in err, err
    with Gallery.open(db, keyring, DIM) as g:
        assert g.subject_count() == 0
