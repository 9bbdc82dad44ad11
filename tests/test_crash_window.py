"""A process killed between the audit log's commit and the store's: the "enroll allowed" entry
names a row that was never stored. The next open records that in an entry of its own, so the
store check does not read it as a row deleted behind the guard, and no later row takes its id."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env, erase_killed  # noqa: E402
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

from safeface.workspace.audit import rows_named  # noqa: E402

# The child enrols with the store's commit cut off: the enrolment entry is committed inside the
# store's transaction (before_commit), then the process dies before the store commits.
CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from policy_support import open_sf
from safeface.storage.gallery import Gallery
from safeface.workspace.paths import WorkspacePaths

original = Gallery.add_many

def add_many(self, items, *, decide=None, before_commit=None):
    def then_die(rows):
        before_commit(rows)
        os._exit(137)
    return original(self, items, decide=decide, before_commit=then_die)

Gallery.add_many = add_many
sf = open_sf(WorkspacePaths(sys.argv[2]))
sf.enroll(sys.argv[3], "bob", "demo", sys.argv[4])
"""


def _killed_mid_enrolment(paths: Any, tmp_path: Path, img: Path) -> None:
    """bob's enrolment in a child killed between its entry's commit and its store's (CHILD)."""
    tests_dir = str(Path(__file__).resolve().parent)
    child = subprocess.run([sys.executable, "-c", CHILD, tests_dir, str(paths.root), str(img / "biden.jpg"),
                            consent(paths, "bob")], env=child_env(), cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 137, child.stderr[-2000:]


def test_a_kill_between_the_two_commits_is_recorded_not_mistaken_for_tampering(tmp_path: Path) -> None:
    paths = make_workspace(tmp_path / "ws")
    img = images()
    with open_sf(paths) as sf:
        first = sf.enroll(img / "obama.jpg", "alice", "demo", consent(paths, "alice"))
    _killed_mid_enrolment(paths, tmp_path, img)
    with open_sf(paths) as sf:
        entries = sf.audit_entries()
        lost = [e for e in entries if e.operation == "enroll" and e.decision == "allowed"][-1]
        assert lost.note and f"rows={first.row_id + 1};" in lost.note  # the log named a row...
        assert {r.row_id for r in sf.records()} == {first.row_id}  # ...the store never got
        settled = [e for e in entries if e.operation == "uncommitted"]
        assert len(settled) == 1 and f"rows={first.row_id + 1};" in (settled[0].note or "")
        assert sf.verify_store().ok
        sf.audit_verify()
        again = sf.enroll(img / "biden.jpg", "bob", "demo", consent(paths, "bob"))
        assert again.row_id > first.row_id + 1  # the named id is never handed out again
        sf.audit_verify()
    with open_sf(paths) as sf:  # settled once: a second open adds nothing
        assert sum(e.operation == "uncommitted" for e in sf.audit_entries()) == 1
        sf.audit_verify()


def test_a_row_deleted_behind_the_guard_is_still_caught(tmp_path: Path) -> None:
    """The settling must not excuse a real deletion: a stored row deleted by hand stays a problem."""
    import sqlite3

    paths = make_workspace(tmp_path / "ws")
    img = images()
    with open_sf(paths) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(paths, "alice"))
        last = sf.enroll(img / "biden.jpg", "bob", "demo", consent(paths, "bob"))
    db = sqlite3.connect(str(paths.gallery))
    db.execute("DELETE FROM rows WHERE row_id = ?", (last.row_id,))
    db.commit()
    db.close()
    with open_sf(paths) as sf:
        report = sf.verify_store()
        assert not report.ok and any(f"row {last.row_id} was enrolled" in p for p in report.problems)
        assert not any(e.operation == "uncommitted" for e in sf.audit_entries())


# The same cut on the server store: records in PostgreSQL (whose row id sequence is not rolled
# back, so the store keeps a committed ceiling of its own), vectors in Milvus Lite. Milvus Lite
# holds its file for the life of the process that opened it, so every step that opens the store
# before the last one runs in a child of its own.
SERVER_CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from policy_support import consent, images, open_sf
from safeface.storage.server import ServerStore
from safeface.workspace.paths import WorkspacePaths

from pathlib import Path
paths, step = WorkspacePaths(Path(sys.argv[2])), sys.argv[3]
if step == "setup":
    with open_sf(paths) as sf:
        sf.migrate_storage({"records": sys.argv[4], "vectors": "milvus-lite:vectors.db"})
    with open_sf(paths) as sf:
        print(sf.enroll(images() / "obama.jpg", "alice", "demo", consent(paths, "alice")).row_id)
    sys.exit(0)
original = ServerStore.add_many

def add_many(self, items, *, decide=None, before_commit=None):
    if step == "before-store-commit":
        def then_die(rows):
            before_commit(rows)
            os._exit(137)
        return original(self, items, decide=decide, before_commit=then_die)
    original(self, items, decide=decide, before_commit=before_commit)
    os._exit(137)  # "after-store-commit": before the commit mark

