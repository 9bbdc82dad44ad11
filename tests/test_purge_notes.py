"""A purge notes the rows it removes in the policy state until its audit entries are written, and
the next purge records those it owed but did not find as already gone. A hostile operator must not
use that note to excuse a row deleted by hand, nor to record a stored row as gone."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, edit_config, images, make_workspace, open_sf  # noqa: E402

from safeface.errors import IntegrityError  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402


def _bob(root: Path) -> tuple[WorkspacePaths, int]:
    """A workspace with bob enrolled for "demo"; his row id."""
    ws = make_workspace(root)
    with open_sf(ws) as sf:
        sf.enroll(images() / "biden.jpg", subject="bob", purpose="demo", consent=consent(ws, "bob"))
        return ws, sf.records("bob")[0].row_id


def _marker(root: Path) -> tuple[str, str]:
    """The purge note (policy.db's "purge-owed" facts row), as an operator copies it."""
    db = sqlite3.connect(root / "policy.db")
    try:
        got = db.execute("SELECT name, value FROM facts WHERE name = 'purge-owed'").fetchone()
    finally:
        db.close()
    assert got is not None
    return str(got[0]), str(got[1])


def _plant(root: Path, marker: tuple[str, str]) -> None:
    """The note written into policy.db by hand (no key needed to copy it)."""
    db = sqlite3.connect(root / "policy.db")
    with db:
        db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", marker)
    db.close()


def _delete_row(root: Path, row_id: int) -> None:
    """A row deleted by hand, behind the guard."""
    db = sqlite3.connect(root / "gallery.db")
    with db:
        db.execute("DELETE FROM rows WHERE row_id = ?", (row_id,))
    db.close()


def _refuse_purge_entries(root: Path) -> None:
    """The log refuses a purge's entry after its delete committed (as a full disk does)."""
    db = sqlite3.connect(root / "audit.db")
    with db:
        db.execute("CREATE TRIGGER no_purge BEFORE INSERT ON entries WHEN NEW.operation = 'purge' "
                   "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    db.close()


def _failed_purge(root: Path, later: dt.datetime, first: Optional[dt.datetime] = None) -> None:
    """Opened at `first`, a purge at `later` whose delete commits and whose entry is refused."""
    now = [first or dt.datetime.now(dt.timezone.utc)]
    sf = open_sf(WorkspacePaths(root), clock=lambda: now[0])
    _refuse_purge_entries(root)
    now[0] = later
    with pytest.raises(IntegrityError):
        sf.purge_expired()
    with contextlib.suppress(IntegrityError):
        sf.close()


def _copy_purged_ahead(tmp_path: Path) -> tuple[WorkspacePaths, int, tuple[str, str]]:
    """bob enrolled in workspace a; the purge note of a copy of it purged 20 years ahead."""
    ws, row = _bob(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(ws.root, copy)
    _failed_purge(copy, dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365 * 20))
    return ws, row, _marker(copy)


def test_a_purge_note_from_a_copy_purged_later_cannot_excuse_a_row_deleted_by_hand(tmp_path: Path) -> None:
    """An operator takes the purge note of a copy of the workspace purged years ahead, puts it in
    policy.db and deletes a live row by hand: audit verify must still name the row."""
    ws, row, marker = _copy_purged_ahead(tmp_path)
    _delete_row(ws.root, row)
    _plant(ws.root, marker)
    with open_sf(ws) as sf:
        problems = sf.verify_store().problems
    assert any(f"row {row} " in p for p in problems), problems


def test_a_planted_purge_note_does_not_record_a_stored_row_as_gone(tmp_path: Path) -> None:
    """The same note planted while the row is still stored: the next purge must not sign a
    receipt calling the stored, unexpired row gone."""
    ws, row, marker = _copy_purged_ahead(tmp_path)
    _plant(ws.root, marker)
    with open_sf(ws) as sf:
        assert sf.purge_expired() is None
        assert [r.row_id for r in sf.records("bob")] == [row]
        assert sf.verify_store().problems == ()


def test_a_purge_note_from_a_copy_whose_log_went_on_apart_cannot_excuse_a_row_deleted_by_hand(
        tmp_path: Path) -> None:
    """A copy of the workspace ends the purpose by hand and purges today (its entry refused); its
    note, put in policy.db here with a live row deleted by hand, must not excuse the row."""
    ws, row = _bob(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(ws.root, copy)
    today = dt.datetime.now(dt.timezone.utc)
    yesterday = (today.date() - dt.timedelta(days=1)).isoformat()
    edit_config(WorkspacePaths(copy), lambda raw: raw["purposes"]["demo"].__setitem__("end_date", yesterday),
                reassess=False)
    _failed_purge(copy, today, first=today - dt.timedelta(days=3))
    marker = _marker(copy)
    _delete_row(ws.root, row)
    _plant(ws.root, marker)
    with open_sf(ws) as sf:
        problems = sf.verify_store().problems
    assert any(f"row {row} " in p for p in problems), problems
