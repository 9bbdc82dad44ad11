"""Triggers added by hand to the workspace's own SQLite stores: audit.db, policy.db and
apikeys.db (no key needed to add one).

safeface makes no trigger in these files, so any is someone else's, and one can drop or rewrite
what a write records: a withdrawal deleted as it lands, an API key's revocation undone, or every
erasure's entry made to fail. The gallery already refused foreign triggers; these files were
named only at a call that a trigger broke, and `audit verify` passed over a quiet one."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, images, make_workspace, open_sf  # noqa: E402

from safeface.errors import IntegrityError, PolicyViolation  # noqa: E402
from safeface.workspace.admin import audit_verify  # noqa: E402


def _add_trigger(db_path: Path) -> None:
    """A trigger that changes nothing visible: after any insert into the file's first table."""
    with sqlite3.connect(db_path) as db:
        table = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                           "ORDER BY name LIMIT 1").fetchone()[0]
        db.execute(f"CREATE TRIGGER quiet AFTER INSERT ON \"{table}\" BEGIN SELECT 1; END")
    db.close()


@pytest.mark.parametrize("name", ["audit.db", "policy.db", "apikeys.db"])
def test_a_trigger_added_by_hand_is_named_by_audit_verify_and_at_open(tmp_path: Path, name: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who can write the folder adds a quiet trigger to one of the workspace's own stores:
    `audit verify` and the next open refuse, naming the file and the trigger."""
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    open_sf(ws).close()  # every store made
    assert (ws.root / name).exists()
    _add_trigger(ws.root / name)
    with pytest.raises(IntegrityError, match=rf"{name} holds triggers safeface did not make \('quiet'\)"):
        audit_verify(ws.root)
    with pytest.raises(IntegrityError, match="triggers safeface did not make"):
        open_sf(ws).close()


def test_a_trigger_added_under_an_open_handle_stops_its_next_write(tmp_path: Path) -> None:
    """A trigger added to audit.db while a service has the workspace open: the next call that
    records an entry is refused, naming the trigger, instead of writing through it."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        _add_trigger(ws.audit)
        with pytest.raises((IntegrityError, PolicyViolation)) as got:
            sf.verify(images() / "obama.jpg", subject="alice", purpose="demo")
        assert isinstance(got.value, IntegrityError), got.value
        assert "triggers safeface did not make" in str(got.value)
