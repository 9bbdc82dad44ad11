"""Files a user names on the command line, made wrong: a FIFO nobody writes (a reader that opens
it blocks for ever) and a sparse file far larger than any such input."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def fifo_at(path: Path, seconds: float = 5.0) -> Iterator[Path]:
    """A FIFO at `path` for the length of the block. Should the command still wait on it after
    `seconds`, its other end is opened and closed, so a test fails instead of hanging."""
    os.mkfifo(path)
    done = threading.Event()

    def unblock() -> None:
        if not done.wait(seconds):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass

    threading.Thread(target=unblock, daemon=True).start()
    try:
        yield path
    finally:
        done.set()


def sparse_file(path: Path, size: int) -> Path:
    """A file of `size` bytes holding no data blocks (NULs read back)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path
