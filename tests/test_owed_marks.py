"""The commit marks a live process owes (workspace.owed_marks): a byte held per row until the mark
is written, read by any process that settles the log. A forked child shares its parent's open
files, and with them the locks on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safeface import atomicfile
from safeface.workspace.owed_marks import OwedMarks

pytestmark = pytest.mark.skipif(not atomicfile._OFD_LOCKS, reason="no OFD locks here")


def _held(where: Path, rows: list[int]) -> set[int]:
    return OwedMarks(where).stored_by_a_live_process(rows)


def test_a_forked_child_closing_its_copy_leaves_the_parents_marks_held(tmp_path: Path) -> None:
    """A child forked after its parent's mark was refused closed its copy of the handle (at its
    exit): the parent's bytes went with it, while the parent still ran and owed the mark."""
    where = tmp_path / "owed-marks.lock"
    marks = OwedMarks(where)
    marks.owe([7])
    pid = os.fork()
    if pid == 0:
        marks.close()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    try:
        assert _held(where, [7]) == {7}
    finally:
        marks.close()
    assert _held(where, [7]) == set()


def test_a_parent_closing_leaves_the_marks_its_forked_child_owes_held(tmp_path: Path) -> None:
    """A child forked from a handle owes a mark of its own: its byte was taken on the descriptor
    it shared with its parent, and the parent's close let it go while the child still ran."""
    where = tmp_path / "owed-marks.lock"
    marks = OwedMarks(where)
    marks.owe([7])
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(done_w)
        marks.owe([9])
        os.write(ready_w, b"1")
        os.read(done_r, 1)  # holds until the parent has looked
        os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        assert os.read(ready_r, 1) == b"1"
        marks.close()
        assert _held(where, [7, 9]) == {9}
    finally:
        os.write(done_w, b"1")
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(done_w)


def test_only_a_write_lock_reads_as_a_mark_owed(tmp_path: Path) -> None:
    """A read lock on a row's byte needs the file open for reading only: it must not read as the
    row stored by a live process (the bytes were read locks on the folder, anyone's to take)."""
    import fcntl

    where = tmp_path / "owed-marks.lock"
    marks = OwedMarks(where)
    marks.owe([7])
    reader = os.open(where, os.O_RDONLY)
    try:
        fcntl.fcntl(reader, fcntl.F_OFD_SETLK, atomicfile._one_byte(fcntl.F_RDLCK, (1 << 52) + 8))
        assert _held(where, [7, 8]) == {7}
    finally:
        os.close(reader)
        marks.close()


def test_a_sessions_end_owed_by_two_processes_stays_held_until_both_let_go(tmp_path: Path) -> None:
    """Two processes each failed to record one console session's logout: the second could not
    take the byte the first held (a write lock), so the first one's restart let the session live
    again while the second still owed its end. The ends are read locks, which both hold, and any
    lock counts; the rows' marks stay write locks. (Two open files of one process hold OFD locks
    as two processes do.) They are held on a folder, read-only here: a disk that refused the
    logout's every write (remounted read-only) can make no lock file either."""
    from safeface.workspace.owed_marks import SESSION_ENDS_BASE

    where = tmp_path / "keys"
    where.mkdir(mode=0o500)
    first, second = (OwedMarks(where, base=SESSION_ENDS_BASE, shared=True) for _ in range(2))
    first.owe([9])
    second.owe([9])
    first.close()
    try:
        assert OwedMarks(where, base=SESSION_ENDS_BASE, shared=True).stored_by_a_live_process([9, 10]) == {9}
    finally:
        second.close()
    assert OwedMarks(where, base=SESSION_ENDS_BASE, shared=True).stored_by_a_live_process([9]) == set()
    assert list(where.iterdir()) == []


def test_a_keys_folder_others_may_open_holds_no_session_ends_for_other_processes(tmp_path: Path) -> None:
    """With the keys folder opened to a group (a backup account, `chmod 750`), anyone in it could
    take one read lock over the sessions' bytes and refuse every console session of the host.
    Such a folder's locks are not read: the process owing an end refuses the session alone."""
    from safeface.workspace.owed_marks import SESSION_ENDS_BASE

    where = tmp_path / "keys"
    where.mkdir(mode=0o700)
    holder = OwedMarks(where, base=SESSION_ENDS_BASE, shared=True)
    holder.owe([9])
    try:
        assert OwedMarks(where, base=SESSION_ENDS_BASE, shared=True).stored_by_a_live_process([9]) == {9}
        where.chmod(0o750)
        assert OwedMarks(where, base=SESSION_ENDS_BASE, shared=True).stored_by_a_live_process([9]) == set()
        assert holder.owed() == {9}  # still refused by the process that owes it
    finally:
        holder.close()
