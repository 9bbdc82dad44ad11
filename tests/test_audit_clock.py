"""A host whose clock ran ahead while it wrote audit entries, then was corrected (NTP after a
resume, a wrong time zone fixed): the log refuses entries dated before its last one, and the
operator, whose clock is right now, must be told what to do rather than only to set it right."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from safeface.errors import IntegrityError
from safeface.workspace import audit as audit_module
from safeface.workspace.audit import AuditLog


def test_a_clock_corrected_after_running_ahead_says_when_entries_are_taken_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries written an hour ahead, then the clock put right: the refusal names the time from
    which the log takes entries again, and an entry is taken once the clock passes it."""
    real = audit_module._utc_now
    monkeypatch.setattr(audit_module, "_utc_now", lambda: real() + dt.timedelta(hours=1))
    log = AuditLog(tmp_path / "a.db", b"k" * 32)
    ahead = log.append("init", "allowed")
    monkeypatch.setattr(audit_module, "_utc_now", real)  # corrected
    last = dt.datetime.fromisoformat(ahead.time).isoformat(timespec="seconds")
    with pytest.raises(IntegrityError, match=re.escape(f"once the clock passes {last}")):
        log.append("verify", "allowed")
    monkeypatch.setattr(audit_module, "_utc_now", lambda: real() + dt.timedelta(hours=1, seconds=1))
    assert log.append("verify", "allowed").seq == ahead.seq + 1


@pytest.mark.parametrize("ahead", [dt.timedelta(days=1), dt.timedelta(days=365 * 7000)])
def test_a_last_entry_dated_ahead_by_hand_is_named_as_altered_not_as_a_clock_gone_back(
        tmp_path: Path, ahead: dt.timedelta) -> None:
    """Anyone who could write audit.db, without the key, moved the last entry's time ahead (a day,
    or to the year 9000): every append, erasures included, was refused as a clock gone back, and
    the operator told to wait until then. The entry's time is trusted only once its hash holds:
    the refusal names the altered entry, and the log is to be restored."""
    import sqlite3

    log = AuditLog(tmp_path / "a.db", b"k" * 32)
    log.append("init", "allowed")
    last = log.append("verify", "allowed")
    log.close()
    moved = (dt.datetime.fromisoformat(last.time) + ahead).isoformat(timespec="microseconds")
    con = sqlite3.connect(tmp_path / "a.db")
    con.execute("UPDATE entries SET time = ? WHERE seq = ?", (moved, last.seq))
    con.commit()
    con.close()
    log = AuditLog(tmp_path / "a.db", b"k" * 32)
    with pytest.raises(IntegrityError, match=f"entry {last.seq} was altered after it was written") as info:
        log.append("erase", "allowed")
    assert "clock" not in str(info.value) and "restore" in str(info.value)
    assert log.end() == last.seq  # nothing written
    log.close()
