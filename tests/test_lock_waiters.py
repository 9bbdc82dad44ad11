"""A wait for a lock runs in a thread of its own (atomicfile.bounded_wait), so that it can be given
up on. What that thread does once its caller has stopped waiting: interrupted (Ctrl-C, a signal
handler's exception), it took the guard byte later for no one and held it for the process's life;
and behind a holder stuck for hours, each call refused left its waiting thread and descriptor, until
the process ran out of descriptors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from test_gallery_open_handles import DIM, _fresh  # noqa: E402
from test_lock_guard_files import _HOLD_BYTE  # noqa: E402
from test_lock_waits import _HOLD_FILE  # noqa: E402

from safeface.atomicfile import guard_offset  # noqa: E402
from safeface.errors import WorkspaceBusy  # noqa: E402
from safeface.storage.gallery import Gallery, write_lock  # noqa: E402


class _Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise _Interrupted()


def _interrupted_wait_then_free(db: Path, holder_code: str, *args: str) -> None:
    """Another process holds the lock (`holder_code`); this one's wait is interrupted after 0.3 s;
    then the holder lets go and this process takes the lock again, waiting at most 5 s."""
    holder = subprocess.Popen([sys.executable, "-c", holder_code, *args], env=child_env(), cwd="/",
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    old = signal.signal(signal.SIGALRM, _interrupt)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_Interrupted):
            with write_lock(db).held(timeout=10):
                pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        holder.communicate("\n", timeout=30)
    with write_lock(db).held(timeout=5):
        pass


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_OFD_SETLK"), reason="no OFD locks here")
def test_a_guard_wait_interrupted_leaves_the_guard_free_once_its_holder_lets_go(tmp_path: Path) -> None:
    """A writer waiting on gallery.db's guard byte is interrupted (Ctrl-C); the holder then lets go:
    the next write must get the lock, not end busy because the abandoned wait took the byte."""
    _, keyring, db = _fresh(tmp_path)
    Gallery.open(db, keyring, DIM).close()
    _interrupted_wait_then_free(db, _HOLD_BYTE, str(db), str(guard_offset(db.with_name("gallery.db.lock"))))



def _refused_calls_behind(db: Path, holder_code: str, *args: str) -> int:
    """How many more descriptors this process has open after 300 writes refused busy behind a
    holder that never lets go; the lock is taken once the holder has let go."""
    holder = subprocess.Popen([sys.executable, "-c", holder_code, *args], env=child_env(), cwd="/",
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(300):
            with pytest.raises(WorkspaceBusy):
                with write_lock(db).held(timeout=0.001):
                    pass
        grown = len(os.listdir("/proc/self/fd")) - before
    finally:
        holder.communicate("\n", timeout=30)
    with write_lock(db).held(timeout=5):
        pass
    return grown


def test_writes_refused_behind_a_stuck_lock_file_do_not_pile_up_descriptors(tmp_path: Path) -> None:
    """A process holds gallery.db.lock for ever; a service's writes keep ending busy: the waits it
    gave up on must not keep a descriptor each (300 of them), only a bounded few."""
    _, keyring, db = _fresh(tmp_path)
    Gallery.open(db, keyring, DIM).close()
    assert _refused_calls_behind(db, _HOLD_FILE, str(db.with_name("gallery.db.lock"))) <= 100


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_OFD_SETLK"), reason="no OFD locks here")
def test_writes_refused_behind_a_stuck_guard_byte_do_not_pile_up_descriptors(tmp_path: Path) -> None:
    """A process holds gallery.db's guard byte for ever; writes keep ending busy: the waits given up
    on must not keep a descriptor each on gallery.db, only a bounded few."""
    _, keyring, db = _fresh(tmp_path)
    Gallery.open(db, keyring, DIM).close()
    offset = str(guard_offset(db.with_name("gallery.db.lock")))
    assert _refused_calls_behind(db, _HOLD_BYTE, str(db), offset) <= 100
