"""The audit log (CN-10): every tampering is detected; concurrent writers and a killed writer
leave a complete, verifiable chain."""

from __future__ import annotations

import multiprocessing as mp
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from typing import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

from safeface.workspace.audit import AuditLog
from safeface.errors import IntegrityError

KEY = b"k" * 32


def filled(path: Path, n: int = 6) -> AuditLog:
    log = AuditLog(path, KEY)
    log.append("init", "allowed")
    for i in range(1, n):
        log.append("verify", "allowed" if i % 2 else "refused", purpose="demo", token_id=f"t{i}",
                   basis="consent", subjects=[f"pseud{i}"], rule=None if i % 2 else "CN-04")
    return log


def sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(str(path))
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()


def test_intact_log_verifies(tmp_path: Path) -> None:
    log = filled(tmp_path / "a.db")
    r = log.verify()
    assert r.entries == 6 and r.head_seq == 6
    entries = list(log.entries())
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[2].rule == "CN-04" and entries[2].decision == "refused"
    assert log.counts()["refusals_by_rule"] == {"CN-04": 2}


TAMPERING = {
    "edit a field": ["UPDATE entries SET decision = 'allowed' WHERE seq = 3"],
    "edit the subject": ["UPDATE entries SET subjects = '[\"someone-else\"]' WHERE seq = 2"],
    "delete a middle entry": ["DELETE FROM entries WHERE seq = 3"],
    "delete and renumber": ["DELETE FROM entries WHERE seq = 3", "UPDATE entries SET seq = seq - 1 WHERE seq > 3"],
    "reorder": ["UPDATE entries SET seq = 100 WHERE seq = 2", "UPDATE entries SET seq = 2 WHERE seq = 3",
                "UPDATE entries SET seq = 3 WHERE seq = 100"],
    "truncate the tail": ["DELETE FROM entries WHERE seq > 4"],
    "truncate and move the head": ["DELETE FROM entries WHERE seq > 4",
                                   "UPDATE head SET seq = 4, hash = (SELECT hash FROM entries WHERE seq = 4)"],
    "delete the head": ["DELETE FROM head"],
    "delete everything": ["DELETE FROM entries", "DELETE FROM head"],
    "insert an entry": ["INSERT INTO entries SELECT 7, time, operation, purpose, token_id, basis, subjects, decision, "
                        "rule, note, hash, hash, actor FROM entries WHERE seq = 6"],
    "name another key as the caller": ["UPDATE entries SET actor = 'a1b2c3d4e5f6' WHERE seq = 3"],
    # The same bytes stored as a BLOB: the chain hashed alike, verify crashed on it (a TypeError,
    # not the entry named), and the guard's text lookups stopped seeing the entry (a revocation).
    "store a field as a blob": ["UPDATE entries SET token_id = CAST(token_id AS BLOB) WHERE seq = 3"],
    "store the decision as a blob": ["UPDATE entries SET decision = CAST(decision AS BLOB) WHERE seq = 2"],
    "store the subjects as a blob": ["UPDATE entries SET subjects = CAST(subjects AS BLOB) WHERE seq = 2"],
    "insert an entry before the first": ["INSERT INTO entries SELECT 0, time, operation, purpose, token_id, basis, "
                                         "subjects, decision, rule, note, prev, hash, actor FROM entries WHERE seq = 1"],
}


