"""Every rule branch through the public API (SafeFace): each refusal under every profile that
carries it, with the rule ID it must name and the audit entry it must leave, and the allowed
path beside it.

Refusals pass a path that does not exist as the image: the guard must refuse before any image
is read, so a refusal that came after the pipeline would fail here with an ImageError. Tokens
that our issuer refuses to write (a blank provision, a birth date that is not a date) are signed
with the workspace's trusted key, as another party's minting code could.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import (  # noqa: E402
    last_call,
    consent, edit_config, foreign_consent, images, issued_consent, issued_legal_basis, legal_basis, make_workspace, open_sf, resigned,
)

from safeface.errors import ConfigError, PolicyViolation  # noqa: E402

PROFILES = ("cn-2025", "eu", "us-bipa")
NO_IMAGE = Path("/nonexistent/never-read.jpg")
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def imgs() -> Path:
    return images()


def refused(sf: Any, rule: str, operation: str, fn: Callable[[], Any]) -> PolicyViolation:
    """The call is refused under `rule` with a sentence, and the refusal is the last audit entry."""
    with pytest.raises(PolicyViolation) as info:
        fn()
    assert info.value.rule == rule, info.value
    assert len(info.value.message) > 20
    last = last_call(sf)
    assert (last.operation, last.decision, last.rule) == (operation, "refused", rule)
    return info.value


def allowed(sf: Any, operation: str) -> None:
    last = last_call(sf)
    assert (last.operation, last.decision) == (operation, "allowed")


# -- each refusal under every profile that carries it ------------------------------------------
def _undeclared_purpose(ws: Any) -> tuple[str, Callable[[Any], Any]]:
    t = foreign_consent(ws, "alice", ["marketing"])
    return "enroll", lambda sf: sf.enroll(NO_IMAGE, "alice", "marketing", t)


def _stale_notice(ws: Any) -> tuple[str, Callable[[Any], Any]]:
    t = consent(ws, "alice")
    edit_config(ws, lambda r: r["notice"].__setitem__("retention", "60 days from enrolment"))
    return "verify", lambda sf: sf.verify(NO_IMAGE, "alice", "demo", t)


def _no_consent(ws: Any) -> tuple[str, Callable[[Any], Any]]:
    return "identify", lambda sf: sf.identify(NO_IMAGE, "demo")


def _withdrawn(ws: Any) -> tuple[str, Callable[[Any], Any]]:
    t = consent(ws, "alice", now=dt.datetime.now(UTC) - dt.timedelta(minutes=5))

    def call(sf: Any) -> Any:
        sf.revoke(subject="alice")
        return sf.verify(NO_IMAGE, "alice", "demo", t)
    return "verify", call


def _export_without_transmit(ws: Any) -> tuple[str, Callable[[Any], Any]]:
    t = consent(ws, "alice")  # enroll, verify, identify: no transmit
    return "export", lambda sf: sf.export("alice", "demo", "a data broker", t)


def _attribute(name: str) -> Callable[[Any], tuple[str, Callable[[Any], Any]]]:
    return lambda ws: ("analyze", lambda sf: sf.analyze(NO_IMAGE, ["faces", name]))


def _forged_legal_basis(ws: Any) -> tuple[str, Callable[[Any], Any]]:
    head, payload, _ = legal_basis(ws).split(".")
    return "identify", lambda sf: sf.identify(NO_IMAGE, "demo", legal_basis=f"{head}.{payload}.AAAA")


def _role(ws: Any) -> tuple[str, Callable[[Any], Any]]:
    return "enroll", lambda sf: sf.enroll(NO_IMAGE, "alice", "demo", consent(ws, "alice"))


def _retention(ws: Any) -> tuple[str, Callable[[Any], Any]]:
    edit_config(ws, lambda r: r["purposes"]["demo"].__setitem__("retention_days", 0))
    return "verify", lambda sf: sf.verify(NO_IMAGE, "alice", "demo", consent(ws, "alice"))


# scenario -> (the rule under cn-2025, eu, us-bipa). Written out, not derived from rules.py.
MATRIX: dict[str, tuple[Callable[[Any], tuple[str, Callable[[Any], Any]]], tuple[str, str, str]]] = {
    "undeclared purpose": (_undeclared_purpose, ("CN-01", "EU-05", "US-02")),
    "stale notice": (_stale_notice, ("CN-02", "EU-05", "US-02")),
    "no consent": (_no_consent, ("CN-04", "EU-05", "US-02")),
    "withdrawn consent": (_withdrawn, ("CN-05", "EU-06", "US-02")),
    "export without transmit consent": (_export_without_transmit, ("CN-07", "CN-07", "US-03")),
    "retention missing": (_retention, ("CN-08", "CN-08", "US-01")),
    "race": (_attribute("race"), ("CN-18", "EU-01", "CN-18")),
    "religion": (_attribute("religious belief"), ("CN-18", "EU-01", "CN-18")),
    "emotion": (_attribute("mood"), ("CN-18", "EU-03", "EU-03")),
    "age": (_attribute("age"), ("CN-06", "EU-01", "CN-06")),
    "forged legal basis": (_forged_legal_basis, ("CN-16b", "CN-16b", "CN-16b")),
}
CASES = [(name, profile, rules[i]) for name, (_, rules) in MATRIX.items() for i, profile in enumerate(PROFILES)]


@pytest.mark.parametrize("scenario,profile,rule", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_refusal_names_the_profiles_rule(tmp_path: Path, scenario: str, profile: str, rule: str) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=(profile,))
    operation, call = MATRIX[scenario][0](ws)
    with open_sf(ws) as sf:
        refused(sf, rule, operation, lambda: call(sf))
        assert sf.records() == []


@pytest.mark.parametrize("profile", PROFILES)
def test_role_refusal_cn16_under_every_profile(tmp_path: Path, profile: str) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=(profile,))
    with open_sf(ws, role="kiosk") as sf:
        refused(sf, "CN-16", "enroll", lambda: sf.enroll(NO_IMAGE, "alice", "demo", consent(ws, "alice")))
        refused(sf, "CN-16", "analyze", lambda: sf.analyze(NO_IMAGE, ["faces"]))


# -- the allowed path under every profile ----------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_compliant_calls_are_allowed_under_every_profile(tmp_path: Path, imgs: Path, profile: str) -> None:
    """The counterpart of each refusal above: a declared purpose, a consent under the current
    notice, a transmit consent for export, technical facts from analyze."""
    ws = make_workspace(tmp_path / "ws", profiles=(profile,))
    with open_sf(ws) as sf:
        t = consent(ws, "alice", operations=["enroll", "verify", "identify", "transmit"])
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        allowed(sf, "enroll")
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match
        allowed(sf, "verify")
        assert [c.subject for c in sf.identify(imgs / "obama3.jpg", "demo", t)] == [sf.pseudonym("alice")]
        allowed(sf, "identify")
        assert len(sf.export("alice", "demo", "acme", t).records) == 1
        allowed(sf, "export")
        out = sf.analyze(imgs / "obama.jpg", ["faces", "boxes", "landmarks", "score"])
        assert out["faces"] == 1 and len(out["boxes"]) == 1 and len(out["landmarks"][0]) == 5 and len(out["scores"]) == 1
        allowed(sf, "analyze")
        assert [(r.purposes, r.provenance) for r in sf.records()] == [(("demo",), "consent")]


@pytest.mark.parametrize("profile", PROFILES)
def test_a_new_consent_after_a_notice_change_is_allowed(tmp_path: Path, imgs: Path, profile: str) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=(profile,))
    edit_config(ws, lambda r: r["notice"].__setitem__("retention", "60 days from enrolment"))
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        allowed(sf, "enroll")


# -- CN-11: the mandatory-by-law exemption ------------------------------------------------------
def _no_alternative(exemption: Any) -> Callable[[dict[str, Any]], None]:
    return lambda r: r["purposes"]["demo"].update({"alternatives": [], "mandatory_by_law": exemption})


@pytest.mark.parametrize("exemption", [None, "", "   ", True], ids=["absent", "empty", "blank", "true"])
def test_cn11_no_alternative_without_a_named_provision_is_refused(tmp_path: Path, exemption: Any) -> None:
    ws = make_workspace(tmp_path / "ws", edit=_no_alternative(exemption))
    with open_sf(ws) as sf:
        e = refused(sf, "CN-11", "verify", lambda: sf.verify(NO_IMAGE, "alice", "demo", consent(ws, "alice")))
        assert "alternative" in e.message


def test_cn11_mandatory_by_law_naming_a_provision_is_allowed(tmp_path: Path, imgs: Path) -> None:
    provision = "Exit and Entry Administration Law, art. 7"
    ws = make_workspace(tmp_path / "ws", edit=_no_alternative(provision))
    with open_sf(ws) as sf:
        assert sf.deployment.purposes["demo"].mandatory_by_law == provision
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        allowed(sf, "enroll")
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", t).match


# -- CN-16b: every branch of a legal basis ----------------------------------------------------------
def _lb_case(ws: Any, case: str) -> str:
    now = dt.datetime.now(UTC)
    if case == "blank provision":
        return resigned(ws, issued_legal_basis(ws)[1], provision=" ")
    if case == "no authority":
        return resigned(ws, issued_legal_basis(ws)[1], authority="")
    if case == "expired":
        return legal_basis(ws, now=now - dt.timedelta(days=10), days=5)
    if case == "not yet valid":
        return legal_basis(ws, now=now + dt.timedelta(days=1))
    if case == "other purpose":
        return legal_basis(ws, purposes=["border-control"])
    if case == "other operation":
        return legal_basis(ws, operations=["transmit"])
    raise AssertionError(case)


LB_CASES = ["blank provision", "no authority", "expired", "not yet valid", "other purpose", "other operation"]


@pytest.mark.parametrize("case", LB_CASES)
def test_cn16b_legal_basis_refused(tmp_path: Path, case: str) -> None:
    ws = make_workspace(tmp_path / "ws")
    lb = _lb_case(ws, case)
    with open_sf(ws) as sf:
        refused(sf, "CN-16b", "identify", lambda: sf.identify(NO_IMAGE, "demo", legal_basis=lb))
        assert last_call(sf).basis == "legal-basis"


def test_cn16b_revoked_legal_basis_refused_after_it_was_allowed(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    lb, issued = issued_legal_basis(ws)
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        assert [c.subject for c in sf.identify(imgs / "obama2.jpg", "demo", legal_basis=lb)] == [sf.pseudonym("alice")]
        allowed(sf, "identify")
        assert last_call(sf).rule == "CN-16b"  # logged as a legal-basis call
        sf.revoke(token_id=issued.token_id)
        e = refused(sf, "CN-16b", "identify", lambda: sf.identify(imgs / "obama2.jpg", "demo", legal_basis=lb))
        assert "revoked" in e.message
    with open_sf(ws) as sf:  # the revocation outlives the process
        refused(sf, "CN-16b", "identify", lambda: sf.identify(NO_IMAGE, "demo", legal_basis=lb))


# -- CN-06: a declared birth date that is not a date ------------------------------------------------
@pytest.mark.parametrize("birth", ["2019-02-30", "2015-13-01", "ten years ago", "01/05/2015"])
@pytest.mark.parametrize("guardian", [None, "Parent Name"])
def test_cn06_malformed_birth_date_refused(tmp_path: Path, birth: str, guardian: Any) -> None:
    """An age that cannot be read cannot be checked, so a guardian's name does not excuse it."""
    ws = make_workspace(tmp_path / "ws")
    _, issued = issued_consent(ws, "kid", guardian=guardian)
    t = resigned(ws, issued, birth_date=birth)
    with open_sf(ws) as sf:
        e = refused(sf, "CN-06", "enroll", lambda: sf.enroll(NO_IMAGE, "kid", "demo", t))
        assert "birth date" in e.message


