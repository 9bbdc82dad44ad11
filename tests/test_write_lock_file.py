"""The write lock's file deleted or replaced while a process holds it, by someone who can write the
workspace folder: a second process then made a new file and took the lock too, so two writers ran
at once (two re-keys, an enrolment racing an erasure)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from test_gallery_open_handles import DIM, EXP, _fresh, _in_another_process, _unit  # noqa: E402

from safeface.atomicfile import exclusive_lock  # noqa: E402
from safeface.errors import IntegrityError  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402

# Take the lock (the store's write lock, or the one trust.json and the keyring are written under),
# say so, hold it until told; give up after argv[2] seconds.
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
    """A holds the lock, B waits on the same file, the file is deleted and C takes a new one; when A
    lets go, B must not hold the old file's lock beside C: it waits for C (here, in vain)."""
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
        with exclusive_lock(lock):
            a.communicate("\n", timeout=30)
            out, err = b.communicate("\n", timeout=30)
        assert "held" not in out and b.returncode != 0, (out, err)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_a_write_under_a_lock_whose_file_was_replaced_is_refused(tmp_path: Path) -> None:
    """An erasure holds the gallery's write lock; its file is deleted and another process takes a
    new one and enrols meanwhile: the holder's own write must refuse, not commit as if alone."""
    keys, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM) as g:
        g.add("alice", _unit(1), ["demo"], "tok-a", EXP)
        with g.locked():
            (tmp_path / "gallery.db.lock").unlink()
            _in_another_process(keys, db, "bob")
            with pytest.raises(IntegrityError, match="lock"):
                g.erase_subject("alice")
        assert g.subject_count() == 2


def test_a_trust_change_whose_lock_file_was_replaced_is_refused(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Operator A removes an issuer key; trust.json.lock is deleted mid-change and operator B, in
    another process, adds a key from the file as it was: A must be refused, not told it is done."""
    from policy_support import PASSPHRASE, make_workspace

    import safeface.workspace.trust as trust
    from safeface.workspace.admin import keys_new, keys_remove

    ws = make_workspace(tmp_path / "ws")
    secret = tmp_path / "pass.txt"
    secret.write_text(PASSPHRASE)
    stolen = keys_new(ws.root, "consent-issuer", tmp_path / "stolen.pem", passphrase_file=secret)
    record = trust._record
    code = ("import sys; from pathlib import Path; from safeface.workspace.admin import keys_new\n"
            "keys_new(Path(sys.argv[1]), 'consent-issuer', Path(sys.argv[2]), passphrase_file=Path(sys.argv[3]))\n")

    def record_then_race(*a: object, **k: object) -> int:
        seq = record(*a, **k)  # type: ignore[arg-type]
        monkeypatch.setattr(trust, "_record", record)
        ws.trust_lock.unlink()
        subprocess.run([sys.executable, "-c", code, str(ws.root), str(tmp_path / "b.pem"), str(secret)],
                       env=child_env(), cwd="/", check=True, timeout=120, capture_output=True)
        return seq

    monkeypatch.setattr(trust, "_record", record_then_race)
    with pytest.raises(IntegrityError, match="lock"):
        keys_remove(ws.root, "consent-issuer", stolen.thumbprint, passphrase_file=secret)


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
    stolen = keys_new(ws.root, "consent-issuer", tmp_path / "stolen.pem", passphrase_file=secret)
    record = trust._record

    def record_then_delete(*a: object, **k: object) -> int:
        (ws.root / "gallery.db.lock").unlink()
        return record(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(trust, "_record", record_then_delete)
    with pytest.raises(IntegrityError, match="audit verify"):
        keys_remove(ws.root, "consent-issuer", stolen.thumbprint, passphrase_file=secret)