# verify() reads the chain in pages: a page of 2 entries puts every break across a page boundary.
@pytest.mark.parametrize("page", [2, 5000])
@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_is_detected(tmp_path: Path, name: str, page: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import safeface.workspace.audit as audit_module

    monkeypatch.setattr(audit_module, "PAGE_ROWS", page)
    with AuditLog(tmp_path / "ok.db", KEY) as log:  # the same page size reads an intact log whole
        for i in range(7):
            log.append("verify", "allowed", note=str(i))
        assert log.verify().entries == 7
    path = tmp_path / "a.db"
    filled(path).close()
    sql(path, *TAMPERING[name])
    with AuditLog(path, KEY) as log, pytest.raises(IntegrityError):
        log.verify()


def test_rechained_log_fails_without_the_key(tmp_path: Path) -> None:
    """An attacker who rewrites an entry and recomputes every hash still cannot sign the head."""
    import hashlib

    from safeface.workspace.audit import GENESIS, AuditEntry

    path = tmp_path / "a.db"
    filled(path).close()
    db = sqlite3.connect(str(path))
    rows = db.execute("SELECT seq, time, operation, purpose, token_id, basis, subjects, decision, rule, note "
                      "FROM entries ORDER BY seq").fetchall()
    prev = GENESIS
    import json

    for r in rows:
        e = AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])),
                       "allowed" if r[0] == 3 else r[7], r[8], r[9])
        h = hashlib.sha256(prev.encode() + e.canonical()).hexdigest()
        db.execute("UPDATE entries SET decision = ?, prev = ?, hash = ? WHERE seq = ?", (e.decision, prev, h, r[0]))
        prev = h
    db.execute("UPDATE head SET hash = ?", (prev,))
    db.commit()
    db.close()
    with AuditLog(path, KEY) as log, pytest.raises(IntegrityError, match="head signature"):
        log.verify()
    with AuditLog(path, b"x" * 32) as wrong_key, pytest.raises(IntegrityError):
        wrong_key.verify()


def _writer(path: str, n: int, tag: str) -> None:
    log = AuditLog(Path(path), KEY)
    for i in range(n):
        log.append("verify", "allowed", note=f"{tag}-{i}")
    log.close()


