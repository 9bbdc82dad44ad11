"""Someone who can write gallery.db but holds no key rebuilds the store's lookup indexes over
another column and writes their old definitions back (writable_schema): no decision the store makes
(look-alikes, the filing count) may be bent by it."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

from safeface import InvalidArgument, PolicyViolation  # noqa: E402

IMG = images()


def _bend_indexes(db: Path, bent: dict[str, str]) -> None:
    """Rebuild each index (name -> its real column) over `provenance` (the same value on every
    row), then write its old definition back; no key is needed."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        for name in bent:
            con.execute(f"DROP INDEX {name}")
            con.execute(f"CREATE INDEX {name} ON rows (provenance)")
        con.execute("PRAGMA writable_schema = ON")
        for name, column in bent.items():
            con.execute("UPDATE sqlite_master SET sql = ? WHERE name = ?", (f"CREATE INDEX {name} ON rows ({column})",
                                                                             name))
    finally:
        con.close()


def test_bent_look_indexes_do_not_let_a_look_alike_enrol(tmp_path: Path) -> None:
    """alice is enrolled; the look indexes are bent. "ALICE" must still be refused as a look-alike."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    _bend_indexes(ws.gallery, {"rows_look": "look", "rows_look_small": "look_small"})
    with open_sf(ws) as sf:
        with pytest.raises(InvalidArgument):
            sf.enroll(IMG / "biden.jpg", "ALICE", "demo", consent(ws, "ALICE"))
        assert len({r.pseudonym for r in sf.records()}) == 1


def test_a_bent_pseudonym_index_does_not_lift_the_filing_threshold(tmp_path: Path) -> None:
    """Threshold 2, two people stored, the pseudonym index bent: a third is still refused CN-17."""
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 2))
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(IMG / "biden.jpg", "joe", "demo", consent(ws, "joe"))
    _bend_indexes(ws.gallery, {"rows_pseudonym": "pseudonym"})
    with open_sf(ws) as sf:
        with pytest.raises(PolicyViolation) as refused:
            sf.enroll(IMG / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
        assert refused.value.rule == "CN-17"
        assert len({r.pseudonym for r in sf.records()}) == 2
