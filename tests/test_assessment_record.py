"""The impact assessment in force is sealed under the keyring and named last in the audit log.
Attacks by someone who can write the workspace's files but holds no key: weaken a covered
setting and write the assessment's digest by hand (a digest is public arithmetic over the
file), edit the audit entry to match, switch to a profile without an assessment rule, restore
an older, weaker deployment.json with its own assessment, plant a review date in the future,
race two assessments; and the operator asked to "run safeface assess" after such an edit."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, Clock, consent, images, make_workspace, open_sf  # noqa: E402

from safeface import ConfigError, ImageError, IntegrityError, InvalidArgument, PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.workspace.admin import record_assessment  # noqa: E402
from safeface.workspace.assessment import assessment_note  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402

TODAY = dt.date.today().isoformat()


def _assessed(sf: Any) -> list[str]:
    return [e.note or "" for e in sf.audit_entries() if e.operation == "assessment"]


def _passes_the_guard(sf: Any) -> bool:
    """A verify that gets past the guard fails on the missing image; a refusal comes first."""
    try:
        sf.verify("/nonexistent/probe.jpg", "alice", "demo", "no token needed to be refused first")
    except ImageError:
        return True
    except PolicyViolation as e:
        if e.rule in ("CN-09", "EU-08"):
            return False
        return True  # refused for the token, after the deployment passed
    return True


def _edit(ws: WorkspacePaths, change: Any, *, digest: bool = True) -> None:
    """Change deployment.json by hand; with `digest`, write the assessment's covers to match."""
    raw = json.loads(ws.config.read_text())
    change(raw)
    if digest:
        raw["assessment"].update(reference="PIA-LAX", covers=Deployment.from_dict(raw).config_digest())
    ws.config.write_text(json.dumps(raw))


def _threshold(value: float) -> Any:
    return lambda raw: raw["matching"].__setitem__("threshold", value)


def test_an_assessment_written_without_the_keys_processes_nothing(tmp_path: Path) -> None:
    img = images()
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", t)
        _edit(ws, _threshold(0.5))  # while the workspace is open
        with pytest.raises(PolicyViolation) as e:
            sf.verify(img / "biden.jpg", "alice", "demo", t)  # a stranger, a match at 0.5
        assert e.value.rule == "CN-09" and "not sealed" in str(e.value) and "safeface assess" in str(e.value)
        assert _assessed(sf) == []  # nothing names it
        report = json.loads(sf.report(tmp_path / "report")["json"].read_text())
        assert report["can_process"] is False
        assert any(r["id"] == "CN-09" and r["state"] == "failing" and "safeface assess" in r["detail"]
                   for r in report["rules"])
    with open_sf(ws) as sf:  # and at the next open
        assert not _passes_the_guard(sf)
        # The operator asked to record it is warned that the section was forged, and records
        # nothing unasked.
        with pytest.raises(ConfigError, match="not the sealed one") as e:
            record_assessment(ws.root, "PIA-2", TODAY, passphrase=PASSPHRASE)
        assert "--accept-changes" in str(e.value)
        assert not _passes_the_guard(sf) and _assessed(sf) == []
        done = record_assessment(ws.root, "PIA-2", TODAY, passphrase=PASSPHRASE, accept_changes=True)
        assert done.changes is None  # nothing sealed to compare with
        assert str(Deployment.load(ws.config).section("assessment")["covers"]) in done.note
        assert sf.verify(img / "biden.jpg", "alice", "demo", t).threshold == 0.5
        assert _assessed(sf) == [done.note]
        assert sf.audit_verify().entries > 0


