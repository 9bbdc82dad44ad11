"""A witness's first write is on record in the audit log (a "witness started" entry), so a
witness the log knows of that goes missing is refused instead of being written again from
whatever head the log has now; a lost witness is restarted, and a witness moved, only on record.
A witness is a file of its own: never a link, never one of the workspace's files."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import edit_config  # noqa: E402
from server_support import PG_PASSWORD, PgCluster, server_modules  # noqa: E402

from safeface.cli import main  # noqa: E402
from safeface.errors import ConfigError, IntegrityError  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace.admin import audit_verify  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402

MISSING = r"\[CN-10\] the audit witness .* is missing, though the audit log records its start"


def _workspace(tmp_path: Path, witness: Path) -> WorkspacePaths:
    paths = init_workspace(tmp_path / "ws", demo=True)
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    return paths


def _witness(tmp_path: Path, volume: str = "witness-volume") -> Path:
    (tmp_path / volume).mkdir()
    return tmp_path / volume / "ws-anchor.json"


def _append(paths: WorkspacePaths, n: int, tag: str) -> None:
    with opened(paths) as r:
        for i in range(n):
            r.audit.append("verify", "allowed", purpose="demo", note=f"{tag}{i}")


def _back_up(paths: WorkspacePaths, tmp_path: Path) -> None:
    """audit.db and its anchor copied as an operator's backup (every connection closed)."""
    shutil.copy2(paths.audit, tmp_path / "old.db")
    shutil.copy2(paths.anchor, tmp_path / "old-anchor.json")


def _restore(paths: WorkspacePaths, tmp_path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(str(paths.audit) + suffix).unlink(missing_ok=True)
    shutil.copy2(tmp_path / "old.db", paths.audit)
    shutil.copy2(tmp_path / "old-anchor.json", paths.anchor)


def _witness_notes(paths: WorkspacePaths) -> list[str]:
    """Each witness entry as "started PATH" or "restarted PATH"."""
    with opened(paths) as r:
        notes = [str(e.note) for e in r.audit.entries() if e.operation == "witness"]
    out = []
    for note in notes:
        verb, rest = note.removeprefix("witness ").split(": ", 1)
        out.append(f"{verb} {json.JSONDecoder().raw_decode(rest)[0]}")
    return out


def _cli(*args: Any) -> int:
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)


def test_a_witness_deleted_with_a_rolled_back_log_is_not_written_again(tmp_path: Path) -> None:
    """Passphrase holder restores audit.db and its anchor from a backup and deletes the witness:
    every open refuses under the records rule, and the witness is not written from the old head."""
    witness = _witness(tmp_path)
    paths = _workspace(tmp_path, witness)
    _append(paths, 2, "e")
    _back_up(paths, tmp_path)
    _append(paths, 3, "later")
    _restore(paths, tmp_path)
    witness.unlink()
    with pytest.raises(IntegrityError, match=MISSING + ".*restart-witness"):
        SafeFace.open(paths.root)
    with pytest.raises(IntegrityError, match=MISSING):
        _append(paths, 1, "x")
    assert not witness.exists()
    with pytest.raises(IntegrityError, match="missing"):
        audit_verify(paths.root)


def test_a_witness_deleted_under_an_open_handle_is_not_written_again_by_its_next_call(tmp_path: Path) -> None:
    """Someone deletes the witness while a handle is open: its next call is refused where it is
    judged, before anything is done (the failure alone is recorded), and nothing rewrites it."""
    witness = _witness(tmp_path)
    paths = _workspace(tmp_path, witness)
    backup = witness.read_bytes()
    with SafeFace.open(paths.root) as sf:
        before = len(sf.audit_entries())
        witness.unlink()
        with pytest.raises(IntegrityError, match=MISSING):
            sf.erase("alice")
        assert not witness.exists()
        witness.write_bytes(backup)  # put back from the witness volume's backup
        entries = sf.audit_entries()
    assert [(e.operation, e.decision) for e in entries[before:]] == [("erase", "failed")]
    with opened(paths) as r:
        witness.unlink()
        with pytest.raises(IntegrityError, match=MISSING):
            r.audit.append("verify", "allowed", purpose="demo", note="after the deletion")
    assert not witness.exists()


