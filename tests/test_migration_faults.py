"""`safeface storage migrate` under faults: a call or a second migration queued behind the
migration's locks, a migration killed part way and run again, Milvus gone in the middle of the
copy, a link planted among the files it erases. Real SQLite files, a real PostgreSQL cluster and
Milvus Lite (in process, or a server the test stops); a migration is held at a step by wrapping
the step, never by a mock."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402
from server_support import PG_PASSWORD, PgCluster, server_modules, start_milvus, wait_answering  # noqa: E402

from safeface import ConfigError, IntegrityError, SafeFace  # noqa: E402
from safeface.errors import ReplacedFile  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402

LOCAL = ("gallery.db", "audit.db", "policy.db", "apikeys.db")


def _two_people(tmp_path: Path) -> tuple[WorkspacePaths, str]:
    """A local workspace holding alice and joe; joe's consent (her erasure withdraws alice's)."""
    server_modules()
    imgs = images()
    ws = make_workspace(tmp_path / "ws")
    token = consent(ws, "joe")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(imgs / "biden.jpg", "joe", "demo", token)
    return ws, token


def _rows(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        if c.execute("SELECT to_regclass('safeface.rows')").fetchone()[0] is None:
            return 0
        return int(c.execute("SELECT count(*) FROM safeface.rows").fetchone()[0])


def _held_before_its_entry(sf: SafeFace, dsn: str, monkeypatch: pytest.MonkeyPatch,
                           meanwhile: Callable[[], None]) -> dict[str, Any]:
    """`sf` migrates to `dsn`; once its locks are let go, before its own entry, `meanwhile` runs
    (another handle's call that waited for those locks). The migration's answer."""
    held, go = threading.Event(), threading.Event()
    append = sf._append

    def gated(operation: str, *args: Any, **kw: Any) -> Any:
        if operation == "storage-migrate" and not held.is_set():
            held.set()
            go.wait(60)
        return append(operation, *args, **kw)

    monkeypatch.setattr(sf, "_append", gated)
    out: list[Any] = []
    section = {"records": dsn, "vectors": "milvus-lite:v1.db"}
    t = threading.Thread(target=lambda: out.append(sf.migrate_storage(section)))
    t.start()
    try:
        assert held.wait(120)
        meanwhile()
    finally:
        go.set()
        t.join(120)
    assert out, "the migration failed"
    return dict(out[0])


def test_an_erasure_queued_behind_a_migration_gets_no_receipt_for_rows_the_servers_keep(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handle erases alice as a migration lets go of its locks: refused, no receipt for a row
    copied."""
    ws, token = _two_people(tmp_path)
    dsn = pg.new_database()
    mover, other = open_sf(ws), open_sf(ws)
    try:
        def erase() -> None:
            with pytest.raises(ReplacedFile):
                other.erase("alice")  # into local files about to be erased: a receipt, alice kept

        _held_before_its_entry(mover, dsn, monkeypatch, erase)
    finally:
        mover.close()
        other.close()
    with open_sf(ws) as sf:  # the log and the anchor agree: the workspace opens, and says alice is here
        sf.audit_verify()
        assert len(sf.records()) == 2 and _rows(dsn) == 2
        assert sf.identify(images() / "obama2.jpg", "demo", token)  # alice, still here
        assert sf.erase("alice").templates_removed == 1
        assert not sf.identify(images() / "obama2.jpg", "demo", token)  # alice's face finds no one


def test_a_second_migration_waiting_for_the_lock_does_not_fork_the_workspace(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two migrations at once to two databases: the second one is refused, copying nothing."""
    ws, _ = _two_people(tmp_path)
    first, second = pg.new_database(), pg.new_database()
    a, b = open_sf(ws), open_sf(ws)
    try:
        def migrate_again() -> None:
            with pytest.raises(ConfigError, match="another process moved this workspace"):
                b.migrate_storage({"records": second, "vectors": "milvus-lite:v2.db"})

        _held_before_its_entry(a, first, monkeypatch, migrate_again)
    finally:
        a.close()
        b.close()
    assert json.loads((ws.root / "deployment.json").read_text())["storage"]["records"] == first
    assert _rows(second) == 0 and _rows(first) == 2
    with open_sf(ws) as sf:
        sf.audit_verify()
        assert sf.verify_store().ok


# The child migrates and dies at `step`: "after-rows" once the rows are in PostgreSQL and Milvus,
# before the audit log moves; "after-log" once the log, state and keys are there too, before
# deployment.json names them; "before-entry" once it does, before the migration's entry and the
# local files' erasure.
KILLED = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import safeface.workspace.migrate as migrate
from policy_support import open_sf
from safeface.workspace.paths import WorkspacePaths

ws, dsn, step = WorkspacePaths(sys.argv[2]), sys.argv[3], sys.argv[4]
def die(*args, **kw):
    os._exit(137)
if step == "after-rows":
    migrate.create_and_fill = die
if step == "after-log":
    move = migrate.move_policy_records
    migrate.move_policy_records = lambda audit, state, keys, key, section, commit: move(audit, state, keys, key,
                                                                                        section, die)
sf = open_sf(ws)
if step == "before-entry":
    append = sf._append
    sf._append = lambda op, *a, **kw: die() if op == "storage-migrate" else append(op, *a, **kw)
sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:v1.db"})
"""


@pytest.mark.parametrize("step", ["after-rows", "after-log", "before-entry"])
def test_a_migration_killed_part_way_is_finished_by_running_it_again(pg: PgCluster, tmp_path: Path,
                                                                     step: str) -> None:
    """kill -9 mid-migration, alice erased after: a rerun works; no copy or local file keeps her."""
    ws, token = _two_people(tmp_path)
    dsn = pg.new_database()
    child = subprocess.run([sys.executable, "-c", KILLED, str(Path(__file__).resolve().parent), str(ws.root), dsn,
                            step], env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert child.returncode == 137, child.stderr[-2000:]
    with open_sf(ws) as sf:  # local still, or on the servers: either way erased where it is
        if step == "before-entry":  # the local files left beside the servers are named
            with pytest.raises(IntegrityError, match="stopped before it erased the local files"):
                sf.audit_verify()
        assert sf.erase("alice").templates_removed == 1
    with open_sf(ws) as sf:
        out = sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:v1.db"})
    assert set(LOCAL) <= set(out["erased"])
    assert not [p.name for p in ws.root.iterdir() if p.name.startswith(LOCAL)]
    assert _rows(dsn) == 1
    with open_sf(ws) as sf:
        sf.audit_verify()
        assert sf.verify_store().ok
        assert "storage-migrate" in [e.operation for e in sf.audit_entries()]
        assert not sf.identify(images() / "obama2.jpg", "demo", token)  # alice's face finds no one


@pytest.mark.slow
def test_a_migration_milvus_stopped_part_way_can_be_run_again(pg: PgCluster, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus stops while the rows are copied: a rerun after alice's erasure copies joe alone."""
    from safeface.storage.server import ServerStore

    ws, token = _two_people(tmp_path)
    milvus = wait_answering(start_milvus(tmp_path / "milvus-data"))
    section = {"records": pg.new_database(), "vectors": f"milvus:{milvus.uri}"}
    copy = ServerStore.import_sealed

    def stop_milvus_first(self: ServerStore, rows: Any, **kw: Any) -> None:
        milvus.stop()
        monkeypatch.setattr(ServerStore, "import_sealed", copy)
        copy(self, rows, **kw)

    monkeypatch.setattr(ServerStore, "import_sealed", stop_milvus_first)
    try:
        with open_sf(ws) as sf:
            with pytest.raises(Exception):
                sf.migrate_storage(section)
            assert sf.erase("alice").templates_removed == 1
        assert _rows(section["records"]) == 2  # the copy that stopped, alice's row in it
        milvus = wait_answering(start_milvus(tmp_path / "milvus-data", milvus.port))
        with open_sf(ws) as sf:
            assert sf.migrate_storage(section)["templates"] == 1
        assert _rows(section["records"]) == 1
        with open_sf(ws) as sf:
            sf.audit_verify()
            assert sf.verify_store().ok and sf.check_index()["consistent"]
            assert not sf.identify(images() / "obama2.jpg", "demo", token)  # alice's face finds no one
    finally:
        milvus.kill()


def test_a_link_planted_at_a_name_the_migration_erases_does_not_zero_its_target(pg: PgCluster,
                                                                                  tmp_path: Path) -> None:
    """A link planted as `audit.db.lock` (a name safeface never makes): removed, its target kept."""
    server_modules()
    ws = make_workspace(tmp_path / "ws")
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("a file the migration must not touch")
    (ws.root / "audit.db.lock").symlink_to(victim)
    with open_sf(ws) as sf:
        sf.migrate_storage({"records": pg.new_database(), "vectors": "milvus-lite:v1.db"})
    assert victim.read_text() == "a file the migration must not touch"
    assert not (ws.root / "audit.db.lock").is_symlink()
