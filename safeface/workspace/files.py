"""Small files of the workspace written so that a crash leaves the old file or the new one,
never half of either, and so that two processes changing one take turns."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_atomic(path: Path, data: bytes) -> None:
    """Write-then-rename, owner-only, synced (file and directory)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_new_private(path: Path, data: bytes) -> None:
    """Create `path` (mode 0600); FileExistsError if it exists, so nothing is ever overwritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path`.lock for the duration of the block."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no advisory lock; the rename still keeps each file whole
            pass
        yield
    finally:
        os.close(fd)
