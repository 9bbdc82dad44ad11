"""A workspace opened while another process holds one of its databases' write lock for longer
than SQLite's busy timeout (a rekey of a large gallery, a large erasure or purge, a migration).

The opener was told the gallery "is not a usable gallery database (database is locked)", which
sends an operator to restore it from a backup, or got a bare OperationalError (a traceback on
the command line) from the audit log. Each must be a ConfigError saying the file is busy and to
try again once the other process has finished."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402

import safeface.sqlite_store  # noqa: E402
from safeface.errors import ConfigError, IntegrityError  # noqa: E402


@pytest.mark.parametrize("name", ["gallery.db", "audit.db"])
def test_a_workspace_opened_while_another_process_writes_for_long_says_it_is_busy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Another process holds the file's write lock past the busy timeout (shortened here to
    0.3 s from 30 s) while an operator opens the workspace: a ConfigError saying it is busy."""
    ws = make_workspace(tmp_path / "ws")
    monkeypatch.setattr(safeface.sqlite_store, "BUSY_TIMEOUT_MS", 300)
    writer = sqlite3.connect(ws.root / name, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ConfigError, match="is busy: another process has been writing") as got:
            open_sf(ws).close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert "backup" not in str(got.value)
    open_sf(ws).close()  # once the writer is done, it opens


@pytest.mark.parametrize("table", ["locked", "busy"])
def test_a_trigger_added_by_hand_that_stops_every_entry_is_named_not_called_busy(tmp_path: Path, table: str) -> None:
    """Someone who can write audit.db (no key) adds a trigger whose body reads a table named
    "locked" that is not there, so every entry fails: an IntegrityError naming the audit log as
    edited, never "busy, try again" (which an operator would retry for ever)."""
    ws = make_workspace(tmp_path / "ws")
    with sqlite3.connect(ws.audit) as db:
        db.execute(f"CREATE TRIGGER hold BEFORE INSERT ON entries BEGIN SELECT * FROM {table}; END")
    db.close()
    with pytest.raises(IntegrityError, match="triggers safeface did not make") as got:
        open_sf(ws).close()
    assert "busy" not in str(got.value).replace(f"main.{table}", "")
