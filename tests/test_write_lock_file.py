"""The write lock's file deleted or replaced while a process holds it, by someone who can write the
workspace folder: a second process then made a new file and took the lock too, so two writers ran
at once (two re-keys, an enrolment racing an erasure). The lock is also held on a file that lives
as long as the workspace (the database, the keyring), so the second writer waits now."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from test_gallery_open_handles import DIM, EXP, PASS, _fresh, _unit  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402

# Take the lock (the store's write lock by its file or by the gallery's path, or the one trust.json
# and the keyring are written under), say so, hold it until told; give up after argv[2] seconds.
_HOLD = {"store": ("import sys\n"
                   "from safeface.storage.lock import WriteLock\n"
                   "with WriteLock(sys.argv[1]).held(timeout=float(sys.argv[2])):\n"
                   "    print('held', flush=True)\n"
                   "    sys.stdin.readline()\n"),
         "file": ("import signal, sys\n"
                  "from safeface.atomicfile import exclusive_lock\n"
                  "signal.alarm(int(float(sys.argv[2])))\n"
                  "with exclusive_lock(sys.argv[1]):\n"
                  "    signal.alarm(0)\n"
                  "    print('held', flush=True)\n"
                  "    sys.stdin.readline()\n"),
         "gallery": ("import sys\n"
                     "from pathlib import Path\n"
                     "from safeface.storage.gallery import write_lock\n"
                     "with write_lock(Path(sys.argv[1])).held(timeout=float(sys.argv[2])):\n"
                     "    print('held', flush=True)\n"
                     "    sys.stdin.readline()\n")}


def _child(kind: str, lock: Path, timeout: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _HOLD[kind], str(lock), str(timeout)], env=child_env(), cwd="/",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _has_open(pid: int, path: Path) -> bool:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(path)):
                return True
        except OSError:
            pass
    return False


@pytest.mark.parametrize("kind", ["store", "file"])
def test_a_waiter_on_a_deleted_lock_file_does_not_take_the_lock_beside_its_new_holder(tmp_path: Path,
                                                                                     kind: str) -> None:
    """A holds the lock, B waits on the same file, the file is deleted and C locks a new one; when A
    lets go, B must not hold the old file's lock beside C: it waits for C (here, in vain). (C flocks
    the new file by hand: safeface itself, beside A, is refused: test_lock_folder_marks.py.)"""
    lock = tmp_path / "gallery.db.lock"
    a = _child(kind, lock, 30)
    b = None
    try:
        assert a.stdout is not None and a.stdout.readline() == "held\n"
        b = _child(kind, lock, 4)
        deadline = time.monotonic() + 30
        while not _has_open(b.pid, lock):
            assert time.monotonic() < deadline and b.poll() is None
            time.sleep(0.02)
        lock.unlink()
        c = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(c, fcntl.LOCK_EX)
            a.communicate("\n", timeout=30)
            out, err = b.communicate("\n", timeout=30)
        finally:
            os.close(c)
        assert "held" not in out and b.returncode != 0, (out, err)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_a_key_removal_whose_store_lock_file_was_deleted_says_so(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """gallery.db.lock deleted while `keys remove` holds it (an enrolment could then judge the key's
    trust around the removal): the removal must not report plain success; it names audit verify."""
    from policy_support import PASSPHRASE, make_workspace

    import safeface.workspace.trust as trust
    from safeface.workspace.admin import keys_new, keys_remove

    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)  # passphrase files must be private
    stolen = keys_new(ws.root, "consent-issuer", tmp_path / "stolen.pem", passphrase_file=secret)
    record = trust._record

    def record_then_delete(*a: object, **k: object) -> int:
        (ws.root / "gallery.db.lock").unlink()
        return record(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(trust, "_record", record_then_delete)
    with pytest.raises(IntegrityError, match="audit verify"):
        keys_remove(ws.root, "consent-issuer", stolen.thumbprint, passphrase_file=secret)


_ENROL = ("import sys, datetime as dt, numpy as np\n"
          "from safeface.hazmat.templates import PassphraseKeyring\n"
          "from safeface.storage.gallery import Gallery\n"
          "k = PassphraseKeyring.open(sys.argv[1], sys.argv[2])\n"
          "v = np.random.default_rng(7).standard_normal(128)\n"
          "with Gallery.open(sys.argv[3], k, 128) as g:\n"
          "    g.add(sys.argv[4], v / np.linalg.norm(v), ['demo'], 'tok-x', "
          "dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))\n")


def _waits_on(path: Path) -> bool:
    """Whether some process is blocked on a lock of the file at `path` (/proc/locks' "->" rows)."""
    st = os.stat(path)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any("->" in line and ident in line for line in Path("/proc/locks").read_text().splitlines())


def _until(done: Callable[[], bool], child: subprocess.Popen[str]) -> bool:
    """Poll until `done()` (True) or `child` ends (False)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if done():
            return True
        if child.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("neither happened within 120 s")


def _finish(child: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_an_enrolment_waits_for_an_erasure_whose_lock_file_was_deleted(tmp_path: Path) -> None:
    """An erasure holds the gallery's write lock; gallery.db.lock is deleted and another process
    enrols: it must wait for the erasure to end, not write beside it, and the erasure completes."""
    keys, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("alice", _unit(1), ["demo"], "tok-a", EXP)
        with g.locked():
            (tmp_path / "gallery.db.lock").unlink()
            child = subprocess.Popen([sys.executable, "-c", _ENROL, str(keys), PASS, str(db), "bob"], env=child_env(),
                                     cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            waited = False
            try:
                waited = _until(lambda: _waits_on(db), child)
                assert waited, ("enrolled beside the lock's holder", child.returncode)
                assert g.erase_subject("alice").count == 1
            finally:
                if not waited:
                    _finish(child)
        out, err = _finish(child)
        assert child.returncode == 0, err
        assert g.subject_count() == 1 and g.pseudonym("bob") in {r.pseudonym for r in g.rows()}


def test_a_trust_change_waits_for_one_whose_lock_file_was_deleted(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Operator A removes an issuer key; trust.json.lock is deleted mid-change and operator B, in
    another process, adds a key: B must wait for A, A completes, and neither change is lost."""
    from policy_support import PASSPHRASE, make_workspace

    import safeface.workspace.trust as trust
    from safeface.workspace.admin import audit_verify, keys_list, keys_new, keys_remove

    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)  # passphrase files must be private
    stolen = keys_new(ws.root, "consent-issuer", tmp_path / "stolen.pem", passphrase_file=secret)
    active = sum(k["removed"] is None for k in keys_list(ws.root, secret))
    record = trust._record
    code = ("import sys; from pathlib import Path; from safeface.workspace.admin import keys_new\n"
            "keys_new(Path(sys.argv[1]), 'consent-issuer', Path(sys.argv[2]), passphrase_file=Path(sys.argv[3]))\n")
    children: list[subprocess.Popen[str]] = []

    def record_then_race(*a: object, **k: object) -> int:
        seq = record(*a, **k)  # type: ignore[arg-type]
        monkeypatch.setattr(trust, "_record", record)
        ws.trust_lock.unlink()
        child = subprocess.Popen([sys.executable, "-c", code, str(ws.root), str(tmp_path / "b.pem"), str(secret)],
                                 env=child_env(), cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        children.append(child)
        assert _until(lambda: _waits_on(ws.keyring), child), ("trusted a key beside the change", _finish(child))
        return seq

    monkeypatch.setattr(trust, "_record", record_then_race)
    try:
        keys_remove(ws.root, "consent-issuer", stolen.thumbprint, passphrase_file=secret)
    finally:
        for child in children:
            out, err = _finish(child)
    assert children and children[0].returncode == 0, err
    listed = keys_list(ws.root, secret)
    assert [k["removed"] is not None for k in listed if k["thumbprint"] == stolen.thumbprint] == [True]
    assert sum(k["removed"] is None for k in listed) == active  # one removed, B's added
    audit_verify(ws.root, secret)


def test_an_assessment_waits_for_one_whose_lock_file_was_deleted(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Operator A records an assessment; keys/assessment.lock is deleted mid-way and operator B, in
    another process, records one too: B must wait for A, and the log names B's, the file's."""
    import datetime as dt

    from policy_support import PASSPHRASE, make_workspace

    import safeface.workspace.admin as admin
    from safeface.workspace.admin import audit_verify, record_assessment

    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)  # passphrase files must be private
    today = dt.date.today().isoformat()
    registrable = admin.check_registrable
    code = ("import sys; from pathlib import Path; from safeface.workspace.admin import record_assessment\n"
            "record_assessment(Path(sys.argv[1]), 'PIA-B', sys.argv[2], passphrase_file=Path(sys.argv[3]))\n")
    children: list[subprocess.Popen[str]] = []

    def check_then_race(dep: object) -> None:
        registrable(dep)  # type: ignore[arg-type]
        ws.config_lock.unlink()
        child = subprocess.Popen([sys.executable, "-c", code, str(ws.root), today, str(secret)], env=child_env(),
                                 cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        children.append(child)
        assert _until(lambda: _waits_on(ws.keyring), child), ("assessed beside the other", _finish(child))

    monkeypatch.setattr(admin, "check_registrable", check_then_race)
    try:
        record_assessment(ws.root, "PIA-A", today, passphrase_file=secret)
    finally:
        for child in children:
            out, err = _finish(child)
    assert children and children[0].returncode == 0, err
    assert "PIA-B" in ws.config.read_text()
    audit_verify(ws.root, secret)


def test_a_writer_let_in_while_the_database_was_moved_away_is_refused(tmp_path: Path) -> None:
    """A holds the gallery's write lock; its lock file is deleted and gallery.db moved away while B
    takes the lock: B, beside A, must be refused before it writes (A's mark on the folder)."""
    from safeface.storage.gallery import write_lock

    _, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM):
        pass
    a = _child("gallery", db, 30)
    try:
        assert a.stdout is not None and a.stdout.readline() == "held\n"
        (tmp_path / "gallery.db.lock").unlink()
        db.rename(tmp_path / "away.db")
        lock = write_lock(db)
        try:
            with pytest.raises(IntegrityError, match="lock"):
                with lock.held(timeout=5):
                    lock.check()
        finally:
            (tmp_path / "away.db").rename(db)
    finally:
        a.communicate("\n", timeout=30)


def test_a_key_rotation_waits_for_one_whose_lock_file_was_deleted(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Process A rotates the keyring; its lock file is deleted mid-way and process B rotates too: B
    must wait for A, and both rotations are kept, under versions of their own."""
    keys, keyring, _ = _fresh(tmp_path)
    code = ("import sys\nfrom safeface.hazmat.templates import PassphraseKeyring\n"
            "print(PassphraseKeyring.open(sys.argv[1], sys.argv[2]).rotate('transform'))\n")
    refresh = keyring.refresh
    children: list[subprocess.Popen[str]] = []

    def refresh_then_race() -> None:
        refresh()
        monkeypatch.setattr(keyring, "refresh", refresh)
        (tmp_path / "keys.json.lock").unlink()
        child = subprocess.Popen([sys.executable, "-c", code, str(keys), PASS], env=child_env(), cwd="/",
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        children.append(child)
        assert _until(lambda: _waits_on(keys), child), ("rotated beside the other", _finish(child))

    monkeypatch.setattr(keyring, "refresh", refresh_then_race)
    try:
        assert keyring.rotate("transform") == {"transform": 2}
    finally:
        for child in children:
            out, err = _finish(child)
    assert children and children[0].returncode == 0, err
    assert out.strip() == "{'transform': 3}"
