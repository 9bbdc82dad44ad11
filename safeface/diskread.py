"""Reading workspace files again, whole, to tell a disk that fails reads (EIO) from a file damaged
by hand (sqlite_store.disk_read_error asks), in a child process.

SQLite's locks are POSIX advisory locks, which the kernel drops, every one this process holds on
a file, when any descriptor of that file is closed, whoever opened it. A second read through a
descriptor of this process's own, closed after it, left the process's connections unlocked:
another process closing its last connection then took the file for unused, checkpointed it and
deleted a -wal still in use here. A child's descriptors are its own, and so are its locks.
The child costs a process start (about 50 ms), paid only after SQLite reported damage, or while
a disk that failed is read again."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .atomicfile import DISK_FAILED as _FAILED
from .regularfile import data_extents


def first_failing_read(paths: Sequence[Path]) -> Optional[tuple[Path, OSError]]:
    """The first of `paths` whose disk fails reading it whole (EIO), with the error; None where
    each reads, is absent or is no regular file. Read in a child process (see the module's
    notes); where no child can be started, the start's error is the answer when it is a failed
    device (the interpreter on the failing disk), else None (judged as damage, as before)."""
    if not paths:
        return None
    package = str(Path(__file__).resolve().parent.parent)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from safeface.diskread import _child; _child(sys.argv[2:])")
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", code, package, *map(str, paths)],
                              stdin=subprocess.DEVNULL, capture_output=True, close_fds=True)
    except OSError as exc:
        return (Path(paths[0]), exc) if exc.errno in _FAILED else None
    try:
        found = json.loads(done.stdout.decode("utf-8"))
        index, code_, why = int(found[0]), int(found[1]), str(found[2])
    except (ValueError, TypeError, IndexError, UnicodeDecodeError):
        return None  # the child did not finish (killed, out of memory): nothing is known
    if index < 0 or index >= len(paths):
        return None
    return Path(paths[index]), OSError(code_, why)


def _child(names: Iterable[str]) -> None:
    """In the child: print [index, errno, strerror] of the first name that fails, or [-1, 0, ""]."""
    for i, name in enumerate(names):
        failed = _read_whole(Path(name))
        if failed is not None:
            print(json.dumps([i, failed.errno, failed.strerror or "I/O error"]))
            return
    print(json.dumps([-1, 0, ""]))


def _read_whole(p: Path) -> Optional[OSError]:
    """The error of a failed device reading `p`, None where it reads whole, is absent, or is no
    regular file."""
    try:
        # The name's own file, nothing read yet (O_PATH): a socket or device in a file's place
        # fails a plain open with ENXIO, as a detached disk does, and a socket renamed over an
        # unused -wal passed damage made by hand off as a failing disk. Regular files only: a
        # FIFO would also block the read for ever.
        ref = os.open(p, os.O_PATH | os.O_NOFOLLOW)
    except OSError as exc:
        return exc if exc.errno in _FAILED else None
    try:
        if not stat.S_ISREG(os.fstat(ref).st_mode):
            return None
        fd = os.open(f"/proc/self/fd/{ref}", os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return exc if exc.errno in _FAILED else None
    finally:
        os.close(ref)
    try:
        # Its data only: a hole has no blocks to fail, and a sparse -wal of terabytes (SQLite
        # reads its header) kept each call and `audit verify` reading for hours.
        for start, end in data_extents(fd, os.fstat(fd).st_size):
            while start < end:
                got = os.pread(fd, min(1 << 20, end - start), start)
                if not got:
                    break
                start += len(got)
    except OSError as exc:
        return exc if exc.errno in _FAILED else None
    finally:
        os.close(fd)
    return None

