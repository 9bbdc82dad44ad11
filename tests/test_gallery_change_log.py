"""The store's change log (gallery.db's `changes` table), which an open handle replays to keep the
rows the look-alike and filing checks read in memory, edited by someone who can write gallery.db
but holds no key, while a long-running handle (a service) is open."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

from safeface import InvalidArgument, PolicyViolation  # noqa: E402

IMG = images()


def _point_last_change_elsewhere(db: Path) -> None:
    """No key needed: the newest change-log row keeps its seq but names a row id far above any."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("UPDATE changes SET row_id = 999999999 WHERE seq = (SELECT MAX(seq) FROM changes)")
    finally:
        con.close()


def test_a_change_log_row_pointed_elsewhere_does_not_hide_an_enrolment_from_an_open_handle(tmp_path: Path) -> None:
    """Another process enrols "alice"; the attacker points that change-log row at a row id none has.
    "ALICE" enrolled through the service's open handle must still be refused as a look-alike."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as service:
        assert service.records() == []
        with open_sf(ws) as other:
            other.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        _point_last_change_elsewhere(ws.gallery)
        with pytest.raises(InvalidArgument):
            service.enroll(IMG / "biden.jpg", "ALICE", "demo", consent(ws, "ALICE"))
    with open_sf(ws) as sf:
        assert len({r.pseudonym for r in sf.records()}) == 1


def test_a_change_log_row_pointed_elsewhere_does_not_lift_the_filing_threshold(tmp_path: Path) -> None:
    """Threshold 2: the service holds alice; another process enrols joe and the attacker repoints
    joe's change-log row. A third person enrolled through the service must be refused CN-17."""
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 2))
    with open_sf(ws) as service:
        service.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        with open_sf(ws) as other:
            other.enroll(IMG / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        _point_last_change_elsewhere(ws.gallery)
        with pytest.raises(PolicyViolation) as refused:
            service.enroll(IMG / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
        assert refused.value.rule == "CN-17"
    with open_sf(ws) as sf:
        assert len({r.pseudonym for r in sf.records()}) == 2
