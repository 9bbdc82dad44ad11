"""Reading workspace files again, whole, to tell a disk that fails reads (EIO) from a file damaged
by hand (sqlite_store.disk_read_error asks). Read in a child process (apart.py): this process's
connections hold POSIX locks on the files, which closing a descriptor of its own would drop."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Optional, Sequence

from .apart import run_apart
from .atomicfile import DISK_FAILED
from .regularfile import data_extents


def first_failing_read(paths: Sequence[Path]) -> Optional[tuple[Path, OSError]]:
    """The first of `paths` whose disk fails reading it whole (EIO), with the error; None where
    each reads, is absent or is no regular file. Where no child can be started, the start's own
    error is the answer when it is a failed device (the interpreter on the failing disk), else
    None (judged as damage, as a file that reads is)."""
    if not paths:
        return None
    try:
        index, code, why = run_apart("safeface.diskread:_child", [str(p) for p in paths])
    except OSError as exc:
        return (Path(paths[0]), exc) if exc.errno in DISK_FAILED else None
    except (ValueError, TypeError):
        return None  # the child did not finish (killed, out of memory): nothing is known
    if not isinstance(index, int) or not 0 <= index < len(paths):
        return None
    return Path(paths[index]), OSError(int(code), str(why))


def _child(*names: str) -> None:
    """In the child: print [index, errno, strerror] of the first name that fails, or [-1, 0, ""]."""
    for i, name in enumerate(names):
        failed = _read_whole(Path(name))
        if failed is not None:
            print(json.dumps([i, failed.errno, failed.strerror or "I/O error"]))
            return
    print(json.dumps([-1, 0, ""]))


def _read_whole(p: Path) -> Optional[OSError]:
    """The error of a failed device reading `p`; None where it reads whole, is absent, or is no
    regular file."""
    try:
        # The name's own file, nothing read yet (O_PATH): a socket or device in a file's place
        # fails a plain open with ENXIO, as a detached disk does, and a socket renamed over an
        # unused -wal passed damage made by hand off as a failing disk. Regular files only: a
        # FIFO would also block the read for ever.
        ref = os.open(p, os.O_PATH | os.O_NOFOLLOW)
    except OSError as exc:
        return exc if exc.errno in DISK_FAILED else None
    try:
        if not stat.S_ISREG(os.fstat(ref).st_mode):
            return None
        fd = os.open(f"/proc/self/fd/{ref}", os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return exc if exc.errno in DISK_FAILED else None
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
        return exc if exc.errno in DISK_FAILED else None
    finally:
        os.close(fd)
    return None
