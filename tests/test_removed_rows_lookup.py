"""AuditLog.rows_on_record, read at every verify and for every identify candidate: the purges
naming a subject are found through a map read forward from the log (PurgeIndex), so a call costs
the same however many purges the log holds, and the answer is the one a scan of every purge
gives, also after purges are appended and after the log is put back from another copy."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

from safeface.workspace.audit import AuditLog

X = "a" * 64  # the subject looked up
Y = "b" * 64


def _log(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.db", secrets.token_bytes(32))
    log.append("enroll", "allowed", subjects=[X], note="1 template(s); rows=7", token_id="tok")
    return log


def _purges(path: Path, whose: list[list[str]], first_row: int = 100) -> None:
    """Purge entries written straight into the table (rows_on_record reads no chain): one naming
    each list of subjects, each with five rows from `first_row` on."""
    con = sqlite3.connect(path)
    with con:
        end = con.execute("SELECT MAX(seq) FROM entries").fetchone()[0] or 0
        con.executemany("INSERT INTO entries (seq, time, operation, subjects, decision, note, prev, hash) "
                        "VALUES (?, '2026-01-01T00:00:00Z', 'purge', ?, 'allowed', ?, 'p', ?)",
                        [(end + 1 + i, json.dumps(subs),
                          f"5 expired template(s) removed; rows={','.join(str(first_row + 5 * i + j) for j in range(5))}",
                          secrets.token_hex(8)) for i, subs in enumerate(whose)])
    con.close()


def _steps(log: AuditLog) -> int:
    """SQLite virtual machine steps (in hundreds) one rows_on_record(X) takes: no timing, a count."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    db = log._t._db
    db.set_progress_handler(tick, 100)
    try:
        log.rows_on_record(X).removed
    finally:
        db.set_progress_handler(None, 100)
    return count[0]


def test_a_lookup_costs_the_same_however_many_purges_the_log_holds(tmp_path: Path) -> None:
    """Each verify and identify candidate read every purge since the subject's enrolment: with
    years of purges in the log that grew without bound. Read forward once, a call after 3,000
    more purges takes no more steps than one after 30."""
    log = _log(tmp_path)
    try:
        _purges(tmp_path / "audit.db", [[secrets.token_hex(32)] for _ in range(30)])
        log.rows_on_record(X).removed
        few = _steps(log)
        _purges(tmp_path / "audit.db", [[secrets.token_hex(32)] for _ in range(3000)], first_row=1000)
        log.rows_on_record(X).removed  # reads the new purges once
        assert _steps(log) <= few + 2
    finally:
        log.close()


def test_purges_appended_later_are_read_at_the_next_lookup(tmp_path: Path) -> None:
    log = _log(tmp_path)
    try:
        assert log.rows_on_record(X).removed == set()
        _purges(tmp_path / "audit.db", [[Y], [Y, X]])
        assert log.rows_on_record(X).removed == set()  # row 7 is not among the purged rows
        _purges(tmp_path / "audit.db", [[Y, X]], first_row=5)  # rows 5..9
        assert log.rows_on_record(X).removed == {7}
        assert log.rows_left(X) == set()
    finally:
        log.close()


def test_a_log_put_back_from_another_copy_is_read_again(tmp_path: Path) -> None:
    """The map read up to an entry; the log is then put back from a copy whose entries at those
    numbers are others: it is read again from the start, never answered from the old map."""
    log = _log(tmp_path)
    try:
        _purges(tmp_path / "audit.db", [[Y]], first_row=5)
        assert log.rows_on_record(X).removed == set()
        con = sqlite3.connect(tmp_path / "audit.db")
        with con:
            con.execute("DELETE FROM entries WHERE operation = 'purge'")
        con.close()
        _purges(tmp_path / "audit.db", [[X]], first_row=5)  # the same number, another entry
        assert log.rows_on_record(X).removed == {7}
    finally:
        log.close()


