"""An app that forks (multiprocessing's default on Linux) while another of its threads takes or lets
go of a lock: the child inherited the guard pool's thread lock held by a thread it does not have,
and its first lock of any workspace waited for ever (9 children of 200 in a loop), past every
bounded wait."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from safeface import atomicfile
from safeface.atomicfile import exclusive_lock


def _take_a_lock(folder: str) -> None:
    guard = Path(folder) / "keyring.json"
    with exclusive_lock(Path(folder) / "trust.json.lock", guard, timeout=5):
        pass


def test_a_child_forked_while_a_thread_is_inside_the_guard_pool_takes_its_locks(tmp_path: Path) -> None:
    """A thread is inside the guard pool's critical section when the app forks a worker: the
    worker's own lock must be taken (or end busy), never wait for ever."""
    (tmp_path / "keyring.json").write_bytes(b"{}")
    inside, leave = threading.Event(), threading.Event()

    def in_the_pool() -> None:
        with atomicfile._guard_pool_lock:  # where another thread's take or release is, at the fork
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=in_the_pool)
    thread.start()
    try:
        assert inside.wait(10)
        child = multiprocessing.get_context("fork").Process(target=_take_a_lock, args=(str(tmp_path),))
        child.start()
        child.join(20)
        hung = child.is_alive()
        if hung:
            child.kill()
            child.join()
    finally:
        leave.set()
        thread.join()
    assert not hung, "the forked child still waits for the guard pool's lock"
    assert child.exitcode == 0
