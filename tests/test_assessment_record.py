"""The impact assessment in force is the one the audit log names last. Attacks by someone who
can write deployment.json but holds no key: weaken a covered setting and write the assessment's
digest by hand (what `safeface assess` did before it needed the passphrase), restore an older,
weaker deployment.json with its own assessment, or race two assessments."""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface import IntegrityError, PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.workspace.admin import record_assessment  # noqa: E402
from safeface.workspace.assessment import assessment_note  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402


def _assessed(sf: Any) -> list[str]:
    return [e.note or "" for e in sf.audit_entries() if e.operation == "assessment"]


def _set_threshold_by_hand(ws: WorkspacePaths, threshold: float, *, digest: bool = True) -> None:
    """Lower the threshold and, with `digest`, write the assessment's covers digest to match, as
    anyone who can write the file can: the digest is public arithmetic over the file."""
    raw = json.loads(ws.config.read_text())
    raw["matching"]["threshold"] = threshold
    if digest:
        raw["assessment"].update(reference="PIA-LAX", covers=Deployment.from_dict(raw).config_digest())
    ws.config.write_text(json.dumps(raw))


def test_an_assessment_written_without_the_keys_processes_nothing(tmp_path: Path) -> None:
    img = images()
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", t)
        _set_threshold_by_hand(ws, 0.5)  # while the workspace is open
        with pytest.raises(PolicyViolation) as e:
            sf.verify(img / "biden.jpg", "alice", "demo", t)  # a stranger, a match at 0.5
        assert e.value.rule == "CN-09" and "safeface assess" in str(e.value) and "PIA-LAX" in str(e.value)
        assert _assessed(sf) == []  # nothing names it
        report = json.loads(sf.report(tmp_path / "report")["json"].read_text())
        assert report["can_process"] is False
        assert any(r["id"] == "CN-09" and r["state"] == "failing" and "safeface assess" in r["detail"]
                   for r in report["rules"])
    with open_sf(ws) as sf:  # and at the next open
        with pytest.raises(PolicyViolation) as e:
            sf.verify(img / "biden.jpg", "alice", "demo", t)
        assert e.value.rule == "CN-09"
        # Recorded with the keys, the same configuration is in force and named once.
        note = record_assessment(ws.root, "PIA-LAX-2", "2026-12-01", passphrase=PASSPHRASE)
        assert "PIA-LAX-2" in note and str(Deployment.load(ws.config).section("assessment")["covers"]) in note
        assert sf.verify(img / "biden.jpg", "alice", "demo", t).threshold == 0.5
        assert _assessed(sf) == [note]
        assert sf.audit_verify().entries > 0


def test_a_stale_assessment_refuses_under_the_eu_rule_too(tmp_path: Path) -> None:
    img = images()
    ws = make_workspace(tmp_path / "ws", profiles=("eu",))
    t = consent(ws, "alice")
    _set_threshold_by_hand(ws, 0.5)
    with open_sf(ws) as sf, pytest.raises(PolicyViolation) as e:
        sf.enroll(img / "obama.jpg", "alice", "demo", t)
    assert e.value.rule == "EU-08"


def test_an_older_deployment_restored_with_its_own_assessment_processes_nothing(tmp_path: Path) -> None:
    """Each copy of deployment.json carries a genuine assessment, recorded with the keys; the
    older one (a lower threshold) is no longer the one in force."""
    img = images()
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    _set_threshold_by_hand(ws, 0.5, digest=False)
    record_assessment(ws.root, "PIA-OLD", "2026-12-01", passphrase=PASSPHRASE)
    older = ws.config.read_bytes()
    _set_threshold_by_hand(ws, 0.95, digest=False)
    record_assessment(ws.root, "PIA-NEW", "2026-12-02", passphrase=PASSPHRASE)
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", t)
        assert sf.verify(img / "obama2.jpg", "alice", "demo", t).threshold == 0.95
        ws.config.write_bytes(older)
        with pytest.raises(PolicyViolation) as e:
            sf.verify(img / "biden.jpg", "alice", "demo", t)
        assert e.value.rule == "CN-09" and "PIA-OLD" in str(e.value) and "older copy" in str(e.value)


def test_assess_needs_the_passphrase(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    before = ws.config.read_bytes()
    with pytest.raises(IntegrityError):
        record_assessment(ws.root, "PIA-X", "2026-12-01", passphrase="not the passphrase")
    assert ws.config.read_bytes() == before  # nothing written


def _assess_many(root: str, tag: str, n: int) -> None:
    for i in range(n):
        raw = json.loads(Path(root, "deployment.json").read_text())
        record_assessment(Path(root), f"PIA-{tag}-{i}", raw["assessment"]["date"], passphrase=PASSPHRASE)


@pytest.mark.slow
def test_two_processes_recording_assessments_leave_the_last_one_in_force(tmp_path: Path) -> None:
    """The file and the entry are written under one lock: however two `assess` runs interleave,
    the file ends holding the assessment the log names last, and the workspace processes."""
    img = images()
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_assess_many, args=(str(ws.root), tag, 3)) for tag in ("A", "B")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with open_sf(ws) as sf:
        notes = _assessed(sf)
        assert len(notes) == 6
        assert notes[-1] == assessment_note(Deployment.load(ws.config).section("assessment"))
        sf.enroll(img / "obama.jpg", "alice", "demo", t)  # in force: no refusal


def test_a_review_date_edited_by_hand_is_not_in_force(tmp_path: Path) -> None:
    """The yearly review date extends how long an assessment holds; it is named with it."""
    img = images()
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    raw = json.loads(ws.config.read_text())
    raw["assessment"]["reviewed"] = raw["assessment"]["date"]
    ws.config.write_text(json.dumps(raw))
    with open_sf(ws) as sf:
        with pytest.raises(PolicyViolation) as e:
            sf.enroll(img / "obama.jpg", "alice", "demo", t)
        assert e.value.rule == "CN-09"
        a = raw["assessment"]
        note = record_assessment(ws.root, a["reference"], a["date"], passphrase=PASSPHRASE, reviewed=a["reviewed"])
        assert note.endswith(f"; reviewed {a['reviewed']}")
        sf.enroll(img / "obama.jpg", "alice", "demo", t)
