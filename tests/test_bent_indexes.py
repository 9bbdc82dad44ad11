"""Someone who can write gallery.db but holds no key rebuilds the store's lookup indexes over
another column and writes their old definitions back (writable_schema): no decision the store makes
(look-alikes, the filing count) may be bent by it."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface import IntegrityError, InvalidArgument, PolicyViolation  # noqa: E402
from safeface.errors import SafeFaceError  # noqa: E402
from safeface.workspace.admin import audit_verify  # noqa: E402

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


def _audit_names_it(ws: object, tmp_path: Path) -> bool:
    """Whether `safeface audit verify WS --passphrase-file F` refuses the workspace."""
    pf = tmp_path / "passphrase.txt"
    pf.write_text(PASSPHRASE)
    try:
        audit_verify(ws.root, pf)  # type: ignore[attr-defined]
    except SafeFaceError:
        return True
    return False


def test_bent_look_indexes_do_not_let_a_look_alike_enrol(tmp_path: Path) -> None:
    """alice is enrolled; the look indexes are bent. "ALICE" must still be refused as a look-alike."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    _bend_indexes(ws.gallery, {"rows_look": "look", "rows_look_small": "look_small"})
    stored = False
    with open_sf(ws) as sf:
        try:
            sf.enroll(IMG / "biden.jpg", "ALICE", "demo", consent(ws, "ALICE"))
            stored = True
        except (InvalidArgument, IntegrityError):
            pass
        people = len({r.pseudonym for r in sf.records()})
    if stored:
        assert people == 2
        named = _audit_names_it(ws, tmp_path)
        pytest.fail("a look-alike 'ALICE' was enrolled beside 'alice' through bent look indexes"
                    + ("" if named else ", and `audit verify` names nothing"))


def test_a_bent_pseudonym_index_does_not_lift_the_filing_threshold(tmp_path: Path) -> None:
    """Threshold 2, two people stored, the pseudonym index bent: a third is still refused CN-17."""
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 2))
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        sf.enroll(IMG / "biden.jpg", "joe", "demo", consent(ws, "joe"))
        with pytest.raises(PolicyViolation):
            sf.enroll(IMG / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
    _bend_indexes(ws.gallery, {"rows_pseudonym": "pseudonym"})
    stored = False
    with open_sf(ws) as sf:
        try:
            sf.enroll(IMG / "obama2.jpg", "carol", "demo", consent(ws, "carol"))
            stored = True
        except PolicyViolation as exc:
            assert exc.rule == "CN-17"
        except IntegrityError:
            pass
        people = len({r.pseudonym for r in sf.records()})
    if stored:
        assert people == 3
        named = _audit_names_it(ws, tmp_path)
        pytest.fail("a third person was enrolled past a filing threshold of 2 through a bent pseudonym index"
                    + ("" if named else ", and `audit verify` names nothing"))
