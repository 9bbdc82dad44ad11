"""Attacks on a PostgreSQL store, as two processes racing or as someone holding the app's
database role but no passphrase: an append while the chain is verified, a process killed between
the audit's commit and the store's while another enrols next, a row a database trigger keeps
through an erasure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402
from safeface.errors import IntegrityError  # noqa: E402
from server_support import PG_PASSWORD, MilvusServer, PgCluster, server_modules  # noqa: E402


def _sql(dsn: str, query: str) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        cur = c.execute(query)
        return cur.fetchall() if cur.description else []


def _server_ws(pg: PgCluster, root: Path, vectors: str = "milvus-lite:vectors.db") -> tuple[Any, str]:
    server_modules()
    ws = make_workspace(root / "ws")
    dsn = pg.new_database()
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": dsn, "vectors": vectors})
    return ws, dsn


def test_chain_verify_is_not_a_false_alarm_when_an_entry_is_appended_during_it(pg: PgCluster,
                                                                                tmp_path: Path) -> None:
    """The chain is checked up to the signed head read first: another process's append while the
    entries are read is not a truncation (PostgreSQL: each statement its own snapshot)."""
    ws, _ = _server_ws(pg, tmp_path)
    with open_sf(ws) as writer, open_sf(ws) as auditor:
        t = auditor._audit._t
        original_q = t.q
        fired: list[bool] = []

        def q(sql: str, args: Any = ()) -> Any:
            out = original_q(sql, args)
            if "{t}entries" in sql and "ORDER BY seq LIMIT" in sql and not fired:
                fired.append(True)
                writer.erase("nobody")  # another process's honest call appends entries now
            return out

        t.q = q
        assert auditor.audit_verify().entries > 0 and fired


CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from policy_support import open_sf
from safeface.storage.server import ServerStore
from safeface.workspace.paths import WorkspacePaths

original = ServerStore.add_many
flag = sys.argv[5]

def add_many(self, items, *, decide=None, before_commit=None):
    def then_hang(rows):
        before_commit(rows)          # the "enroll allowed" entry is committed in the audit tables
        open(flag, "w").close()      # the store's transaction is still open: the parent kills us now
        time.sleep(600)
    return original(self, items, decide=decide, before_commit=then_hang)

ServerStore.add_many = add_many
sf = open_sf(WorkspacePaths(sys.argv[2]))
sf.enroll(sys.argv[3], "bob", "demo", sys.argv[4])
"""


def test_a_kill_mid_enrolment_is_settled_even_when_another_process_enrols_next(pg: PgCluster, milvus: MilvusServer,
                                                                                 tmp_path: Path) -> None:
    """Process A is killed (SIGKILL) between the audit's commit and the store's. Process B, open
    since before the kill, enrols next: before its rows raise the store's committed ceiling past
    A's id, it records A's row as never stored ("uncommitted"), under the write lock, so the row
    is not taken for one deleted behind the guard, now or after a fresh open."""
    ws, _ = _server_ws(pg, tmp_path, f"milvus:{milvus.uri}")
    img = images()
    with open_sf(ws) as b:  # a long-running process, open before the crash
        b.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        flag = tmp_path / "recorded"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(Path(__file__).resolve().parent), str(ws.root),
                                  str(img / "biden.jpg"), consent(ws, "bob"), str(flag)],
                                 env=child_env(), cwd=tmp_path)
        try:
            deadline = time.monotonic() + 240
            while not flag.exists():
                assert child.poll() is None and time.monotonic() < deadline, "the child never reached the window"
                time.sleep(0.05)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
        b.enroll(img / "obama3.jpg", "carol", "demo", consent(ws, "carol"))  # honest, after the crash
        assert sorted(r.row_id for r in b.records()) == [1, 3]  # row 2 was never stored
        assert b.audit_verify().entries > 0
        assert any(e.operation == "uncommitted" and "rows=2" in (e.note or "") for e in b.audit_entries())
    with open_sf(ws) as again:
        assert again.audit_verify().entries > 0


def test_a_row_kept_through_an_erasure_by_a_database_trigger_fails_the_erasure(pg: PgCluster, tmp_path: Path) -> None:
    """Someone with the app's PostgreSQL role (no passphrase) adds a BEFORE DELETE trigger that
    returns NULL: the erasure deleted nothing, its receipt said 0 templates removed, and the row
    stayed searchable, which only a later store check named. Now the erasure checks its delete
    inside its transaction: it fails, naming the kept row, and is recorded as failed; the store
    check still names a row kept through an erasure that was recorded as done (an older
    release's)."""
    ws, dsn = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        _sql(dsn, "CREATE FUNCTION safeface.keep_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; "
                  "END $$")
        _sql(dsn, "CREATE TRIGGER keep_rows BEFORE DELETE ON safeface.rows FOR EACH ROW "
                  "EXECUTE FUNCTION safeface.keep_rows()")  # added while the workspace is open
        with pytest.raises(IntegrityError, match="rows 1 are still stored after the erasure's delete: a database "
                                                 "trigger or rule on safeface.rows kept them"):
            sf.erase("alice")
        assert [r.row_id for r in sf.records() if r.pseudonym == sf.pseudonym("alice")] == [1]
        last = sf.audit_entries()[-1]
        assert (last.operation, last.decision, last.note) == ("erase", "failed", "IntegrityError")
    with pytest.raises(IntegrityError, match="holds triggers or rules safeface did not make .'rows.keep_rows'"):
        open_sf(ws)
    _sql(dsn, "DROP TRIGGER keep_rows ON safeface.rows")
    _sql(dsn, "CREATE RULE keep_rows AS ON DELETE TO safeface.rows DO INSTEAD NOTHING")
    with pytest.raises(IntegrityError, match="holds triggers or rules safeface did not make .'rows.keep_rows'"):
        open_sf(ws)
    _sql(dsn, "DROP RULE keep_rows ON safeface.rows")
    with open_sf(ws) as sf:
        assert sf.erase("alice").templates_removed == 1 and sf.audit_verify().entries > 0


def test_row_ids_erased_before_a_migration_are_never_handed_out_again(pg: PgCluster, tmp_path: Path) -> None:
    """The highest row is erased, then the workspace moves to PostgreSQL: the server's row ids
    start above every id the local store ever used, so no new row takes an id the log names as
    removed, and the audit stays whole."""
    server_modules()
    ws = make_workspace(tmp_path / "ws")
    img = images()
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        sf.erase("bob")  # row 2, the highest, goes
        sf.migrate_storage({"records": pg.new_database(), "vectors": "milvus-lite:vectors.db"})
    with open_sf(ws) as sf:
        got = sf.enroll(img / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
        assert got.row_id > 2
        assert sf.audit_verify().entries > 0
