"""Telling a disk that fails reads (EIO) from a database damaged by hand, when SQLite reports a
damaged page ("database disk image is malformed"): the workspace's files are read again, and a
failed read means a failing disk (WorkspaceDiskFailed, a 503 to retry) where damage is an
IntegrityError (a 409 naming it). Someone who can write the workspace's folder, without a key,
must not be able to make damage read as a failing disk, nor make that second read endless."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path
from typing import Callable

import pytest

from policy_support import consent, images, make_workspace, open_sf
from safeface.errors import ConfigError, IntegrityError, WorkspaceDiskFailed, WorkspaceUnwritable
from safeface.workspace.paths import WorkspacePaths


def _rchar() -> int:
    """Bytes this process has read so far (read and pread calls), from /proc."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    pytest.skip("/proc/self/io is not readable here")


def _workspace_with_a_damaged_page(tmp_path: Path, table: str) -> tuple[WorkspacePaths, Callable[[], None]]:
    """A workspace storing alice, and what overwrites the first page of gallery.db's `table`."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "biden.jpg", subject="alice", purpose="demo", consent=consent(ws, "alice"))
    with sqlite3.connect(ws.gallery) as db:
        page = int(db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0])
        size = int(db.execute("PRAGMA page_size").fetchone()[0])

    def damage() -> None:
        with open(ws.gallery, "r+b") as f:
            f.seek((page - 1) * size)
            f.write(b"\xee" * size)

    return ws, damage


def test_a_socket_beside_the_databases_does_not_pass_a_damaged_store_off_as_a_failing_disk(tmp_path: Path) -> None:
    """The attacker renames a Unix socket over apikeys.db-wal (its open fails ENXIO, as a detached
    disk's does) and damages a page of gallery.db: the next enrolment is an IntegrityError."""
    ws, damage = _workspace_with_a_damaged_page(tmp_path, "sqlite_sequence")
    sf = open_sf(ws)
    try:
        token = consent(ws, "bob")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(tmp_path / "sock"))
        os.rename(tmp_path / "sock", ws.root / "apikeys.db-wal")
        damage()  # the store's id counter's page
        db = sqlite3.connect(ws.gallery, isolation_level=None)  # a commit: the handle reads the file again
        db.execute("PRAGMA user_version = 7")
        db.close()
        with pytest.raises(IntegrityError) as got:
            sf.enroll(images() / "biden.jpg", subject="bob", purpose="demo", consent=token)
        assert not isinstance(got.value, WorkspaceDiskFailed), got.value
        sock.close()
    finally:
        sf.close()


def test_a_sparse_write_ahead_log_is_not_read_whole_to_tell_damage_from_a_failing_disk(tmp_path: Path) -> None:
    """The attacker damages gallery.db and grows gallery.db-wal to a sparse 2 GiB (SQLite reads its
    header only): the open is an IntegrityError, and the second read skips the holes, which
    have no blocks to fail (read whole, 16 TiB of holes kept every call and `audit verify`
    reading for hours)."""
    ws, damage = _workspace_with_a_damaged_page(tmp_path, "rows")
    damage()
    fd = os.open(f"{ws.gallery}-wal", os.O_WRONLY | os.O_CREAT, 0o600)
    os.ftruncate(fd, 2 << 30)
    os.close(fd)
    before = _rchar()
    with pytest.raises(IntegrityError):
        open_sf(ws).close()
    assert _rchar() - before < 256 << 20


@pytest.mark.parametrize("name", ["audit.db-wal", "gallery.db-wal", "audit.db-shm"])
def test_a_pipe_beside_a_database_is_named_not_called_a_full_disk(tmp_path: Path, name: str) -> None:
    """The attacker puts a FIFO at audit.db-wal (SQLite reads it as an empty log and fails to write
    it, "disk I/O error"), gallery.db-wal or audit.db-shm: the open names it, not a full or
    read-only disk (a 503 to retry for ever, `audit verify` saying the same, the log unchecked)."""
    ws = make_workspace(tmp_path / "ws")
    open_sf(ws).close()
    os.mkfifo(ws.root / name)
    with pytest.raises(ConfigError) as got:
        open_sf(ws).close()
    assert not isinstance(got.value, WorkspaceUnwritable), got.value
    assert name in str(got.value), got.value


@pytest.mark.parametrize("err, kind", [("EIO", WorkspaceDiskFailed), ("ENXIO", IntegrityError)])
def test_a_small_file_whose_open_fails_on_the_device_is_a_disk_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       err: str, kind: type) -> None:
    """The disk fails under the anchor's inode, so its open (not its read) returns EIO: it was
    called a file altered by hand, to restore from a backup. ENXIO at the open is a socket put in
    the file's place, and stays a file to restore. (The failure is injected at the system call:
    a loop device cut short fails reads, not the opens of inodes it still holds.)"""
    import errno

    from safeface.regularfile import read_workspace_file

    target = tmp_path / "audit-anchor.json"
    target.write_bytes(b"{}")
    real_open = os.open

    def failing_open(path: object, flags: int, *args: object, **kw: object) -> int:
        if str(path).endswith("audit-anchor.json"):
            raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)))
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(kind) as info:
        read_workspace_file(target, "the audit anchor", 4096)
    assert ("restore it from a backup" in str(info.value)) == (kind is IntegrityError), info.value
