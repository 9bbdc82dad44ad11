"""Dates the report and the store check read off the audit log: the filing-threshold entry's time,
an enrolment's "kept at most until" limit (US-01), and which enrolment's limit caps a match."""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

import pytest  # noqa: E402

from safeface import IntegrityError  # noqa: E402

IMG = images()


def test_a_filing_entry_whose_time_was_edited_into_garbage_is_a_typed_error_in_the_report(tmp_path: Path) -> None:
    """The attacker (no key) edits the time of the log's "filing-threshold" entry, not the last one,
    into text: reading the compliance facts must raise IntegrityError, not a bare ValueError."""
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 1))
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.erase("bob")  # a later entry: the edited one is not the last
    with sqlite3.connect(ws.root / "audit.db") as con:
        assert con.execute("UPDATE entries SET time = 'soon' WHERE operation = 'filing-threshold'").rowcount == 1
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError):
            sf.facts()


def test_an_enrolment_note_edited_to_a_year_one_limit_is_named_not_a_crash_of_the_store_check(tmp_path: Path) -> None:
    """The attacker (no key) appends "kept at most until 0001-01-01T00:00:00+01:00" to an enrolment
    entry: the store check (run by the report) must raise IntegrityError, not a bare OverflowError."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    with sqlite3.connect(ws.root / "audit.db") as con:
        assert con.execute("UPDATE entries SET note = note || '; kept at most until 0001-01-01T00:00:00+01:00' "
                           "WHERE operation = 'enroll' AND decision = 'allowed'").rowcount == 1
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError):
            sf.verify_store()


def test_an_erased_persons_older_enrolment_limit_does_not_widen_the_store_checks_cap() -> None:
    """alice, enrolled under a 10-year limit, erased, enrolled again under a 2027 one; a host with
    the keys re-seals her new row to 2029 behind a match entry. The store check must cap the row at
    its own (newest) enrolment's limit, as the guard does, not at the erased enrolment's."""
    from dataclasses import dataclass

    from safeface.workspace.audit import AuditEntry
    from safeface.workspace.storecheck import read_log

    @dataclass(frozen=True)
    class Row:
        row_id: int
        pseudonym: str
        purposes: tuple[str, ...]

    p, ref = "a" * 64, "t-" + "0" * 32
    log = read_log([
        AuditEntry(1, "2026-01-01T00:00:00+00:00", "enroll", "demo", ref, "consent", (p,), "allowed", None,
                   "rows=5; expires 2036-01-01; kept at most until 2036-01-01T00:00:00+00:00"),
        AuditEntry(2, "2026-02-01T00:00:00+00:00", "erase", None, None, None, (p,), "allowed", "CN-05",
                   "rows=5; erased"),
        AuditEntry(3, "2026-12-06T00:00:00+00:00", "enroll", "demo", ref, "consent", (p,), "allowed", None,
                   "rows=6; expires 2027-02-04; kept at most until 2027-02-04T00:00:00+00:00"),
        AuditEntry(4, "2026-12-07T00:00:00+00:00", "verify", "demo", ref, "consent", (p,), "allowed", None,
                   "match; expires 2029-12-07"),
    ])
    assert log.kept_until(Row(6, p, ("demo",)), log.enrolment[6]) <= dt.date(2027, 2, 4)


def test_an_erasure_entry_whose_time_and_note_were_edited_is_a_typed_refusal(tmp_path: Path) -> None:
    """The attacker (no key) deletes policy.db, so the log's copy of the withdrawal decides, and
    edits alice's erasure entry, not the last one: its note no longer names when it withdrew, its
    time is text. Each call under a consent of hers was a bare ValueError (a backend error, "could
    not be judged"): it is refused as an entry edited by hand."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.erase("alice")
        sf.erase("bob")  # a later entry: the edited one is not the last
    with sqlite3.connect(ws.root / "audit.db") as con:
        assert con.execute("UPDATE entries SET time = 'soon', note = 'erased' WHERE operation = 'erase' AND "
                           "seq = (SELECT MIN(seq) FROM entries WHERE operation = 'erase')").rowcount == 1
    ws.policy.unlink()
    with open_sf(ws) as sf:
        with pytest.raises(IntegrityError, match="edited by hand"):
            sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
