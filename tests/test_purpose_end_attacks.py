"""An ended purpose keeps no one: the purge takes its templates at the end the assessment
recorded, whatever deployment.json says afterwards without a new assessment."""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, CachedPipeline, consent, edit_config, images, make_workspace  # noqa: E402

from safeface import SafeFace  # noqa: E402
from safeface.workspace.assessment import recorded_purge_times  # noqa: E402

TOMORROW = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)


def _renamed(raw: dict[str, Any]) -> None:
    raw["purposes"]["demo-renamed"] = raw["purposes"].pop("demo")


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "end date removed": lambda raw: raw["purposes"]["demo"].pop("end_date"),
    "end date moved later": lambda raw: raw["purposes"]["demo"].__setitem__("end_date", "2099-12-31"),
    "purpose renamed": _renamed,
}


def _rows(ws: Any) -> int:
    with sqlite3.connect(ws.gallery) as db:
        return int(db.execute("SELECT COUNT(*) FROM rows").fetchone()[0])


@pytest.mark.parametrize("how", sorted(EDITS))
def test_an_end_date_undone_by_hand_still_purges_at_the_assessed_end(tmp_path: Path, how: str) -> None:
    """The operator set an end date and assessed it, then took it back by hand: processing
    stopped (the assessment no longer covered the file), but the purge read the file as it
    was, so the templates enrolled before the end date was set were kept past it, for as long
    as the edit stood. The assessment's audit entry now records when each purpose's templates
    go, and the purge keeps to the earlier of that and the file."""
    ws = make_workspace(tmp_path / "ws")
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    edit_config(ws, lambda raw: raw["purposes"]["demo"].__setitem__("end_date", TOMORROW.isoformat()))
    edit_config(ws, EDITS[how], reassess=False)
    assert _rows(ws) == 1
    after_end = dt.datetime.combine(TOMORROW + dt.timedelta(days=2), dt.time(), tzinfo=dt.timezone.utc)
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline(), clock=lambda: after_end) as sf:
        assert _rows(ws) == 0
        purge = [e for e in sf.audit_entries() if e.operation == "purge"][-1]
        assert "1 expired template(s) removed" in str(purge.note)
        assert sf.audit_verify().entries > 0


def test_before_the_assessed_end_nothing_is_purged_and_a_new_assessment_moves_it(tmp_path: Path) -> None:
    """The recorded end is the assessment's: a later assessment that moves the end date on (or
    removes it) is what the purge keeps to, not the first one."""
    ws = make_workspace(tmp_path / "ws")
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
    edit_config(ws, lambda raw: raw["purposes"]["demo"].__setitem__("end_date", TOMORROW.isoformat()))
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline()) as sf:
        last = [e for e in sf.audit_entries() if e.operation == "assessment"][-1]
        end = dt.datetime.combine(TOMORROW, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
        assert recorded_purge_times(last.note) == {"demo": int(end.timestamp())}
    assert _rows(ws) == 1
    edit_config(ws, lambda raw: raw["purposes"]["demo"].pop("end_date"))  # assessed: the purpose goes on
    after_end = dt.datetime.combine(TOMORROW + dt.timedelta(days=2), dt.time(), tzinfo=dt.timezone.utc)
    with SafeFace.open(ws.root, PASSPHRASE, pipeline=CachedPipeline(), clock=lambda: after_end):
        assert _rows(ws) == 1


def test_free_text_in_the_assessment_cannot_pose_as_the_recorded_ends() -> None:
    """The reference and the review are the operator's text: one that spells the marker and a
    time does not pass for the recorded ends."""
    from safeface.workspace.assessment import ENDS, assessment_note

    section = {"reference": f"x{ENDS}" + '{"demo":1}', "date": "2026-01-01", "covers": "abc",
               "covered": {"purposes": {"demo": {"retention_days": 30}}, "roles": {}}}
    assert recorded_purge_times(assessment_note(section)) == {}


def test_markers_spelt_inside_role_and_purpose_names_do_not_hide_what_the_note_records() -> None:
    """The note was cut at the last "; roles ", which a role's name may hold ("front desk;
    roles per HR-7"): the recorded ends and roles then read as none, and an end date moved
    later by hand kept templates past the assessed end. Each part is now the one whose JSON runs
    to its end."""
    from safeface.workspace.assessment import ENDS, ROLES, assessment_note, recorded_roles

    covered = {"purposes": {f"demo{ENDS}" + '{"x":1}': {"retention_days": 30, "end_date": "2030-01-31",
                                                       "description": "d", "necessity": "n"}},
               "roles": {f"front desk{ROLES}per HR-7": ["verify"]}, "default_role": f"front desk{ROLES}per HR-7"}
    note = assessment_note({"reference": "r", "date": "2026-01-01", "covers": "abc", "covered": covered})
    end = int(dt.datetime(2030, 1, 31, 23, 59, 59, tzinfo=dt.timezone.utc).timestamp())
    assert recorded_purge_times(note) == {f"demo{ENDS}" + '{"x":1}': end}
    got = recorded_roles(note)
    assert got is not None and got[1] == f"front desk{ROLES}per HR-7"