def test_a_purge_whose_subjects_were_edited_by_hand_is_still_read(tmp_path: Path) -> None:
    """Subjects written in no form safeface writes (not a JSON list of plain strings) are read
    for every subject, as the scan's LIKE read them."""
    log = _log(tmp_path)
    try:
        con = sqlite3.connect(tmp_path / "audit.db")
        with con:
            con.execute("INSERT INTO entries (seq, time, operation, subjects, decision, note, prev, hash) VALUES "
                        "(2, '2026-01-01T00:00:00Z', 'purge', ?, 'allowed', 'rows=7', 'p', 'h')",
                        ('["x", ' + json.dumps(X) + ' "unclosed',))
        con.close()
        assert log.rows_on_record(X).removed == {7}
    finally:
        log.close()


def test_a_purge_read_among_thousands_is_found_after_the_map_is_sorted(tmp_path: Path) -> None:
    """More mentions than the map keeps unsorted (TAIL_MAX), read in pages: the purge naming
    the subject, in the middle, is still found, and a later one read on top of them."""
    from safeface.workspace.purgeindex import PAGE, TAIL_MAX

    log = _log(tmp_path)
    try:
        many = (TAIL_MAX // 2 + PAGE) // 2
        _purges(tmp_path / "audit.db", [[secrets.token_hex(32), secrets.token_hex(32)] for _ in range(many)])
        _purges(tmp_path / "audit.db", [[Y, X]], first_row=5)  # rows 5..9
        _purges(tmp_path / "audit.db", [[secrets.token_hex(32), secrets.token_hex(32)] for _ in range(many)])
        assert log.rows_on_record(X).removed == {7}
        assert len(log._purges._keys) > TAIL_MAX  # sorted, not looked through one by one
    finally:
        log.close()
    log = AuditLog(tmp_path / "audit.db", secrets.token_bytes(32))
    try:
        con = sqlite3.connect(tmp_path / "audit.db")
        with con:
            con.execute("DELETE FROM entries WHERE operation = 'purge' AND subjects LIKE ?", (f'%"{X}"%',))
        con.close()
        assert log.rows_on_record(X).removed == set()
        _purges(tmp_path / "audit.db", [[X, Y]], first_row=5)  # rows 5..9 again, read on top of the map
        assert log.rows_on_record(X).removed == {7}
    finally:
        log.close()


def test_purges_older_than_any_asked_for_are_read_when_an_earlier_subject_asks(tmp_path: Path) -> None:
    """The map reads only as far back as asked (a subject's first enrolment): a subject enrolled
    earlier, asked about later, has the purges between read then."""
    log = _log(tmp_path)  # X enrolled, row 7
    try:
        _purges(tmp_path / "audit.db", [[X]], first_row=5)  # rows 5..9
        con = sqlite3.connect(tmp_path / "audit.db")
        with con:
            con.execute("INSERT INTO entries (seq, time, operation, subjects, decision, note, prev, hash) VALUES "
                        "(3, '2026-01-01T00:00:00Z', 'enroll', ?, 'allowed', 'rows=20', 'p', 'h3')", (json.dumps([Y]),))
        con.close()
        _purges(tmp_path / "audit.db", [[Y]], first_row=20)  # rows 20..24
        assert log.rows_on_record(Y).removed == {20}
        assert log.rows_on_record(X).removed == {7}
    finally:
        log.close()


def test_a_purge_whose_subjects_nest_past_the_parsers_stack_is_read_not_raised(tmp_path: Path) -> None:
    """Subjects edited by hand into brackets nested 100,000 deep: json.loads raised
    RecursionError from the map, and every verify and identify failed on it (a BackendError
    saying to check the image). Read as any other list safeface does not write: for every
    subject, by the entry's own text."""
    log = _log(tmp_path)
    try:
        _purges(tmp_path / "audit.db", [["x"]], first_row=7)
        con = sqlite3.connect(tmp_path / "audit.db")
        with con:
            con.execute("UPDATE entries SET subjects = ? || subjects WHERE operation = 'purge'",
                        ("[" * 100_000 + json.dumps(X) + ", ",))
        con.close()
        assert log.rows_on_record(X).removed == {7}
        assert log.rows_left(X) == set()
    finally:
        log.close()
