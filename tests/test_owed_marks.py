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