def test_assess_lists_the_covered_settings_changed_since_the_last_assessment(tmp_path: Path) -> None:
    """Asked to "run safeface assess" after a hand edit that kept the seal, the operator is
    shown exactly what they would sign off, and nothing is recorded until they accept it."""
    ws = make_workspace(tmp_path / "ws")
    _edit(ws, lambda raw: (raw["matching"].__setitem__("threshold", 0.5),
                           raw["purposes"]["demo"].__setitem__("retention_days", 3650)), digest=False)
    before = ws.config.read_bytes()
    with pytest.raises(ConfigError) as e:
        record_assessment(ws.root, "PIA-2", TODAY, passphrase=PASSPHRASE)
    assert "matching.threshold: (not set) -> 0.5" in str(e.value)
    assert "purposes.demo.retention_days: 30 -> 3650" in str(e.value)
    assert ws.config.read_bytes() == before
    done = record_assessment(ws.root, "PIA-2", TODAY, passphrase=PASSPHRASE, accept_changes=True)
    assert done.changes is not None and "matching.threshold: (not set) -> 0.5" in done.changes
    # Nothing changed since: recorded again without being asked.
    assert record_assessment(ws.root, "PIA-3", TODAY, passphrase=PASSPHRASE).changes == ()


def test_an_audit_entry_edited_to_name_a_hand_written_assessment_does_not_help(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    _edit(ws, _threshold(0.5))
    section = Deployment.load(ws.config).section("assessment")
    with sqlite3.connect(ws.root / "audit.db") as db:
        db.execute("UPDATE entries SET note = ? WHERE seq = (SELECT MAX(seq) FROM entries WHERE operation = 'init')",
                   (f"demo workspace; profiles cn-2025; {assessment_note(section)}",))
    with pytest.raises(IntegrityError, match="altered"):  # the signed head names the entry: refused at open
        open_sf(ws)
    (tmp_path / "pass").write_text(PASSPHRASE)
    (tmp_path / "pass").chmod(0o600)  # passphrase files must be private
    with pytest.raises(IntegrityError, match="altered"):  # and the full check names the edited entry
        from safeface.workspace.admin import audit_verify

        audit_verify(ws.root, tmp_path / "pass")


@pytest.mark.parametrize("profiles", [["us-bipa"], ["eu"]])
def test_a_profile_switched_by_hand_keeps_the_assessment_check(tmp_path: Path, profiles: list[str]) -> None:
    """us-bipa names no assessment rule of its own: switching to it must not shed the check."""
    ws = make_workspace(tmp_path / "ws")

    def switch(raw: dict[str, Any]) -> None:
        raw["profiles"] = profiles
        raw["matching"]["threshold"] = 0.5
        raw.setdefault("bipa", {})["retention_schedule_url"] = "https://example.org/retention"

    for digest in (False, True):
        _edit(ws, switch, digest=digest)
        with open_sf(ws) as sf:
            assert not _passes_the_guard(sf)
            report = json.loads(sf.report(tmp_path / f"r{digest}")["json"].read_text())
            assert report["can_process"] is False
            assert any(r["id"] in ("CN-09", "EU-08") and r["state"] == "failing" for r in report["rules"])


def test_an_older_deployment_restored_with_its_own_assessment_processes_nothing(tmp_path: Path) -> None:
    """Each copy of deployment.json carries a genuine, sealed assessment; the older one (a lower
    threshold) is no longer the one in force."""
    img = images()
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    _edit(ws, _threshold(0.5), digest=False)
    record_assessment(ws.root, "PIA-OLD", TODAY, passphrase=PASSPHRASE, accept_changes=True)
    older = ws.config.read_bytes()
    _edit(ws, _threshold(0.95), digest=False)
    record_assessment(ws.root, "PIA-NEW", TODAY, passphrase=PASSPHRASE, accept_changes=True)
    with open_sf(ws) as sf:
        sf.enroll(img / "obama.jpg", "alice", "demo", t)
        assert sf.verify(img / "obama2.jpg", "alice", "demo", t).threshold == 0.95
        ws.config.write_bytes(older)
        with pytest.raises(PolicyViolation) as e:
            sf.verify(img / "biden.jpg", "alice", "demo", t)
        assert e.value.rule == "CN-09" and "PIA-OLD" in str(e.value) and "older copy" in str(e.value)


def test_assess_needs_the_passphrase_and_a_sound_reference(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    before = ws.config.read_bytes()
    with pytest.raises(IntegrityError):
        record_assessment(ws.root, "PIA-X", TODAY, passphrase="not the passphrase")
    for bad in ("", "   ", "R" * 201):
        with pytest.raises(InvalidArgument):
            record_assessment(ws.root, bad, TODAY, passphrase=PASSPHRASE)
    with pytest.raises(InvalidArgument):
        record_assessment(ws.root, "PIA-X", "03/12/2026", passphrase=PASSPHRASE)
    assert ws.config.read_bytes() == before  # nothing written


def test_a_reference_edited_past_what_the_note_shows_breaks_the_seal(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    record_assessment(ws.root, "R" * 200, TODAY, passphrase=PASSPHRASE)
    raw = json.loads(ws.config.read_text())
    raw["assessment"]["reference"] = "R" * 200 + " FORGED: approved by the regulator"
    ws.config.write_text(json.dumps(raw))
    with open_sf(ws) as sf:
        assert not _passes_the_guard(sf)


def _assess_many(root: str, tag: str, n: int) -> None:
    for i in range(n):
        record_assessment(Path(root), f"PIA-{tag}-{i}", dt.date.today().isoformat(), passphrase=PASSPHRASE)


@pytest.mark.slow
def test_two_processes_recording_assessments_leave_the_last_one_in_force(tmp_path: Path) -> None:
    """The file and the entry are written under one lock: however two `assess` runs interleave,
    the file ends holding the assessment the log names last, and the workspace processes."""
    img = images()
    ws = make_workspace(tmp_path / "ws")
    t = consent(ws, "alice")
    ctx = multiprocessing.get_context("fork")  # spawn would re-import this module by a name CI lacks
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


def test_a_review_date_is_sealed_and_never_in_the_future(tmp_path: Path) -> None:
    """The yearly review date extends how long an assessment holds: moved by hand it breaks the
    seal; planted in the future it is refused, and a new assessment does not carry it over."""
    ws = make_workspace(tmp_path / "ws")
    clock = Clock()
    raw = json.loads(ws.config.read_text())
    raw["assessment"]["reviewed"] = TODAY
    ws.config.write_text(json.dumps(raw))
    with open_sf(ws) as sf:
        assert not _passes_the_guard(sf)
    done = record_assessment(ws.root, raw["assessment"]["reference"], TODAY, passphrase=PASSPHRASE, reviewed=TODAY,
                             accept_changes=True)  # the hand edit broke the seal: the operator is warned
    assert f"; reviewed {TODAY}; roles " in done.note
    with open_sf(ws) as sf:
        assert _passes_the_guard(sf)
    future = "9999-12-31"
    with pytest.raises(InvalidArgument, match="review date"):
        record_assessment(ws.root, "PIA-3", TODAY, passphrase=PASSPHRASE, reviewed=future)
    raw = json.loads(ws.config.read_text())
    raw["assessment"]["reviewed"] = future  # planted before the operator's next assessment
    ws.config.write_text(json.dumps(raw))
    assert "between" in " ".join(f.message for f in Deployment.load(ws.config).problems(dt.date.today()))
    record_assessment(ws.root, "PIA-3", TODAY, passphrase=PASSPHRASE, accept_changes=True)
    assert Deployment.load(ws.config).section("assessment")["reviewed"] is None  # not carried over
    with open_sf(ws, clock=clock) as sf:
        assert _passes_the_guard(sf)
        clock.advance(days=400)  # and the yearly review is due again
        assert not _passes_the_guard(sf)


def test_the_change_list_compares_settings_as_written_and_names_every_one() -> None:
    from safeface.workspace.assessment import changed_settings

    assert changed_settings({"a": True}, {"a": 1}) == ["a: true -> 1"]
    assert changed_settings({"a": 1}, {"a": 1.0}) == ["a: 1 -> 1.0"]
    assert changed_settings({"a": {"b": [1, 2]}}, {"a": {"b": [2, 1]}}) == ["a.b: reordered"]
    assert changed_settings({"a": 1}, {}) == ["a: 1 -> (not set)"]
    many = {f"k{i:02d}": i for i in range(30)}
    assert len(changed_settings(many, {k: v + 1 for k, v in many.items()})) == 30
    # A role widened by one operation, among many: the list says which.
    ops = ["verify", "identify", "analyze", "report", "track", "anonymize", "liveness", "export"]
    assert changed_settings({"kiosk": ops}, {"kiosk": ops + ["enroll"]}) == ['kiosk: gained "enroll"']
    # Two long values that differ only past the cut never look alike.
    a, b = "w/" + "x" * 100 + "-1.json", "w/" + "x" * 100 + "-2.json"
    (line,) = changed_settings({"witness": [a, b]}, {"witness": [a]})
    assert line.startswith("witness: lost ") and "sha256" in line
    (line,) = changed_settings({"w": a}, {"w": b})
    left, right = line.split(" -> ")
    assert left.split(": ", 1)[1] != right
    # A key name cannot smuggle terminal control into the list.
    (line,) = changed_settings({"note\x1b[8m": 1}, {"note\x1b[8m": 2})
    assert "\x1b" not in line and "\\u001b" in line


def test_assess_after_a_rollback_or_a_removed_section_asks_before_signing_off(tmp_path: Path) -> None:
    """Told to run `safeface assess` after an older sealed deployment.json was restored (or the
    section removed), a plain run must not sign the rollback off as "nothing changed"."""
    ws = make_workspace(tmp_path / "ws")
    _edit(ws, _threshold(0.5), digest=False)
    record_assessment(ws.root, "PIA-A1", TODAY, passphrase=PASSPHRASE, accept_changes=True)
    older = ws.config.read_bytes()
    _edit(ws, _threshold(0.8), digest=False)
    record_assessment(ws.root, "PIA-A2", TODAY, passphrase=PASSPHRASE, accept_changes=True)
    ws.config.write_bytes(older)  # sealed, and once genuine
    with pytest.raises(ConfigError, match="names last"):
        record_assessment(ws.root, "PIA-A3", TODAY, passphrase=PASSPHRASE)
    assert ws.config.read_bytes() == older
    for remove in (lambda raw: raw.pop("assessment"), lambda raw: raw["assessment"].pop("covers")):
        _edit(ws, remove, digest=False)
        with pytest.raises(ConfigError, match="--accept-changes"):
            record_assessment(ws.root, "PIA-A3", TODAY, passphrase=PASSPHRASE)
        ws.config.write_bytes(older)


@pytest.mark.parametrize("change", [
    lambda raw: raw.__setitem__("liveness_model", {"file": "models/pad.onnx", "sha256": "0" * 64, "threshold": 0.0}),
    lambda raw: raw.__setitem__("go_live", None),
])
def test_the_pad_veto_and_go_live_are_covered(tmp_path: Path, change: Any) -> None:
    ws = make_workspace(tmp_path / "ws")
    before = Deployment.load(ws.config).config_digest()
    _edit(ws, change, digest=False)
    assert Deployment.load(ws.config).config_digest() != before
    with open_sf(ws) as sf:
        assert not _passes_the_guard(sf)


def test_roles_widened_by_hand_do_not_reach_the_calls_the_assessment_does_not_gate(tmp_path: Path) -> None:
    """Erasure, revocation and the report need no assessment to run; while deployment.json is not
    the assessed one, they are judged by the roles the last recorded assessment set, not by roles
    widened by hand (an auditor made able to erase), nor a default role changed by hand."""
    img = images()
    ws = make_workspace(tmp_path / "ws", edit=lambda raw: raw.__setitem__("default_role", "kiosk"))
    with open_sf(ws, role="operator") as sf:
        sf.enroll(img / "obama.jpg", "bob", "demo", consent(ws, "bob"))
        with pytest.raises(PolicyViolation) as e:
            sf.acting_as("auditor", "k-aud").erase("bob")
        assert e.value.rule == "CN-16"

    def widen(raw: dict[str, Any]) -> None:
        raw["roles"]["auditor"] = sorted(set(raw["roles"]["auditor"]) | {"erase", "revoke", "apikey"})
        raw["default_role"] = "operator"

    for digest in (False, True):
        _edit(ws, widen, digest=digest)
        with open_sf(ws, role="auditor") as sf:
            with pytest.raises(PolicyViolation) as e:
                sf.erase("bob")
            assert e.value.rule == "CN-16"
            assert sf.acting_as("operator", "k-op").records("bob")  # still there
        with open_sf(ws) as sf:  # the default role as recorded (kiosk), not as edited
            with pytest.raises(PolicyViolation):
                sf.erase("bob")


def test_a_role_added_by_hand_gets_no_api_key_until_it_is_assessed(tmp_path: Path) -> None:
    """An admin asked for a key of a role that only a hand edit defines: no key is issued while
    that edit is unassessed (the key could do nothing, and the refusal would list the edit's roles)."""
    ws = make_workspace(tmp_path / "ws")
    _edit(ws, lambda raw: raw["roles"].__setitem__("intruder", ["erase"]), digest=True)
    with open_sf(ws, role="operator") as sf:
        with pytest.raises(InvalidArgument) as e:
            sf.issue_api_key("intruder", label="planted")
        assert "intruder" not in str(e.value).split("defined roles:")[1]
        assert not sf.api_keys()
        with pytest.raises(PolicyViolation) as p:
            sf.acting_as("intruder", "k-x").erase("bob")
        assert "intruder" not in str(p.value).split("defined roles:")[1]
        assert sf.issue_api_key("operator", label="still fine")[0].role == "operator"
        out = json.loads(sf.report(tmp_path / "report")["json"].read_text())["security_measures"]
        assert "intruder" not in out["access_control"] and "intruder" in out["access_control_as_written"]
    record_assessment(ws.root, "PIA-ROLES", TODAY, passphrase=PASSPHRASE, accept_changes=True)
    with open_sf(ws, role="operator") as sf:
        assert sf.issue_api_key("intruder", label="assessed now")[0].role == "intruder"


def test_a_liveness_check_is_refused_while_the_assessment_is_not_in_force(tmp_path: Path) -> None:
    """The PAD model that judges a clip is an assessed setting: a check run under a file edited
    by hand (the veto removed) must not mint evidence that a later, assessed call accepts."""
    ws = make_workspace(tmp_path / "ws")
    _edit(ws, _threshold(0.5), digest=False)
    with open_sf(ws) as sf:
        with pytest.raises(PolicyViolation) as e:
            sf.liveness_challenge()
        assert e.value.rule == "CN-09"
        with pytest.raises(PolicyViolation) as e:
            sf.liveness_check(b"not a clip", "no-such-nonce")
        assert e.value.rule == "CN-09"
        assert [x.decision for x in sf.audit_entries() if x.operation.startswith("liveness")] == ["refused", "refused"]


def test_threads_never_judge_by_a_configuration_whose_assessment_is_unchecked(tmp_path: Path) -> None:
    """Views on threads share one reading of deployment.json; while another thread swaps in a
    weakened, unsealed file and back, no call is judged by the weakened threshold."""
    import threading

    from safeface.policy.guard import Guard

    ws = make_workspace(tmp_path / "ws")
    good = ws.config.read_bytes()
    _edit(ws, _threshold(0.2))
    weak = ws.config.read_bytes()
    ws.config.write_bytes(good)
    allowed_weak: list[float] = []
    real = Guard.authorize

    def spy(self: Guard, request: Any) -> Any:
        d = real(self, request)
        if request.operation.value == "verify" and self.deployment.section("matching").get("threshold") == 0.2:
            allowed_weak.append(0.2)
        return d

    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            for body in (weak, good):
                tmp = ws.config.with_suffix(".tmp")
                tmp.write_bytes(body)
                tmp.replace(ws.config)

    Guard.authorize = spy  # type: ignore[method-assign]
    try:
        with open_sf(ws) as sf:
            t = consent(ws, "alice")

            def call(i: int) -> None:
                view = sf.acting_as("operator", f"k{i}")
                for _ in range(30):
                    try:
                        view.verify("/nonexistent/probe.jpg", "alice", "demo", t)
                    except (ImageError, PolicyViolation):
                        pass

            flipper = threading.Thread(target=flip)
            flipper.start()
            workers = [threading.Thread(target=call, args=(i,)) for i in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(120)
            stop.set()
            flipper.join(10)
    finally:
        Guard.authorize = real  # type: ignore[method-assign]
    assert allowed_weak == []


def test_the_default_role_is_covered_as_callers_get_it(tmp_path: Path) -> None:
    """With no `default_role`, a caller gets the first role listed: reordering the roles by hand
    (kiosk first, then an admin first) must leave the assessment stale, and the role recorded
    for judging meanwhile is the kiosk, not whichever sorts first."""
    ops = ["enroll", "verify", "identify", "erase", "export", "analyze", "revoke", "purge", "report", "rekey",
           "apikey", "track"]

    def kiosk_first(raw: dict[str, Any]) -> None:
        raw.pop("default_role", None)
        raw["roles"] = {"kiosk": ["verify", "identify"], "admin": ops, "auditor": ["report"]}

    ws = make_workspace(tmp_path / "ws", edit=kiosk_first)
    with open_sf(ws) as sf:
        assert sf._role == "kiosk" and _passes_the_guard(sf)

    def admin_first(raw: dict[str, Any]) -> None:
        raw["roles"] = {"admin": raw["roles"]["admin"], "kiosk": raw["roles"]["kiosk"], "auditor": ["report"]}

    _edit(ws, admin_first, digest=False)
    with open_sf(ws) as sf:
        assert not _passes_the_guard(sf)  # stale
        assert sf._role == "kiosk"  # as recorded
        with pytest.raises(PolicyViolation) as e:
            sf.erase("bob")
        assert e.value.rule == "CN-16"


def test_an_assessment_whose_entry_the_log_would_cut_is_not_recorded(tmp_path: Path) -> None:
    from safeface.workspace.audit import LIMITS

    ws = make_workspace(tmp_path / "ws")
    _edit(ws, lambda raw: raw["roles"].update({f"role-{i:05d}-" + "x" * 40: ["verify"] for i in range(1500)}),
          digest=False)
    before = ws.config.read_bytes()
    with pytest.raises(ConfigError, match="roles"):
        record_assessment(ws.root, "PIA-BIG", TODAY, passphrase=PASSPHRASE, accept_changes=True)
    assert ws.config.read_bytes() == before and LIMITS["note"] == 65_536


def test_the_report_names_what_the_store_check_found(tmp_path: Path) -> None:
    """A row deleted behind the guard: the report's store audit gives the check's problems, not
    an empty list beside a digest."""
    paths = make_workspace(tmp_path / "ws")
    with open_sf(paths) as sf:
        sf.enroll(images() / "obama.jpg", "alice", "demo", consent(paths, "alice"))
        last = sf.enroll(images() / "biden.jpg", "bob", "demo", consent(paths, "bob"))
    with sqlite3.connect(str(paths.gallery)) as db:
        db.execute("DELETE FROM rows WHERE row_id = ?", (last.row_id,))
    with open_sf(paths) as sf:
        check = sf.verify_store()
        assert not check.ok
        report = json.loads(sf.report(tmp_path / "report")["json"].read_text())
    audit = report["security_measures"]["store_audit"]
    assert audit["rows"] == check.rows == 1 and audit["digest"] == check.digest
    assert audit["problems"] == list(check.problems)
    assert any(f"row {last.row_id} was enrolled" in p for p in audit["problems"])


def test_a_weakened_setting_copied_into_the_covered_settings_is_still_shown(tmp_path: Path) -> None:
    """Someone without the keys lowers the threshold and writes the same value into the
    assessment's copy of the settings, so that `assess` would show no change: the copy is
    sealed, so the section is not the sealed one and nothing is recorded without
    --accept-changes."""
    ws = make_workspace(tmp_path / "ws")
    raw = json.loads(ws.config.read_text())
    assert "covered" in raw["assessment"] and "seal" in raw["assessment"]
    raw["matching"]["threshold"] = 0.5
    raw["assessment"]["covered"]["matching"]["threshold"] = 0.5
    ws.config.write_text(json.dumps(raw, indent=2))
    before = ws.config.read_bytes()
    with pytest.raises(ConfigError):
        record_assessment(ws.root, "PIA-2", dt.date.today().isoformat(), passphrase=PASSPHRASE)
    assert ws.config.read_bytes() == before