ServerStore.add_many = add_many
sf = open_sf(paths)
sf.enroll(images() / "biden.jpg", "bob", "demo", consent(paths, "bob"))
"""


def _server_child(tmp_path: Path, paths: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SERVER_CHILD, str(Path(__file__).resolve().parent), str(paths.root),
                           *args], env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)


def _server_workspace(pg: Any, tmp_path: Path) -> tuple[Any, str, int]:
    """A workspace on PostgreSQL and Milvus Lite holding alice's row, made by a child process."""
    from server_support import server_modules

    server_modules()
    paths = make_workspace(tmp_path / "ws")
    dsn = pg.new_database()
    setup = _server_child(tmp_path, paths, "setup", dsn)
    assert setup.returncode == 0, setup.stderr[-2000:]
    return paths, dsn, int(setup.stdout.split()[-1])


def test_a_kill_between_the_two_commits_on_the_server_store_is_recorded_not_mistaken(pg: Any, tmp_path: Path) -> None:
    paths, _, first = _server_workspace(pg, tmp_path)
    child = _server_child(tmp_path, paths, "before-store-commit")
    assert child.returncode == 137, child.stderr[-2000:]
    img = images()
    with open_sf(paths) as sf:
        entries = sf.audit_entries()
        lost = [e for e in entries if e.operation == "enroll" and e.decision == "allowed"][-1]
        named = rows_named(lost.note)
        assert len(named) == 1 and named[0] > first  # the log named a row...
        assert {r.row_id for r in sf.records()} == {first}  # ...the store never got
        settled = [e for e in entries if e.operation == "uncommitted"]
        assert len(settled) == 1 and rows_named(settled[0].note) == named
        assert sf.verify_store().ok
        sf.audit_verify()
        again = sf.enroll(img / "biden.jpg", "bob", "demo", consent(paths, "bob"))
        assert again.row_id > named[0]
        assert sf.verify_store().ok
    with open_sf(paths) as sf:  # settled once
        assert sum(e.operation == "uncommitted" for e in sf.audit_entries()) == 1


def test_the_newest_row_deleted_in_postgresql_is_caught_even_without_its_commit_mark(pg: Any, tmp_path: Path) -> None:
    """The process died after the store committed, before its commit mark, and the operator then
    deletes that newest row: the committed ceiling still says it was stored, so the deletion is
    not excused as a crash."""
    import psycopg
    from server_support import PG_PASSWORD

    paths, dsn, _ = _server_workspace(pg, tmp_path)
    child = _server_child(tmp_path, paths, "after-store-commit")
    assert child.returncode == 137, child.stderr[-2000:]
    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        newest = c.execute("SELECT MAX(row_id) FROM safeface.rows").fetchone()[0]
        c.execute("DELETE FROM safeface.rows WHERE row_id = %s", (newest,))
    with open_sf(paths) as sf:
        assert not any(e.operation == "uncommitted" for e in sf.audit_entries())
        report = sf.verify_store()
        assert not report.ok and any(f"row {newest} was enrolled" in p for p in report.problems)


def test_an_erasure_killed_before_its_entry_is_settled_by_erasing_again(tmp_path: Path) -> None:
    """A process killed between an erasure's store commit and its audit entry left the row gone
    and no entry naming it: the store check reported it, for ever, as deleted behind the guard,
    and erasing the person again did not settle it (its entry named no rows). The retried
    erasure names the rows the log still listed, as already gone, and the check passes; a row
    deleted by hand from another subject stays named."""
    ws = make_workspace(tmp_path / "ws")
    imgs = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(ws, "bob"))
    erase_killed(ws.root, tmp_path)
    with sqlite3.connect(ws.gallery) as db:
        db.execute("DELETE FROM rows WHERE row_id = ?", (bob.row_id,))
    with open_sf(ws) as sf:
        assert not sf.records("alice")
        assert any("deleted behind the guard" in p for p in sf.verify_store().problems)
        receipt = sf.erase("alice")
        # The retry's receipt, the only one alice gets, names the row the killed erasure removed.
        assert receipt.templates_removed == 1 and receipt.rows == (alice.row_id,)
        entry = [e for e in sf.audit_entries() if e.operation == "erase"][-1]
        assert "already gone" in str(entry.note)
        problems = sf.verify_store().problems
        assert len(problems) == 1 and f"row {bob.row_id} " in problems[0]


def test_a_kill_during_the_very_first_enrolment_is_settled_not_called_a_restore(tmp_path: Path) -> None:
    """With no commit mark in the log yet (the workspace's first enrolment was the one killed
    between its two commits), nothing was settled, the next enrolment's counter check wrote that
    the store "was restored from an older copy or its counter set back by hand", and the check
    named the row missing for good. It is settled as never committed, like any later one."""
    paths = make_workspace(tmp_path / "ws")
    img = images()
    _killed_mid_enrolment(paths, tmp_path, img)
    with open_sf(paths) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(paths, "alice"))
        ops = [e.operation for e in sf.audit_entries()]
        assert "uncommitted" in ops and "store-counter" not in ops
        assert sf.verify_store().ok