def test_the_first_write_of_a_witness_is_on_record(tmp_path: Path) -> None:
    """Operator names a witness and records the assessment: its start is in the log at once (a
    backup taken before the next open holds it), and the witness holds the log's head."""
    witness = _witness(tmp_path)
    paths = _workspace(tmp_path, witness)
    assert json.loads(witness.read_text())["seq"] == audit_verify(paths.root).report.entries
    assert _witness_notes(paths) == [f"started {witness}"]


def test_a_witness_whose_volume_is_not_mounted_stops_the_open_until_it_is(tmp_path: Path) -> None:
    """The witness volume is not mounted when the host starts: the open refuses with a
    ConfigError saying so and writes nothing; once mounted, the workspace opens."""
    witness = _witness(tmp_path)
    paths = _workspace(tmp_path, witness)
    end = audit_verify(paths.root).report.entries
    (tmp_path / "witness-volume").rename(tmp_path / "unmounted")
    with pytest.raises(ConfigError, match="mounted"):
        SafeFace.open(paths.root)
    assert not (tmp_path / "witness-volume").exists()
    (tmp_path / "unmounted").rename(tmp_path / "witness-volume")
    with SafeFace.open(paths.root):
        pass
    assert audit_verify(paths.root).report.entries == end


def test_a_lost_witness_is_restarted_only_on_record(tmp_path: Path, capsys: Any) -> None:
    """Operator lost the witness file: `safeface audit restart-witness` writes it again from the
    head and records that; a present witness, or a path that is no witness, is not restarted."""
    witness = _witness(tmp_path)
    paths = _workspace(tmp_path, witness)
    assert _cli("audit", "restart-witness", paths.root, witness) != 0  # present: nothing to restart
    assert _cli("audit", "restart-witness", paths.root, tmp_path / "other.json") != 0
    witness.unlink()
    with pytest.raises(IntegrityError, match=MISSING):
        SafeFace.open(paths.root)
    assert _cli("audit", "restart-witness", paths.root, witness) == 0
    assert _witness_notes(paths) == [f"started {witness}", f"restarted {witness}"]
    assert json.loads(witness.read_text())["seq"] == audit_verify(paths.root).report.entries
    with SafeFace.open(paths.root):
        pass


def test_an_operator_moves_the_witness_to_a_new_volume_on_record(tmp_path: Path) -> None:
    """Operator copies the witness to a new volume, names it and records the assessment: the move
    is on record, the new witness keeps watching, and a later rollback is still caught."""
    old = _witness(tmp_path)
    paths = _workspace(tmp_path, old)
    _append(paths, 2, "e")
    new = _witness(tmp_path, "new-volume")
    shutil.copy2(old, new)
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(new)}))
    assert _witness_notes(paths) == [f"started {old}", f"started {new}"]
    _back_up(paths, tmp_path)
    _append(paths, 2, "later")
    assert json.loads(new.read_text())["seq"] == audit_verify(paths.root).report.entries
    _restore(paths, tmp_path)
    with pytest.raises(IntegrityError, match="rolled back"):
        SafeFace.open(paths.root)


def test_a_witness_replaced_by_a_link_to_the_workspaces_anchor_is_refused(tmp_path: Path) -> None:
    """Someone replaces the witness by a link to WS/keys/audit-anchor.json, so that a rollback of
    the workspace rolls the witness back too: the open and `audit verify` refuse the link."""
    witness = _witness(tmp_path)
    paths = _workspace(tmp_path, witness)
    witness.unlink()
    witness.symlink_to(paths.anchor)
    with pytest.raises(IntegrityError, match="is a link"):
        SafeFace.open(paths.root)
    with pytest.raises(IntegrityError, match="is a link"):
        audit_verify(paths.root)
    assert witness.is_symlink()


@pytest.mark.parametrize("name", ["keys/audit-anchor.json", "audit.db", "keys/../deployment.json"])
def test_a_witness_among_the_workspaces_own_files_is_refused(tmp_path: Path, name: str) -> None:
    """Operator names the workspace's own anchor (restored with the log) or audit.db (overwritten
    by the witness) as the witness: refused with a ConfigError before anything is written."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    log = paths.audit.read_bytes()
    with pytest.raises(ConfigError, match="among the workspace's own files"):
        edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": name}))
    with pytest.raises(ConfigError, match="among the workspace's own files"):
        SafeFace.open(paths.root)
    assert paths.audit.read_bytes() == log


@pytest.mark.parametrize("value", [5, True, {"path": "/mnt/w.json"}, ["/mnt/w.json", 7]])
def test_a_witness_line_that_is_no_path_is_a_config_error(tmp_path: Path, value: Any) -> None:
    """deployment.json's audit.witness hand-edited into a number, a boolean or an object: every
    open crashed with a bare TypeError, or made files named after the object's keys; ConfigError."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": value}), reassess=False)
    with pytest.raises(ConfigError, match="audit.witness must be a path"):
        SafeFace.open(paths.root)
    assert not (paths.root / "path").exists()