def test_cn06_child_with_guardian_is_allowed(tmp_path: Path, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    child = (dt.date.today() - dt.timedelta(days=365 * 9)).isoformat()
    with open_sf(ws) as sf:
        refused(sf, "CN-06", "enroll",
                lambda: sf.enroll(NO_IMAGE, "kid", "demo", consent(ws, "kid", birth_date=child)))
        sf.enroll(imgs / "obama.jpg", "kid", "demo", consent(ws, "kid", birth_date=child, guardian="Parent Name"))
        allowed(sf, "enroll")


# -- PA-01, PA-02: only where a purpose asks -----------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_liveness_requirement_refuses_calls_without_evidence(tmp_path: Path, profile: str) -> None:
    """Before any image is read: a purpose that requires liveness refuses a call carrying no
    evidence, or evidence this workspace did not sign, under PA-01 whatever the profile."""
    ws = make_workspace(tmp_path / "ws", profiles=(profile,),
                        edit=lambda r: r["purposes"]["demo"].__setitem__("liveness", "required"))
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        e = refused(sf, "PA-01", "enroll", lambda: sf.enroll(NO_IMAGE, "alice", "demo", t))
        assert "liveness check" in e.message
        refused(sf, "PA-01", "verify", lambda: sf.verify(NO_IMAGE, "alice", "demo", t, liveness="sflv1.e30.AAAA"))
        refused(sf, "PA-01", "identify", lambda: sf.identify(NO_IMAGE, "demo", t))
        refused(sf, "PA-01", "enroll", lambda: sf.enroll_many([(NO_IMAGE, "alice", t)], "demo"))
        report = json.loads(sf.report(tmp_path / "report")["json"].read_text())
    states = {r["id"]: r["state"] for r in report["rules"]}
    assert states["PA-01"] == "satisfied" and states["PA-02"] == "not applicable" and report["can_process"] is True


@pytest.mark.parametrize("profile", PROFILES)
def test_capture_quality_requirement_applies_under_every_profile(tmp_path: Path, profile: str, imgs: Path) -> None:
    ws = make_workspace(tmp_path / "ws", profiles=(profile,), edit=lambda r: r["purposes"]["demo"].update(
        {"capture_quality": "required", "quality": {"min_eye_distance": 4000}}))
    with open_sf(ws) as sf:
        e = refused(sf, "PA-02", "enroll", lambda: sf.enroll(imgs / "obama.jpg", "alice", "demo", consent(ws, "alice")))
        assert "move closer" in e.message
        report = json.loads(sf.report(tmp_path / "report")["json"].read_text())
    states = {r["id"]: r["state"] for r in report["rules"]}
    assert states["PA-02"] == "satisfied" and states["PA-01"] == "not applicable"


@pytest.mark.parametrize("value", [None, "none"])
def test_capture_rules_not_applicable_where_no_purpose_asks(tmp_path: Path, value: Any) -> None:
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].update(
        {"liveness": value, "capture_quality": value}))
    with open_sf(ws) as sf:
        report = json.loads(sf.report(tmp_path / "report")["json"].read_text())
    rows = {r["id"]: r for r in report["rules"]}
    assert report["can_process"] is True
    for rid in ("PA-01", "PA-02"):
        assert rows[rid]["state"] == "not applicable" and "no purpose requires it" in rows[rid]["detail"]


@pytest.mark.parametrize("value", ["optional", "REQUIRED", True, 1])
def test_capture_requirement_must_be_spelt_out(tmp_path: Path, value: Any) -> None:
    """A misspelt requirement is an error, never silently "not required"."""
    ws = make_workspace(tmp_path / "ws")
    edit_config(ws, lambda r: r["purposes"]["demo"].__setitem__("liveness", value), reassess=False)
    with pytest.raises(ConfigError, match="liveness"):
        open_sf(ws)
