"""Opening an input file that must be a regular file, judged on the descriptor that is read.

A check by path and an open by path are two looks at a name: a link flipped in between to a
FIFO or a device (/dev/zero) made a photo's open wait for ever on the FIFO, or a video's hash
read /dev/zero for ever. The open never blocks (O_NONBLOCK, which a regular file ignores), and
the descriptor itself must be a regular file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import ImageError


def open_regular(path: Path, label: str) -> BinaryIO:
    """`path` opened for reading, refused with ImageError unless it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file; check the path.") from None
    except OSError as exc:
        raise ImageError(f"{label}: could not be opened ({exc.strerror}).") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"{label}: not a regular file.")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
