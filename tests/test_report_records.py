"""The compliance report over records that fail `audit verify`: it must not call the records
rule met, nor quote its counts as if they held."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

from safeface.errors import PolicyViolation


def _rule(doc: dict, rule: str) -> dict:
    return next(r for r in doc["rules"] if r["id"] == rule)


def _report_after_edit(ws: Any, db_path: Path, sql: str) -> tuple[dict[str, Path], dict[str, Any]]:
    """`sql` run by hand on the SQLite file `db_path` (no key needed), then a report: its files and
    its JSON."""
    db = sqlite3.connect(str(db_path))
    db.execute(sql)
    db.commit()
    db.close()
    with open_sf(ws) as sf:
        files = sf.report(ws.root.parent / "report")
    return files, json.loads(Path(files["json"]).read_text(encoding="utf-8"))


def test_a_report_over_an_edited_audit_log_fails_the_records_rule(tmp_path: Path) -> None:
    """Refusals turned into allowed calls in audit.db by hand: the report says CN-10 fails, and why."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        for _ in range(2):
            try:
                sf.verify(images() / "obama.jpg", "alice", "undeclared", "x")
            except PolicyViolation:
                pass
    files, doc = _report_after_edit(ws, ws.audit, "UPDATE entries SET decision = 'allowed' WHERE decision = 'refused'")
    assert doc["refusals_by_rule"] == {}  # what the edited rows say ...
    assert doc["audit_log"]["intact"] is False and "altered" in doc["audit_log"]["problem"]
    cn10 = _rule(doc, "CN-10")  # ... is no longer vouched for
    assert cn10["state"] == "failing" and "audit log fails verification" in cn10["detail"], cn10
    assert "RECORDS FAIL VERIFICATION" in Path(files["html"]).read_text(encoding="utf-8")


def test_a_report_over_a_store_that_lost_a_row_fails_the_records_rule(tmp_path: Path) -> None:
    """An enrolled row deleted from gallery.db by hand: the report's rule table names it, not 'enforced'."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    files, doc = _report_after_edit(ws, ws.gallery, "DELETE FROM rows")
    cn10 = _rule(doc, "CN-10")
    assert cn10["state"] == "failing" and "missing from the store" in cn10["detail"], cn10
    assert doc["audit_log"]["intact"] is True  # the log itself holds