def test_a_witness_line_pointed_by_hand_at_another_spelling_of_a_deleted_witness_is_refused(
        tmp_path: Path) -> None:
    """After a rollback and the witness's deletion, audit.witness is edited (no key) to another
    spelling of its path (a link to its folder), so that an open writes it afresh and the line is
    put back: a first write needs the assessed audit section, so nothing is written."""
    witness = _witness(tmp_path)
    paths = _workspace(tmp_path, witness)
    witness.unlink()
    (tmp_path / "alias").symlink_to(tmp_path / "witness-volume")
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(tmp_path / "alias" / witness.name)}),
                reassess=False)
    with pytest.raises(IntegrityError, match="is not written yet.*assessed audit section"):
        SafeFace.open(paths.root)
    assert not witness.exists()


def test_a_witness_start_entry_hidden_for_one_open_does_not_let_a_deleted_witness_be_written(
        tmp_path: Path) -> None:
    """With the log rolled back and the witness deleted, its start entry is edited in audit.db (no
    key) for one open, so the open takes it for a first write; then put back. The open refuses."""
    witness = _witness(tmp_path)
    paths = _workspace(tmp_path, witness)
    _back_up(paths, tmp_path)
    _append(paths, 3, "later")
    _restore(paths, tmp_path)
    witness.unlink()
    with sqlite3.connect(paths.audit) as db:
        (note,) = db.execute("SELECT note FROM entries WHERE operation = 'witness'").fetchone()
        db.execute("UPDATE entries SET note = 'hidden' WHERE operation = 'witness'")
    with pytest.raises(IntegrityError):
        SafeFace.open(paths.root)
    with sqlite3.connect(paths.audit) as db:
        db.execute("UPDATE entries SET note = ? WHERE operation = 'witness'", (note,))
    assert not witness.exists()
    with pytest.raises(IntegrityError, match=MISSING):
        SafeFace.open(paths.root)


def _sql(dsn: str, query: str, args: Any = ()) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True) as c:
        cur = c.execute(query, args)
        return cur.fetchall() if cur.description else []


def test_a_deleted_witness_of_a_postgresql_workspace_is_not_written_again(pg: PgCluster, tmp_path: Path) -> None:
    """The audit tables restored from a dump, the anchor from the same time, the witness deleted,
    its start entry edited in PostgreSQL for one open: every open refuses; nothing is rewritten."""
    server_modules()
    paths = init_workspace(tmp_path / "ws", demo=True)
    dsn = pg.new_database()
    with SafeFace.open(paths.root) as sf:
        sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db"})
    witness = _witness(tmp_path)
    edit_config(paths, lambda raw: raw.__setitem__("audit", {"witness": str(witness)}))
    env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
    dump = tmp_path / "audit.sql"
    subprocess.run([str(pg.bin / "pg_dump"), "--data-only", "-t", "safeface.audit_entries", "-t",
                    "safeface.audit_head", "-f", str(dump), dsn], env=env, check=True, capture_output=True)
    anchor_then = paths.anchor.read_bytes()
    _append(paths, 2, "later")
    _sql(dsn, "TRUNCATE safeface.audit_entries, safeface.audit_head")
    subprocess.run([str(pg.bin / "psql"), "-v", "ON_ERROR_STOP=1", "-q", "-f", str(dump), dsn], env=env, check=True,
                   capture_output=True)
    paths.anchor.write_bytes(anchor_then)
    witness.unlink()
    with pytest.raises(IntegrityError, match=MISSING):
        SafeFace.open(paths.root)
    (note,) = _sql(dsn, "SELECT note FROM safeface.audit_entries WHERE operation = 'witness'")[0]
    _sql(dsn, "UPDATE safeface.audit_entries SET note = 'hidden' WHERE operation = 'witness'")
    with pytest.raises(IntegrityError):
        SafeFace.open(paths.root)
    _sql(dsn, "UPDATE safeface.audit_entries SET note = %s WHERE operation = 'witness'", (note,))
    assert not witness.exists()
