"""`safeface storage migrate` handing the workspace over to the servers: killed in the instant
between pointing deployment.json at them and renaming the local files aside, a handle another
process opened before must not go on writing into the local files (a receipt for a person the
servers keep, an anchor moved past the servers' log); and a `safeface assess` that read
deployment.json before the migration named the servers must not write it back after. A real child
process killed at that step, a real PostgreSQL cluster and Milvus Lite; a step is held by
wrapping it, never by a mock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import PASSPHRASE, consent, images, open_sf  # noqa: E402
from server_support import PgCluster  # noqa: E402
from test_migration_faults import LOCAL, _rows, _two_people  # noqa: E402

from safeface import IntegrityError  # noqa: E402
from safeface.errors import ReplacedFile  # noqa: E402

# The child migrates and dies once deployment.json names the servers, before the local files are
# renamed aside (the step is replaced by an exit, in the child alone).
KILLED_BEFORE_THE_RENAME = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import safeface.workspace.migrate as migrate
from policy_support import open_sf
from safeface.workspace.paths import WorkspacePaths

migrate.retire_local_files = lambda paths: os._exit(137)
open_sf(WorkspacePaths(sys.argv[2])).migrate_storage({"records": sys.argv[3], "vectors": "milvus-lite:v1.db"})
"""


def test_a_handle_opened_before_a_migration_killed_before_its_rename_writes_nothing_locally(
        pg: PgCluster, tmp_path: Path) -> None:
    """kill -9 after deployment.json names the servers, before the rename: an older handle's
    erasure, enrolment and search are refused; the servers keep alice; a rerun finishes."""
    ws, token = _two_people(tmp_path)
    dsn = pg.new_database()
    stale = open_sf(ws)
    try:
        child = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_RENAME, str(Path(__file__).resolve().parent),
                                str(ws.root), dsn], env=child_env(), cwd=tmp_path, capture_output=True, text=True,
                               timeout=300)
        assert child.returncode == 137, child.stderr[-2000:]
        assert json.loads(ws.config.read_text())["storage"]["records"] == dsn
        assert (ws.root / "gallery.db").is_file() and (ws.root / "audit.db").is_file()  # not renamed aside
        with pytest.raises(ReplacedFile, match="names the server backends"):
            stale.erase("alice")  # was: a signed receipt, while the servers kept alice
        with pytest.raises(ReplacedFile):
            stale.enroll(images() / "obama.jpg", "ann", "demo", consent(ws, "ann"))
        with pytest.raises(ReplacedFile):
            stale.identify(images() / "obama2.jpg", "demo", token)
    finally:
        stale.close()
    with open_sf(ws) as sf:  # opens on the servers (the anchor is not past their log); the local files named
        with pytest.raises(IntegrityError, match="stopped before it erased the local files"):
            sf.audit_verify()
        assert len(sf.records()) == 2 and _rows(dsn) == 2
        assert sf.erase("alice").templates_removed == 1
    with open_sf(ws) as sf:
        out = sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:v1.db"})
    assert set(LOCAL) <= set(out["erased"])
    assert not [p.name for p in ws.root.iterdir() if p.name.startswith(LOCAL)]
    with open_sf(ws) as sf:
        sf.audit_verify()
        assert sf.verify_store().ok and _rows(dsn) == 1
        assert not sf.identify(images() / "obama2.jpg", "demo", token)  # alice's face finds no one


def _waits_for_lock(path: Path) -> bool:
    """Whether a lock on the file at `path` is being waited for (/proc/locks marks a blocked one)."""
    inode = f":{os.stat(path).st_ino}"
    return any("->" in line.split() and any(f.endswith(inode) for f in line.split())
               for line in Path("/proc/locks").read_text().splitlines())


def test_an_assessment_that_read_deployment_json_before_a_migration_does_not_write_it_back(
        pg: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`assess` reads deployment.json, a migration names the servers, assess writes its reading
    back: the file named the local files the migration erased, and the workspace opened no more."""
    import safeface.workspace.admin as admin
    import safeface.workspace.migrate as migrate

    if not Path("/proc/locks").is_file():
        pytest.skip("no /proc/locks to see the migration wait for the assessment's lock")
    ws, token = _two_people(tmp_path)
    dsn = pg.new_database()
    read, assess_go, renaming, rename_go = (threading.Event() for _ in range(4))
    registrable, retire = admin.check_registrable, migrate.retire_local_files

    def held_after_reading(dep: Any) -> None:  # assess calls it once it has read deployment.json
        read.set()
        assess_go.wait(60)
        registrable(dep)

    def held_before_renaming(paths: Any) -> None:  # once deployment.json names the servers
        renaming.set()
        rename_go.wait(60)
        retire(paths)

    monkeypatch.setattr(admin, "check_registrable", held_after_reading)
    monkeypatch.setattr(migrate, "retire_local_files", held_before_renaming)
    a = json.loads(ws.config.read_text())["assessment"]
    assessed: list[Any] = []
    assess = threading.Thread(target=lambda: assessed.append(admin.record_assessment(
        ws.root, a["reference"], a["date"], passphrase=PASSPHRASE, reviewed=a.get("reviewed"), accept_changes=True)))
    assess.start()
    mover = open_sf(ws)
    try:
        assert read.wait(60)
        moved: list[Any] = []
        migration = threading.Thread(target=lambda: moved.append(
            mover.migrate_storage({"records": dsn, "vectors": "milvus-lite:v1.db"})))
        migration.start()
        while not renaming.is_set() and not _waits_for_lock(ws.config_lock):
            time.sleep(0.02)
        assess_go.set()
        while renaming.is_set() and assess.is_alive() and \
                json.loads(ws.config.read_text()).get("storage", {}).get("records") == dsn:
            time.sleep(0.02)  # until assess has written its reading back (its entry then waits)
        rename_go.set()
        migration.join(120)
        assess.join(120)
    finally:
        assess_go.set()
        rename_go.set()
        mover.close()
    assert moved and json.loads(ws.config.read_text()).get("storage", {}).get("records") == dsn
    with open_sf(ws) as sf:  # on the servers, under the assessment recorded
        sf.audit_verify()
        assert len(sf.records()) == 2 and sf.identify(images() / "obama2.jpg", "demo", token)