def test_two_processes_append_at_once(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    filled(path, 1).close()
    ctx = mp.get_context("fork")  # the child shares the parent's imported safeface
    procs = [ctx.Process(target=_writer, args=(str(path), 60, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with AuditLog(path, KEY) as log:
        assert log.verify().entries == 121
        notes = {e.note for e in log.entries()}
    assert {f"a-{i}" for i in range(60)} <= notes and {f"b-{i}" for i in range(60)} <= notes


CHILD_OPEN_CLOSE = """
import sys
from pathlib import Path
from safeface.workspace.audit import AuditLog
AuditLog(Path(sys.argv[1]), b"k" * 32).close()
"""

KILLED_WRITER = """
import sys
from pathlib import Path
from safeface.workspace.audit import AuditLog
log = AuditLog(Path(sys.argv[1]), b"k" * 32)
print("ready", flush=True)
i = 0
while True:
    log.append("verify", "allowed", note=f"n{i}")
    i += 1
"""


def _another_process_opens_and_closes_it_keeping_the_wal(path: Path) -> None:
    """Another process opens and closes the database at `path` (CHILD_OPEN_CLOSE); the -wal
    this process's connections use must outlive that close."""
    other = subprocess.run([sys.executable, "-c", CHILD_OPEN_CLOSE, str(path)], env=child_env(),
                           capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr[-2000:]
    assert Path(f"{path}-wal").exists(), "another process's close deleted the -wal this process uses"


def test_killed_writer_leaves_a_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    filled(path, 1).close()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE,
                            env=child_env(), cwd=tmp_path)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # let it write a while, then kill it mid-stream
        with AuditLog(path, KEY) as log:
            if sum(1 for _ in log.entries()) > 20:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with AuditLog(path, KEY) as log:
        report = log.verify()
        assert report.entries > 20
        assert [e.note for e in log.entries()][1:] == [f"n{i}" for i in range(report.entries - 1)]
        log.append("verify", "allowed", note="after the kill")
        assert log.verify().entries == report.entries + 1


def test_entries_hold_no_template_fields(tmp_path: Path) -> None:
    filled(tmp_path / "a.db").close()
    db = sqlite3.connect(str(tmp_path / "a.db"))  # the file as a thief would read it
    cols = [r[1] for r in db.execute("PRAGMA table_info(entries)")]
    db.close()
    assert cols == ["seq", "time", "operation", "purpose", "token_id", "basis", "subjects", "decision", "rule",
                    "note", "prev", "hash", "actor"]  # actor: an API key id, never a secret


def test_actor_is_chained_and_older_logs_still_verify(tmp_path: Path) -> None:
    """Entries name the acting key; a log written before that column existed gains it and still
    verifies, and the key named cannot be changed unnoticed."""
    path = tmp_path / "old.db"
    filled(path).close()
    sql(path, "ALTER TABLE entries DROP COLUMN actor")  # as written by an earlier version
    log = AuditLog(path, KEY)
    assert log.verify().entries == 6
    e = log.append("enroll", "allowed", purpose="demo", actor="0123456789ab")
    assert [x.actor for x in log.entries()][-1] == "0123456789ab" and log.verify().entries == 7
    log.close()
    sql(path, f"UPDATE entries SET actor = 'ba9876543210' WHERE seq = {e.seq}")
    with pytest.raises(IntegrityError, match="altered"):
        AuditLog(path, KEY).verify()


def test_a_keys_revocation_is_looked_up_by_index_however_many_logins_the_log_holds(tmp_path: Path) -> None:
    """Every key check and console page asks the log whether its key was revoked or its session
    ended; the lookup scanned every "apikey" entry, so a key holder looping logins and logouts
    slowed every caller's authentication as the log grew. It is an index probe."""
    with AuditLog(tmp_path / "a.db", KEY) as log:
        for i in range(50):
            log.append("apikey", "allowed", note=f"console session {i:032x} ended")
        log.append("apikey", "allowed", note="API key 1a2b revoked")
        assert log.records("apikey", "API key 1a2b revoked") and not log.records("apikey", "API key 9 revoked")
        plan = log._t.q("EXPLAIN QUERY PLAN SELECT 1 FROM entries WHERE operation = 'apikey' AND "
                        "decision = 'allowed' AND note = ? LIMIT 1", ("x",))
        assert any("entries_apikey_notes" in str(step) for step in plan), plan


def _steps(log: AuditLog, lookup: Callable[[], object]) -> int:
    """How much work `lookup` makes SQLite do on the log's connection: its virtual machine steps,
    a count that does not depend on the machine's load, as a time would."""
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0

    db = log._t._db  # the log's own connection: a handler is per connection
    db.set_progress_handler(step, 1)
    try:
        lookup()
    finally:
        db.set_progress_handler(None, 1)
    return steps[0]


def test_a_legal_basis_used_many_times_is_looked_up_without_reading_its_uses(tmp_path: Path) -> None:
    """Every identify under a legal basis asks the log whether it was revoked, and verify and
    identify ask for the rows revoked under the bases a subject was enrolled under: the lookup
    went through every entry naming the basis, so a basis behind a million calls made each call
    read a million entries."""
    alice = "a" * 64
    log = AuditLog(tmp_path / "audit.db", KEY)
    log.append("init", "allowed")
    log.append("enroll", "allowed", purpose="demo", token_id="t-basis", basis="legal-basis", subjects=[alice],
               note="rows=1; expires 2027-01-01")

    def lookups() -> tuple[int, int]:
        return (_steps(log, lambda: log.records_withdrawal("t-basis", None, 0)),
                _steps(log, lambda: log.rows_on_record(alice).removed))

    few = lookups()
    for _ in range(300):
        log.append("identify", "allowed", purpose="demo", token_id="t-basis", basis="legal-basis")
    many = lookups()
    assert many[0] <= 2 * few[0] + 20 and many[1] <= 2 * few[1] + 20, (few, many)
    log.append("revoke", "allowed", token_id="t-basis", note="withdrawn at 1; 1 template(s) removed; rows=1")
    assert log.records_withdrawal("t-basis", None, 0) and log.rows_on_record(alice).removed == {1}


def test_the_purges_before_a_subjects_enrolment_are_not_read_for_its_removed_rows(tmp_path: Path) -> None:
    """verify, and identify for each candidate, ask which of the subject's rows a purge removed:
    purges name their subjects in a list no index reads, and the lookup read every purge the log
    ever recorded. One before the subject's first enrolment removed none of its rows."""
    alice = "a" * 64
    work = []
    for name, earlier in (("fresh", 0), ("old", 300)):
        log = AuditLog(tmp_path / f"{name}.db", KEY)
        log.append("init", "allowed")
        for i in range(earlier):
            log.append("purge", "allowed", subjects=["b" * 64], rule="CN-08",
                       note=f"1 expired template(s) removed; rows={100 + i}")
        log.append("enroll", "allowed", purpose="demo", token_id="t-c", subjects=[alice], note="rows=1; expires 2027-01-01")
        work.append(_steps(log, lambda: log.rows_on_record(alice).removed))
        log.append("purge", "allowed", subjects=["b" * 64, alice], rule="CN-08",
                   note="2 expired template(s) removed; rows=1,7")
        assert 1 in log.rows_on_record(alice).removed  # a purge since still counts
        log.close()
    assert work[1] <= 2 * work[0] + 20, work


def test_the_rows_removed_of_a_subject_are_its_own(tmp_path: Path) -> None:
    """A legal basis behind thousands of enrolments, revoked, names all their rows in its entry:
    each verify of anyone ever enrolled under it got them all back as "removed" and sorted its
    few rows out of them. The subject's removed rows are among those it enrolled."""
    alice, bob = "a" * 64, "b" * 64
    with AuditLog(tmp_path / "audit.db", KEY) as log:
        log.append("init", "allowed")
        log.append("enroll", "allowed", purpose="demo", token_id="t-basis", subjects=[alice], note="rows=1; expires x")
        log.append("enroll", "allowed", purpose="demo", token_id="t-other", subjects=[alice], note="rows=2; expires x")
        log.append("revoke", "allowed", token_id="t-basis",
                   note=f"withdrawn at 1; 3000 template(s) removed; rows=1,{','.join(str(i) for i in range(3, 3002))}")
        log.append("purge", "allowed", subjects=[bob, alice], rule="CN-08", note="2 expired template(s) removed; rows=5000,2")
        assert log.rows_on_record(alice).removed == {1, 2}
        log.append("enroll", "allowed", purpose="demo", token_id="t-new", subjects=[alice], note="rows=2; expires x")
        assert log.rows_on_record(alice).removed == {1}  # enrolled again at that id since


def test_an_open_beside_a_wal_holding_pages_past_the_file_leaves_the_wal_to_the_connections_using_it(
        tmp_path: Path) -> None:
    """An open judges a file whose -wal holds pages past the file's end (sqlite_store.refuse_cut).
    Reading the file there through a descriptor of its own, and closing it, dropped every POSIX
    lock this process held on the database: another process's close then took the file for its
    last user, checkpointed and deleted the -wal under the connections still open here (two
    processes appending at once read it as a replaced file)."""
    path = tmp_path / "a.db"
    log = filled(path, 1)
    try:
        for i in range(200):  # the entries' pages stay in the -wal, past the file's end
            log.append("verify", "allowed", note="x" * 200 + str(i))
        with closing(sqlite3.connect(str(path))) as db:
            counted = db.execute("PRAGMA page_count").fetchone()[0]
            page = db.execute("PRAGMA page_size").fetchone()[0]
        assert counted * page > path.stat().st_size, "the -wal must hold pages past the file"
        AuditLog(path, KEY).close()  # a second open in this process judges the file
        _another_process_opens_and_closes_it_keeping_the_wal(path)
        log.append("verify", "allowed", note="after")
    finally:
        log.close()
    with AuditLog(path, KEY) as again:
        assert again.verify().entries == 202


def test_reading_a_file_again_for_a_failing_disk_leaves_the_wal_to_the_connections_using_it(tmp_path: Path) -> None:
    """After SQLite reports a damaged page, and at each probe while a disk that failed is read
    again, the file is read whole (sqlite_store.disk_read_error) under the connections still open
    here. Through a descriptor of this process's own, closed after, that dropped their locks:
    another process's close then checkpointed and deleted the -wal they were using."""
    from safeface.sqlite_store import disk_read_error

    path = tmp_path / "a.db"
    log = filled(path, 1)
    try:
        for i in range(50):
            log.append("verify", "allowed", note="x" * 200 + str(i))
        assert disk_read_error([path]) is None  # a sound disk: nothing failed
        _another_process_opens_and_closes_it_keeping_the_wal(path)
        log.append("verify", "allowed", note="after")
    finally:
        log.close()
    with AuditLog(path, KEY) as again:
        assert again.verify().entries == 52
