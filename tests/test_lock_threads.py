"""Threads of one process sharing a gallery handle wait for its write lock in turn. A wait on
another process ends after atomicfile.LOCK_WAIT_S in WorkspaceBusy, but a wait on another thread
of the same handle (one stuck, or a long erasure) had no end: a service's workers all hung."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_gallery_open_handles import DIM, EXP, _fresh, _unit  # noqa: E402

from safeface import atomicfile  # noqa: E402
from safeface.errors import WorkspaceBusy  # noqa: E402
from safeface.storage.gallery import Gallery  # noqa: E402


def test_a_write_behind_another_thread_holding_the_lock_ends_busy(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread holds the handle's write lock and does not let go; another enrols through the same
    handle: it must end in WorkspaceBusy after the lock wait (0.5 s here), not wait for ever."""
    monkeypatch.setattr(atomicfile, "LOCK_WAIT_S", 0.5)
    _, keyring, db = _fresh(tmp_path)
    with Gallery.open(db, keyring, DIM) as g:
        inside, leave = threading.Event(), threading.Event()
        outcome: list[BaseException] = []

        def hold() -> None:
            with g.locked():
                inside.set()
                leave.wait(60)

        def enrol() -> None:
            try:
                g.add("bob", _unit(1), ["demo"], "tok-b", EXP)
            except BaseException as exc:
                outcome.append(exc)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert inside.wait(10)
            writer = threading.Thread(target=enrol)
            writer.start()
            writer.join(20)
            still_waiting = writer.is_alive()
        finally:
            leave.set()
            holder.join()
        writer.join()
        assert not still_waiting, "the enrolment still waited for the other thread after 20 s"
        assert len(outcome) == 1 and isinstance(outcome[0], WorkspaceBusy), outcome
        assert "gallery.db.lock" in str(outcome[0])
        assert g.subject_count() == 0
