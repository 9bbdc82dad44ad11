"""Hand edits of policy.db by an operator without keys: what it once held for the filing report and
for BIPA's interaction rule (US-01) is read from the anchored audit log instead."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, make_workspace, open_sf  # noqa: E402

from safeface.policy.deployment.calendar import working_days_after  # noqa: E402

IMG = images()


def test_a_purpose_end_written_into_policy_db_does_not_stretch_retention_at_a_match(tmp_path: Path) -> None:
    """Operator writes alice's purpose end (60-day purpose, us-bipa) as 2100 into policy.db; her
    next honest match must not move her expiry past the 60 days, and the store check stays clean."""
    ws = make_workspace(tmp_path / "ws", profiles=("us-bipa",),
                        edit=lambda r: r["purposes"]["demo"].__setitem__("retention_days", 60))
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        enrolled = sf.enroll(IMG / "obama.jpg", "alice", "demo", t)
        pseudonym = sf.pseudonym("alice")
    with sqlite3.connect(ws.policy) as con:
        con.execute("INSERT OR REPLACE INTO purpose_ends VALUES (?, 'demo', '2100-01-01T00:00:00+00:00')",
                    (pseudonym,))
    with open_sf(ws) as sf:
        assert sf.verify(IMG / "obama2.jpg", "alice", "demo", t).match
        assert sf.records("alice")[0].expires_at <= enrolled.expires_at + dt.timedelta(days=1)
        assert sf.verify_store().ok


def test_a_match_recording_a_date_past_its_enrolments_limit_is_named_by_the_store_check() -> None:
    """A match entry records an expiry years past the limit alice's enrolment recorded (a stretched
    purpose end); the store check must hold her row to that limit, not to the match's date."""
    from dataclasses import dataclass

    from safeface.workspace.audit import AuditEntry
    from safeface.workspace.storecheck import read_log

    @dataclass(frozen=True)
    class Row:
        row_id: int
        pseudonym: str
        purposes: tuple[str, ...]

    p = "a" * 64
    enrol = AuditEntry(1, "2026-01-01T00:00:00+00:00", "enroll", "demo", "t-" + "0" * 32, "consent", (p,), "allowed",
                       None, "rows=5; expires 2026-03-02; kept at most until 2026-03-02T00:00:00+00:00")
    match = AuditEntry(2, "2026-01-10T00:00:00+00:00", "verify", "demo", "t-" + "0" * 32, "consent", (p,),
                       "allowed", None, "match; expires 2029-01-10")
    log = read_log([enrol, match])
    assert log.kept_until(Row(5, p, ("demo",)), log.enrolment[5]) == dt.date(2026, 3, 2)


def test_the_reports_filing_dates_are_not_taken_from_a_hand_edited_policy_db(tmp_path: Path) -> None:
    """Operator moves the filing crossing and deadline in policy.db a year later; the compliance
    report must show the dates of the log's "filing-threshold" entry."""
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["filing"].__setitem__("threshold", 1))
    with open_sf(ws) as sf:
        sf.enroll(IMG / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        crossing = [e for e in sf.audit_entries() if e.operation == "filing-threshold"]
    assert len(crossing) == 1
    crossed = dt.datetime.fromisoformat(crossing[0].time).date()
    with sqlite3.connect(ws.policy) as con:
        for name, days in (("filing_crossed", 365), ("filing_deadline", 400)):
            moved = (crossed + dt.timedelta(days=days)).isoformat()
            con.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (name, moved))
    with open_sf(ws) as sf:
        out = sf.report(tmp_path / "report")
    filing = json.loads(Path(out["json"]).read_text())["filing"]
    assert filing["crossed_on"] == crossed.isoformat(), filing
    assert filing["deadline"] == working_days_after(crossed, 30).isoformat(), filing