# Another user the operator let read the workspace's folder (a backup account): read access was
# enough to lock a byte of the folder, and a byte held there read as a commit mark a live process
# owes (owed_marks).
_READER_LOCK = r"""
import fcntl, os, struct, sys
# Opened before the user changes: pytest's own folders above it are 0700, and what counts is a
# descriptor any user allowed to read the folder could hold.
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
os.setgid(65534)
os.setuid(65534)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 1 << 52, 1 << 52, 0))
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to lock as another user")
def test_a_user_who_may_only_read_the_folder_cannot_turn_a_never_stored_row_into_a_stored_one(
        tmp_path: Path) -> None:
    """A row named by the log whose store transaction never committed (a kill between the two
    commits) was settled as stored while another user held a read lock on the folder's owed-mark
    bytes: its "enroll-committed" entry, in the log for good, made the store check name the row
    missing, a tampering alarm no restore could clear."""
    paths = make_workspace(tmp_path / "ws")
    img = images()
    with open_sf(paths) as sf:
        first = sf.enroll(img / "obama.jpg", "alice", "demo", consent(paths, "alice"))
    _killed_mid_enrolment(paths, tmp_path, img)
    for folder in (paths.root, *[p for p in paths.root.parents if str(p).startswith(str(tmp_path.parent))]):
        os.chmod(folder, 0o755)  # the folder readable by others (the reader owns no file in it)
    reader = subprocess.Popen([sys.executable, "-c", _READER_LOCK, str(paths.root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "held"
        with open_sf(paths) as sf:
            settled = [e for e in sf.audit_entries() if e.operation in ("uncommitted", "enroll-committed")]
            assert any(e.operation == "uncommitted" and f"rows={first.row_id + 1};" in (e.note or "")
                       for e in settled), [(e.operation, e.note) for e in settled]
            assert sf.verify_store().ok
    finally:
        reader.kill()
        reader.wait()


@pytest.mark.slow
def test_a_store_restored_onto_another_cluster_is_settled_not_called_tampered(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between the two commits, then the store (its audit log with it) dumped and restored
    onto another PostgreSQL cluster (a move, a disaster recovery) that has run more
    transactions. Its txid_status answered for its own transaction of the same id, "committed":
    the lost row was marked stored and the store check named it deleted behind the guard, for
    good. Each entry names the cluster its transaction ran on; on another, the ceiling decides
    and the row is settled as never committed."""
    import shutil
    import tempfile

    import psycopg
    from server_support import PG_PASSWORD, start_pg

    monkeypatch.setenv("SAFEFACE_PG_PASSWORD", PG_PASSWORD)
    monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
    # Folders under the system temp dir, as the session's cluster: the postgres user can enter them.
    bases = [Path(tempfile.mkdtemp(prefix="safeface-pg-moved-")) for _ in range(2)]
    try:
        first = start_pg(bases[0])
        try:
            paths, dsn, row = _server_workspace(first, tmp_path)
            child = _server_child(tmp_path, paths, "before-store-commit")
            assert child.returncode == 137, child.stderr[-2000:]
            with psycopg.connect(dsn, password=PG_PASSWORD) as c:
                note = str(c.execute("SELECT note FROM safeface.audit_entries WHERE operation = 'enroll' AND "
                                     "decision = 'allowed' ORDER BY seq DESC LIMIT 1").fetchone()[0])
            assert f"rows={row + 1};" in note
            xact = int(note.split("store transaction ")[1].split()[0].rstrip(";"))
            dump = tmp_path / "store.dump"
            subprocess.run([str(first.bin / "pg_dump"), "-Fc", "-f", str(dump), "-d", dsn], check=True,
                           capture_output=True, timeout=120)
        finally:
            first.stop()
        second = start_pg(bases[1], port=first.port)  # where the workspace's DSN points
        try:
            db = dsn.rsplit("/", 1)[1]
            with psycopg.connect(second.dsn(), password=PG_PASSWORD, autocommit=True) as c:
                c.execute(f"CREATE DATABASE {db}")
                while int(c.execute("SELECT txid_current()").fetchone()[0]) <= xact:
                    pass  # each a committed transaction: the lost one's id is a committed one here
            subprocess.run([str(second.bin / "pg_restore"), "-d", dsn, str(dump)], check=True,
                           capture_output=True, timeout=120)
            with open_sf(paths) as sf:
                settled = [e for e in sf.audit_entries() if e.operation in ("uncommitted", "enroll-committed")]
                assert settled[-1].operation == "uncommitted" and f"rows={row + 1};" in str(settled[-1].note)
                assert sf.verify_store().ok
        finally:
            second.stop()
    finally:
        for b in bases:
            shutil.rmtree(b, ignore_errors=True)
