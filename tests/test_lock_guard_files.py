"""The write locks' guards (a byte locked in gallery.db or keys/keyring.json, so a lock file deleted
while held lets no second writer in): what they cost honest processes, and what an operator is told
when another process holds one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from test_gallery_open_handles import DIM, EXP, _fresh, _unit  # noqa: E402

from safeface.atomicfile import exclusive_lock, guard_offset  # noqa: E402
from safeface.errors import ConfigError  # noqa: E402
from safeface.storage.gallery import Gallery, write_lock  # noqa: E402


def _open_under(folder: Path) -> list[str]:
    """The files under `folder` this process holds a descriptor on."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if name.startswith(str(folder)):
            names.append(name)
    return names


def test_galleries_and_keyrings_closed_keep_no_descriptor_open(tmp_path: Path) -> None:
    """An app opens, writes and closes galleries and takes keyring locks: no descriptor may stay
    open on their files, else a long-running process runs out of descriptors."""
    for i in range(3):
        folder = tmp_path / str(i)
        folder.mkdir()
        keys, keyring, db = _fresh(folder)
        with Gallery.open(db, keyring, DIM) as g:
            g.add("alice", _unit(i), ["demo"], "tok-a", EXP)
            g.erase_subject("alice")
        with exclusive_lock(folder / "trust.json.lock", keys) as still_held:
            still_held()
    assert _open_under(tmp_path) == []


def test_a_workspace_closed_keeps_no_descriptor_open(tmp_path: Path) -> None:
    """A service opens a workspace, enrols and closes it: nothing of the workspace stays open (two
    descriptors a workspace, for the process's life, stopped it at ~500 workspaces)."""
    from policy_support import consent, images, make_workspace, open_sf

    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(paths, "alice"))
    assert _open_under(tmp_path) == []


_HOLD_BYTE = ("import fcntl, os, struct, sys\n"
              "fd = os.open(sys.argv[1], os.O_RDWR)\n"
              "fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, int(sys.argv[2]), 1, 0))\n"
              "print('held', flush=True)\n"
              "sys.stdin.readline()\n")


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_OFD_SETLK"), reason="no OFD locks here")
def test_a_process_holding_the_guard_is_named_where_the_lock_is_not_free(tmp_path: Path) -> None:
    """A hostile process holds the guard's byte in gallery.db for ever: a writer that gives up must
    name that file and byte (the lock file it named alone showed no holder to fuser or lsof)."""
    keys, keyring, db = _fresh(tmp_path)
    Gallery.open(db, keyring, DIM).close()
    lock = db.with_name(db.name + ".lock")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_BYTE, str(db), str(guard_offset(lock))], env=child_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError) as refused:
            with write_lock(db).held(timeout=0.5):
                pass
        assert f"byte {guard_offset(lock)} of {db}" in str(refused.value)
    finally:
        holder.communicate("\n", timeout=30)
